//! Following PostgreSQL: load a full snapshot, then `LISTEN` for change notifications and
//! catch up from the change log after each one — and after every (re)connection, so a
//! notification lost while disconnected never means a lost change. Each applied state is
//! published to the [`Sink`], saved to disk (debounced) and reported in the node heartbeat.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use super::freshness::Freshness;
use super::model::ConfigData;
use super::pg::{self, CatchUp, Changed};
use super::{disk, node::NodeInfo};

/// Channel the admin notifies on; the payload is the event id.
pub const CHANNEL: &str = "tollgate_config";
/// Heartbeat and safety-net catch-up period.
const TICK: Duration = Duration::from_secs(5);
/// A node that reported within this long counts as alive (three missed heartbeats).
const LIVE_WITHIN: Duration = Duration::from_secs(15);
/// Minimum time between two saves of the configuration to disk.
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// First reconnection delay after a lost connection; it doubles up to [`MAX_BACKOFF`] while
/// PostgreSQL stays away, and starts over once connected again.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest wait for the disk save at shutdown.
const FINAL_SAVE_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Receives each new configuration state.
pub trait Sink: Send + Sync + 'static {
    /// Compiles and publishes `data`; `changed` says which parts differ from the last call.
    fn publish(&self, data: &ConfigData, changed: Changed);

    /// How many gateway nodes are alive (this one included), for splitting limits when
    /// shared counting is unavailable. Ignored by default.
    fn live_nodes(&self, _nodes: u32) {}
}

/// Where the node keeps its last-known-good configuration, and who it is.
#[derive(Debug, Clone)]
pub struct PgSource {
    pub pool: PgPool,
    pub state_file: Option<PathBuf>,
    pub node: NodeInfo,
    /// Confirmed after every successful sync (see `--max-config-staleness`).
    pub freshness: Arc<Freshness>,
}

struct Follower {
    src: PgSource,
    sink: Arc<dyn Sink>,
    /// Shared with an in-progress disk save; copied on write only if a save still holds it.
    data: Arc<ConfigData>,
    loaded: bool,
    last_save: Option<Instant>,
    dirty: bool,
    /// When this process started following, reported in the heartbeat.
    started_at: time::OffsetDateTime,
}

/// The next tick of `interval`, or never without one.
async fn next_tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// How long ago `path` was written (zero when unknown).
fn age(path: &std::path::Path) -> Duration {
    let modified = std::fs::metadata(path).and_then(|m| m.modified());
    modified.ok().and_then(|t| t.elapsed().ok()).unwrap_or_default()
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl PgSource {
    /// Loads the initial configuration (from PostgreSQL, else from disk) and publishes it;
    /// then follows changes in a background task for as long as the runtime lives.
    /// When `stop` turns true the task saves the configuration to disk (if it changed since
    /// the last save) and ends.
    pub async fn start(
        self,
        sink: Arc<dyn Sink>,
        initial_timeout: Duration,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let started_at = time::OffsetDateTime::now_utc();
        let mut f = Follower {
            src: self,
            sink,
            data: Arc::default(),
            loaded: false,
            last_save: None,
            dirty: false,
            started_at,
        };
        match tokio::time::timeout(initial_timeout, pg::load_full(&f.src.pool)).await {
            Ok(Ok(data)) => {
                f.replace(data);
                f.src.freshness.confirm();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "PostgreSQL unavailable at start; trying the last-known-good configuration")
            }
            Err(_) => tracing::warn!("PostgreSQL did not answer in time; trying the last-known-good configuration"),
        }
        if !f.loaded {
            f.load_from_disk().await;
        }
        tokio::spawn(async move { f.run(stop).await })
    }
}

impl Follower {
    fn replace(&mut self, data: ConfigData) {
        self.data = Arc::new(data);
        self.loaded = true;
        self.dirty = true;
        self.sink.publish(&self.data, Changed::all());
        tracing::info!(
            event_id = self.data.event_id,
            apis = self.data.apis.len(),
            routes = self.data.routes.len(),
            "configuration loaded"
        );
    }

    async fn load_from_disk(&mut self) {
        let Some(path) = self.src.state_file.clone() else { return };
        match tokio::task::spawn_blocking(move || disk::load(&path).map(|d| (d, age(&path)))).await {
            Ok(Ok((data, age))) => {
                tracing::info!(event_id = data.event_id, "serving the last-known-good configuration from disk");
                self.replace(data);
                self.dirty = false;
                // The copy was current when written, not now: a node restarted in an outage
                // is as stale as its copy (a crash loop must not reset the clock).
                self.src.freshness.confirmed_ago(age);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "no usable configuration on disk"),
            Err(e) => tracing::warn!(error = %e, "reading the configuration from disk failed"),
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_RETRY;
        loop {
            let outcome = tokio::select! {
                r = self.follow(&mut backoff) => Some(r),
                () = stopped(&mut stop) => None,
            };
            match outcome {
                None => return self.final_save().await,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "lost PostgreSQL; still serving the current configuration");
                }
                Some(Ok(())) => {}
            }
            // Cut off from PostgreSQL, a restart would serve the disk copy: make it current now
            // rather than at the next (debounced) save, which needs PostgreSQL back.
            self.save();
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stopped(&mut stop) => return self.final_save().await,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// On shutdown: writes the disk copy if it is behind, so a restart (even with PostgreSQL
    /// down) serves what this node last enforced.
    async fn final_save(&mut self) {
        let Some(path) = self.src.state_file.clone().filter(|_| self.dirty) else { return };
        let data = Arc::clone(&self.data);
        let save = tokio::task::spawn_blocking(move || disk::save(&path, &data));
        match tokio::time::timeout(FINAL_SAVE_TIMEOUT, save).await {
            Ok(Ok(Ok(()))) => self.dirty = false,
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not save the configuration at shutdown"),
            _ => tracing::warn!("saving the configuration at shutdown did not finish in time"),
        }
    }

    /// Subscribes, catches up, then applies changes as notifications arrive. Returns only
    /// on a database error; the caller reconnects after `backoff`, which is reset here once
    /// subscribed and current (a later loss must not wait as long as a past outage did).
    async fn follow(&mut self, backoff: &mut Duration) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.src.pool).await?;
        listener.listen(CHANNEL).await?;
        // Subscribed first, then caught up: nothing committed in between can be missed.
        self.sync().await?;
        *backoff = FIRST_RETRY;
        let mut tick = tokio::time::interval(TICK);
        // Only when a staleness bound needs confirmations more often than the heartbeat.
        let every = self.src.freshness.confirm_every(TICK);
        let mut confirm = (every < TICK).then(|| tokio::time::interval(every));
        loop {
            tokio::select! {
                () = next_tick(&mut confirm) => self.sync().await?,
                n = listener.try_recv() => {
                    if n?.is_none() {
                        return Err(sqlx::Error::Protocol("notification connection lost".into()));
                    }
                    while listener.next_buffered().is_some() {}
                    self.sync().await?;
                }
                _ = tick.tick() => {
                    self.sync().await?;
                    self.src.node.heartbeat(&self.src.pool, self.data.event_id, self.started_at).await?;
                    let live = self.src.node.live_nodes(&self.src.pool, LIVE_WITHIN).await?;
                    self.sink.live_nodes(live);
                }
            }
        }
    }

    /// Brings `data` up to the newest committed event and publishes what changed.
    async fn sync(&mut self) -> Result<(), sqlx::Error> {
        if !self.loaded {
            let data = pg::load_full(&self.src.pool).await?;
            self.replace(data);
        }
        match pg::catch_up(&self.src.pool, Arc::make_mut(&mut self.data)).await? {
            CatchUp::Current => {}
            CatchUp::Applied { events, changed } => {
                self.sink.publish(&self.data, changed);
                self.dirty = true;
                tracing::debug!(events, event_id = self.data.event_id, "configuration changes applied");
                self.src.node.heartbeat(&self.src.pool, self.data.event_id, self.started_at).await?;
            }
            CatchUp::ReloadNeeded => {
                let data = pg::load_full(&self.src.pool).await?;
                self.replace(data);
            }
        }
        self.save_if_due();
        self.src.freshness.confirm();
        Ok(())
    }

    fn save_if_due(&mut self) {
        if self.last_save.is_none_or(|t| t.elapsed() >= SAVE_EVERY) {
            self.save();
        }
    }

    /// Writes the configuration to disk (in the background) if it changed since the last save.
    fn save(&mut self) {
        let Some(path) = self.src.state_file.clone().filter(|_| self.dirty) else { return };
        self.dirty = false;
        self.last_save = Some(Instant::now());
        let data = Arc::clone(&self.data);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = disk::save(&path, &data) {
                tracing::warn!(error = %e, path = %path.display(), "could not save the configuration to disk");
            }
        });
    }
}
