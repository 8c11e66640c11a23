//! Per-node counting in process memory.
//!
//! One [`Cell`] per key in a sharded [`DashMap`]: a lookup takes the shard's read lock (shared
//! with every other reader of that shard; only the first request of a new key and the sweep
//! take it for writing), and the counting itself is lock-free — a compare-and-swap on one
//! `AtomicU64` per rate window (its theoretical arrival time, TAT) and per quota (window id
//! and count packed in one word, so a new calendar window replaces the old count atomically).
//! A request that passes one window but fails another gives back what it took, so a refused
//! request costs nothing (under contention the give-back is approximate by at most one cost).

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use smallvec::SmallVec;

use super::calendar;
use super::decision::{self, Backend, Decision, Outcome};
use super::plan::{PlanLimits, QuotaPeriod, RateWindow};
use super::redis::Fleet;
use super::{LimitKey, Now};

/// Bits of a packed quota word holding the count; the upper bits hold the window id (days
/// since the Unix epoch of the window start). Counts saturate at about 1.1 × 10¹².
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const SECS_PER_DAY: i64 = 86_400;

/// The counters of one key.
#[derive(Debug, Default)]
pub(crate) struct Cell {
    /// TAT per rate window (second, minute, hour), in the limiter's monotonic nanoseconds.
    tats: [AtomicU64; 3],
    /// Packed (window id, count) per quota (day, month).
    quotas: [AtomicU64; 2],
    /// Units admitted here that the shared counter has not been told of (Redis fallback).
    owed: AtomicU64,
}

/// Counters of every key seen by this node, hashed with foldhash: a fraction of SipHash's
/// cost, and seeded per process, so clients (anonymous callers are keyed by their address)
/// cannot aim at one bucket.
#[derive(Debug, Default)]
pub struct LocalCounter {
    cells: DashMap<LimitKey, Cell, foldhash::fast::RandomState>,
    /// Units owed over all keys: while it is 0 (Redis healthy), taking a key's debt looks
    /// nothing up.
    owed: AtomicU64,
}

type Outcomes = SmallVec<[Outcome; 5]>;

impl LocalCounter {
    /// Counts `cost` units for `key` under `plan` at `now`.
    pub fn check(&self, key: &LimitKey, plan: &PlanLimits, cost: u32, now: Now, backend: Backend) -> Decision {
        let outcomes = self.with_cell(key, |cell| take(cell, plan, u64::from(cost), now));
        Decision::tightest(&outcomes, backend)
    }

    /// Runs `f` on `key`'s counters, made fresh on first use (a shared lock on the shard for
    /// a known key; the write lock only for a new one).
    fn with_cell<T>(&self, key: &LimitKey, f: impl FnOnce(&Cell) -> T) -> T {
        match self.cells.get(key) {
            Some(cell) => f(&cell),
            None => f(&self.cells.entry(key.clone()).or_default()),
        }
    }

    /// Sets this node's share of `plan` (split `nodes` ways) for `key` from the fleet's
    /// counters as Redis holds them: each rate window keeps ⌊its units available fleet-wide ÷
    /// nodes⌋ (at most the share's), each quota ⌊what is left ÷ nodes⌋. So a node that goes
    /// into an outage (or a slow answer) holds its share of what the fleet has left — no
    /// more, whichever node spent it.
    pub(crate) fn sync(&self, key: &LimitKey, plan: &PlanLimits, nodes: u32, fleet: &Fleet, now: Now) {
        let share = plan.share(nodes);
        let n = u64::from(nodes.max(1));
        self.with_cell(key, |cell| {
            for (whole, part) in plan.rate_windows().zip(share.rate_windows()) {
                let Some(ahead) = fleet.ahead_ns[whole.slot] else { continue };
                let available = whole.tolerance_ns.saturating_sub(ahead) / whole.interval_ns;
                let at_once = part.tolerance_ns / part.interval_ns;
                let mine = (available / n).min(at_once);
                let tat = now.mono_ns.saturating_add((at_once - mine).saturating_mul(part.interval_ns));
                cell.tats[part.slot].store(tat, Ordering::Release);
            }
            for ((period, limit), (_, part)) in plan.quotas().zip(share.quotas()) {
                let (Some(used), Some((id, _))) = (fleet.used[period as usize], window_id(period, now)) else {
                    continue;
                };
                let mine = limit.saturating_sub(used) / n;
                let used_here = part.saturating_sub(mine).min(COUNT_MASK);
                cell.quotas[period as usize].store((id << COUNT_BITS) | used_here, Ordering::Release);
            }
        });
    }

    /// Notes `cost` units this node admitted on its own for `key` (while Redis was away).
    pub(crate) fn owe(&self, key: &LimitKey, cost: u64) {
        if let Some(cell) = self.cells.get(key) {
            // The total first, so a concurrent take never takes more than it holds.
            self.owed.fetch_add(cost, Ordering::AcqRel);
            cell.owed.fetch_add(cost, Ordering::AcqRel);
        }
    }

    /// Takes the units owed for `key` (see [`Self::owe`]).
    pub(crate) fn take_owed(&self, key: &LimitKey) -> u64 {
        if self.owed.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let taken = self.cells.get(key).map_or(0, |cell| {
            if cell.owed.load(Ordering::Relaxed) == 0 { 0 } else { cell.owed.swap(0, Ordering::AcqRel) }
        });
        if taken > 0 {
            self.owed.fetch_sub(taken, Ordering::AcqRel);
        }
        taken
    }

    /// Drops keys whose counters equal a fresh key's: every TAT in the past and no count in
    /// the current quota windows. Exact, so memory stays bounded by the keys active within the
    /// longest window. Returns how many keys were dropped.
    pub fn sweep(&self, now: Now) -> usize {
        let ids = [QuotaPeriod::Day, QuotaPeriod::Month].map(|p| window_id(p, now).map(|(id, _)| id));
        let before = self.cells.len();
        self.cells.retain(|_, cell| {
            if cell.owed.load(Ordering::Relaxed) > 0 {
                return true;
            }
            let rate_live = cell.tats.iter().any(|t| t.load(Ordering::Relaxed) > now.mono_ns);
            let quota_live = cell.quotas.iter().zip(ids).any(|(q, id)| {
                let v = q.load(Ordering::Relaxed);
                Some(v >> COUNT_BITS) == id && v & COUNT_MASK > 0
            });
            rate_live || quota_live
        });
        before.saturating_sub(self.cells.len())
    }

    /// The count of `key` in the current `period` window at `utc`, and that window's start
    /// (Unix seconds).
    pub fn quota_used(&self, key: &LimitKey, period: QuotaPeriod, utc: time::OffsetDateTime) -> Option<(i64, u64)> {
        let (start, _) = calendar::window(period, utc)?;
        let id = u64::try_from(start.div_euclid(SECS_PER_DAY)).ok()?;
        let used = self.cells.get(key).map_or(0, |cell| {
            let v = cell.quotas[period as usize].load(Ordering::Acquire);
            if v >> COUNT_BITS == id { v & COUNT_MASK } else { 0 }
        });
        Some((start, used))
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Takes `cost` from every window and quota of `cell`, all or nothing.
fn take(cell: &Cell, plan: &PlanLimits, cost: u64, now: Now) -> Outcomes {
    let mut outs = Outcomes::new();
    let mut taken_q: SmallVec<[(usize, u64); 2]> = SmallVec::new();
    let mut taken_r: SmallVec<[RateWindow; 3]> = SmallVec::new();
    for (period, limit) in plan.quotas() {
        let slot = period as usize;
        let Some((id, left)) = window_id(period, now) else { continue };
        let o = take_quota(period, &cell.quotas[slot], id, cost, limit, left);
        if o.allowed {
            taken_q.push((slot, id));
        }
        outs.push(o);
    }
    for w in plan.rate_windows() {
        let o = take_rate(&cell.tats[w.slot], now.mono_ns, cost, &w);
        if o.allowed {
            taken_r.push(w);
        }
        outs.push(o);
    }
    if outs.iter().any(|o| !o.allowed) {
        for w in taken_r {
            let _ = cell.tats[w.slot].fetch_sub(cost.saturating_mul(w.interval_ns), Ordering::AcqRel);
        }
        for (slot, id) in taken_q {
            give_back_quota(&cell.quotas[slot], id, cost);
        }
    }
    outs
}

/// The current window's id (days since the epoch of its start) and nanoseconds left in it.
fn window_id(period: QuotaPeriod, now: Now) -> Option<(u64, u64)> {
    let (start, left) = calendar::window(period, now.utc)?;
    Some((u64::try_from(start.div_euclid(SECS_PER_DAY)).ok()?, left))
}

fn take_rate(tat: &AtomicU64, now: u64, cost: u64, w: &RateWindow) -> Outcome {
    let mut cur = tat.load(Ordering::Acquire);
    loop {
        let (out, new_tat) = decision::gcra(cur, now, cost, w);
        if !out.allowed {
            return out;
        }
        match tat.compare_exchange_weak(cur, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return out,
            Err(actual) => cur = actual,
        }
    }
}

fn take_quota(period: QuotaPeriod, word: &AtomicU64, id: u64, cost: u64, limit: u64, left_ns: u64) -> Outcome {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        let used = if cur >> COUNT_BITS == id { cur & COUNT_MASK } else { 0 };
        let out = decision::quota(period, used, cost, limit, left_ns);
        if !out.allowed {
            return out;
        }
        let next = (id << COUNT_BITS) | (used + cost).min(COUNT_MASK);
        match word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return out,
            Err(actual) => cur = actual,
        }
    }
}

fn give_back_quota(word: &AtomicU64, id: u64, cost: u64) {
    let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
        (cur >> COUNT_BITS == id).then(|| (id << COUNT_BITS) | (cur & COUNT_MASK).saturating_sub(cost))
    });
}
