//! The circuit breaker of an upstream: closed → open on consecutive failures or a failure rate
//! over a rolling window; open rejects at once for `open_for`; then half-open lets a few trial
//! requests through, which close it if all succeed and reopen it if any fails.
//!
//! Lock-free: the state, a generation number and the half-open counts are packed into one
//! `AtomicU64` changed by compare-and-swap, so admission is one load in the closed state and
//! every transition happens exactly once. Permits carry the generation they were issued in,
//! so a late result from an earlier half-open round cannot close a later one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::config::{BreakerConfig, FallbackResponse};
use super::window::{RollingCounter, nanos_since, to_nanos};

/// The state of a [`Breaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
/// Half-open counts are 16 bits; more trial requests than that are not useful.
const MAX_TRIALS: u64 = 0xFFFF;
/// Generations wrap at 30 bits.
const GENERATION_MASK: u64 = 0x3FFF_FFFF;

/// The packed breaker word: `generation:30 | state:2 | succeeded:16 | issued:16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Word {
    state: u64,
    generation: u64,
    issued: u64,
    succeeded: u64,
}

impl Word {
    fn unpack(w: u64) -> Self {
        Self { generation: w >> 34, state: (w >> 32) & 0b11, succeeded: (w >> 16) & MAX_TRIALS, issued: w & MAX_TRIALS }
    }

    fn pack(self) -> u64 {
        ((self.generation & GENERATION_MASK) << 34) | (self.state << 32) | (self.succeeded << 16) | self.issued
    }

    /// The first word of the next generation in `state`.
    fn next(self, state: u64) -> Self {
        Self { state, generation: (self.generation + 1) & GENERATION_MASK, issued: 0, succeeded: 0 }
    }
}

/// A circuit breaker (see the module docs).
#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    fallback: Option<Arc<FallbackResponse>>,
    word: AtomicU64,
    /// When the breaker last opened, in nanoseconds since `epoch`; written before the state.
    opened_at: AtomicU64,
    consecutive: AtomicU32,
    /// (successes, failures) in the closed state.
    window: RollingCounter,
    epoch: Instant,
}

/// Lets one request through. Call [`Permit::record`] with its result; dropping a permit
/// without recording counts as a **failure** (the request was abandoned or panicked), so a
/// half-open round can never hang waiting for a result that will not come.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: Option<&'a Breaker>,
    /// The half-open generation for trial requests, `None` for closed-state requests.
    trial: Option<u64>,
    recorded: bool,
}

/// The breaker refused the request.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    /// The configured fallback response, if any; otherwise answer 503.
    pub fallback: Option<Arc<FallbackResponse>>,
    /// How long the breaker stays open, when known (for `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl Rejected {
    /// The status to answer with: the fallback's, or 503.
    pub fn status(&self) -> u16 {
        self.fallback.as_ref().map_or(503, |f| f.status)
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: &BreakerConfig) -> Self {
        Self {
            fallback: cfg.fallback.clone().map(Arc::new),
            word: AtomicU64::new(Word { state: CLOSED, generation: 0, issued: 0, succeeded: 0 }.pack()),
            opened_at: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            window: RollingCounter::new(cfg.window),
            epoch: Instant::now(),
            cfg: cfg.clone(),
        }
    }

    /// The configuration this breaker was built from.
    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// The current state (an open breaker whose time is up reports `Open` until the next
    /// admission moves it to half-open).
    pub fn state(&self) -> BreakerState {
        match Word::unpack(self.word.load(Ordering::Acquire)).state {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Admits a request or rejects it at once.
    pub fn admit(&self) -> Result<Permit<'_>, Rejected> {
        loop {
            let current = self.word.load(Ordering::Acquire);
            let word = Word::unpack(current);
            let next = match word.state {
                CLOSED => return Ok(Permit { breaker: Some(self), trial: None, recorded: false }),
                OPEN => {
                    let until = self.opened_at.load(Ordering::Acquire).saturating_add(to_nanos(self.cfg.open_for));
                    let now = self.now();
                    if now < until {
                        return Err(self.rejected(Some(Duration::from_nanos(until - now))));
                    }
                    Word { issued: 1, ..word.next(HALF_OPEN) }
                }
                _ if word.issued >= self.trials() => return Err(self.rejected(None)),
                _ => Word { issued: word.issued + 1, ..word },
            };
            let swapped = self.word.compare_exchange_weak(current, next.pack(), Ordering::AcqRel, Ordering::Acquire);
            if swapped.is_ok() {
                return Ok(Permit { breaker: Some(self), trial: Some(next.generation), recorded: false });
            }
        }
    }

    fn trials(&self) -> u64 {
        u64::from(self.cfg.half_open_requests).clamp(1, MAX_TRIALS)
    }

    fn rejected(&self, retry_after: Option<Duration>) -> Rejected {
        Rejected { fallback: self.fallback.clone(), retry_after }
    }

    fn now(&self) -> u64 {
        nanos_since(self.epoch)
    }

    fn finish(&self, trial: Option<u64>, success: bool) {
        match trial {
            Some(generation) if success => self.trial_succeeded(generation),
            Some(generation) => self.trip(|w| w.state == HALF_OPEN && w.generation == generation),
            None => self.closed_result(success),
        }
    }

    /// Counts a closed-state result and opens the breaker when a trigger fires.
    fn closed_result(&self, success: bool) {
        let now = self.now();
        self.window.add(now, u64::from(success), u64::from(!success));
        if success {
            self.consecutive.store(0, Ordering::Relaxed);
            return;
        }
        let consecutive = self.consecutive.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if self.should_trip(consecutive, now) {
            self.trip(|w| w.state == CLOSED);
        }
    }

    fn should_trip(&self, consecutive: u32, now: u64) -> bool {
        let cfg = &self.cfg;
        if cfg.consecutive_failures > 0 && consecutive >= cfg.consecutive_failures {
            return true;
        }
        let (successes, failures) = self.window.totals(now);
        let total = successes + failures;
        cfg.failure_rate_percent > 0
            && total >= u64::from(cfg.min_requests.max(1))
            && failures * 100 >= u64::from(cfg.failure_rate_percent) * total
    }

    /// Opens the breaker if the current word satisfies `from`. `opened_at` is written first so
    /// that whoever sees the open state also sees when it opened.
    fn trip(&self, from: impl Fn(Word) -> bool) {
        let current = Word::unpack(self.word.load(Ordering::Acquire));
        if !from(current) {
            return;
        }
        self.opened_at.store(self.now(), Ordering::Release);
        let update = |w: u64| Some(Word::unpack(w)).filter(|&w| from(w)).map(|w| w.next(OPEN).pack());
        if self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, update).is_ok() {
            tracing::warn!(open_for_ms = self.cfg.open_for.as_millis() as u64, "upstream circuit breaker opened");
        }
    }

    /// Counts a successful trial; the last one needed closes the breaker with fresh counters.
    fn trial_succeeded(&self, generation: u64) {
        let trials = self.trials();
        let update = |w: u64| {
            let w = Word::unpack(w);
            if w.state != HALF_OPEN || w.generation != generation {
                return None;
            }
            let succeeded = w.succeeded + 1;
            Some(if succeeded >= trials { w.next(CLOSED) } else { Word { succeeded, ..w } }.pack())
        };
        let Ok(previous) = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, update) else { return };
        if Word::unpack(previous).succeeded + 1 >= trials {
            self.consecutive.store(0, Ordering::Relaxed);
            self.window.reset();
            tracing::info!("upstream circuit breaker closed");
        }
    }
}

impl Permit<'_> {
    /// A permit that records nothing (for upstreams without a breaker).
    pub(crate) fn unguarded() -> Self {
        Self { breaker: None, trial: None, recorded: true }
    }

    /// Whether this is a half-open trial request.
    pub fn is_trial(&self) -> bool {
        self.trial.is_some()
    }

    /// Records the request's result (`success == false` for connect failures, timeouts and
    /// 5xx responses).
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        if let Some(breaker) = self.breaker {
            breaker.finish(self.trial, success);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let (false, Some(breaker)) = (self.recorded, self.breaker) {
            breaker.finish(self.trial, false);
        }
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
