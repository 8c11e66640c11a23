//! The account page: name and address, password change (other sessions end), e-mail change
//! (confirmed from the new address), sign out everywhere.

use std::net::SocketAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use tollgate_admin::Secret;
use tollgate_admin::auth::password;
use tollgate_admin::change::{self, Change};
use tollgate_admin::mail::Mail;
use tollgate_admin::ui::session::{SessionStore, Subject};

use super::{check_email, check_password, link, send_later};
use crate::accounts::signup::{ConfirmPage, TokenQuery, dead_link};
use crate::state::PortalState;
use crate::tokens::{self, Purpose};
use crate::web::{Chrome, FieldErrors, SignedIn, UiError, Visit};

#[derive(Template, WebTemplate)]
#[template(path = "portal/account.html")]
struct AccountPage {
    chrome: Chrome,
    email: String,
    name: String,
    new_email: String,
    sessions: i64,
    since: String,
    errors: FieldErrors,
}

/// `?notice=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

async fn page(
    state: &PortalState,
    who: &SignedIn,
    new_email: String,
    errors: FieldErrors,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let (sessions,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM web_sessions WHERE developer_id = $1 AND expires_at > now()")
            .bind(who.me.id)
            .fetch_one(state.db())
            .await?;
    let (created,): (OffsetDateTime,) =
        sqlx::query_as("SELECT created_at FROM developers WHERE id = $1").bind(who.me.id).fetch_one(state.db()).await?;
    let chrome = Chrome::new(&who.visit, "Your account", "account").with_notice(notice);
    Ok(AccountPage {
        chrome,
        email: who.me.email.clone(),
        name: who.me.name.clone(),
        new_email,
        sessions,
        since: tollgate_admin::ui::format::date(created),
        errors,
    }
    .into_response())
}

/// `GET /account`.
pub async fn show_account(
    State(state): State<PortalState>,
    who: SignedIn,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    page(&state, &who, String::new(), FieldErrors::default(), q.notice.as_deref()).await
}

/// The password change form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PasswordForm {
    pub current_password: String,
    pub password: String,
}

/// Checks the current password, throttled like a sign-in (a stolen session must not become
/// a way to guess it).
async fn confirm_password(
    state: &PortalState,
    who: &SignedIn,
    peer: &SocketAddr,
    given: String,
) -> Result<bool, UiError> {
    let reservation = state.logins().reserve(&who.me.email.to_lowercase(), peer.ip()).map_err(UiError::TooMany)?;
    let (stored,): (Option<String>,) = sqlx::query_as("SELECT password_hash FROM developers WHERE id = $1")
        .bind(who.me.id)
        .fetch_one(state.db())
        .await?;
    let ok = password::verify(Secret::new(given), stored).await?;
    if ok {
        state.logins().succeeded(reservation);
    }
    Ok(ok)
}

/// `POST /account/password`.
pub async fn change_password(
    State(state): State<PortalState>,
    who: SignedIn,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, UiError> {
    let mut errors = FieldErrors::default();
    check_password(&mut errors, "password", &form.password, &who.me.email);
    if errors.is_empty() && !confirm_password(&state, &who, &peer, form.current_password).await? {
        errors.add("current_password", "This is not your current password");
    }
    if !errors.is_empty() {
        return page(&state, &who, String::new(), errors, None).await;
    }
    let hash = password::hash(Secret::new(form.password)).await?;
    let mut tx = state.db().begin().await?;
    sqlx::query("UPDATE developers SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(who.me.id)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    SessionStore::end_all(&mut tx, Subject::Developer(who.me.id), Some(&who.session.id_hash)).await?;
    let change =
        Change::update("developer", who.me.id, serde_json::json!({}), serde_json::json!({"password": "changed"}));
    change::record(&mut tx, &who.actor(), change.action("set_password").audit_only()).await?;
    tx.commit().await?;
    Ok(Redirect::to("/account?notice=password-changed").into_response())
}

/// The e-mail change form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EmailForm {
    pub new_email: String,
    pub email_password: String,
}

/// `POST /account/email`: mails a confirmation link to the new address (and a note to the
/// old one). An address that has an account already gets a mail saying so instead.
pub async fn change_email(
    State(state): State<PortalState>,
    who: SignedIn,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<EmailForm>,
) -> Result<Response, UiError> {
    let new_email = form.new_email.trim().to_owned();
    let mut errors = FieldErrors::default();
    check_email(&mut errors, "new_email", &new_email);
    errors.check(!new_email.eq_ignore_ascii_case(&who.me.email), "new_email", "This is your current address");
    if errors.is_empty() && !confirm_password(&state, &who, &peer, form.email_password).await? {
        errors.add("email_password", "This is not your current password");
    }
    if !errors.is_empty() {
        return page(&state, &who, new_email, errors, None).await;
    }
    let taken: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM developers WHERE lower(email) = lower($1)")
        .bind(&new_email)
        .fetch_optional(state.db())
        .await?;
    let body = if taken.is_some() {
        "Someone asked to move a developer portal account to this address, which already has an account. Nothing was changed.\n".to_owned()
    } else {
        let mut conn = state.db().acquire().await?;
        let token = tokens::issue(&mut conn, who.me.id, Purpose::ChangeEmail, Some(&new_email)).await?;
        let url = link(&state, &format!("/email/confirm?token={token}"));
        format!("Confirm this address for your developer portal account:\n\n{url}\n\nThe link works for 24 hours.\n")
    };
    send_later(&state, Mail { to: new_email.clone(), subject: "Confirm your new e-mail address".into(), body });
    let note = format!(
        "You asked to change the address of your developer portal account to {new_email}. If this was not you, reset your password: {}\n",
        link(&state, "/forgot")
    );
    send_later(
        &state,
        Mail { to: who.me.email.clone(), subject: "Your e-mail address is changing".into(), body: note },
    );
    Ok(Redirect::to("/account?notice=email-change-sent").into_response())
}

/// `GET /email/confirm?token=`.
pub async fn show_confirm_email(
    State(state): State<PortalState>,
    visit: Visit,
    Query(q): Query<TokenQuery>,
) -> Result<Response, UiError> {
    let mut conn = state.db().acquire().await?;
    if !tokens::valid(&mut conn, &q.token, Purpose::ChangeEmail).await? {
        return Ok(dead_link(&visit));
    }
    let chrome = Chrome::new(&visit, "Confirm your new address", "account");
    let message = "Use this address for your account from now on.".into();
    Ok(ConfirmPage { chrome, message, action: "/email/confirm", token: q.token, button: "Use this address" }
        .into_response())
}

/// `POST /email/confirm`.
pub async fn confirm_email(
    State(state): State<PortalState>,
    visit: Visit,
    Form(q): Form<TokenQuery>,
) -> Result<Response, UiError> {
    let mut tx = state.db().begin().await?;
    let Some((id, Some(new_email))) = tokens::consume(&mut tx, &q.token, Purpose::ChangeEmail).await? else {
        return Ok(dead_link(&visit));
    };
    let old: Option<(String,)> =
        sqlx::query_as("SELECT email FROM developers WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
    let Some((old,)) = old else { return Ok(dead_link(&visit)) };
    let updated = sqlx::query("UPDATE developers SET email = $2, email_verified_at = now(), version = version + 1, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(&new_email)
        .execute(&mut *tx)
        .await;
    if let Err(e) = updated {
        if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("23505") {
            return Err(UiError::Conflict("Another account uses this address now.".into()));
        }
        return Err(e.into());
    }
    let actor = tollgate_admin::change::Actor::developer(id, &new_email, None);
    let change =
        Change::update("developer", id, serde_json::json!({"email": old}), serde_json::json!({"email": new_email}));
    change::record(&mut tx, &actor, change.action("change_email").audit_only()).await?;
    tx.commit().await?;
    let to = if visit.me.is_some() { "/account?notice=email-changed" } else { "/login?notice=email-changed" };
    Ok(Redirect::to(to).into_response())
}
