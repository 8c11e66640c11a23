//! "Live on all gateways": whether every live gateway node enforces a change, from the
//! nodes' reports of the last config event each has applied. A developer is told a key
//! works only once every node has it, so their first call does not fail with 401.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use tollgate_admin::nodes;
use uuid::Uuid;

use crate::state::PortalState;
use crate::web::{SignedIn, UiError};

/// Propagation of one change, for a page.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// The change's config event (0: none recorded).
    pub event: i64,
    pub applied: usize,
    pub nodes: usize,
    pub done: bool,
    /// What to tell the developer.
    pub text: String,
}

impl Live {
    fn of(event: i64, applied: usize, nodes: usize) -> Self {
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
}

/// Propagation of config event `event`.
pub async fn of_event(state: &PortalState, event: i64) -> Result<Live, UiError> {
    if event == 0 {
        return Ok(Live::of(0, 0, 0));
    }
    let p = nodes::propagation(state.db(), event).await?;
    Ok(Live::of(event, p.applied, p.live))
}

/// Propagation of the newest change of entity `id`.
pub async fn of_entity(state: &PortalState, id: Uuid) -> Result<Live, UiError> {
    let event = nodes::latest_event(state.db(), id).await?.unwrap_or(0);
    of_event(state, event).await
}

/// Propagation of the newest change of any of `ids`.
pub async fn of_entities(state: &PortalState, ids: &[Uuid]) -> Result<Live, UiError> {
    let (event,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM config_events WHERE entity_id = ANY($1)")
        .bind(ids)
        .fetch_one(state.db())
        .await?;
    of_event(state, event.unwrap_or(0)).await
}

/// Propagation of the newest change of the app, its keys or its subscriptions.
pub async fn of_app(state: &PortalState, app: Uuid) -> Result<Live, UiError> {
    let (event,): (Option<i64>,) = sqlx::query_as(
        "SELECT max(e.id) FROM config_events e
         WHERE e.entity_id = $1
            OR e.entity_id IN (SELECT id FROM api_keys WHERE consumer_id = $1)
            OR e.entity_id IN (SELECT id FROM subscriptions WHERE consumer_id = $1)",
    )
    .bind(app)
    .fetch_one(state.db())
    .await?;
    of_event(state, event.unwrap_or(0)).await
}

/// `GET /live/{event}`: the propagation of a change, as JSON for the page's script. Any
/// signed-in developer may ask; the answer names no entity.
pub async fn get_live(
    State(state): State<PortalState>,
    _: SignedIn,
    Path(event): Path<i64>,
) -> Result<Json<Live>, UiError> {
    Ok(Json(of_event(&state, event).await?))
}
