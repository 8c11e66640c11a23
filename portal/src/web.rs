//! Page plumbing: the per-request [`Visit`] (session, signed-in developer, CSRF token) that
//! the guard middleware attaches, the [`Chrome`] every page renders around its content,
//! notices after redirects, field errors, and the one error type of handlers.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tollgate_admin::ui::error::Face;
pub use tollgate_admin::ui::form::{FieldErrors, encode, safe_next};
use tollgate_admin::ui::session::{Session, Subject};
use tollgate_admin::ui::{FORM_LIMIT, assets, csrf, form};
use uuid::Uuid;

use crate::state::PortalState;
use crate::views::ErrorPage;

/// The signed-in developer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub name: String,
}

/// What the guard learned about this request.
#[derive(Debug, Clone)]
pub struct Visit {
    pub session: Option<Session>,
    pub me: Option<Me>,
    /// The token this page's forms carry.
    pub csrf: String,
    pub path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Visit>().cloned().ok_or_else(|| UiError::internal("the guard did not run"))
    }
}

/// A request by a signed-in developer; others are sent to the login page.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub me: Me,
    pub session: Session,
    pub visit: Visit,
}

impl SignedIn {
    /// The audit actor for this developer's changes.
    pub fn actor(&self) -> tollgate_admin::change::Actor {
        tollgate_admin::change::Actor::developer(self.me.id, &self.me.email, None)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let visit = Visit::from_request_parts(parts, state).await?;
        match (visit.me.clone(), visit.session.clone()) {
            (Some(me), Some(session)) => Ok(SignedIn { me, session, visit }),
            _ => Err(UiError::Redirect(format!("/login?next={}", encode(&visit.path)))),
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
}

impl Chrome {
    pub fn new(visit: &Visit, title: impl Into<String>, nav: &'static str) -> Self {
        Self {
            title: title.into(),
            css: assets::url("app.css"),
            js: assets::url("app.js"),
            icon: assets::url("icon.svg"),
            csrf: visit.csrf.clone(),
            me: visit.me.clone(),
            nav,
            notice: None,
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
        "verified" => "Your e-mail address is confirmed. Welcome!",
        "logged-out" => "You are signed out.",
        "logged-out-everywhere" => "You are signed out on every device.",
        "password-changed" => "Your password is changed; your other sessions were signed out.",
        "password-reset" => "Your password is set. Sign in with it now.",
        "email-change-sent" => "We sent a confirmation link to the new address.",
        "email-changed" => "Your e-mail address is changed.",
        "verification-sent" => "We sent you a new confirmation link.",
        "app-created" => "App created. Issue a key to start calling APIs.",
        "app-deleted" => "App deleted; its keys no longer work.",
        "key-revoked" => "Key revoked. Gateways refuse it as soon as the change reaches them.",
        "subscribed" => "Subscribed. Calls with this app's keys are allowed within the plan.",
        "requested" => "Request sent. You will see the decision here.",
        "unsubscribed" => "Subscription cancelled.",
        "invited" => "Invitation sent.",
        "joined" => "You joined the organisation.",
        "member-removed" => "Member removed.",
        "left" => "You left the organisation.",
        _ => return None,
    })
}

/// The face whose error pages this module renders.
#[derive(Debug)]
pub struct PortalFace;

impl Face for PortalFace {
    const NAME: &'static str = "portal";

    fn error_page(status: StatusCode, message: String) -> Response {
        error_page(status, message)
    }
}

/// A handler's failure, rendered as this face's error page (or a redirect).
pub type UiError = tollgate_admin::ui::error::UiError<PortalFace>;

/// A plain error page (no account menu: it may be rendered before the guard ran).
pub fn error_page(status: StatusCode, message: String) -> Response {
    let visit = Visit { session: None, me: None, csrf: String::new(), path: String::new() };
    let title = status.canonical_reason().unwrap_or("Error").to_owned();
    let page = ErrorPage { chrome: Chrome::new(&visit, title, ""), status: status.as_u16(), message };
    (status, page).into_response()
}

/// The guard in front of every page: loads the session and the developer, refuses
/// cross-site and token-less state changes (nothing runs, nothing changes), and hands the
/// handler a [`Visit`]. Form bodies are read here (bounded) to find the token.
pub async fn guard(State(state): State<PortalState>, req: Request, next: Next) -> Response {
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

async fn admit(state: &PortalState, req: Request) -> Result<(Request, Option<HeaderValue>), Box<Response>> {
    let fail = |e: UiError| Box::new(e.into_response());
    let session = state.sessions().load(req.headers()).await.map_err(|e| fail(e.into()))?;
    let me = match &session {
        Some(Session { subject: Subject::Developer(id), .. }) => signed_in(state, *id).await.map_err(fail)?,
        _ => None,
    };
    let session = session.filter(|_| me.is_some());
    let (anon, set_cookie) = csrf::anon_token(req.headers(), state.config().secure());
    let expected = session.as_ref().map_or(anon, |s| s.csrf.clone());
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    let req = if safe { req } else { check_form(req, &expected).await? };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut req = req;
    req.extensions_mut().insert(Visit { session, me, csrf: expected, path });
    Ok((req, set_cookie))
}

/// The developer of a session, if the account may still sign in.
async fn signed_in(state: &PortalState, id: Uuid) -> Result<Option<Me>, UiError> {
    let me: Option<Me> = sqlx::query_as(
        "SELECT id, email, name FROM developers WHERE id = $1 AND status = 'active' AND email_verified_at IS NOT NULL",
    )
    .bind(id)
    .fetch_optional(state.db())
    .await?;
    Ok(me)
}

async fn check_form(req: Request, expected: &str) -> Result<Request, Box<Response>> {
    form::check(req, expected, FORM_LIMIT).await.map_err(|r| Box::new(error_page(r.status(), r.message().to_owned())))
}
