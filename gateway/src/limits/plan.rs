//! What a plan allows: its rate windows (GCRA), its calendar quotas, where counting happens
//! and what to do when the shared counter is unreachable.

use std::time::Duration;

use crate::config::model::PlanDef;

/// Where a plan's counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// In this process: each node counts on its own.
    #[default]
    Local,
    /// In Redis, shared by every node (atomic Lua scripts).
    Redis,
}

/// What a `Redis` plan does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Count locally with this node's share of the limits.
    #[default]
    FailOpen,
    /// Refuse every request until Redis answers again.
    FailClosed,
}

/// The limits of one plan, compiled from its [`PlanDef`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanLimits {
    pub per_second: Option<u32>,
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    /// Extra requests admitted at once on top of each rate window's limit.
    pub burst: u32,
    pub quota_per_day: Option<u64>,
    pub quota_per_month: Option<u64>,
    pub mode: Mode,
    pub failure_policy: FailurePolicy,
}

/// One GCRA window in nanoseconds: emission interval and delay variation tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateWindow {
    /// Index of the window (0 second, 1 minute, 2 hour): names its counter.
    pub slot: usize,
    pub limit: u64,
    /// Time one unit of cost occupies.
    pub interval_ns: u64,
    /// How far ahead of now the theoretical arrival time may run: `(limit + burst) × interval`.
    pub tolerance_ns: u64,
}

/// Calendar period of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    Day = 0,
    Month = 1,
}

impl PlanLimits {
    /// The configured rate windows, shortest first.
    pub(crate) fn rate_windows(&self) -> impl Iterator<Item = RateWindow> + '_ {
        let periods = [(self.per_second, 1), (self.per_minute, 60), (self.per_hour, 3600)];
        periods.into_iter().enumerate().filter_map(|(slot, (limit, secs))| {
            let limit = u64::from(limit.filter(|l| *l > 0)?);
            let interval_ns = (Duration::from_secs(secs).as_nanos() as u64 / limit).max(1);
            let tolerance_ns = interval_ns.saturating_mul(limit + u64::from(self.burst));
            Some(RateWindow { slot, limit, interval_ns, tolerance_ns })
        })
    }

    /// The configured quotas.
    pub fn quotas(&self) -> impl Iterator<Item = (QuotaPeriod, u64)> + '_ {
        [(QuotaPeriod::Day, self.quota_per_day), (QuotaPeriod::Month, self.quota_per_month)]
            .into_iter()
            .filter_map(|(p, q)| Some((p, q?)))
    }

    /// True when the plan has a daily or monthly quota.
    pub fn has_quotas(&self) -> bool {
        self.quota_per_day.is_some() || self.quota_per_month.is_some()
    }

    /// True when the plan limits nothing (no counter is touched).
    pub fn is_unlimited(&self) -> bool {
        self.rate_windows().next().is_none() && self.quotas().next().is_none()
    }

    /// This node's share when `nodes` nodes split the limits (each at least 1).
    pub fn share(&self, nodes: u32) -> PlanLimits {
        let n = nodes.max(1);
        let div32 = |v: Option<u32>| v.map(|v| (v / n).max(1));
        let div64 = |v: Option<u64>| v.map(|v| (v / u64::from(n)).max(1));
        PlanLimits {
            per_second: div32(self.per_second),
            per_minute: div32(self.per_minute),
            per_hour: div32(self.per_hour),
            burst: self.burst / n,
            quota_per_day: div64(self.quota_per_day),
            quota_per_month: div64(self.quota_per_month),
            mode: Mode::Local,
            failure_policy: self.failure_policy,
        }
    }
}

impl From<&PlanDef> for PlanLimits {
    /// Negative or zero database values mean "no limit" (the schema forbids them anyway).
    fn from(p: &PlanDef) -> Self {
        let rate = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0);
        let quota = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).filter(|v| *v > 0);
        PlanLimits {
            per_second: rate(p.rate_limit_per_second),
            per_minute: rate(p.rate_limit_per_minute),
            per_hour: rate(p.rate_limit_per_hour),
            burst: u32::try_from(p.burst).unwrap_or(0),
            quota_per_day: quota(p.quota_per_day),
            quota_per_month: quota(p.quota_per_month),
            mode: if p.limit_mode == "redis" { Mode::Redis } else { Mode::Local },
            failure_policy: if p.redis_failure_policy == "fail_closed" {
                FailurePolicy::FailClosed
            } else {
                FailurePolicy::FailOpen
            },
        }
    }
}
