//! Load-balancing structures, built once per config and read lock-free per request: a tier is
//! the set of primary (or backup) targets with what its policy needs — a smooth weighted
//! round-robin schedule walked by an atomic cursor (a slot whose target is unavailable is
//! replaced by a weighted random choice), the member list for power-of-two-choices, or a hash
//! ring of weighted virtual nodes searched by binary search.

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::config::LbPolicy;
use super::hash::stable_hash;
use super::target::TargetState;

/// The round-robin schedule never exceeds this many slots; larger weight sums are scaled down
/// (keeping every weighted target at least one slot), which bounds memory and the worst-case
/// walk when most targets are unavailable.
const MAX_SCHEDULE: u64 = 8192;
/// Virtual nodes given to the lightest target of a tier; others get proportionally more.
const MIN_POINTS: u64 = 160;
/// Cap on virtual nodes per target: weight ratios above 100:1 are not honoured exactly.
const MAX_POINTS: u64 = MIN_POINTS * 100;

/// The targets of one tier (primaries or backups) compiled for the policy.
#[derive(Debug, Default)]
pub(crate) struct Tier {
    /// Indices of the tier's targets with a weight above 0.
    members: Vec<usize>,
    /// Smooth WRR order of target indices (round robin only).
    schedule: Vec<u32>,
    /// Sorted `(point, target index)` pairs (consistent hashing only).
    ring: Vec<(u64, u32)>,
    cursor: AtomicUsize,
}

impl Tier {
    /// Compiles the targets with `backup == backup` for `policy`.
    pub(crate) fn build(targets: &[TargetState], backup: bool, policy: &LbPolicy) -> Self {
        let members: Vec<usize> =
            targets.iter().enumerate().filter(|(_, t)| t.backup == backup && t.weight > 0).map(|(i, _)| i).collect();
        let mut tier = Self::default();
        match policy {
            LbPolicy::RoundRobin => tier.schedule = smooth_schedule(targets, &members),
            LbPolicy::LeastRequests => {}
            LbPolicy::ConsistentHash(_) => tier.ring = hash_ring(targets, &members),
        }
        tier.members = members;
        tier
    }

    /// Picks a target for which `ok` holds, by `policy`.
    pub(crate) fn pick(
        &self,
        targets: &[TargetState],
        policy: &LbPolicy,
        hash: Option<u64>,
        ok: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match policy {
            LbPolicy::RoundRobin => self.round_robin(targets, ok),
            LbPolicy::LeastRequests => self.least_requests(targets, ok),
            // Without a key, a random point spreads requests in proportion to weight.
            LbPolicy::ConsistentHash(_) => self.on_ring(hash.unwrap_or_else(|| fastrand::u64(..)), ok),
        }
    }

    /// The next slot of the schedule. When its target is not ok, a weighted random choice
    /// among the ok members: walking on to the next slot would hand the skipped target's whole
    /// share to its neighbour in the schedule instead of spreading it by weight.
    fn round_robin(&self, targets: &[TargetState], ok: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.schedule.len().max(1);
        let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
        match self.schedule.get(slot) {
            Some(&i) if ok(i as usize) => Some(i as usize),
            _ => self.weighted_random(targets, ok),
        }
    }

    /// A random ok member, with probability proportional to its weight.
    fn weighted_random(&self, targets: &[TargetState], ok: impl Fn(usize) -> bool) -> Option<usize> {
        let weight = |i: usize| targets.get(i).map_or(0, |t| u64::from(t.weight));
        let total: u64 = self.members.iter().filter(|&&i| ok(i)).map(|&i| weight(i)).sum();
        let mut point = fastrand::u64(..total.max(1));
        let mut candidates = self.members.iter().copied().filter(|&i| ok(i));
        // A member may turn unavailable between the two passes; then take any that is ok.
        let chosen = candidates.find(|&i| match point.checked_sub(weight(i)) {
            Some(rest) => {
                point = rest;
                false
            }
            None => true,
        });
        chosen.or_else(|| self.members.iter().copied().find(|&i| ok(i)))
    }

    /// Power of two choices: of two distinct random members, the one with fewer requests in
    /// flight per unit of weight. Falls back to a scan when neither is ok.
    fn least_requests(&self, targets: &[TargetState], ok: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.members.len();
        if n < 2 {
            return self.members.first().copied().filter(|&i| ok(i));
        }
        let first = fastrand::usize(..n);
        let mut second = fastrand::usize(..n - 1);
        if second >= first {
            second += 1;
        }
        let (a, b) = (self.members.get(first).copied()?, self.members.get(second).copied()?);
        match (ok(a), ok(b)) {
            (true, true) if load_cmp(targets, b, a) == CmpOrdering::Less => Some(b),
            (true, _) => Some(a),
            (false, true) => Some(b),
            (false, false) => self.members.iter().copied().filter(|&i| ok(i)).min_by(|&x, &y| load_cmp(targets, x, y)),
        }
    }

    /// The first ok target at or after `hash` on the ring: when a target is unavailable only
    /// its own keys move, to the next targets clockwise.
    fn on_ring(&self, hash: u64, ok: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.ring.len();
        let start = self.ring.partition_point(|&(point, _)| point < hash);
        (0..len).filter_map(|k| self.ring.get((start + k) % len)).map(|&(_, i)| i as usize).find(|&i| ok(i))
    }
}

/// Compares in-flight requests per weight without dividing: `a.in_flight × b.weight` against
/// `b.in_flight × a.weight`.
fn load_cmp(targets: &[TargetState], a: usize, b: usize) -> CmpOrdering {
    let load = |i: usize| targets.get(i).map_or((u128::MAX, 1), |t| (t.in_flight() as u128, u128::from(t.weight)));
    let ((fa, wa), (fb, wb)) = (load(a), load(b));
    fa.saturating_mul(wb).cmp(&fb.saturating_mul(wa))
}

/// Member weights divided by their gcd and scaled to fit [`MAX_SCHEDULE`].
fn schedule_weights(targets: &[TargetState], members: &[usize]) -> Vec<u64> {
    let weights: Vec<u64> = members.iter().filter_map(|&i| targets.get(i)).map(|t| u64::from(t.weight)).collect();
    let divisor = weights.iter().copied().reduce(gcd).unwrap_or(1).max(1);
    let reduced: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
    let total: u64 = reduced.iter().sum();
    if total <= MAX_SCHEDULE {
        return reduced;
    }
    reduced.iter().map(|w| (w * MAX_SCHEDULE / total).max(1)).collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// nginx's smooth weighted round robin, unrolled into one cycle: each step every member gains
/// its weight, the richest is chosen and pays the total. Weights 5,1,1 give `a a b a c a a`.
fn smooth_schedule(targets: &[TargetState], members: &[usize]) -> Vec<u32> {
    let weights = schedule_weights(targets, members);
    let total: u64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (c, &w) in current.iter_mut().zip(&weights) {
            *c += w as i64;
        }
        // Ties go to the earlier member, as in nginx.
        let best = (0..current.len()).rev().max_by_key(|&k| current.get(k).copied().unwrap_or(i64::MIN));
        let (Some(best), Some(&member)) = (best, best.and_then(|b| members.get(b))) else { break };
        if let Some(c) = current.get_mut(best) {
            *c -= total as i64;
        }
        schedule.push(member as u32);
    }
    schedule
}

/// Virtual nodes at stable points derived from each target's id (`hash(id, n)` for the n-th),
/// so a target's points do not depend on the others: removing one leaves everyone else's keys
/// where they were. The lightest target gets [`MIN_POINTS`]; only a change of that lightest
/// weight changes everyone's point count, and then the first points stay where they were.
fn hash_ring(targets: &[TargetState], members: &[usize]) -> Vec<(u64, u32)> {
    let min_weight = members.iter().filter_map(|&i| targets.get(i)).map(|t| u64::from(t.weight)).min().unwrap_or(1);
    let per_weight = MIN_POINTS.div_ceil(min_weight.max(1));
    let mut ring = Vec::new();
    for &i in members {
        let Some(t) = targets.get(i) else { continue };
        let points = (u64::from(t.weight) * per_weight).min(MAX_POINTS);
        ring.extend((0..points).map(|p| (stable_hash(&[t.id.as_bytes(), &p.to_le_bytes()]), i as u32)));
    }
    ring.sort_unstable();
    ring
}

#[cfg(test)]
mod tests {
    use super::super::config::TargetConfig;
    use super::*;

    fn targets(weights: &[u32]) -> Vec<TargetState> {
        let cfg = |(k, &weight): (usize, &u32)| TargetConfig { weight, ..TargetConfig::new(format!("h{k}"), 80) };
        weights.iter().enumerate().map(|t| TargetState::new(&cfg(t), None)).collect()
    }

    #[test]
    fn smooth_schedule_matches_nginx() {
        let ts = targets(&[5, 1, 1]);
        assert_eq!(smooth_schedule(&ts, &[0, 1, 2]), vec![0, 0, 1, 0, 2, 0, 0]);
        // Weights are reduced by their gcd: 300/200/100 is one cycle of 6.
        let ts = targets(&[300, 200, 100]);
        assert_eq!(smooth_schedule(&ts, &[0, 1, 2]), vec![0, 1, 0, 2, 1, 0]);
    }

    #[test]
    fn huge_weights_are_scaled_to_a_bounded_schedule() {
        let ts = targets(&[u32::MAX, 1]);
        let schedule = smooth_schedule(&ts, &[0, 1]);
        assert!(schedule.len() as u64 <= MAX_SCHEDULE + 1);
        assert_eq!(schedule.iter().filter(|&&i| i == 1).count(), 1);
    }

    #[test]
    fn ring_points_follow_weight_and_the_lightest_target() {
        let ts = targets(&[1, 3]);
        let ring = hash_ring(&ts, &[0, 1]);
        let count = |t: u32| ring.iter().filter(|&&(_, i)| i == t).count() as u64;
        assert_eq!((count(0), count(1)), (MIN_POINTS, 3 * MIN_POINTS));
        assert!(ring.windows(2).all(|w| w[0] <= w[1]));
    }
}
