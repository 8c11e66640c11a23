//! Lock-free time keeping for the upstream layer: a monotonic clock read as nanoseconds since
//! an epoch (tokio's clock, so tests can pause and advance it), and a rolling window of pairs
//! of counters used by the circuit breaker (successes, failures) and the retry budget
//! (requests, retries).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Nanoseconds from `epoch` to now (0 if the clock is before the epoch).
pub(crate) fn nanos_since(epoch: Instant) -> u64 {
    to_nanos(Instant::now().saturating_duration_since(epoch))
}

/// A duration in nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Buckets per window: the window slides in steps of a tenth of its length.
const BUCKETS: u64 = 10;
/// Each bucket is one `AtomicU64`: a 16-bit tag (the bucket's period number, modulo 2^16)
/// and two saturating 24-bit counts. One word per bucket means updates are a single CAS and a
/// bucket is never seen half reset.
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = 0xFFFF;

/// Two counters summed over a rolling window, lock-free. A bucket whose tag collides after
/// 2^16 periods of silence would be misread; with 1 s buckets that is 18 hours of no traffic
/// at exactly the wrong moment, and any update rewrites it.
#[derive(Debug)]
pub(crate) struct RollingCounter {
    buckets: [AtomicU64; BUCKETS as usize],
    bucket_nanos: u64,
}

impl RollingCounter {
    /// A counter over `window` (at least 10 ns).
    pub(crate) fn new(window: Duration) -> Self {
        Self { buckets: Default::default(), bucket_nanos: (to_nanos(window) / BUCKETS).max(1) }
    }

    /// Adds `a` and `b` to the bucket of `now` (nanoseconds since the owner's epoch).
    pub(crate) fn add(&self, now: u64, a: u64, b: u64) {
        let period = now / self.bucket_nanos;
        let tag = period & TAG_MASK;
        let update = |word: u64| {
            let (t, ca, cb) = unpack(word);
            let (ca, cb) = if t == tag { (ca, cb) } else { (0, 0) };
            Some(pack(tag, ca.saturating_add(a), cb.saturating_add(b)))
        };
        // The closure always returns Some, so the update cannot fail.
        let _ = self.bucket(period).fetch_update(Ordering::Relaxed, Ordering::Relaxed, update);
    }

    /// Sums of both counters over the window ending at `now`.
    pub(crate) fn totals(&self, now: u64) -> (u64, u64) {
        let current = now / self.bucket_nanos;
        (0..BUCKETS).filter_map(|k| current.checked_sub(k)).fold((0, 0), |(a, b), period| {
            let (tag, ca, cb) = unpack(self.bucket(period).load(Ordering::Relaxed));
            if tag == period & TAG_MASK { (a + ca, b + cb) } else { (a, b) }
        })
    }

    /// Forgets everything counted so far.
    pub(crate) fn reset(&self) {
        self.buckets.iter().for_each(|b| b.store(0, Ordering::Relaxed));
    }

    fn bucket(&self, period: u64) -> &AtomicU64 {
        // `period % BUCKETS` is always a valid index.
        &self.buckets[(period % BUCKETS) as usize]
    }
}

fn pack(tag: u64, a: u64, b: u64) -> u64 {
    (tag << (2 * COUNT_BITS)) | (a.min(COUNT_MAX) << COUNT_BITS) | b.min(COUNT_MAX)
}

fn unpack(word: u64) -> (u64, u64, u64) {
    (word >> (2 * COUNT_BITS), (word >> COUNT_BITS) & COUNT_MAX, word & COUNT_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn sums_within_the_window_and_forgets_older_buckets() {
        let c = RollingCounter::new(Duration::from_secs(10));
        c.add(0, 1, 2);
        c.add(5 * SEC, 3, 0);
        assert_eq!(c.totals(9 * SEC), (4, 2));
        // At 10 s the bucket of second 0 has slid out; second 5 is still in.
        assert_eq!(c.totals(10 * SEC), (3, 0));
        c.add(10 * SEC, 0, 7);
        assert_eq!(c.totals(10 * SEC), (3, 7));
        assert_eq!(c.totals(100 * SEC), (0, 0));
        c.reset();
        assert_eq!(c.totals(10 * SEC), (0, 0));
    }

    #[test]
    fn counts_saturate_instead_of_spilling() {
        let c = RollingCounter::new(Duration::from_secs(10));
        c.add(0, COUNT_MAX, 0);
        c.add(0, 5, 1);
        assert_eq!(c.totals(0), (COUNT_MAX, 1));
    }
}
