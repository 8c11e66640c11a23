//! Admin users and the signed-in user's own account: owners add users (with a generated
//! password shown once), change roles, disable and re-enable, and set new passwords; every
//! user manages their own personal access tokens and can log out everywhere. Through the
//! same operations as `/users` and `/tokens`.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::fields::FormData;
use super::web::{Admin, BASE, Chrome, FieldErrors, UiError, role_name};
use crate::auth::{Role, random_token};
use crate::extract::IfMatch;
use crate::ops::{self, Parent};
use crate::state::AppState;
use crate::tokens::{AccessToken, TokenInput};
use crate::ui::format::date_time;
use crate::users::{AdminUser, NewAdminUser, SetPassword};

/// A user's line (owners only).
pub struct UserLine {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub disabled: bool,
    pub version: i64,
    pub me: bool,
}

/// A token's line.
pub struct TokenLine {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserLine>,
    tokens: Vec<TokenLine>,
    errors: FieldErrors,
    roles: Vec<(&'static str, &'static str)>,
    /// A password or token just made: (what, for whom, secret), shown once.
    secret: Option<(String, String)>,
    new_email: String,
    new_name: String,
    new_role: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoticeQuery {
    notice: Option<String>,
}

async fn page(state: &AppState, who: &Admin, errors: FieldErrors) -> Result<UsersPage, UiError> {
    let users = if who.me.role == Role::Owner {
        let all: Vec<AdminUser> =
            sqlx::query_as("SELECT * FROM admin_users ORDER BY email LIMIT 1000").fetch_all(state.db()).await?;
        all.into_iter()
            .map(|u| UserLine {
                me: u.id == who.me.id,
                id: u.id,
                email: u.email,
                name: u.display_name,
                role: role_name(u.role),
                disabled: u.disabled,
                version: u.version,
            })
            .collect()
    } else {
        Vec::new()
    };
    let parent = Some(Parent { kind: "admin_user", table: "admin_users", id: who.me.id });
    let page = crate::page::PageQuery { limit: Some(200), ..Default::default() };
    let tokens = ops::list::<AccessToken>(state, parent, &(), &page).await?.0.data;
    let never = |t: Option<OffsetDateTime>| t.map_or_else(|| "never".to_owned(), date_time);
    Ok(UsersPage {
        chrome: Chrome::new(&who.visit, if who.me.role == Role::Owner { "Users" } else { "Your account" }, "users"),
        users,
        tokens: tokens
            .into_iter()
            .map(|t| TokenLine {
                id: t.id,
                name: t.name,
                prefix: t.prefix,
                created: date_time(t.created_at),
                expires: never(t.expires_at),
                last_used: never(t.last_used_at),
            })
            .collect(),
        errors,
        roles: vec![
            ("viewer", "Viewer: reads everything"),
            ("editor", "Editor: also changes APIs, plans, keys"),
            ("owner", "Owner: also manages users"),
        ],
        secret: None,
        new_email: String::new(),
        new_name: String::new(),
        new_role: "editor".to_owned(),
    })
}

/// `GET /ui/users`.
pub async fn show_users(
    State(state): State<AppState>,
    who: Admin,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    let mut p = page(&state, &who, FieldErrors::default()).await?;
    p.chrome = p.chrome.with_notice(q.notice.as_deref());
    Ok(p.into_response())
}

/// A password to hand over: 24 random characters.
fn generated_password() -> String {
    random_token("", 18)
}

fn role_of(s: &str) -> Option<Role> {
    match s {
        "viewer" => Some(Role::Viewer),
        "editor" => Some(Role::Editor),
        "owner" => Some(Role::Owner),
        _ => None,
    }
}

/// `POST /ui/users` (owners): adds a user with a generated password, shown once.
pub async fn create_user(State(state): State<AppState>, who: Admin, body: Bytes) -> Result<Response, UiError> {
    who.require(Role::Owner)?;
    let form = FormData::parse(&body);
    let (email, name, role) = (form.get("email"), form.get("display_name"), form.get("role"));
    let password = generated_password();
    let mut errors = FieldErrors::default();
    let Some(role_value) = role_of(role) else {
        errors.add("role", "Choose a role.");
        return refuse(&state, &who, errors, &form).await;
    };
    let new = NewAdminUser {
        email: email.to_owned(),
        display_name: name.to_owned(),
        role: role_value,
        disabled: false,
        password: password.clone(),
    };
    match crate::users::create(&state, &who.actor(), new).await {
        Ok(user) => {
            let mut p = page(&state, &who, FieldErrors::default()).await?;
            p.secret = Some((format!("The password of {}", user.email), password));
            p.chrome = p.chrome.with_notice(Some("user-created"));
            Ok(p.into_response())
        }
        Err(e) => {
            for fe in e.field_errors() {
                errors.add(fe.pointer.trim_start_matches('/').to_owned(), fe.detail.clone());
            }
            if errors.is_empty() {
                let field = if e.status() == axum::http::StatusCode::CONFLICT { "email" } else { "" };
                errors.add(field, e.detail().to_owned());
            }
            refuse(&state, &who, errors, &form).await
        }
    }
}

async fn refuse(state: &AppState, who: &Admin, errors: FieldErrors, form: &FormData) -> Result<Response, UiError> {
    let mut p = page(state, who, errors).await?;
    p.new_email = form.get("email").to_owned();
    p.new_name = form.get("display_name").to_owned();
    p.new_role = form.get("role").to_owned();
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
}

/// `POST /ui/users/{id}` (owners): role and disabled, with the version the page showed.
pub async fn update_user(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Response, UiError> {
    who.require(Role::Owner)?;
    let form = FormData::parse(&body);
    let version: i64 = form.get("version").parse().unwrap_or(-1);
    let mut errors = FieldErrors::default();
    let Some(role) = role_of(form.get("role")) else {
        errors.add(format!("role-{id}"), "Choose a role.");
        return refuse(&state, &who, errors, &FormData::default()).await;
    };
    let patch = json!({"role": role, "disabled": form.has("disabled")});
    match ops::patch::<AdminUser>(&state, &who.actor(), None, id, IfMatch::Versions(vec![version]), patch).await {
        Ok(_) => Ok(Redirect::to(&format!("{BASE}/users?notice=saved")).into_response()),
        Err(e) => {
            let message = if e.status() == axum::http::StatusCode::PRECONDITION_FAILED {
                "Someone else changed this user since you opened the page; nothing was changed. Reload and try again."
                    .to_owned()
            } else {
                e.field_errors().first().map_or_else(|| e.detail().to_owned(), |f| f.detail.clone())
            };
            errors.add(format!("role-{id}"), message);
            refuse(&state, &who, errors, &FormData::default()).await
        }
    }
}

/// `POST /ui/users/{id}/password` (owners): a new generated password, shown once; the
/// user's sessions and login tokens end.
pub async fn reset_password(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
) -> Result<Response, UiError> {
    who.require(Role::Owner)?;
    let password = generated_password();
    let user = ops::read::<AdminUser>(&state, None, id).await?.into_body();
    crate::users::change_password(&state, &who.actor(), id, SetPassword { password: password.clone() }).await?;
    let mut p = page(&state, &who, FieldErrors::default()).await?;
    p.secret = Some((format!("The new password of {}", user.email), password));
    Ok(p.into_response())
}

/// `POST /ui/tokens`: a personal access token for the signed-in user, shown once.
pub async fn create_token(State(state): State<AppState>, who: Admin, body: Bytes) -> Result<Response, UiError> {
    let form = FormData::parse(&body);
    let mut errors = FieldErrors::default();
    let expires_at = match form.get("days") {
        "" => None,
        d => match d.parse::<i64>() {
            Ok(days) if (1..=3650).contains(&days) => Some(OffsetDateTime::now_utc() + time::Duration::days(days)),
            _ => {
                errors.add("days", "must be 1 to 3650 days, or empty for no expiry");
                None
            }
        },
    };
    if errors.is_empty() {
        let input = TokenInput { name: form.get("name").to_owned(), expires_at };
        match crate::tokens::issue(&state, &who.actor(), who.me.id, &input).await {
            Ok(created) => {
                let mut p = page(&state, &who, FieldErrors::default()).await?;
                p.secret = Some((format!("Your token {}", created.token.name), created.secret));
                return Ok(p.into_response());
            }
            Err(e) => errors.add("name", e.detail_of("name")),
        }
    }
    let p = page(&state, &who, errors).await?;
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
}

/// `POST /ui/tokens/{id}/delete`: revokes one of the signed-in user's tokens.
pub async fn delete_token(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
) -> Result<Response, UiError> {
    let parent = Some(Parent { kind: "admin_user", table: "admin_users", id: who.me.id });
    ops::delete::<AccessToken>(&state, &who.actor(), parent, id, IfMatch::Any).await?;
    Ok(Redirect::to(&format!("{BASE}/users?notice=token-revoked")).into_response())
}
