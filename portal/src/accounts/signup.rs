//! Sign-up, e-mail confirmation and new confirmation links.

use std::net::SocketAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use tollgate_admin::Secret;
use tollgate_admin::auth::password;
use tollgate_admin::change::{self, Actor, Change};
use tollgate_admin::mail::Mail;
use tollgate_admin::ui::session::Subject;
use uuid::Uuid;

use super::{check_email, check_password, link, link_for, send_later, user_agent};
use crate::state::PortalState;
use crate::tokens::{self, Purpose};
use crate::views::MessagePage;
use crate::web::{Chrome, FieldErrors, UiError, Visit};

/// The sign-up form (the password is never sent back).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignupForm {
    pub name: String,
    pub email: String,
    pub password: String,
    pub organisation: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/signup.html")]
struct SignupPage {
    chrome: Chrome,
    form: SignupForm,
    errors: FieldErrors,
    approval: bool,
}

/// `GET /signup`.
pub async fn show_signup(State(state): State<PortalState>, visit: Visit) -> Response {
    if visit.me.is_some() {
        return Redirect::to("/apps").into_response();
    }
    let chrome = Chrome::new(&visit, "Create your account", "signup");
    SignupPage {
        chrome,
        form: SignupForm::default(),
        errors: FieldErrors::default(),
        approval: state.config().signup_approval,
    }
    .into_response()
}

fn validate(form: &SignupForm) -> FieldErrors {
    let mut e = FieldErrors::default();
    e.check(
        !form.name.trim().is_empty() && form.name.chars().count() <= 200,
        "name",
        "Enter your name (up to 200 characters)",
    );
    check_email(&mut e, "email", form.email.trim());
    check_password(&mut e, "password", &form.password, form.email.trim());
    e.check(form.organisation.chars().count() <= 100, "organisation", "Use at most 100 characters");
    e
}

/// `POST /signup`: creates the account, its organisation and a confirmation link. An address
/// that already has an account gets a mail saying so instead, and the visitor the same page.
pub async fn signup(
    State(state): State<PortalState>,
    visit: Visit,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(mut form): Form<SignupForm>,
) -> Result<Response, UiError> {
    let errors = validate(&form);
    if !errors.is_empty() {
        form.password.clear();
        let chrome = Chrome::new(&visit, "Create your account", "signup");
        return Ok(SignupPage { chrome, form, errors, approval: state.config().signup_approval }.into_response());
    }
    // Counted, never given back: each sign-up is one of the address's allowance.
    let slot = state.signups().reserve("signup", peer.ip()).map_err(UiError::TooMany)?;
    drop(slot);
    let email = form.email.trim().to_owned();
    // Hashed before looking the address up, so both outcomes cost the same.
    let hash = password::hash(Secret::new(std::mem::take(&mut form.password))).await?;
    match create_account(&state, &form, &email, hash).await? {
        Some(token) => {
            let url = link(&state, &format!("/verify?token={token}"));
            send_later(
                &state,
                Mail {
                    to: email.clone(),
                    subject: "Confirm your e-mail address".into(),
                    body: format!(
                        "Hello {},\n\nconfirm your address to start using the developer portal:\n\n{url}\n\nThe link works for 48 hours. If you did not sign up, ignore this mail.\n",
                        form.name.trim()
                    ),
                },
            );
        }
        None => send_later(
            &state,
            Mail {
                to: email.clone(),
                subject: "You already have an account".into(),
                body: format!(
                    "Someone (perhaps you) tried to sign up with this address, which already has an account.\n\nSign in: {}\nForgot your password? {}\n",
                    link(&state, "/login"),
                    link(&state, "/forgot")
                ),
            },
        ),
    }
    Ok(check_inbox(&state, &visit, &email))
}

fn check_inbox(state: &PortalState, visit: &Visit, email: &str) -> Response {
    MessagePage {
        chrome: Chrome::new(visit, "Check your inbox", "signup"),
        message: format!("We sent a confirmation link to {email}. Open it to finish signing up."),
        log_hint: state.mailer().logs_only(),
        link: None,
    }
    .into_response()
}

#[derive(Serialize)]
struct DeveloperAudit<'a> {
    id: Uuid,
    email: &'a str,
    name: &'a str,
    status: &'a str,
}

/// Creates the developer, their organisation and membership, and a confirmation token, in
/// one transaction; `None` when the address is taken.
async fn create_account(
    state: &PortalState,
    form: &SignupForm,
    email: &str,
    hash: String,
) -> Result<Option<String>, UiError> {
    let id = Uuid::now_v7();
    let name = form.name.trim();
    let status = if state.config().signup_approval { "pending" } else { "active" };
    let mut tx = state.db().begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO developers (id, email, name, password_hash, status) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(email)
    .bind(name)
    .bind(&hash)
    .bind(status)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(None);
    }
    let actor = Actor::developer(id, email, None);
    let after = serde_json::to_value(DeveloperAudit { id, email, name, status }).map_err(UiError::internal)?;
    change::record(&mut tx, &actor, Change::create("developer", id, after).action("signup")).await?;
    let org_name = match form.organisation.trim() {
        "" => format!("{name}'s team").chars().take(100).collect(),
        given => given.to_owned(),
    };
    crate::team::create_organisation(&mut tx, &actor, &org_name).await?;
    let token = tokens::issue(&mut tx, id, Purpose::VerifyEmail, None).await?;
    tx.commit().await?;
    Ok(Some(token))
}

/// `?token=` of a mailed link.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TokenQuery {
    pub token: String,
}

/// A page with one button that uses a mailed link (links only show it: mail scanners that
/// fetch links must not use them up).
#[derive(Template, WebTemplate)]
#[template(path = "portal/confirm.html")]
pub struct ConfirmPage {
    pub chrome: Chrome,
    pub message: String,
    pub action: &'static str,
    pub token: String,
    pub button: &'static str,
}

/// The page for a link that no longer works.
pub fn dead_link(visit: &Visit) -> Response {
    MessagePage {
        chrome: Chrome::new(visit, "This link does not work", ""),
        message: "The link is invalid, was already used, or has expired. Sign in to ask for a new one.".into(),
        log_hint: false,
        link: Some(("/login".into(), "Sign in".into())),
    }
    .into_response()
}

/// `GET /verify?token=`.
pub async fn show_verify(
    State(state): State<PortalState>,
    visit: Visit,
    Query(q): Query<TokenQuery>,
) -> Result<Response, UiError> {
    let mut conn = state.db().acquire().await?;
    if !tokens::valid(&mut conn, &q.token, Purpose::VerifyEmail).await? {
        return Ok(dead_link(&visit));
    }
    let chrome = Chrome::new(&visit, "Confirm your e-mail address", "");
    let message = "One click and your account is ready.".into();
    Ok(ConfirmPage { chrome, message, action: "/verify", token: q.token, button: "Confirm my address" }.into_response())
}

/// `POST /verify`: confirms the address and, for an active account, signs the developer in.
pub async fn verify(
    State(state): State<PortalState>,
    visit: Visit,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(q): Form<TokenQuery>,
) -> Result<Response, UiError> {
    let mut tx = state.db().begin().await?;
    let Some((id, _)) = tokens::consume(&mut tx, &q.token, Purpose::VerifyEmail).await? else {
        return Ok(dead_link(&visit));
    };
    let (email, status): (String, String) = sqlx::query_as(
        "UPDATE developers SET email_verified_at = coalesce(email_verified_at, now()), updated_at = now()
         WHERE id = $1 RETURNING email, status",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let actor = Actor::developer(id, &email, None);
    change::record(
        &mut tx,
        &actor,
        Change::update("developer", id, serde_json::json!({}), serde_json::json!({"email_verified": true}))
            .action("verify_email")
            .audit_only(),
    )
    .await?;
    tx.commit().await?;
    if status != "active" {
        return Ok(MessagePage {
            chrome: Chrome::new(&visit, "Address confirmed", ""),
            message: "Thank you. An administrator reviews new accounts; we will e-mail you once yours is approved."
                .into(),
            log_hint: false,
            link: None,
        }
        .into_response());
    }
    super::login::start_session(
        &state,
        &visit,
        Subject::Developer(id),
        &peer,
        user_agent(&headers),
        "/apps?notice=verified",
    )
    .await
}

/// `POST /verify/resend`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResendForm {
    pub email: String,
}

/// `POST /verify/resend`: a new confirmation link for an unconfirmed account; the same
/// answer whether or not there is one.
pub async fn resend(
    State(state): State<PortalState>,
    visit: Visit,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<ResendForm>,
) -> Result<Response, UiError> {
    let slot = state.signups().reserve("resend", peer.ip()).map_err(UiError::TooMany)?;
    drop(slot);
    let email = form.email.trim().to_owned();
    let background = state.clone();
    let to = email.clone();
    tokio::spawn(async move {
        if let Err(e) = resend_link(&background, &to).await {
            tracing::warn!(error = ?e, "confirmation link not re-sent");
        }
    });
    Ok(check_inbox(&state, &visit, &email))
}

async fn resend_link(state: &PortalState, email: &str) -> Result<(), UiError> {
    let Some(url) = link_for(state, email, "email_verified_at IS NULL", Purpose::VerifyEmail, "/verify").await? else {
        return Ok(());
    };
    let body =
        format!("Confirm your address to start using the developer portal:\n\n{url}\n\nThe link works for 48 hours.\n");
    state
        .mailer()
        .send(Mail { to: email.to_owned(), subject: "Confirm your e-mail address".into(), body })
        .await
        .map_err(UiError::internal)
}
