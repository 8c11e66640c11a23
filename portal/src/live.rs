//! "Live on all gateways": whether every live gateway node enforces a change, from the
//! nodes' reports of the last config event each has applied. A developer is told a key
//! works only once every node has it, so their first call does not fail with 401.

use axum::Json;
use axum::extract::{Path, State};
use tollgate_admin::nodes;
pub use tollgate_admin::nodes::Live;
use uuid::Uuid;

use crate::state::PortalState;
use crate::web::{SignedIn, UiError};

/// Propagation of config event `event`.
pub async fn of_event(state: &PortalState, event: i64) -> Result<Live, UiError> {
    Ok(Live::of_event(state.db(), &state.config().nodes, event).await?)
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
