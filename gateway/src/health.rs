//! The node's liveness and readiness answers (JSON bodies), served on the proxy port as
//! `/__tollgate/health` and `/__tollgate/ready` and on the metrics port as `/health/live` and
//! `/health/ready`.
//!
//! - Live: the process answers. On the metrics port always 200; the proxy port's
//!   `/__tollgate/health` also says 503 until a configuration is loaded (it predates this
//!   split and load balancers rely on it).
//! - Ready: a configuration is loaded and, with `--max-config-staleness`, not stale; 503 with
//!   the reason otherwise.

use http::StatusCode;

use crate::config::freshness::Freshness;
use crate::snapshot::ConfigStore;

/// The metrics port's liveness answer: the process is up.
pub fn live() -> (StatusCode, String) {
    (StatusCode::OK, "{\"status\":\"live\"}".to_owned())
}

/// The proxy port's health answer: 200 with the applied configuration event once one is
/// loaded, else 503.
pub fn loaded(store: &ConfigStore) -> (StatusCode, String) {
    if store.is_loaded() {
        (StatusCode::OK, format!("{{\"status\":\"ok\",\"config_event_id\":{}}}", store.load().event_id))
    } else {
        loading()
    }
}

fn loading() -> (StatusCode, String) {
    (StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"loading\"}".to_owned())
}

/// The readiness answer: 503 while no configuration is loaded, or with the reason while it
/// is stale (credentialed calls are refused then; anonymous ones are not); else 200.
pub fn ready(store: &ConfigStore, freshness: &Freshness) -> (StatusCode, String) {
    if !store.is_loaded() {
        return loading();
    }
    let event_id = store.load().event_id;
    let since = freshness.since_confirmed().as_secs();
    let (status, body) = match freshness.max_staleness().filter(|_| freshness.is_stale()) {
        Some(max) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "stale",
                "reason": format!(
                    "no confirmed sync with PostgreSQL for {since} s (--max-config-staleness {} s); credentialed calls are refused",
                    max.as_secs_f64()
                ),
                "config_event_id": event_id,
                "seconds_since_sync": since,
            }),
        ),
        None => (
            StatusCode::OK,
            serde_json::json!({"status": "ready", "config_event_id": event_id, "seconds_since_sync": since}),
        ),
    };
    (status, body.to_string())
}
