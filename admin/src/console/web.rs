//! Page plumbing of the admin UI: the guard (session, CSRF) in front of every page, the
//! signed-in [`Admin`] with their role, the [`Chrome`] around every page, notices after
//! redirects and the one error type of handlers.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::views::ErrorPage;
use crate::auth::Role;
use crate::change::Actor;
use crate::state::AppState;
use crate::ui::error::Face;
use crate::ui::session::{Session, Subject};
use crate::ui::{assets, csrf, form};

pub use crate::ui::form::{FieldErrors, encode, safe_next};

/// Where the admin UI lives.
pub const BASE: &str = "/ui";

/// The signed-in admin user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
}

/// What the guard learned about this request.
#[derive(Debug, Clone)]
pub struct Visit {
    pub session: Option<Session>,
    pub me: Option<Me>,
    /// The token this page's forms carry.
    pub csrf: String,
    pub path: String,
    pub request_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Visit>().cloned().ok_or_else(|| UiError::internal("the guard did not run"))
    }
}

/// A request by a signed-in admin user; others are sent to the login page.
#[derive(Debug, Clone)]
pub struct Admin {
    pub me: Me,
    pub session: Session,
    pub visit: Visit,
}

impl Admin {
    /// The audit actor for this user's changes.
    pub fn actor(&self) -> Actor {
        Actor::admin(self.me.id, &self.me.email, self.visit.request_id.clone())
    }

    /// Refuses (403, nothing done) unless the user has `role` or a higher one.
    pub fn require(&self, role: Role) -> Result<(), UiError> {
        if self.me.role >= role {
            Ok(())
        } else {
            Err(UiError::Forbidden(match role {
                Role::Owner => "Only owners may do this.",
                _ => "Viewers may look but not change anything.",
            }))
        }
    }

    pub fn can_edit(&self) -> bool {
        self.me.role >= Role::Editor
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let visit = Visit::from_request_parts(parts, state).await?;
        match (visit.me.clone(), visit.session.clone()) {
            (Some(me), Some(session)) => Ok(Admin { me, session, visit }),
            _ => Err(UiError::Redirect(format!("{BASE}/login?next={}", encode(&visit.path)))),
        }
    }
}

/// Everything around a page's content.
pub struct Chrome {
    pub title: String,
    pub css: String,
    pub js: String,
    pub icon: String,
    pub csrf: String,
    pub me: Option<Me>,
    /// Which navigation item is current.
    pub nav: &'static str,
    pub notice: Option<&'static str>,
    pub can_edit: bool,
    pub is_owner: bool,
    pub role_name: &'static str,
}

impl Chrome {
    pub fn new(visit: &Visit, title: impl Into<String>, nav: &'static str) -> Self {
        let role = visit.me.as_ref().map(|m| m.role);
        Self {
            title: title.into(),
            css: assets::url("app.css"),
            js: assets::url("app.js"),
            icon: assets::url("icon.svg"),
            csrf: visit.csrf.clone(),
            me: visit.me.clone(),
            nav,
            notice: None,
            can_edit: role.is_some_and(|r| r >= Role::Editor),
            is_owner: role == Some(Role::Owner),
            role_name: role.map_or("", role_name),
        }
    }

    /// With the notice a redirect asked for (`?notice=…`).
    pub fn with_notice(mut self, code: Option<&str>) -> Self {
        self.notice = code.and_then(notice);
        self
    }
}

/// The fixed messages a redirect may ask a page to show: nothing a link can inject.
pub fn notice(code: &str) -> Option<&'static str> {
    Some(match code {
        "logged-out" => "You are logged out.",
        "logged-out-everywhere" => "You are logged out on every device; your API tokens from logins are revoked too.",
        "saved" => "Saved. Gateways apply the change as it reaches them.",
        "created" => "Created.",
        "deleted" => "Deleted.",
        "imported" => "API imported. Its routes are live as soon as the gateways apply them.",
        "approved" => "Approved. The app may call the API now.",
        "rejected" => "Rejected. The developer sees your reason.",
        "decided" => "Decisions recorded.",
        "key-revoked" => "Key revoked. Gateways refuse it as soon as the change reaches them.",
        "key-rotated" => "Key rotated. The developer's old key works until the overlap ends.",
        "user-created" => "User created. Hand them the password shown once.",
        "token-revoked" => "Token revoked.",
        "certificate-saved" => "Certificate saved. Gateways serve it on new connections as the change reaches them.",
        "developer-approved" => "Developer approved; they can sign in now.",
        _ => return None,
    })
}

/// The face whose error pages this module renders.
#[derive(Debug)]
pub struct AdminFace;

impl Face for AdminFace {
    const NAME: &'static str = "admin UI";

    fn error_page(status: StatusCode, message: String) -> Response {
        error_page(status, message)
    }
}

/// A handler's failure, rendered as this face's error page (or a redirect).
pub type UiError = crate::ui::error::UiError<AdminFace>;

/// A plain error page (no account menu: it may be rendered before the guard ran).
pub fn error_page(status: StatusCode, message: String) -> Response {
    let visit = Visit { session: None, me: None, csrf: String::new(), path: String::new(), request_id: None };
    let title = status.canonical_reason().unwrap_or("Error").to_owned();
    let page = ErrorPage { chrome: Chrome::new(&visit, title, ""), status: status.as_u16(), message };
    (status, page).into_response()
}

/// The guard in front of every page: loads the session and its admin user, refuses
/// cross-site and token-less state changes (nothing runs, nothing changes), and hands the
/// handler a [`Visit`].
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match admit(&state, req).await {
        Ok((req, set_cookie)) => {
            let mut res = next.run(req).await;
            if let Some(c) = set_cookie {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            res
        }
        Err(res) => *res,
    }
}

async fn admit(state: &AppState, req: Request) -> Result<(Request, Option<HeaderValue>), Box<Response>> {
    let fail = |e: UiError| Box::new(e.into_response());
    let session = state.sessions().load(req.headers()).await.map_err(|e| fail(e.into()))?;
    let me = match &session {
        Some(Session { subject: Subject::Admin(id), .. }) => signed_in(state, *id).await.map_err(fail)?,
        _ => None,
    };
    let session = session.filter(|_| me.is_some());
    let (anon, set_cookie) = csrf::anon_token(req.headers(), state.config().ui_https);
    let expected = session.as_ref().map_or(anon, |s| s.csrf.clone());
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let req = if safe {
        req
    } else {
        form::check(req, &expected, state.config().body_limit)
            .await
            .map_err(|r| Box::new(error_page(r.status(), r.message().to_owned())))?
    };
    // Nested under `/ui`, the request's own URI has lost the prefix; the original has it.
    let uri = req.extensions().get::<axum::extract::OriginalUri>().map_or_else(|| req.uri().clone(), |o| o.0.clone());
    let path = uri.path_and_query().map_or(BASE, |p| p.as_str()).to_owned();
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut req = req;
    req.extensions_mut().insert(Visit { session, me, csrf: expected, path, request_id });
    Ok((req, set_cookie))
}

/// The admin user of a session, if they may still sign in.
async fn signed_in(state: &AppState, id: Uuid) -> Result<Option<Me>, UiError> {
    let me: Option<Me> = sqlx::query_as("SELECT id, email, role FROM admin_users WHERE id = $1 AND NOT disabled")
        .bind(id)
        .fetch_optional(state.db())
        .await?;
    Ok(me)
}

/// A role as the UI names it.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Editor => "editor",
        Role::Owner => "owner",
    }
}
