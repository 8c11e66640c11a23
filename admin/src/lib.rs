//! Tollgate control plane: the domain, its PostgreSQL store and the admin REST API.
//!
//! The binary hands [`serve`] a typed [`AdminConfig`], a migrated pool and a listener;
//! everything below is plain library code that tests drive the same way.

pub mod apis;
pub mod audit;
pub mod auth;
pub mod certificate_bindings;
pub mod certificates;
pub mod change;
pub mod config;
pub mod console;
pub mod consumers;
pub mod db;
pub mod demo;
pub mod developers;
pub mod documents;
pub mod edge_auth;
pub mod error;
pub mod extract;
pub mod gitops;
pub mod health;
pub mod keys;
pub mod mail;
pub mod nodes;
pub mod openapi;
pub mod ops;
pub mod outbox;
pub mod page;
pub mod pg_local;
pub mod plans;
pub mod prune;
pub mod resource;
pub mod routes;
pub mod sample;
pub mod secret;
pub mod seed;
pub mod state;
pub mod subscriptions;
pub mod targets;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod token_bindings;
pub mod tokens;
pub mod ui;
pub mod upstream;
pub mod usage;
pub mod users;
pub mod validate;
pub mod words;

pub use config::AdminConfig;
pub use secret::Secret;
pub use state::AppState;

use std::future::Future;
use std::net::SocketAddr;

use sqlx::PgPool;
use tokio::net::TcpListener;

/// How often the change log is pruned.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Serves the admin API on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    config: AdminConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.validate()?;
    let pruner = Some(prune::spawn(pool.clone(), config.config_events_retention, config.nodes.retention, PRUNE_EVERY));
    let rollups =
        config.usage_rollup_every.map(|every| usage::rollup::spawn(pool.clone(), config.usage_retention, every));
    let app = app::router(AppState::new(pool, config));
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    for task in [pruner, rollups].into_iter().flatten() {
        task.abort();
    }
    served?;
    Ok(())
}

pub mod app;
