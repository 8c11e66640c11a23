//! Read side of the audit log and of the config change log, in commit order. Gateways read
//! `config_events` from the database directly; this endpoint is for people and tools.
//! Audit rows follow the read rules of the entities they describe: a role that cannot read
//! admin users cannot read rows about them either (see [`hidden_kinds`]).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Role, Viewer};
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
    /// Why, when the actor said (a key revoked from the admin UI).
    pub reason: Option<String>,
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

/// Audit entity kinds `role` may not read: admin users (`/users` is for owners), their
/// logins (who logged in from where) and their access tokens (`/tokens` shows each user
/// only their own). Rows of these kinds would show a viewer or editor the admin directory.
pub fn hidden_kinds(role: Role) -> &'static [&'static str] {
    match role {
        Role::Owner => &[],
        Role::Editor | Role::Viewer => &["admin_user", "session", "admin_token"],
    }
}

async fn page<T>(
    state: &AppState,
    table: &str,
    q: &LogQuery,
    hidden: &'static [&'static str],
    id: fn(&T) -> i64,
) -> ApiResult<Json<LogPage<T>>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let limit = crate::page::checked_limit(q.limit, 100)?;
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("SELECT * FROM {table} WHERE id > "));
    qb.push_bind(q.after.unwrap_or(0));
    eq(&mut qb, "entity_kind", q.entity_kind.as_deref());
    eq(&mut qb, "entity_id", q.entity_id);
    // In the query itself, so filters, limits and `next_after` all see only visible rows.
    if !hidden.is_empty() {
        qb.push(" AND entity_kind <> ALL(").push_bind(hidden.to_vec()).push(")");
    }
    qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit) + 1);
    let mut data: Vec<T> = qb.build_query_as().fetch_all(state.db()).await?;
    let more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let next_after = if more { data.last().map(id) } else { None };
    Ok(Json(LogPage { data, next_after }))
}

/// Lists audit entries, oldest first. Entries about admin users, their logins and their
/// access tokens are listed for owners only.
#[utoipa::path(get, path = "/audit-log", tag = "audit", params(LogQuery),
    responses((status = 200, description = "One page", body = LogPage<AuditEntry>), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_audit(
    Viewer(who): Viewer,
    State(state): State<AppState>,
    Params(q): Params<LogQuery>,
) -> ApiResult<Json<LogPage<AuditEntry>>> {
    page(&state, "audit_log", &q, hidden_kinds(who.role), |e: &AuditEntry| e.id).await
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
    // Config events are only of gateway-facing kinds, which every role reads.
    page(&state, "config_events", &q, &[], |e: &ConfigEvent| e.id).await
}
