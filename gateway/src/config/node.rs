//! This node's identity and heartbeat: the admin lists nodes and, for each config event,
//! how many live nodes have applied it.

use sqlx::PgPool;
use uuid::Uuid;

/// Who this gateway node is.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: Uuid,
    pub hostname: String,
    pub listen: String,
    pub version: String,
    /// `postgres` or `file`.
    pub source: String,
}

impl NodeInfo {
    /// Records that this node, running since `started_at`, enforces config event `applied`
    /// and is alive. A restarted node (same id) updates its row: one row per node.
    pub async fn heartbeat(
        &self,
        pool: &PgPool,
        applied: i64,
        started_at: time::OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO gateway_nodes (id, hostname, listen, version, config_source, applied_event_id, started_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET applied_event_id = EXCLUDED.applied_event_id, last_seen_at = now(),
                 hostname = EXCLUDED.hostname, listen = EXCLUDED.listen, version = EXCLUDED.version,
                 config_source = EXCLUDED.config_source, started_at = EXCLUDED.started_at",
        )
        .bind(self.id)
        .bind(&self.hostname)
        .bind(&self.listen)
        .bind(&self.version)
        .bind(&self.source)
        .bind(applied)
        .bind(started_at)
        .execute(pool)
        .await
        .map(|_| ())
    }

    /// Number of nodes (this one included) that reported within `within`.
    pub async fn live_nodes(&self, pool: &PgPool, within: std::time::Duration) -> Result<u32, sqlx::Error> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM gateway_nodes WHERE last_seen_at > now() - make_interval(secs => $1) OR id = $2",
        )
        .bind(within.as_secs_f64())
        .bind(self.id)
        .fetch_one(pool)
        .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
    }
}
