//! Following PostgreSQL: load a full snapshot, then `LISTEN` for change notifications and
//! catch up from the change log after each one — and after every (re)connection, so a
//! notification lost while disconnected never means a lost change. Each applied state is
//! published to the [`Sink`], saved to disk (debounced) and reported in the node heartbeat.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// Starts following PostgreSQL in a background task that lives as long as the runtime,
    /// and returns once the node has a configuration to serve, once neither PostgreSQL nor
    /// the disk copy can give one yet, or after `grace` — whichever comes first (until a
    /// configuration is loaded the node answers 503).
    ///
    /// PostgreSQL and the disk copy are read concurrently. PostgreSQL's answer wins if it
    /// comes within `grace`; otherwise, or as soon as PostgreSQL refuses, the disk copy is
    /// served once read, and brought up to date from the change log once PostgreSQL
    /// answers (as after any reconnection: nothing committed meanwhile is lost). When `stop`
    /// turns true the task saves the configuration to disk (if it changed since the last
    /// save) and ends.
    pub async fn start(
        self,
        sink: Arc<dyn Sink>,
        grace: Duration,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let started_at = time::OffsetDateTime::now_utc();
        let f = Follower {
            src: self,
            sink,
            data: Arc::default(),
            loaded: false,
            last_save: None,
            dirty: false,
            started_at,
        };
        let (settled_tx, mut settled) = watch::channel(false);
        let task = tokio::spawn(f.start(grace, settled_tx, stop));
        let _ = tokio::time::timeout(grace, settled.wait_for(|s| *s)).await;
        task
    }
}

/// Reads the disk copy and how long ago it was written; `None` (logged) when there is none
/// or it cannot be used.
async fn read_disk(path: Option<PathBuf>, cancel: Arc<AtomicBool>) -> Option<(ConfigData, Duration)> {
    let path = path?;
    match tokio::task::spawn_blocking(move || disk::load_unless(&path, &cancel).map(|d| (d, age(&path)))).await {
        Ok(Ok(loaded)) => Some(loaded),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!("no configuration on disk yet");
            None
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the configuration on disk cannot be used; waiting for PostgreSQL");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the configuration from disk failed");
            None
        }
    }
}

/// Where the first load stands.
#[derive(Default)]
struct Initial {
    /// PostgreSQL answered (with a configuration or an error).
    pg_done: bool,
    /// The disk copy was read (or found missing or unusable).
    disk_done: bool,
    /// One direct connection attempt was made.
    probed: bool,
    /// PostgreSQL refused or missed its grace period: a disk copy may be served.
    disk_allowed: bool,
    copy: Option<(ConfigData, Duration)>,
}

impl Initial {
    fn refused(&mut self, e: &sqlx::Error) {
        if !self.disk_allowed {
            tracing::warn!(error = %e, "PostgreSQL unavailable at start; serving the last-known-good configuration if there is one");
        }
        self.disk_allowed = true;
    }
}

impl Follower {
    async fn start(mut self, grace: Duration, settled: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        if self.initial(grace, &settled, &mut stop).await {
            self.run(stop).await;
        }
    }

    /// The first load: PostgreSQL and the disk copy concurrently (see [`PgSource::start`]).
    /// Ends once either is served (a served copy is brought up to date by [`Follower::run`]
    /// from the change log, as after any reconnection) or neither can be. Returns false if
    /// stopped meanwhile.
    async fn initial(
        &mut self,
        grace: Duration,
        settled: &watch::Sender<bool>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let cancel = Arc::new(AtomicBool::new(false));
        let pool = self.src.pool.clone();
        let pg_load = pg::load_full(&pool);
        // The pool retries refused connections until its acquire timeout; one direct attempt
        // tells a refusal at once.
        let options = pool.connect_options();
        let probe = sqlx::ConnectOptions::connect(&*options);
        let disk_read = read_disk(self.src.state_file.clone(), Arc::clone(&cancel));
        let grace_over = tokio::time::sleep(grace);
        tokio::pin!(pg_load, probe, disk_read, grace_over);
        let mut st = Initial { disk_done: self.src.state_file.is_none(), ..Initial::default() };
        while !(self.loaded || (st.pg_done && st.disk_done)) {
            tokio::select! {
                r = &mut pg_load, if !st.pg_done => {
                    st.pg_done = true;
                    match r {
                        Ok(data) => {
                            self.replace(data);
                            self.src.freshness.confirm();
                        }
                        Err(e) => st.refused(&e),
                    }
                }
                r = &mut probe, if !st.probed => {
                    st.probed = true;
                    match r {
                        Ok(conn) => drop(conn),
                        Err(e) => st.refused(&e),
                    }
                }
                copy = &mut disk_read, if !st.disk_done => (st.disk_done, st.copy) = (true, copy),
                () = &mut grace_over, if !st.disk_allowed => {
                    tracing::warn!("PostgreSQL did not answer in time; serving the last-known-good configuration if there is one");
                    st.disk_allowed = true;
                }
                () = stopped(stop) => return false,
            }
            if let Some((copy, age)) = st.copy.take_if(|_| st.disk_allowed) {
                tracing::info!(event_id = copy.event_id, "serving the last-known-good configuration from disk");
                self.replace(copy);
                self.dirty = false;
                // The copy was current when written, not now: a node restarted in an outage
                // is as stale as its copy (a crash loop must not reset the clock).
                self.src.freshness.confirmed_ago(age);
            }
        }
        let _ = settled.send(true);
        // PostgreSQL's load won: a disk read still under way stops early.
        cancel.store(true, Ordering::Relaxed);
        true
    }

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
        // A lost connection is reported at once: this loop reconnects itself (a new listener,
        // subscribed before catching up). sqlx's own eager reconnect would first wait for a
        // pool connection (up to the acquire timeout, on a busy pool) and then be dropped.
        listener.eager_reconnect(false);
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
        // A disk save in progress shares `data`: applying would copy all of it (1M keys:
        // ~130 MiB, kept by the allocator afterwards), so only when there is something new.
        if Arc::strong_count(&self.data) > 1 && !pg::has_events_after(&self.src.pool, self.data.event_id).await? {
            return Ok(());
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
