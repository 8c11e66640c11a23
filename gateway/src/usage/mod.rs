//! Usage analytics on the node: every answered request is counted in memory per minute ×
//! API × route × consumer × credential × plan × status class, with request and response
//! bytes and a latency [`Histogram`], and written to PostgreSQL in batches by [`flush`].
//!
//! The hot path takes no lock another worker takes and makes no network call: each worker
//! thread records into its own shard (a map behind a mutex only that thread and the
//! flusher, every few seconds, ever take), and a series already seen this interval is
//! updated in place, without allocating. Memory is bounded: past `max_series` distinct
//! series in an interval, new ones are folded into their API's "other" series (and past a
//! reserve above that, into one "other" series per status class), so every request is still
//! counted; the fold is counted too.

pub mod flush;
pub mod histogram;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use uuid::Uuid;

pub use histogram::Histogram;

use crate::fx::FxBuildHasher;

/// The dimension value standing for "several folded together" in an overflow series.
pub const OTHER: Uuid = Uuid::max();

/// Who a request is attributed to, filled in as the pipeline learns it (nil: not known or
/// not applicable, e.g. no consumer for an anonymous call, no API for an unrouted request).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attribution {
    pub api: Uuid,
    pub route: Uuid,
    pub consumer: Uuid,
    pub credential: Uuid,
    pub plan: Uuid,
}

/// The status class of a series, as stored (`status_class` in `usage_minutes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusClass(pub i16);

impl StatusClass {
    /// 401, 403 and 429 stand alone; other statuses by hundred; a 5xx the gateway made
    /// (no target, timeout, circuit open, …) is told apart from an upstream's.
    pub fn of(status: StatusCode, gateway_made: bool) -> Self {
        let code = status.as_u16();
        StatusClass(match code {
            401 | 403 | 429 => code as i16,
            500..=599 if gateway_made => 500,
            _ => (code / 100).clamp(1, 5) as i16,
        })
    }

    /// Every class, as stored.
    pub const ALL: [i16; 9] = [1, 2, 3, 4, 401, 403, 429, 5, 500];

    /// The class's name in the admin API.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            401 => "401",
            403 => "403",
            429 => "429",
            5 => "5xx_upstream",
            500 => "5xx_gateway",
            _ => "4xx",
        }
    }

    /// The class named `name` (see [`StatusClass::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().map(StatusClass).find(|c| c.name() == name)
    }
}

/// One series: a minute and its dimensions. (Equality and hashing read each UUID as one
/// 128-bit word: the derived ones compare and hash byte arrays, several times the work on
/// the request path.)
#[derive(Debug, Clone, Copy, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub api: Uuid,
    pub route: Uuid,
    pub consumer: Uuid,
    pub credential: Uuid,
    pub plan: Uuid,
    pub class: StatusClass,
}

/// A UUID as one machine word pair (native byte order: only compared and hashed, never shown).
#[inline]
fn word(id: &Uuid) -> u128 {
    u128::from_ne_bytes(*id.as_bytes())
}

impl PartialEq for SeriesKey {
    #[inline]
    fn eq(&self, o: &Self) -> bool {
        self.minute == o.minute
            && self.class == o.class
            && word(&self.api) == word(&o.api)
            && word(&self.route) == word(&o.route)
            && word(&self.consumer) == word(&o.consumer)
            && word(&self.credential) == word(&o.credential)
            && word(&self.plan) == word(&o.plan)
    }
}

/// Word by word (the derived hash would add a length per UUID and hash its bytes as a
/// slice): eleven rounds of the Fx hash per lookup.
impl std::hash::Hash for SeriesKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.minute as u64 ^ (u64::from(self.class.0 as u16) << 48));
        for id in [&self.api, &self.route, &self.consumer, &self.credential, &self.plan] {
            let w = word(id);
            h.write_u64(w as u64);
            h.write_u64((w >> 64) as u64);
        }
    }
}

/// What a series counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub latency_us_sum: u64,
    pub hist: Histogram,
}

impl Counts {
    /// Adds `other` to these counts.
    pub fn merge(&mut self, other: &Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.request_bytes = self.request_bytes.saturating_add(other.request_bytes);
        self.response_bytes = self.response_bytes.saturating_add(other.response_bytes);
        self.latency_us_sum = self.latency_us_sum.saturating_add(other.latency_us_sum);
        self.hist.merge(&other.hist);
    }
}

/// Series and their counts.
pub(crate) type Batch = HashMap<SeriesKey, Counts, FxBuildHasher>;

/// One worker thread's series of the current interval.
#[derive(Default)]
struct Shard {
    series: Mutex<Batch>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        match self.series.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// Counters of the recorder, on the metrics listener.
#[derive(Debug, Default)]
pub struct Stats {
    /// Distinct series recorded since the flusher last took them.
    pub live_series: AtomicUsize,
    /// Requests counted in an overflow series instead of their own.
    pub folded_requests: AtomicU64,
    /// Requests whose counts were given up (the database unreachable for too long).
    pub dropped_requests: AtomicU64,
    /// Series given up with them.
    pub dropped_series: AtomicU64,
    /// Flushes written, and failed attempts.
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    /// Series and requests of the last flush written.
    pub last_batch_series: AtomicU64,
    pub last_batch_requests: AtomicU64,
    /// Unix milliseconds of the last flush written (0: none yet).
    pub last_flush_unix_ms: AtomicU64,
    /// Series waiting to be written (taken from the shards, not yet in PostgreSQL).
    pub pending_series: AtomicUsize,
}

impl Stats {
    /// Appends the usage series of the Prometheus text exposition.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last = get(&self.last_flush_unix_ms);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let lag = if last == 0 { -1.0 } else { now_ms.saturating_sub(last) as f64 / 1000.0 };
        let lines: [(&str, &str, &str, String); 10] = [
            (
                "tollgate_usage_series",
                "gauge",
                "Usage series recorded in the current interval.",
                self.live_series.load(Ordering::Relaxed).to_string(),
            ),
            (
                "tollgate_usage_pending_series",
                "gauge",
                "Usage series taken but not yet written to PostgreSQL.",
                self.pending_series.load(Ordering::Relaxed).to_string(),
            ),
            (
                "tollgate_usage_folded_requests_total",
                "counter",
                "Requests counted in their API's overflow series (series limit reached).",
                get(&self.folded_requests).to_string(),
            ),
            (
                "tollgate_usage_dropped_requests_total",
                "counter",
                "Requests whose usage was given up (pending limit reached).",
                get(&self.dropped_requests).to_string(),
            ),
            (
                "tollgate_usage_dropped_series_total",
                "counter",
                "Usage series given up (pending limit reached).",
                get(&self.dropped_series).to_string(),
            ),
            ("tollgate_usage_flushes_total", "counter", "Usage writes to PostgreSQL.", get(&self.flushes).to_string()),
            (
                "tollgate_usage_flush_failures_total",
                "counter",
                "Usage writes that failed (retried with the next).",
                get(&self.flush_failures).to_string(),
            ),
            (
                "tollgate_usage_last_batch_series",
                "gauge",
                "Series in the last usage write.",
                get(&self.last_batch_series).to_string(),
            ),
            (
                "tollgate_usage_last_batch_requests",
                "gauge",
                "Requests in the last usage write.",
                get(&self.last_batch_requests).to_string(),
            ),
            (
                "tollgate_usage_flush_lag_seconds",
                "gauge",
                "Seconds since the last usage write (-1: none yet).",
                lag.to_string(),
            ),
        ];
        for (name, kind, help, value) in lines {
            crate::metrics::family(out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

static NEXT_RECORDER: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// This thread's shard of each recorder it has recorded into (almost always one).
    static SHARDS: RefCell<Vec<(usize, Arc<Shard>)>> = const { RefCell::new(Vec::new()) };
}

/// The usage recorder of a node.
pub struct Recorder {
    id: usize,
    shards: Mutex<Vec<Arc<Shard>>>,
    max_series: usize,
    /// Series allowed above `max_series` for per-API overflow series.
    reserve: usize,
    /// Unix microseconds minus `epoch`-relative microseconds (re-anchored at each take, so
    /// a stepped wall clock is followed within one interval).
    wall_offset_us: AtomicI64,
    epoch: Instant,
    pub stats: Stats,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("max_series", &self.max_series).finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder holding at most `max_series` distinct series per interval (plus overflow
    /// series, at most `max_series / 10 + 64` per-API ones and 9 per minute and thread).
    pub fn new(max_series: usize) -> Self {
        let epoch = Instant::now();
        let r = Recorder {
            id: NEXT_RECORDER.fetch_add(1, Ordering::Relaxed),
            shards: Mutex::new(Vec::new()),
            max_series: max_series.max(1),
            reserve: max_series / 10 + 64,
            wall_offset_us: AtomicI64::new(0),
            epoch,
            stats: Stats::default(),
        };
        r.anchor();
        r
    }

    /// Re-reads the wall clock.
    fn anchor(&self) {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        let mono = self.epoch.elapsed().as_micros() as i64;
        self.wall_offset_us.store(wall - mono, Ordering::Relaxed);
    }

    /// The minute (since the Unix epoch) of `at`.
    fn minute_of(&self, at: Instant) -> i64 {
        let since = at.saturating_duration_since(self.epoch);
        let mono = since.as_secs() as i64 * 1_000_000 + i64::from(since.subsec_micros());
        (mono + self.wall_offset_us.load(Ordering::Relaxed)).div_euclid(60_000_000)
    }

    /// Counts one answered request that started at `started` and took `latency` (until its
    /// response head).
    pub fn record(
        &self,
        who: &Attribution,
        class: StatusClass,
        started: Instant,
        latency: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let key = SeriesKey {
            minute: self.minute_of(started),
            api: who.api,
            route: who.route,
            consumer: who.consumer,
            credential: who.credential,
            plan: who.plan,
            class,
        };
        let us = latency.as_secs().saturating_mul(1_000_000).saturating_add(u64::from(latency.subsec_micros()));
        let update = |c: &mut Counts| {
            c.requests += 1;
            c.request_bytes = c.request_bytes.saturating_add(request_bytes);
            c.response_bytes = c.response_bytes.saturating_add(response_bytes);
            c.latency_us_sum = c.latency_us_sum.saturating_add(us);
            c.hist.record(us);
        };
        self.with_shard(|shard| {
            let mut series = shard.lock();
            if let Some(c) = series.get_mut(&key) {
                update(c);
                return;
            }
            let key = self.admit(key, &series);
            update(series.entry(key).or_default());
        });
    }

    /// The key a new series is counted under: its own while the node holds fewer than
    /// `max_series`, else its API's overflow series, else the minute's overflow series.
    fn admit(&self, key: SeriesKey, series: &Batch) -> SeriesKey {
        let live = &self.stats.live_series;
        let held = live.load(Ordering::Relaxed);
        if held < self.max_series {
            live.fetch_add(1, Ordering::Relaxed);
            return key;
        }
        self.stats.folded_requests.fetch_add(1, Ordering::Relaxed);
        let per_api = SeriesKey { route: OTHER, consumer: OTHER, credential: OTHER, plan: OTHER, ..key };
        if series.contains_key(&per_api) {
            return per_api;
        }
        if held < self.max_series + self.reserve {
            live.fetch_add(1, Ordering::Relaxed);
            return per_api;
        }
        let other = SeriesKey { api: OTHER, ..per_api };
        if !series.contains_key(&other) {
            live.fetch_add(1, Ordering::Relaxed);
        }
        other
    }

    fn with_shard(&self, f: impl FnOnce(&Shard)) {
        let done = SHARDS.with(|shards| {
            let shards = shards.borrow();
            match shards.iter().find(|(id, _)| *id == self.id) {
                Some((_, shard)) => {
                    f(shard);
                    None
                }
                None => Some(f),
            }
        });
        let Some(f) = done else { return };
        let shard = Arc::new(Shard::default());
        match self.shards.lock() {
            Ok(mut all) => all.push(shard.clone()),
            Err(poisoned) => poisoned.into_inner().push(shard.clone()),
        }
        SHARDS.with(|shards| shards.borrow_mut().push((self.id, shard.clone())));
        f(&shard);
    }

    /// Takes everything recorded so far (every worker's shard), merged.
    pub(crate) fn take(&self) -> Batch {
        self.anchor();
        let shards: Vec<Arc<Shard>> = match self.shards.lock() {
            Ok(all) => all.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let mut out = Batch::default();
        for shard in shards {
            flush::merge_into(&mut out, std::mem::take(&mut *shard.lock()));
        }
        self.stats.live_series.store(0, Ordering::Relaxed);
        out
    }

    /// Whether a series overflowed into `OTHER` dimensions.
    pub fn is_overflow(key: &SeriesKey) -> bool {
        key.route == OTHER
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // This thread's entry; other threads' entries are dropped with their thread or
        // found stale (their recorder id is never reused).
        let _ = SHARDS.try_with(|shards| shards.borrow_mut().retain(|(id, _)| *id != self.id));
    }
}
