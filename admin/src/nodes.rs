//! Gateway nodes and config propagation: each node records the last config event it has
//! applied; the admin answers "event N is live on 2 of 3 gateways; gw-3 unreachable since
//! 14:02". Every node seen within the retention window counts, not only the ones heard from
//! lately: a node cut off from PostgreSQL may still serve its old configuration, so the
//! report never says complete while it is behind. An operator removes a dead node with
//! `DELETE /nodes/{id}`; nodes silent for longer than the retention are dropped (and pruned).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Editor, Viewer};
use crate::change::{self, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::PathIds;
use crate::state::AppState;

/// A node is live if it reported within this many seconds (it reports every 5 s): the
/// default of [`NodeWindows::live`].
pub const LIVE_SECONDS: i32 = 30;

/// How long ago a node must have reported to count as live, and to count at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeWindows {
    /// Heard from within this: live (a behind node is `pending`, else `unreachable`).
    pub live: Duration,
    /// Heard from within this: counted in propagation reports (and kept; older rows are
    /// pruned). A node cut off for longer is assumed gone.
    pub retention: Duration,
}

impl Default for NodeWindows {
    fn default() -> Self {
        Self { live: Duration::from_secs(LIVE_SECONDS as u64), retention: Duration::from_secs(24 * 3600) }
    }
}

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
    /// Reported within the live window (30 seconds by default).
    pub live: bool,
}

/// Nodes, most recently seen first.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    pub data: Vec<GatewayNode>,
}

/// Every node seen within the retention window, most recently seen first.
const SELECT_NODES: &str = "SELECT *, last_seen_at > now() - make_interval(secs => $1) AS live FROM gateway_nodes
     WHERE last_seen_at > now() - make_interval(secs => $2) ORDER BY last_seen_at DESC LIMIT 1000";

async fn counted_nodes(db: &sqlx::PgPool, windows: &NodeWindows) -> sqlx::Result<Vec<GatewayNode>> {
    sqlx::query_as(SELECT_NODES)
        .bind(windows.live.as_secs_f64())
        .bind(windows.retention.as_secs_f64())
        .fetch_all(db)
        .await
}

/// Lists the gateway nodes seen within the retention window, with the config event each has
/// applied.
#[utoipa::path(get, path = "/nodes", tag = "nodes",
    responses((status = 200, description = "Gateway nodes", body = NodeList), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_nodes(_: Viewer, State(state): State<AppState>) -> ApiResult<Json<NodeList>> {
    Ok(Json(NodeList { data: counted_nodes(state.db(), &state.config().nodes).await? }))
}

/// Removes a node that is gone for good, so propagation reports stop waiting for it. A node
/// that is in fact alive reappears at its next heartbeat (within 5 s).
#[utoipa::path(delete, path = "/nodes/{id}", tag = "nodes",
    params(("id" = Uuid, Path, description = "Node id")),
    responses((status = 204, description = "Removed"), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn delete_node(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
) -> ApiResult<axum::http::StatusCode> {
    let id = ids.first().copied().ok_or_else(|| ApiError::not_found("gateway node"))?;
    let mut tx = state.db().begin().await?;
    let sql = "DELETE FROM gateway_nodes WHERE id = $1
               RETURNING *, last_seen_at > now() - make_interval(secs => $2) AS live";
    let live = state.config().nodes.live.as_secs_f64();
    let removed: Option<GatewayNode> = sqlx::query_as(sql).bind(id).bind(live).fetch_optional(&mut *tx).await?;
    let removed = removed.ok_or_else(|| ApiError::not_found("gateway node"))?;
    let change = Change::delete("gateway_node", id, serde_json::to_value(&removed)?).audit_only();
    change::record(&mut tx, &who.actor(), change).await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Why a node has not applied an event yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BehindState {
    /// Heard from within the live window: it should catch up within seconds.
    Pending,
    /// Not heard from within the live window: cut off, stopped or gone. It may still be
    /// serving its older configuration; remove it with `DELETE /nodes/{id}` if it is gone.
    Unreachable,
}

/// A node that does not enforce the event yet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BehindNode {
    pub id: Uuid,
    pub hostname: String,
    pub state: BehindState,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
    /// The last config event it reported applying.
    pub applied_event_id: i64,
}

impl BehindNode {
    /// How the node is named to people: its hostname, else the start of its id.
    pub fn name(&self) -> String {
        if self.hostname.is_empty() { format!("node {}", &self.id.to_string()[..8]) } else { self.hostname.clone() }
    }
}

/// How far one config event has propagated, over every node seen within the retention
/// window (24 h by default).
#[derive(Debug, Serialize, ToSchema)]
pub struct Propagation {
    pub event_id: i64,
    /// Counted nodes that have applied this event (or a later one).
    pub applied: usize,
    /// Counted nodes: the same as `nodes` (the name is kept for older clients, for which
    /// `applied == live` still means done; nodes cut off lately are counted now).
    pub live: usize,
    /// Nodes seen within the retention window.
    pub nodes: usize,
    /// Every counted node has applied the event (false while any is pending or unreachable,
    /// and when no node is counted).
    pub complete: bool,
    /// Ids of the counted nodes that have not applied it yet (those in `behind`).
    pub pending_nodes: Vec<Uuid>,
    /// The counted nodes that have not applied it yet, most recently seen first.
    pub behind: Vec<BehindNode>,
}

/// Reports how many gateway nodes enforce a config event ("2 of 3") and which do not.
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
    Ok(Json(propagation(state.db(), &state.config().nodes, event_id).await?))
}

/// Which counted nodes enforce event `event_id` (or a later one), and which do not.
pub async fn propagation(db: &sqlx::PgPool, windows: &NodeWindows, event_id: i64) -> sqlx::Result<Propagation> {
    Ok(Propagation::of(event_id, counted_nodes(db, windows).await?))
}

impl Propagation {
    fn of(event_id: i64, nodes: Vec<GatewayNode>) -> Self {
        let behind: Vec<BehindNode> = nodes
            .iter()
            .filter(|n| n.applied_event_id < event_id)
            .map(|n| BehindNode {
                id: n.id,
                hostname: n.hostname.clone(),
                state: if n.live { BehindState::Pending } else { BehindState::Unreachable },
                last_seen_at: n.last_seen_at,
                applied_event_id: n.applied_event_id,
            })
            .collect();
        let total = nodes.len();
        Self {
            event_id,
            applied: total - behind.len(),
            live: total,
            nodes: total,
            complete: total > 0 && behind.is_empty(),
            pending_nodes: behind.iter().map(|b| b.id).collect(),
            behind,
        }
    }
}

/// Deletes the rows of nodes not seen within `retention`; returns how many.
pub async fn prune_nodes(db: &sqlx::PgPool, retention: Duration) -> sqlx::Result<u64> {
    let sql = "DELETE FROM gateway_nodes WHERE last_seen_at < now() - make_interval(secs => $1)";
    Ok(sqlx::query(sql).bind(retention.as_secs_f64()).execute(db).await?.rows_affected())
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
    /// Counted nodes not heard from lately that have not applied the change.
    pub unreachable: usize,
    /// What to tell the reader.
    pub text: String,
}

/// Unreachable nodes named one by one in [`Live::text`]; more are counted.
const NAMED: usize = 3;

impl Live {
    /// `applied` of `nodes` counted nodes enforce `event`; `behind` are the others.
    pub fn of(event: i64, applied: usize, nodes: usize, behind: &[BehindNode]) -> Self {
        let done = nodes > 0 && applied == nodes;
        let unreachable: Vec<&BehindNode> = behind.iter().filter(|b| b.state == BehindState::Unreachable).collect();
        let pending = behind.len() - unreachable.len();
        let text = match (event, nodes) {
            (0, _) => "Nothing to propagate yet.".to_owned(),
            (_, 0) => "No gateway is running right now; the change applies as soon as one starts.".to_owned(),
            _ if done && nodes == 1 => "Live on the gateway.".to_owned(),
            _ if done => format!("Live on all {nodes} gateways."),
            _ if pending > 0 => format!("Reaching the gateways: live on {applied} of {nodes}…{}", notes(&unreachable)),
            _ => format!("Live on {applied} of {nodes} gateways{}", notes(&unreachable)),
        };
        Self { event, applied, nodes, done, unreachable: unreachable.len(), text }
    }

    /// Propagation of config event `event` (0: none).
    pub async fn of_event(db: &sqlx::PgPool, windows: &NodeWindows, event: i64) -> sqlx::Result<Self> {
        if event == 0 {
            return Ok(Self::of(0, 0, 0, &[]));
        }
        let p = propagation(db, windows, event).await?;
        Ok(Self::of(event, p.applied, p.nodes, &p.behind))
    }
}

/// "; gw-3 unreachable since 14:02 UTC (last applied event 812)" for each unreachable node
/// (the first few), ending the sentence.
fn notes(unreachable: &[&BehindNode]) -> String {
    let mut text = String::new();
    for b in unreachable.iter().take(NAMED) {
        let at = b.last_seen_at;
        text.push_str(&format!(
            "; {} unreachable since {:02}:{:02} UTC (last applied event {})",
            b.name(),
            at.hour(),
            at.minute(),
            b.applied_event_id
        ));
    }
    if unreachable.len() > NAMED {
        text.push_str(&format!("; {} more unreachable", unreachable.len() - NAMED));
    }
    if unreachable.is_empty() { text } else { text + "." }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(hostname: &str, applied: i64, live: bool) -> GatewayNode {
        let seen = time::macros::datetime!(2026-12-04 14:02:30 UTC);
        GatewayNode {
            id: Uuid::new_v4(),
            hostname: hostname.into(),
            listen: String::new(),
            version: String::new(),
            config_source: "postgres".into(),
            applied_event_id: applied,
            started_at: seen,
            last_seen_at: seen,
            live,
        }
    }

    fn live_of(event: i64, nodes: Vec<GatewayNode>) -> (Propagation, Live) {
        let p = Propagation::of(event, nodes);
        let live = Live::of(event, p.applied, p.nodes, &p.behind);
        (p, live)
    }

    #[test]
    fn an_unreachable_node_keeps_the_change_incomplete_and_is_named() {
        let (p, live) = live_of(812, vec![node("gw-1", 812, true), node("gw-2", 813, true), node("gw-3", 811, false)]);
        assert_eq!((p.applied, p.nodes, p.live, p.complete), (2, 3, 3, false));
        assert_eq!(p.behind.len(), 1);
        assert_eq!(p.behind[0].state, BehindState::Unreachable);
        assert_eq!(p.pending_nodes, vec![p.behind[0].id]);
        assert!(!live.done);
        assert_eq!(live.text, "Live on 2 of 3 gateways; gw-3 unreachable since 14:02 UTC (last applied event 811).");
    }

    #[test]
    fn a_live_node_behind_is_pending() {
        let (p, live) = live_of(9, vec![node("gw-1", 9, true), node("", 8, true)]);
        assert_eq!(p.behind[0].state, BehindState::Pending);
        assert!(!p.complete);
        assert_eq!(live.text, "Reaching the gateways: live on 1 of 2…");
        let (p, live) = live_of(9, vec![node("gw-1", 9, true), node("gw-2", 10, false)]);
        assert!(p.complete && live.done, "a node that applied it counts, live or not");
        assert_eq!(live.text, "Live on all 2 gateways.");
    }

    #[test]
    fn many_unreachable_nodes_are_summed_up() {
        let nodes = (0..5).map(|i| node(if i == 0 { "" } else { "gw" }, 1, false)).collect();
        let (_, live) = live_of(2, nodes);
        assert_eq!(live.unreachable, 5);
        assert!(live.text.starts_with("Live on 0 of 5 gateways; node "), "{}", live.text);
        assert!(live.text.ends_with("; 2 more unreachable."), "{}", live.text);
        assert_eq!(Live::of(0, 0, 0, &[]).text, "Nothing to propagate yet.");
        assert!(!live_of(1, vec![]).0.complete, "no node: not complete");
    }
}
