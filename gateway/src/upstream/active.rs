//! Active health checks: a background task probes every target with `GET <path>` over a fresh
//! HTTP/1.1 connection at a fixed interval and flips the target's verdict after enough
//! consecutive failures or successes.
//!
//! The task holds only a `Weak` reference to its upstream, and upgrades it just long enough to
//! list the targets, so it never keeps an old upstream alive. It also watches a channel whose
//! sender the upstream owns: when the upstream is dropped the task ends at once, even in the
//! middle of a probe round.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::header::{HOST, USER_AGENT};
use http::{Request, Version};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use super::Upstream;
use super::config::ActiveHealthConfig;
use super::target::TargetShared;

/// Probing more often than this is refused (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(10);

type ProbeError = Box<dyn std::error::Error + Send + Sync>;

/// What a probe round needs of a target, detached from the upstream.
struct Probe {
    id: Uuid,
    authority: String,
    shared: Arc<TargetShared>,
}

impl Upstream {
    /// Starts the active health checks on the current tokio runtime. `None` when active checks
    /// are not configured or there is no runtime. The task ends by itself once this upstream
    /// is dropped; after [`Upstream::rebuild`], start it again on the new upstream.
    pub fn spawn_active_checks(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let cfg = self.config().active.clone()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(runtime.spawn(run_checks(Arc::downgrade(self), cfg, self.stop.subscribe())))
    }

    fn probes(&self) -> Vec<Probe> {
        let targets = self.targets().iter().filter(|t| t.weight > 0);
        targets.map(|t| Probe { id: t.id, authority: t.authority.clone(), shared: t.shared.clone() }).collect()
    }
}

/// The check loop; returns when the upstream is gone.
async fn run_checks(upstream: Weak<Upstream>, cfg: ActiveHealthConfig, mut stop: watch::Receiver<()>) {
    let mut ticker = tokio::time::interval(cfg.interval.max(MIN_INTERVAL));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // The sender never sends: `changed` only returns when the upstream dropped it.
            _ = stop.changed() => return,
            _ = ticker.tick() => {}
        }
        let Some(probes) = upstream.upgrade().map(|u| u.probes()) else { return };
        tokio::select! {
            _ = stop.changed() => return,
            () = probe_round(&probes, &cfg) => {}
        }
    }
}

/// Probes all targets concurrently and records the results.
async fn probe_round(probes: &[Probe], cfg: &ActiveHealthConfig) {
    join_all(probes.iter().map(|probe| async move {
        let ok = probe_target(&probe.authority, cfg).await;
        if let Some(healthy) = probe.shared.health.record_probe(ok, cfg) {
            if healthy {
                tracing::info!(target_id = %probe.id, authority = %probe.authority, "upstream target healthy");
            } else {
                tracing::warn!(target_id = %probe.id, authority = %probe.authority, "upstream target unhealthy");
            }
        }
    }))
    .await;
}

/// Whether the target answered in time with an expected status.
async fn probe_target(authority: &str, cfg: &ActiveHealthConfig) -> bool {
    match tokio::time::timeout(cfg.timeout, fetch_status(authority, &cfg.path)).await {
        Ok(Ok(status)) => cfg.expected_statuses.contains(&status),
        Ok(Err(error)) => {
            tracing::debug!(authority, %error, "health probe failed");
            false
        }
        Err(_) => false,
    }
}

/// The status of `GET path` on a new connection. The connection is driven alongside the
/// request and closed when this returns (the body is not read).
async fn fetch_status(authority: &str, path: &str) -> Result<u16, ProbeError> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let request = Request::get(path)
        .version(Version::HTTP_11)
        .header(HOST, authority)
        .header(USER_AGENT, "tollgate-health-check")
        .body(Empty::<Bytes>::new())?;
    tokio::select! {
        response = sender.send_request(request) => Ok(response?.status().as_u16()),
        closed = connection => Err(closed.err().map_or_else(|| "connection closed".into(), Into::into)),
    }
}

#[cfg(test)]
#[path = "active_tests.rs"]
mod tests;
