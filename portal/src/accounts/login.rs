//! Signing in and out.

use std::net::SocketAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use tollgate_admin::Secret;
use tollgate_admin::auth::password;
use tollgate_admin::change::{self, Actor, Change};
use tollgate_admin::ui::session::{SessionStore, Subject};
use uuid::Uuid;

use super::user_agent;
use crate::state::PortalState;
use crate::web::{Chrome, FieldErrors, SignedIn, UiError, Visit, safe_next};

/// The sign-in form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    pub email: String,
    pub password: String,
    pub next: String,
}

/// `?next=&notice=` of the sign-in page.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginQuery {
    pub next: String,
    pub notice: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/login.html")]
struct LoginPage {
    chrome: Chrome,
    email: String,
    next: String,
    errors: FieldErrors,
    /// The account exists and the password was right, but the address is unconfirmed.
    unconfirmed: bool,
}

/// `GET /login`.
pub async fn show_login(visit: Visit, Query(q): Query<LoginQuery>) -> Response {
    if visit.me.is_some() {
        return Redirect::to(safe_next(&q.next, "/apps")).into_response();
    }
    let chrome = Chrome::new(&visit, "Sign in", "login").with_notice(q.notice.as_deref());
    LoginPage { chrome, email: String::new(), next: q.next, errors: FieldErrors::default(), unconfirmed: false }
        .into_response()
}

#[derive(sqlx::FromRow)]
struct Account {
    id: Uuid,
    email: String,
    password_hash: Option<String>,
    status: String,
    email_verified_at: Option<OffsetDateTime>,
}

/// `POST /login`.
pub async fn login(
    State(state): State<PortalState>,
    visit: Visit,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Result<Response, UiError> {
    let email = form.email.trim().to_owned();
    let reservation = state.logins().reserve(&email.to_lowercase(), peer.ip()).map_err(UiError::TooMany)?;
    let account: Option<Account> = sqlx::query_as(
        "SELECT id, email, password_hash, status, email_verified_at FROM developers WHERE lower(email) = lower($1)",
    )
    .bind(&email)
    .fetch_optional(state.db())
    .await?;
    let stored = account.as_ref().and_then(|a| a.password_hash.clone());
    let right = password::verify(Secret::new(form.password), stored).await?;
    let page = |errors: FieldErrors, unconfirmed: bool| {
        let chrome = Chrome::new(&visit, "Sign in", "login");
        LoginPage { chrome, email: email.clone(), next: form.next.clone(), errors, unconfirmed }.into_response()
    };
    let Some(account) = account.filter(|_| right) else {
        let mut errors = FieldErrors::default();
        errors.add("email", "The e-mail address or the password is not right");
        return Ok(page(errors, false));
    };
    state.logins().succeeded(reservation);
    let mut errors = FieldErrors::default();
    match (account.status.as_str(), account.email_verified_at.is_some()) {
        ("disabled", _) => errors.add("email", "This account is disabled. Contact the portal's administrators."),
        (_, false) => errors.add("email", "Confirm your e-mail address first: open the link we sent you."),
        ("pending", true) => errors.add("email", "Your account is waiting for an administrator's approval."),
        _ => {}
    }
    if !errors.is_empty() {
        return Ok(page(errors, account.email_verified_at.is_none()));
    }
    if let Some(old) = &visit.session {
        state.sessions().end(old).await?;
    }
    let mut tx = state.db().begin().await?;
    let actor = Actor::developer(account.id, &account.email, None);
    let after = serde_json::json!({ "client_ip": peer.ip().to_string() });
    change::record(
        &mut tx,
        &actor,
        Change::create("developer_session", account.id, after).action("login").audit_only(),
    )
    .await?;
    tx.commit().await?;
    start_session(
        &state,
        &visit,
        Subject::Developer(account.id),
        &peer,
        user_agent(&headers),
        safe_next(&form.next, "/apps"),
    )
    .await
}

/// Starts a session (a new id) and redirects to `to` with its cookie.
pub async fn start_session(
    state: &PortalState,
    visit: &Visit,
    subject: Subject,
    peer: &SocketAddr,
    ua: &str,
    to: &str,
) -> Result<Response, UiError> {
    if let Some(old) = &visit.session {
        state.sessions().end(old).await?;
    }
    let (id, _) = state.sessions().start(subject, &peer.ip().to_string(), ua).await?;
    let mut res = Redirect::to(to).into_response();
    res.headers_mut().append(header::SET_COOKIE, state.sessions().set_cookie(&id));
    Ok(res)
}

fn signed_out(state: &PortalState, notice: &str) -> Response {
    let mut res = Redirect::to(&format!("/login?notice={notice}")).into_response();
    res.headers_mut().append(header::SET_COOKIE, state.sessions().clear_cookie());
    res
}

/// `POST /logout`: ends this session.
pub async fn logout(State(state): State<PortalState>, visit: Visit) -> Result<Response, UiError> {
    if let Some(s) = &visit.session {
        state.sessions().end(s).await?;
    }
    Ok(signed_out(&state, "logged-out"))
}

/// `POST /logout/everywhere`: ends every session of the developer.
pub async fn logout_everywhere(State(state): State<PortalState>, who: SignedIn) -> Result<Response, UiError> {
    let mut conn = state.db().acquire().await?;
    SessionStore::end_all(&mut conn, Subject::Developer(who.me.id), None).await?;
    Ok(signed_out(&state, "logged-out-everywhere"))
}
