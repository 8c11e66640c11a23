//! Read side of the audit log and of the config change log, in commit order. Gateways read
//! `config_events` from the database directly; this endpoint is for people and tools.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Viewer;
use crate::error::ApiResult;
use crate::extract::Params;
use crate::resource::eq;
use crate::state::AppState;

/// One audit row.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `admin`, `developer` or `system`.
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub actor_name: String,
    /// `create`, `update`, `delete`, `login`, `revoke`, ...
    pub action: String,
    pub entity_kind: String,
    pub entity_id: Option<Uuid>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub request_id: Option<String>,
}

/// One change gateways apply.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ConfigEvent {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub entity_kind: String,
    pub entity_id: Uuid,
    /// `create`, `update` or `delete`.
    pub op: String,
    pub audit_id: i64,
}

/// A page of log entries; pass `next_after` as `after` for the next one.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage<T> {
    pub data: Vec<T>,
    pub next_after: Option<i64>,
}

/// Paging and filters of the logs.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only entries with an id greater than this.
    pub after: Option<i64>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub entity_kind: Option<String>,
    pub entity_id: Option<Uuid>,
}

async fn page<T>(state: &AppState, table: &str, q: &LogQuery, id: fn(&T) -> i64) -> ApiResult<Json<LogPage<T>>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let limit = crate::page::checked_limit(q.limit, 100)?;
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("SELECT * FROM {table} WHERE id > "));
    qb.push_bind(q.after.unwrap_or(0));
    eq(&mut qb, "entity_kind", q.entity_kind.as_deref());
    eq(&mut qb, "entity_id", q.entity_id);
    qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit) + 1);
    let mut data: Vec<T> = qb.build_query_as().fetch_all(state.db()).await?;
    let more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let next_after = if more { data.last().map(id) } else { None };
    Ok(Json(LogPage { data, next_after }))
}

/// Lists audit entries, oldest first.
#[utoipa::path(get, path = "/audit-log", tag = "audit", params(LogQuery),
    responses((status = 200, description = "One page", body = LogPage<AuditEntry>), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_audit(
    _: Viewer,
    State(state): State<AppState>,
    Params(q): Params<LogQuery>,
) -> ApiResult<Json<LogPage<AuditEntry>>> {
    page(&state, "audit_log", &q, |e: &AuditEntry| e.id).await
}

/// Lists config events in commit order.
#[utoipa::path(get, path = "/config-events", tag = "audit", params(LogQuery),
    responses((status = 200, description = "One page", body = LogPage<ConfigEvent>), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_config_events(
    _: Viewer,
    State(state): State<AppState>,
    Params(q): Params<LogQuery>,
) -> ApiResult<Json<LogPage<ConfigEvent>>> {
    page(&state, "config_events", &q, |e: &ConfigEvent| e.id).await
}
