//! Local token reservation for Redis plans: one script call takes a batch of units for a key,
//! and the node spends them locally until they run out, so most decisions skip the Redis
//! round trip.
//!
//! The error is bounded and one-sided: every unit spent was first counted in Redis, so the
//! nodes together never admit more than the plan allows; units held by one node are missing
//! to the others, so up to `nodes × batch` fewer requests may pass. The batch is capped at a
//! quarter of this node's share of the tightest limit, and near the limit a refused batch is
//! retried as a single exact request.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use dashmap::DashMap;

use std::time::Duration;

use super::LimitKey;
use super::decision::{Backend, Decision, HeaderStyle};
use super::plan::PlanLimits;
use super::plan::Window;

/// Units reserved per key on this node.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    map: DashMap<LimitKey, Lease>,
}

#[derive(Debug, Default)]
struct Lease {
    tokens: AtomicU64,
    /// The window, limit, remaining count and reset of the last shared decision, for the headers.
    window: AtomicU8,
    limit: AtomicU64,
    remaining: AtomicU64,
    reset_ns: AtomicU64,
    /// When units were last reserved (the limiter's monotonic nanoseconds).
    stored_ns: AtomicU64,
}

impl Leases {
    /// Spends `cost` reserved units of `key`, if it holds that many.
    pub(crate) fn spend(&self, key: &LimitKey, cost: u64) -> Option<Decision> {
        let lease = self.map.get(key)?;
        let before = lease.tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(cost)).ok()?;
        Some(Decision {
            allowed: true,
            limit: lease.limit.load(Ordering::Relaxed),
            remaining: lease.remaining.load(Ordering::Relaxed).saturating_add(before - cost),
            reset: Duration::from_nanos(lease.reset_ns.load(Ordering::Relaxed)),
            retry_after: None,
            denied_by: None,
            backend: Backend::Redis,
            window: Window::ALL[usize::from(lease.window.load(Ordering::Relaxed))],
            policy: None,
            style: HeaderStyle::Ietf,
        })
    }

    /// Keeps `extra` units reserved by a shared decision `d` for later requests of `key`.
    pub(crate) fn store(&self, key: &LimitKey, extra: u64, d: &Decision, now_ns: u64) {
        let update = |lease: &Lease| {
            lease.tokens.fetch_add(extra, Ordering::AcqRel);
            lease.window.store(d.window as u8, Ordering::Relaxed);
            lease.limit.store(d.limit, Ordering::Relaxed);
            lease.remaining.store(d.remaining, Ordering::Relaxed);
            lease.reset_ns.store(u64::try_from(d.reset.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
            lease.stored_ns.store(now_ns, Ordering::Relaxed);
        };
        match self.map.get(key) {
            Some(lease) => update(&lease),
            None => update(&self.map.entry(key.clone()).or_default()),
        }
    }

    /// Drops keys without reserved units or idle for `idle_ns` (their few units are given up,
    /// which only ever admits less); returns how many.
    pub(crate) fn sweep(&self, now_ns: u64, idle_ns: u64) -> usize {
        let before = self.map.len();
        self.map.retain(|_, lease| {
            lease.tokens.load(Ordering::Relaxed) > 0
                && lease.stored_ns.load(Ordering::Relaxed).saturating_add(idle_ns) > now_ns
        });
        before.saturating_sub(self.map.len())
    }
}

/// How many units to reserve at once under `plan` when `nodes` share it (1: no reservation).
pub(crate) fn batch_for(plan: &PlanLimits, configured: u32, nodes: u32) -> u64 {
    let rates = plan.rate_windows().map(|w| w.limit);
    let tightest = rates.chain(plan.quotas().map(|(_, q)| q)).min().unwrap_or(0);
    (tightest / (u64::from(nodes.max(1)) * 4)).clamp(1, u64::from(configured.max(1)))
}
