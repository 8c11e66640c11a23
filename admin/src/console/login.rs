//! Logging in and out of the admin UI: a session in PostgreSQL (a new id at every login),
//! throttled like the REST login (the attempt is counted before the password check), and
//! "log out everywhere", which also revokes the user's login tokens.

use std::net::SocketAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

use super::fields::FormData;
use super::web::{Admin, BASE, Chrome, FieldErrors, UiError, Visit, safe_next};
use crate::auth::password;
use crate::change::{self, Actor, Change};
use crate::secret::Secret;
use crate::state::AppState;
use crate::ui::session::{SessionStore, Subject};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginQuery {
    next: String,
    notice: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/login.html")]
struct LoginPage {
    chrome: Chrome,
    email: String,
    next: String,
    errors: FieldErrors,
}

/// `GET /ui/login`.
pub async fn show_login(visit: Visit, Query(q): Query<LoginQuery>) -> Response {
    if visit.me.is_some() {
        return Redirect::to(safe_next(&q.next, BASE)).into_response();
    }
    let chrome = Chrome::new(&visit, "Log in", "").with_notice(q.notice.as_deref());
    LoginPage { chrome, email: String::new(), next: q.next, errors: FieldErrors::default() }.into_response()
}

#[derive(sqlx::FromRow)]
struct Account {
    id: Uuid,
    email: String,
    password_hash: String,
    disabled: bool,
}

/// `POST /ui/login`.
pub async fn login(
    State(state): State<AppState>,
    visit: Visit,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Response, UiError> {
    let form = FormData::parse(&body);
    let (email, next) = (form.get("email").to_owned(), form.get("next").to_owned());
    let reservation = state.throttle().reserve(&email, peer.ip()).map_err(UiError::TooMany)?;
    let account: Option<Account> =
        sqlx::query_as("SELECT id, email, password_hash, disabled FROM admin_users WHERE lower(email) = lower($1)")
            .bind(&email)
            .fetch_optional(state.db())
            .await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let password = form.0.iter().find(|(k, _)| k == "password").map(|(_, v)| v.clone()).unwrap_or_default();
    let right = password::verify(Secret::new(password), stored).await.map_err(UiError::internal)?;
    let Some(account) = account.filter(|a| right && !a.disabled) else {
        tracing::warn!(client = %peer.ip(), "admin UI login failed");
        let mut errors = FieldErrors::default();
        errors.add("email", "The e-mail address or the password is not right");
        let chrome = Chrome::new(&visit, "Log in", "");
        return Ok(LoginPage { chrome, email, next, errors }.into_response());
    };
    state.throttle().succeeded(reservation);
    let mut tx = state.db().begin().await?;
    let actor = Actor::admin(account.id, &account.email, visit.request_id.clone());
    let after = serde_json::json!({ "client": peer.ip().to_string(), "via": "ui" });
    change::record(&mut tx, &actor, Change::create("session", account.id, after).action("login").audit_only())
        .await
        .map_err(UiError::internal)?;
    tx.commit().await?;
    if let Some(old) = &visit.session {
        state.sessions().end(old).await?;
    }
    let ua = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (id, _) = state.sessions().start(Subject::Admin(account.id), &peer.ip().to_string(), ua).await?;
    let mut res = Redirect::to(safe_next(&next, BASE)).into_response();
    res.headers_mut().append(header::SET_COOKIE, state.sessions().set_cookie(&id));
    Ok(res)
}

fn logged_out(state: &AppState, notice: &str) -> Response {
    let mut res = Redirect::to(&format!("{BASE}/login?notice={notice}")).into_response();
    res.headers_mut().append(header::SET_COOKIE, state.sessions().clear_cookie());
    res
}

/// `POST /ui/logout`: ends this session.
pub async fn logout(State(state): State<AppState>, visit: Visit) -> Result<Response, UiError> {
    if let Some(s) = &visit.session {
        state.sessions().end(s).await?;
    }
    Ok(logged_out(&state, "logged-out"))
}

/// `POST /ui/logout/everywhere`: ends every session of the user and revokes their login
/// tokens (personal access tokens are kept: they are managed on their own).
pub async fn logout_everywhere(State(state): State<AppState>, who: Admin) -> Result<Response, UiError> {
    let mut tx = state.db().begin().await?;
    SessionStore::end_all(&mut tx, Subject::Admin(who.me.id), None).await?;
    sqlx::query("UPDATE admin_users SET token_generation = token_generation + 1 WHERE id = $1")
        .bind(who.me.id)
        .execute(&mut *tx)
        .await?;
    let change = Change::create("session", who.me.id, serde_json::json!({"scope": "everywhere"})).action("logout");
    change::record(&mut tx, &who.actor(), change.audit_only()).await.map_err(UiError::internal)?;
    tx.commit().await?;
    Ok(logged_out(&state, "logged-out-everywhere"))
}
