//! The latency histogram of a usage series: fixed log-scale buckets over microseconds, the
//! same on every node and in the database, so histograms merge by adding counts bucket by
//! bucket (across workers, nodes, minutes, hours) and percentiles are read from the merged
//! counts, never averaged.
//!
//! Buckets: below 32 µs one per microsecond; above, 16 per power of two. Bucket `i ≥ 16`
//! with `o = i / 16 + 3`, `s = i % 16` covers `[(16 + s) << (o − 4), (17 + s) << (o − 4))`
//! µs, so it is at most 1/16 of its lower bound wide, and its midpoint is within 1/32
//! (3.2 %) of any latency in it. Indexes stay below 1,000 for any `u64` latency.
//!
//! A series' histogram is sparse (most requests of one consumer on one route fall into a
//! few neighbouring buckets): sorted bucket indexes and their counts, eight inline.

use smallvec::SmallVec;

/// Sub-buckets per power of two (a power of two itself).
const SUB: u64 = 16;
const SUB_BITS: u32 = SUB.trailing_zeros();

/// The bucket of a latency of `us` microseconds.
#[inline]
pub fn bucket_of(us: u64) -> u16 {
    if us < 2 * SUB {
        return us as u16;
    }
    let octave = 63 - us.leading_zeros();
    let sub = (us >> (octave - SUB_BITS)) & (SUB - 1);
    ((u64::from(octave) - u64::from(SUB_BITS) + 1) * SUB + sub) as u16
}

/// The microseconds bucket `i` covers: `[low, high)`.
pub fn bucket_range(i: u16) -> (u64, u64) {
    let i = u64::from(i);
    if i < 2 * SUB {
        return (i, i + 1);
    }
    let octave = i / SUB + u64::from(SUB_BITS) - 1;
    let shift = (octave - u64::from(SUB_BITS)).min(63);
    let low = (SUB + i % SUB).checked_shl(shift as u32).unwrap_or(u64::MAX);
    let width = 1u64.checked_shl(shift as u32).unwrap_or(u64::MAX);
    (low, low.saturating_add(width))
}

/// The value reported for latencies in bucket `i`: its midpoint (its only value below 32 µs).
pub fn bucket_value(i: u16) -> f64 {
    let (low, high) = bucket_range(i);
    if high - low == 1 { low as f64 } else { (low as f64 + high as f64) / 2.0 }
}

/// Counts per bucket, sorted by bucket, without empty buckets: the bucket indexes in one
/// array (a dense one to search) and their counts in another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    idx: SmallVec<[u16; 8]>,
    counts: SmallVec<[u64; 8]>,
}

impl Histogram {
    /// Counts one latency.
    #[inline]
    pub fn record(&mut self, us: u64) {
        self.add(bucket_of(us), 1);
    }

    /// Adds `n` to bucket `i`.
    #[inline]
    pub fn add(&mut self, i: u16, n: u64) {
        if n == 0 {
            return;
        }
        match self.idx.binary_search(&i) {
            Ok(at) => {
                if let Some(c) = self.counts.get_mut(at) {
                    *c = c.saturating_add(n);
                }
            }
            Err(at) => {
                self.idx.insert(at, i);
                self.counts.insert(at, n);
            }
        }
    }

    /// The (bucket, count) pairs, by bucket.
    fn buckets(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.idx.iter().copied().zip(self.counts.iter().copied())
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (i, n) in other.buckets() {
            self.add(i, n);
        }
    }

    /// Number of latencies counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0u64, |acc, n| acc.saturating_add(*n))
    }

    /// The `q`-quantile (0 < q ≤ 1) in microseconds: the value of the bucket holding the
    /// ⌈q·n⌉-th smallest latency. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for (i, n) in self.buckets() {
            seen = seen.saturating_add(n);
            if seen >= rank {
                return Some(bucket_value(i));
            }
        }
        self.idx.last().map(|i| bucket_value(*i))
    }

    /// The flat `[i0, n0, i1, n1, …]` form stored in PostgreSQL.
    pub fn to_pairs(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.idx.len() * 2);
        for (i, n) in self.buckets() {
            out.push(i64::from(i));
            out.push(i64::try_from(n).unwrap_or(i64::MAX));
        }
        out
    }

    /// Adds the counts of a flat pair array (out-of-range or negative entries are ignored).
    pub fn add_pairs(&mut self, pairs: &[i64]) {
        for pair in pairs.chunks_exact(2) {
            if let (Ok(i), Ok(n)) = (u16::try_from(pair[0]), u64::try_from(pair[1])) {
                self.add(i, n);
            }
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut prev_high = 0;
        for i in 0..975u16 {
            let (low, high) = bucket_range(i);
            assert_eq!(low, prev_high, "bucket {i} starts where {} ends", i.saturating_sub(1));
            assert!(high > low);
            assert!((high - low) as f64 <= (low as f64 / 16.0).max(1.0), "bucket {i} is too wide");
            prev_high = high;
        }
    }

    #[test]
    fn every_latency_falls_in_its_bucket_and_near_its_value() {
        let mut us = 0u64;
        while us < 1 << 40 {
            let i = bucket_of(us);
            let (low, high) = bucket_range(i);
            assert!(low <= us && us < high, "{us} µs in bucket {i} = [{low}, {high})");
            let value = bucket_value(i);
            assert!((value - us as f64).abs() <= (us as f64 / 32.0).max(0.5) + 1e-9, "{us} µs reported as {value}");
            us = us + 1 + us / 7;
        }
        assert!(bucket_of(u64::MAX) < 1000);
        let (low, high) = bucket_range(bucket_of(u64::MAX));
        assert!(low < high && high == u64::MAX, "the last bucket saturates: [{low}, {high})");
    }

    #[test]
    fn quantiles_are_within_one_bucket_of_the_truth() {
        let mut latencies: Vec<u64> = (0..10_000u64).map(|k| 200 + (k * 7919) % 50_000).collect();
        let mut h = Histogram::default();
        for us in &latencies {
            h.record(*us);
        }
        latencies.sort_unstable();
        for q in [0.5, 0.95, 0.99] {
            let truth = latencies[(q * latencies.len() as f64).ceil() as usize - 1];
            let got = h.quantile(q).unwrap_or_default();
            let (low, high) = bucket_range(bucket_of(truth));
            assert!(got >= low as f64 && got < high as f64, "p{q}: {got} vs true {truth}");
        }
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Histogram::default(), Histogram::default(), Histogram::default());
        for us in [5, 90, 1_000, 1_001, 70_000] {
            a.record(us);
            all.record(us);
        }
        for us in [90, 3_000_000, 5] {
            b.record(us);
            all.record(us);
        }
        a.merge(&b);
        assert_eq!(a, all);
        let mut round = Histogram::default();
        round.add_pairs(&all.to_pairs());
        assert_eq!(round, all);
        round.add_pairs(&[-1, 5, 3, -2, 7]);
        assert_eq!(round, all, "malformed pairs are ignored");
    }
}
