//! Developer accounts: sign-up with e-mail confirmation, sign-in and out, password reset,
//! changes of e-mail and password. Unknown accounts and wrong passwords get the same answer
//! in the same time (a dummy hash is checked, mail goes out in the background); sign-in and
//! sign-up are throttled per account and address.

pub mod login;
pub mod recovery;
pub mod settings;
pub mod signup;

use axum::http::{HeaderMap, header};
use tollgate_admin::mail::Mail;

use uuid::Uuid;

use crate::state::PortalState;
use crate::tokens::{self, Purpose};
use crate::web::{FieldErrors, UiError};

/// Sends `mail` in the background: the answer to the visitor must not wait for (or reveal)
/// whether a message went out.
pub fn send_later(state: &PortalState, mail: Mail) {
    let mailer = state.mailer().clone();
    tokio::spawn(async move {
        if let Err(err) = mailer.send(mail).await {
            tracing::warn!(error = %err, "portal mail failed");
        }
    });
}

/// A fresh one-time link (`{path}?token=…`) for the account of `email` that meets `condition`
/// (an SQL condition on `developers`, written here, never from input); `None` when there is
/// no such account.
pub async fn link_for(
    state: &PortalState,
    email: &str,
    condition: &'static str,
    purpose: Purpose,
    path: &str,
) -> Result<Option<String>, UiError> {
    let mut tx = state.db().begin().await?;
    let sql = format!("SELECT id FROM developers WHERE lower(email) = lower($1) AND {condition}");
    let found: Option<(Uuid,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(email).fetch_optional(&mut *tx).await?;
    let Some((id,)) = found else { return Ok(None) };
    let token = tokens::issue(&mut tx, id, purpose, None).await?;
    tx.commit().await?;
    Ok(Some(link(state, &format!("{path}?token={token}"))))
}

/// A link to `path` on the portal's public URL.
pub fn link(state: &PortalState, path: &str) -> String {
    format!("{}{path}", state.config().public_url)
}

/// Checks an e-mail address the way the database does (one `@`, no spaces, 254 bytes).
pub fn check_email(errors: &mut FieldErrors, field: &'static str, email: &str) {
    let ok = email.len() <= 254
        && email.split('@').count() == 2
        && email.split('@').all(|p| !p.is_empty())
        && !email.chars().any(char::is_whitespace);
    errors.check(ok, field, "Enter an e-mail address like name@example.com");
}

/// Checks a new password against the policy (12 to 1024 characters, not the e-mail).
pub fn check_password(errors: &mut FieldErrors, field: &'static str, password: &str, email: &str) {
    if !tollgate_admin::auth::password::acceptable(password) {
        errors.add(field, "Use at least 12 characters (a few words make a good password)");
    } else if password.eq_ignore_ascii_case(email) {
        errors.add(field, "Do not use your e-mail address as the password");
    }
}

/// The client's User-Agent, for the session list.
pub fn user_agent(headers: &HeaderMap) -> &str {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("")
}
