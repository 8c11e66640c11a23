//! Password reset by mailed link. The request page answers the same whether or not the
//! address has an account; a reset signs out every session and confirms the address (the
//! link proved the mailbox).

use std::net::SocketAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tollgate_admin::Secret;
use tollgate_admin::auth::password;
use tollgate_admin::change::{self, Actor, Change};
use tollgate_admin::mail::Mail;
use tollgate_admin::ui::session::{SessionStore, Subject};

use super::{check_email, check_password, link_for, send_later};
use crate::state::PortalState;
use crate::tokens::{self, Purpose};
use crate::views::MessagePage;
use crate::web::{Chrome, FieldErrors, UiError, Visit};

#[derive(Template, WebTemplate)]
#[template(path = "portal/forgot.html")]
struct ForgotPage {
    chrome: Chrome,
    email: String,
    errors: FieldErrors,
}

/// The reset request form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ForgotForm {
    pub email: String,
}

/// `GET /forgot`.
pub async fn show_forgot(visit: Visit) -> Response {
    let chrome = Chrome::new(&visit, "Reset your password", "login");
    ForgotPage { chrome, email: String::new(), errors: FieldErrors::default() }.into_response()
}

/// `POST /forgot`: mails a reset link if the address has an account; the same page either way.
pub async fn forgot(
    State(state): State<PortalState>,
    visit: Visit,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<ForgotForm>,
) -> Result<Response, UiError> {
    let email = form.email.trim().to_owned();
    let mut errors = FieldErrors::default();
    check_email(&mut errors, "email", &email);
    if !errors.is_empty() {
        let chrome = Chrome::new(&visit, "Reset your password", "login");
        return Ok(ForgotPage { chrome, email, errors }.into_response());
    }
    let slot = state.signups().reserve("forgot", peer.ip()).map_err(UiError::TooMany)?;
    drop(slot);
    let background = state.clone();
    let to = email.clone();
    tokio::spawn(async move {
        if let Err(e) = mail_reset_link(&background, &to).await {
            tracing::warn!(error = ?e, "reset link not sent");
        }
    });
    Ok(MessagePage {
        chrome: Chrome::new(&visit, "Check your inbox", "login"),
        message: format!(
            "If {email} has an account, we sent it a link to set a new password. The link works for one hour."
        ),
        log_hint: state.mailer().logs_only(),
        link: None,
    }
    .into_response())
}

async fn mail_reset_link(state: &PortalState, email: &str) -> Result<(), UiError> {
    let Some(url) = link_for(state, email, "status <> 'disabled'", Purpose::ResetPassword, "/reset").await? else {
        return Ok(());
    };
    let body = format!(
        "Someone (perhaps you) asked to reset the password of your developer portal account.\n\nSet a new password: {url}\n\nThe link works for one hour. If you did not ask, ignore this mail; your password stays as it is.\n"
    );
    send_later(state, Mail { to: email.to_owned(), subject: "Reset your password".into(), body });
    Ok(())
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/reset.html")]
struct ResetPage {
    chrome: Chrome,
    token: String,
    errors: FieldErrors,
}

/// The new-password form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResetForm {
    pub token: String,
    pub password: String,
}

/// `GET /reset?token=`.
pub async fn show_reset(
    State(state): State<PortalState>,
    visit: Visit,
    Query(q): Query<super::signup::TokenQuery>,
) -> Result<Response, UiError> {
    let mut conn = state.db().acquire().await?;
    if !tokens::valid(&mut conn, &q.token, Purpose::ResetPassword).await? {
        return Ok(super::signup::dead_link(&visit));
    }
    let chrome = Chrome::new(&visit, "Choose a new password", "login");
    Ok(ResetPage { chrome, token: q.token, errors: FieldErrors::default() }.into_response())
}

/// `POST /reset`.
pub async fn reset(
    State(state): State<PortalState>,
    visit: Visit,
    Form(form): Form<ResetForm>,
) -> Result<Response, UiError> {
    let mut errors = FieldErrors::default();
    check_password(&mut errors, "password", &form.password, "");
    if !errors.is_empty() {
        let chrome = Chrome::new(&visit, "Choose a new password", "login");
        return Ok(ResetPage { chrome, token: form.token, errors }.into_response());
    }
    let hash = password::hash(Secret::new(form.password)).await?;
    let mut tx = state.db().begin().await?;
    let Some((id, _)) = tokens::consume(&mut tx, &form.token, Purpose::ResetPassword).await? else {
        return Ok(super::signup::dead_link(&visit));
    };
    let (email,): (String,) = sqlx::query_as(
        "UPDATE developers SET password_hash = $2, email_verified_at = coalesce(email_verified_at, now()),
                updated_at = now()
         WHERE id = $1 RETURNING email",
    )
    .bind(id)
    .bind(hash)
    .fetch_one(&mut *tx)
    .await?;
    SessionStore::end_all(&mut tx, Subject::Developer(id), None).await?;
    let actor = Actor::developer(id, &email, None);
    let change = Change::update("developer", id, serde_json::json!({}), serde_json::json!({"password": "reset"}));
    change::record(&mut tx, &actor, change.action("reset_password").audit_only()).await?;
    tx.commit().await?;
    Ok(Redirect::to("/login?notice=password-reset").into_response())
}
