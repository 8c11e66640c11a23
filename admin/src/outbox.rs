//! The mail outbox: every message the platform sent or (log transport) only logged, newest
//! first. Mails carry one-time links (verification, password reset, invitations), so only
//! owners read them.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::audit::LogPage;
use crate::auth::Owner;
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;

/// One message.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct OutboxMail {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub recipient: String,
    pub subject: String,
    /// The plain-text body, links included.
    pub body: String,
    /// `log` (not sent: printed to the log) or `smtp`.
    pub transport: String,
    /// `logged`, `sent` or `failed`.
    pub status: String,
    pub error: Option<String>,
}

/// Paging and filters of the outbox.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// Only messages with an id lower than this (the next, older page).
    pub before: Option<i64>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Exact recipient (case-insensitive).
    pub recipient: Option<String>,
}

/// Lists sent and logged mail, newest first; `next_after` is the `before` of the next page.
#[utoipa::path(get, path = "/outbox", tag = "audit", params(OutboxQuery),
    responses((status = 200, description = "One page", body = LogPage<OutboxMail>), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_outbox(
    _: Owner,
    State(state): State<AppState>,
    Params(q): Params<OutboxQuery>,
) -> ApiResult<Json<LogPage<OutboxMail>>> {
    page(&state, &q).await.map(Json)
}

/// One page of the outbox (REST and UI; the caller checks the reader is an owner).
pub async fn page(state: &AppState, q: &OutboxQuery) -> ApiResult<LogPage<OutboxMail>> {
    let limit = crate::page::checked_limit(q.limit, 100)?;
    let mut data: Vec<OutboxMail> = sqlx::query_as(
        "SELECT * FROM mail_outbox
         WHERE id < $1 AND ($2::text IS NULL OR lower(recipient) = lower($2))
         ORDER BY id DESC LIMIT $3",
    )
    .bind(q.before.unwrap_or(i64::MAX))
    .bind(q.recipient.as_deref())
    .bind(i64::from(limit) + 1)
    .fetch_all(state.db())
    .await?;
    let more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let next_after = if more { data.last().map(|m| m.id) } else { None };
    Ok(LogPage { data, next_after })
}
