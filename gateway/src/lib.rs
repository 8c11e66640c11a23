//! Tollgate data plane: a stateless gateway node. It loads the configuration (from
//! PostgreSQL with the change log, or from a declarative file), compiles it into an
//! immutable [`snapshot::Snapshot`] swapped atomically on every change, and proxies
//! requests through the phases of [`proxy::forward`].

pub mod access_log;
pub mod auth;
pub mod config;
pub mod edge;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod fx;
mod health;
pub mod key_format;
pub mod limits;
pub mod listener;
pub mod metrics;
mod metrics_endpoint;
#[cfg(test)]
mod module_graph;
pub mod pki;
pub mod proxy;
pub mod router;
pub mod seal;
pub mod snapshot;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod usage;
pub mod wire;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::freshness::Freshness;
use crate::config::node::NodeInfo;
use crate::config::source::{PgSource, Sink};
pub use crate::listener::ListenerOptions;
pub use crate::proxy::{HEALTH_PATH, Limits, READY_PATH};
use crate::snapshot::ConfigStore;

/// How often idle rate-limit keys are dropped from memory.
const LIMIT_SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Where the node's configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// The control plane's database (lazy pool: the node starts even when it is down).
    Postgres(PgPool),
    /// A declarative YAML file, reloaded when it changes (DB-less mode).
    File(PathBuf),
}

/// Everything a gateway node needs.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub source: ConfigSource,
    /// Where the last-known-good configuration is kept (PostgreSQL mode).
    pub state_dir: Option<PathBuf>,
    pub node: NodeInfo,
    pub listener: ListenerOptions,
    pub limits: Limits,
    /// How long PostgreSQL's answer is preferred at start over a disk copy already read
    /// (a refusal ends the wait at once); also the longest wait before accepting
    /// connections (answered 503 until a configuration is loaded).
    pub initial_load_timeout: Duration,
    /// Listener of the Prometheus `/metrics` endpoint, kept off the traffic port.
    pub metrics_listener: Option<std::net::SocketAddr>,
    /// Trusted proxies (client IP).
    pub edge: edge::EdgeOptions,
    /// Rate-limit counting: Redis, node share, reservation.
    pub limiter: limits::LimiterConfig,
    /// Let JWKS and introspection URLs reach private addresses and plain `http`.
    pub allow_private_auth_urls: bool,
    /// Usage recording and where it is written.
    pub usage: UsageOptions,
    /// PostgreSQL mode: past this long without a confirmed sync with the control plane,
    /// credentialed calls are refused (503) and readiness fails. `None`: no bound.
    pub max_config_staleness: Option<Duration>,
    /// Opens sealed secrets (certificate private keys); without it no certificate loads.
    pub secrets: Option<Arc<seal::Keyring>>,
    /// The access log (`None`: off).
    pub access_log: Option<access_log::AccessLogOptions>,
    /// Honour `upstream_tls.verify: false` (otherwise upstreams are verified regardless).
    pub allow_insecure_upstream_tls: bool,
    /// OTLP trace export (`None`: off).
    pub tracing: Option<trace::TraceOptions>,
}

/// Usage recording of a node (see [`usage`]).
#[derive(Debug, Clone)]
pub struct UsageOptions {
    /// Record usage at all.
    pub enabled: bool,
    /// Distinct series per flush interval before new ones are folded into overflow series.
    pub max_series: usize,
    pub flush: usage::flush::FlushConfig,
    /// Where a DB-less node writes usage (a node on PostgreSQL writes to its own database).
    /// Without one a DB-less node records nothing per consumer (its `/metrics` still counts
    /// per API).
    pub database: Option<PgPool>,
}

impl Default for UsageOptions {
    fn default() -> Self {
        UsageOptions { enabled: true, max_series: 100_000, flush: usage::flush::FlushConfig::default(), database: None }
    }
}

/// Serves gateway traffic on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    opts: GatewayOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_all(listener, None, opts, shutdown).await
}

/// Serves gateway traffic on `listener` (plain HTTP) and on `tls` (HTTPS, with the
/// configuration's certificates) until `shutdown` completes, then drains.
pub async fn serve_all(
    listener: TcpListener,
    tls: Option<TcpListener>,
    opts: GatewayOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if matches!(opts.source, ConfigSource::File(_)) && opts.max_config_staleness.is_some() {
        anyhow::bail!("--max-config-staleness needs a PostgreSQL configuration source (a file has no control plane)");
    }
    let access_log = match &opts.access_log {
        Some(o) => Some(access_log::AccessLog::start(o)?),
        None => None,
    };
    let tracer = match &opts.tracing {
        Some(o) => Some(trace::Tracer::start(o)?),
        None => None,
    };
    let limiter = Arc::new(limits::Limiter::new(opts.limiter.clone())?);
    let sweeper = limiter.spawn_sweeper(LIMIT_SWEEP_EVERY);
    let policy = auth::ssrf::UrlPolicy { allow_private: opts.allow_private_auth_urls };
    let certs = Arc::new(tls::CertStore::new(opts.secrets.clone()));
    let tls = match tls {
        Some(listener) => {
            certs.config()?;
            Some(listener::TlsListener { listener, certs: certs.clone() })
        }
        None => None,
    };
    let store = Arc::new(
        ConfigStore::new(limiter, policy)
            .with_certs(certs)
            .allowing_insecure_upstream_tls(opts.allow_insecure_upstream_tls),
    );
    let freshness = Arc::new(Freshness::new(opts.max_config_staleness));
    let watchdog = freshness.spawn_watchdog();
    let sink: Arc<dyn Sink> = store.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let usage_db = match (&opts.source, opts.usage.database) {
        (_, Some(pool)) => Some(pool),
        (ConfigSource::Postgres(pool), None) => Some(pool.clone()),
        (ConfigSource::File(_), None) => None,
    };
    let (recorder, mut flusher) = match usage_db.filter(|_| opts.usage.enabled) {
        Some(pool) => {
            let recorder = Arc::new(usage::Recorder::new(opts.usage.max_series));
            let quotas: Arc<dyn usage::flush::LocalQuotas> = store.clone();
            let flusher =
                usage::flush::Flusher::new(recorder.clone(), pool, opts.node.id, opts.usage.flush, Some(quotas));
            (Some(recorder), Some(flusher.spawn(stop_rx.clone())))
        }
        None => (None, None),
    };
    let metrics_task = match opts.metrics_listener {
        Some(addr) => {
            let sources = metrics_endpoint::Sources {
                store: store.clone(),
                usage: recorder.clone(),
                freshness: freshness.clone(),
                access_log: access_log.clone(),
                tracer: tracer.clone(),
            };
            Some(metrics_endpoint::spawn(addr, sources).await?)
        }
        None => None,
    };
    let mut source_task = match opts.source {
        ConfigSource::Postgres(pool) => {
            let state_file = opts.state_dir.map(|d| d.join("gateway-config.json"));
            let src = PgSource { pool, state_file, node: opts.node, freshness: freshness.clone() };
            src.start(sink, opts.initial_load_timeout, stop_rx).await
        }
        ConfigSource::File(path) => config::file::watch(path, sink, stop_rx).await?,
    };
    let reopen = access_log.clone().map(reopen_on_hangup);
    let pipeline = Arc::new(proxy::Pipeline {
        store,
        limits: opts.limits,
        edge: opts.edge,
        usage: recorder,
        freshness,
        access_log: access_log.clone(),
        tracer: tracer.clone(),
    });
    let listener =
        listener::Acceptor::new(listener).map_err(|e| anyhow::anyhow!("cannot serve on the listening socket: {e}"))?;
    listener::serve(listener, tls, pipeline, opts.listener, shutdown).await;
    if let Some(log) = &access_log {
        log.close(Duration::from_secs(5));
    }
    if let Some(t) = &tracer {
        t.close(Duration::from_secs(5)).await;
    }
    if let Some(t) = reopen {
        t.abort();
    }
    // The PostgreSQL follower saves its configuration and ends; the file watcher just ends;
    // the usage writer writes what the drained requests recorded.
    let _ = stop_tx.send(true);
    if let Some(task) = flusher.as_mut() {
        let _ = task.await;
    }
    if tokio::time::timeout(Duration::from_secs(15), &mut source_task).await.is_err() {
        source_task.abort();
    }
    if let Some(t) = metrics_task {
        t.abort();
    }
    sweeper.abort();
    if let Some(t) = watchdog {
        t.abort();
    }
    Ok(())
}

/// Reopens the access log file on each `SIGHUP` (log rotation).
fn reopen_on_hangup(log: Arc<access_log::AccessLog>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::warn!("SIGHUP cannot be caught: the access log will not be reopened on it");
                return;
            };
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reopening the access log");
                log.reopen();
            }
        }
        #[cfg(not(unix))]
        drop(log);
    })
}
