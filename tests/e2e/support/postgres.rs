//! A private PostgreSQL cluster a test may stop and start again (same data, same port), so
//! an outage affects nothing but that test; and finding a gateway's notification connection.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tollgate_admin::pg_local::{LocalPgOptions, LocalPostgres};

use super::eventually;

/// A restartable private cluster with trust authentication; stopped on drop.
pub struct PrivatePostgres {
    opts: LocalPgOptions,
    server: Option<LocalPostgres>,
    url: String,
}

impl PrivatePostgres {
    /// Creates a cluster under `root/pgdata` and starts it on a free port.
    pub async fn start(root: &Path) -> anyhow::Result<Self> {
        // Kept data: a stop must not delete it; the test's scratch directory is removed instead.
        let opts = LocalPgOptions { keep_data: true, ..LocalPgOptions::throwaway(root) };
        let server = LocalPostgres::start(opts.clone()).await.context("starting a private PostgreSQL")?;
        let opts = LocalPgOptions { port: Some(server.port()), ..opts };
        Ok(Self { url: server.url(), opts, server: Some(server) })
    }

    /// URL of its `postgres` database; the same across restarts.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fast shutdown: every open session is ended.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Starts it again on the same data directory and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        let server = LocalPostgres::start(self.opts.clone()).await.context("restarting the private PostgreSQL")?;
        self.server = Some(server);
        Ok(())
    }
}

/// Waits up to `within` until exactly one gateway connection to `pool`'s database is
/// listening (other than backend `not`) and returns its backend pid.
pub async fn listen_backend(pool: &PgPool, not: Option<i32>, within: Duration) -> anyhow::Result<i32> {
    eventually("one LISTEN connection of a gateway", within, || async {
        let pids: Vec<(i32,)> = sqlx::query_as(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND application_name LIKE 'tollgate-gateway%' AND query LIKE 'LISTEN%'",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
        match pids.as_slice() {
            [(pid,)] if Some(*pid) != not => Ok(*pid),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}
