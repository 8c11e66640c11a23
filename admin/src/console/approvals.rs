//! The approval queue: subscription requests oldest first, approved or rejected (with a
//! reason the developer reads) one at a time or several at once; and developers waiting for
//! sign-up approval when the portal requires it. Decisions go through the same operations
//! as `POST /subscriptions/{id}/approve|reject` and `PATCH /developers/{id}`.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::fields::FormData;
use super::web::{Admin, BASE, Chrome, FieldErrors, UiError};
use crate::auth::Role;
use crate::developers::Developer;
use crate::extract::IfMatch;
use crate::ops;
use crate::state::AppState;
use crate::subscriptions::{self, Decision};
use crate::ui::format::date_time;

/// A pending request's line.
#[derive(sqlx::FromRow)]
pub struct Request {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub app: String,
    pub consumer_id: Uuid,
    pub owner: String,
    pub api: String,
    pub plan: String,
    pub comment: String,
}

/// A developer waiting for sign-up approval.
#[derive(sqlx::FromRow)]
pub struct Waiting {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: OffsetDateTime,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/approvals.html")]
struct ApprovalsPage {
    chrome: Chrome,
    requests: Vec<(Request, String, bool)>,
    developers: Vec<(Waiting, String)>,
    errors: FieldErrors,
    reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoticeQuery {
    notice: Option<String>,
}

async fn page(
    state: &AppState,
    who: &Admin,
    errors: FieldErrors,
    reason: String,
    chosen: Vec<Uuid>,
) -> Result<ApprovalsPage, UiError> {
    let requests: Vec<Request> = sqlx::query_as(
        "SELECT s.id, s.created_at, c.name AS app, c.id AS consumer_id,
                coalesce(o.name, d.email, 'admin-created') AS owner, a.name AS api, p.name AS plan, s.comment
         FROM subscriptions s
         JOIN consumers c ON c.id = s.consumer_id
         JOIN apis a ON a.id = s.api_id
         JOIN plans p ON p.id = s.plan_id
         LEFT JOIN organisations o ON o.id = c.organisation_id
         LEFT JOIN developers d ON d.id = c.developer_id
         WHERE s.status = 'pending' ORDER BY s.created_at, s.id LIMIT 500",
    )
    .fetch_all(state.db())
    .await?;
    let developers: Vec<Waiting> = sqlx::query_as(
        "SELECT id, email, name, created_at FROM developers
         WHERE status = 'pending' AND email_verified_at IS NOT NULL ORDER BY created_at LIMIT 500",
    )
    .fetch_all(state.db())
    .await?;
    Ok(ApprovalsPage {
        chrome: Chrome::new(&who.visit, "Approvals", "approvals"),
        requests: requests
            .into_iter()
            .map(|r| {
                let (at, ticked) = (date_time(r.created_at), chosen.contains(&r.id));
                (r, at, ticked)
            })
            .collect(),
        developers: developers
            .into_iter()
            .map(|d| {
                let at = date_time(d.created_at);
                (d, at)
            })
            .collect(),
        errors,
        reason,
    })
}

/// `GET /ui/approvals`.
pub async fn show_approvals(
    State(state): State<AppState>,
    who: Admin,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    let mut p = page(&state, &who, FieldErrors::default(), String::new(), Vec::new()).await?;
    p.chrome = p.chrome.with_notice(q.notice.as_deref());
    Ok(p.into_response())
}

/// `POST /ui/approvals`: approves or rejects the ticked requests together, in one
/// transaction: either every decision is recorded or none is.
pub async fn decide(State(state): State<AppState>, who: Admin, body: Bytes) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(&body);
    let chosen: Vec<Uuid> = form.all("id").filter_map(|v| v.parse().ok()).collect();
    let approve = form.get("decision") == "approve";
    let reason = form.get("reason").to_owned();
    let mut errors = FieldErrors::default();
    if chosen.is_empty() {
        errors.add("", "Tick the requests to decide first.");
    }
    if !approve && reason.is_empty() {
        errors.add("reason", "Say why the requests are rejected; the developers read it.");
    }
    if errors.is_empty() {
        let mut tx = state.db().begin().await?;
        let actor = who.actor();
        let decision = Decision { reason: reason.clone() };
        let mut failed = None;
        for id in &chosen {
            if let Err(e) = subscriptions::decide(&mut tx, &actor, *id, approve, &decision).await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => {
                tx.commit().await?;
                let notice = match (chosen.len(), approve) {
                    (1, true) => "approved",
                    (1, false) => "rejected",
                    _ => "decided",
                };
                return Ok(Redirect::to(&format!("{BASE}/approvals?notice={notice}")).into_response());
            }
            Some(e) => {
                drop(tx);
                let field = if e.field_errors().iter().any(|f| f.pointer == "/reason") { "reason" } else { "" };
                errors.add(field, format!("{} Nothing was decided.", e.detail_of("reason")));
            }
        }
    }
    let p = page(&state, &who, errors, reason, chosen).await?;
    Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
}

/// `POST /ui/developers/{id}/approve`: lets a developer waiting for sign-up approval in.
pub async fn approve_developer(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let patch = serde_json::json!({"status": "active"});
    ops::patch::<Developer>(&state, &who.actor(), None, id, IfMatch::Any, patch).await?;
    Ok(Redirect::to(&format!("{BASE}/approvals?notice=developer-approved")).into_response())
}
