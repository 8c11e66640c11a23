//! Retention of the change log: `config_events` rows older than the retention are deleted
//! in small batches, always keeping the newest row (gateways compare their position with the
//! oldest remaining id to tell whether they must reload; with an empty table they could not
//! tell until the next change). Audit rows are never touched. Gateway nodes not seen within
//! their retention window are deleted too (see [`crate::nodes`]).

use std::time::Duration;

use sqlx::PgPool;

/// Rows deleted per statement, so pruning never holds long locks.
const BATCH: i64 = 10_000;

/// Deletes events older than `retention` (but never the newest); returns how many.
pub async fn prune_config_events(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "DELETE FROM config_events WHERE id IN (
                 SELECT id FROM config_events
                 WHERE at < now() - make_interval(secs => $1)
                   AND id < (SELECT max(id) FROM config_events)
                 ORDER BY id LIMIT $2)",
        )
        .bind(retention.as_secs_f64())
        .bind(BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Prunes config events older than `events` (`None`: kept) and gateway nodes not seen
/// within `nodes`, every `every`, until the returned task is aborted.
pub fn spawn(pool: PgPool, events: Option<Duration>, nodes: Duration, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(retention) = events {
                report("config events", prune_config_events(&pool, retention).await);
            }
            report("gateway nodes", crate::nodes::prune_nodes(&pool, nodes).await);
        }
    })
}

fn report(what: &'static str, outcome: Result<u64, sqlx::Error>) {
    match outcome {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, what, "old rows pruned"),
        Err(error) => tracing::warn!(%error, what, "pruning failed; retrying later"),
    }
}
