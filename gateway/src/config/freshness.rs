//! How current the node knows its configuration to be. The PostgreSQL follower confirms
//! after every successful sync with the change log; with `--max-config-staleness` set, a
//! watchdog task marks the node stale once no confirmation came for that long, and the
//! request path (credentialed calls only) reads that mark: one relaxed atomic load, no clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// Longest pause between two watchdog checks (and so the lag of the stale mark).
const MAX_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Shortest pause between two watchdog checks.
const MIN_CHECK_EVERY: Duration = Duration::from_millis(50);

/// The node's confirmation clock and its stale mark.
#[derive(Debug)]
pub struct Freshness {
    /// `None`: never stale (the default; the node trusts its configuration indefinitely).
    max_staleness: Option<Duration>,
    base: Instant,
    /// Milliseconds after `base` of the last confirmation (negative: before the process).
    confirmed_ms: AtomicI64,
    stale: AtomicBool,
}

impl Freshness {
    /// A clock that counts from now (a node that never syncs is as old as its process).
    pub fn new(max_staleness: Option<Duration>) -> Self {
        Self { max_staleness, base: Instant::now(), confirmed_ms: AtomicI64::new(0), stale: AtomicBool::new(false) }
    }

    /// The bound, if any.
    pub fn max_staleness(&self) -> Option<Duration> {
        self.max_staleness
    }

    /// The configuration was just confirmed current with the control plane.
    pub fn confirm(&self) {
        self.confirmed_ms.store(self.millis_since_base(Instant::now()), Ordering::Relaxed);
    }

    /// The configuration in use was last known current `age` ago (a copy read from disk).
    pub fn confirmed_ago(&self, age: Duration) {
        let at = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        self.confirmed_ms.store(self.millis_since_base(Instant::now()).saturating_sub(at), Ordering::Relaxed);
    }

    /// Time since the last confirmation.
    pub fn since_confirmed(&self) -> Duration {
        let now = self.millis_since_base(Instant::now());
        Duration::from_millis(u64::try_from(now - self.confirmed_ms.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// Past the bound: credentialed calls are refused. One relaxed load.
    #[inline]
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// How often the follower should confirm so that a healthy node never looks stale:
    /// a quarter of the bound, at most `default`.
    pub fn confirm_every(&self, default: Duration) -> Duration {
        self.max_staleness.map_or(default, |max| (max / 4).clamp(MIN_CHECK_EVERY, default))
    }

    /// Re-evaluates the stale mark; logs when it changes.
    pub(crate) fn check(&self) {
        let Some(max) = self.max_staleness else { return };
        let since = self.since_confirmed();
        let stale = since > max;
        if self.stale.swap(stale, Ordering::Relaxed) != stale {
            let (since_ms, max_ms) = (since.as_millis() as u64, max.as_millis() as u64);
            if stale {
                tracing::warn!(
                    since_ms,
                    max_ms,
                    "configuration not confirmed with PostgreSQL within --max-config-staleness; refusing credentialed calls"
                );
            } else {
                tracing::info!(since_ms, "configuration confirmed current again; credentialed calls accepted");
            }
        }
    }

    /// Starts the watchdog (nothing to watch without a bound); it ends when aborted.
    pub fn spawn_watchdog(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let max = self.max_staleness?;
        let every = (max / 10).clamp(MIN_CHECK_EVERY, MAX_CHECK_EVERY);
        let me = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.check();
            }
        }))
    }

    fn millis_since_base(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.base).as_millis()).unwrap_or(i64::MAX)
    }
}

impl Default for Freshness {
    fn default() -> Self {
        Self::new(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_bound_the_node_is_never_stale() {
        let f = Freshness::new(None);
        f.confirmed_ago(Duration::from_secs(86_400));
        f.check();
        assert!(!f.is_stale());
        assert_eq!(f.confirm_every(Duration::from_secs(5)), Duration::from_secs(5));
    }

    #[test]
    fn past_the_bound_the_node_is_stale_until_confirmed() {
        let f = Freshness::new(Some(Duration::from_secs(30)));
        f.check();
        assert!(!f.is_stale(), "fresh at start");
        f.confirmed_ago(Duration::from_secs(31));
        assert!(f.since_confirmed() >= Duration::from_secs(31));
        assert!(!f.is_stale(), "the mark changes only when checked");
        f.check();
        assert!(f.is_stale());
        f.confirm();
        f.check();
        assert!(!f.is_stale());
        assert_eq!(f.confirm_every(Duration::from_secs(5)), Duration::from_secs(5));
        assert_eq!(
            Freshness::new(Some(Duration::from_secs(2))).confirm_every(Duration::from_secs(5)),
            Duration::from_millis(500)
        );
    }
}
