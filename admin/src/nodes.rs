//! Gateway nodes and config propagation: each node records the last config event it has
//! applied; the admin answers "event N has reached 3 of 3 live nodes".

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A node is live if it reported within this many seconds (it reports every 5 s).
pub const LIVE_SECONDS: i32 = 30;

/// A gateway node as it last reported.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct GatewayNode {
    pub id: Uuid,
    pub hostname: String,
    pub listen: String,
    pub version: String,
    /// `postgres` or `file`.
    pub config_source: String,
    /// Id of the last config event this node enforces.
    pub applied_event_id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// Reported within the last 30 seconds.
    pub live: bool,
}

/// Nodes, most recently seen first.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    pub data: Vec<GatewayNode>,
}

const SELECT_NODES: &str = "SELECT *, last_seen_at > now() - make_interval(secs => $1) AS live FROM gateway_nodes";

/// Lists gateway nodes with the config version each has applied.
#[utoipa::path(get, path = "/nodes", tag = "nodes",
    responses((status = 200, description = "Gateway nodes", body = NodeList), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_nodes(_: Viewer, State(state): State<AppState>) -> ApiResult<Json<NodeList>> {
    let sql = format!("{SELECT_NODES} ORDER BY last_seen_at DESC LIMIT 1000");
    let data = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(f64::from(LIVE_SECONDS)).fetch_all(state.db()).await?;
    Ok(Json(NodeList { data }))
}

/// How far one config event has propagated.
#[derive(Debug, Serialize, ToSchema)]
pub struct Propagation {
    pub event_id: i64,
    /// Live nodes that have applied this event (or a later one).
    pub applied: usize,
    /// Live nodes.
    pub live: usize,
    /// Live nodes that have not applied it yet.
    pub pending_nodes: Vec<Uuid>,
}

/// Reports how many live gateway nodes enforce a config event ("reached 3 of 3").
#[utoipa::path(get, path = "/config-events/{id}/propagation", tag = "nodes",
    params(("id" = i64, Path, description = "Config event id")),
    responses((status = 200, description = "Propagation of the event", body = Propagation), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn get_propagation(
    _: Viewer,
    State(state): State<AppState>,
    raw: axum::extract::RawPathParams,
) -> ApiResult<Json<Propagation>> {
    let event_id: i64 =
        raw.iter().next().and_then(|(_, v)| v.parse().ok()).ok_or_else(|| ApiError::not_found("config event"))?;
    let exists: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM config_events WHERE id = $1").bind(event_id).fetch_optional(state.db()).await?;
    exists.ok_or_else(|| ApiError::not_found("config event"))?;
    Ok(Json(propagation(state.db(), event_id).await?))
}

/// How many live nodes enforce event `event_id` (or a later one).
pub async fn propagation(db: &sqlx::PgPool, event_id: i64) -> sqlx::Result<Propagation> {
    let sql = format!("{SELECT_NODES} WHERE last_seen_at > now() - make_interval(secs => $1)");
    let nodes: Vec<GatewayNode> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(f64::from(LIVE_SECONDS)).fetch_all(db).await?;
    let pending_nodes: Vec<Uuid> = nodes.iter().filter(|n| n.applied_event_id < event_id).map(|n| n.id).collect();
    Ok(Propagation { event_id, applied: nodes.len() - pending_nodes.len(), live: nodes.len(), pending_nodes })
}

/// The newest config event about entity `id`, if any.
pub async fn latest_event(db: &sqlx::PgPool, id: Uuid) -> sqlx::Result<Option<i64>> {
    let (max,): (Option<i64>,) =
        sqlx::query_as("SELECT max(id) FROM config_events WHERE entity_id = $1").bind(id).fetch_one(db).await?;
    Ok(max)
}

/// Propagation of one change, for a page.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// The change's config event (0: none recorded).
    pub event: i64,
    pub applied: usize,
    pub nodes: usize,
    pub done: bool,
    /// What to tell the reader.
    pub text: String,
}

impl Live {
    pub fn of(event: i64, applied: usize, nodes: usize) -> Self {
        let done = nodes > 0 && applied == nodes;
        let text = match (event, nodes) {
            (0, _) => "Nothing to propagate yet.".to_owned(),
            (_, 0) => "No gateway is running right now; the change applies as soon as one starts.".to_owned(),
            _ if done && nodes == 1 => "Live on the gateway.".to_owned(),
            _ if done => format!("Live on all {nodes} gateways."),
            _ => format!("Reaching the gateways: live on {applied} of {nodes}…"),
        };
        Self { event, applied, nodes, done, text }
    }

    /// Propagation of config event `event` (0: none).
    pub async fn of_event(db: &sqlx::PgPool, event: i64) -> sqlx::Result<Self> {
        if event == 0 {
            return Ok(Self::of(0, 0, 0));
        }
        let p = propagation(db, event).await?;
        Ok(Self::of(event, p.applied, p.live))
    }
}
