//! What a plan allows: its rate windows (GCRA), its calendar quotas, where counting happens
//! and what to do when the shared counter is unreachable.
//!
//! **The promise** of a rate of N per window W with burst B: any interval of length W admits
//! at most N + B units, and at most B + 1 arrive at once; after that one unit every W / N.
//! GCRA gives exactly this with the emission interval T = ⌈W / N⌉ and the tolerance
//! τ = (B + 1) · T: k units admitted at t₁ ≤ … ≤ t_k leave the theoretical arrival time at
//! least t₁ + k·T, and the k-th passes only if that is within τ of t_k, so
//! t_k − t₁ ≥ (k − B − 1)·T; inside a half-open interval of length W = N·T that means
//! k < N + B + 1. Calendar quotas count exactly N per UTC day or month.
//!
//! A plan split among `nodes` (local counting on several gateways, or the Redis fallback)
//! gives each node the interval n·T and ⌊(B + 1) / n⌋ units at once (at least one), so the
//! nodes together keep the same promise.

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
    /// Units admitted at once beyond one (and so in any window beyond its limit).
    pub burst: u32,
    pub quota_per_day: Option<u64>,
    pub quota_per_month: Option<u64>,
    pub mode: Mode,
    pub failure_policy: FailurePolicy,
    /// Nodes this plan is split among, each counting its share (0 or 1: the whole plan).
    pub nodes: u32,
}

/// One GCRA window in nanoseconds: emission interval and delay variation tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateWindow {
    /// Index of the window (0 second, 1 minute, 2 hour): names its counter.
    pub slot: usize,
    /// The plan's N for this window (the whole plan's, also for a node's share).
    pub limit: u64,
    /// Time one unit of cost occupies on this node: ⌈W / N⌉ times the nodes sharing the plan.
    pub interval_ns: u64,
    /// How far ahead of now the theoretical arrival time may run: the units admitted at once
    /// (B + 1, or this node's share of them) times the interval.
    pub tolerance_ns: u64,
}

/// The window of a rate limit or quota, as named in the `RateLimit` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Second = 0,
    Minute,
    Hour,
    /// The UTC calendar day.
    Day,
    /// The UTC calendar month.
    Month,
}

impl Window {
    /// Every window, in the order of their discriminants.
    pub const ALL: [Window; 5] = [Window::Second, Window::Minute, Window::Hour, Window::Day, Window::Month];

    /// The policy name in `RateLimit-Policy` and `RateLimit`.
    pub fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
        }
    }

    /// Its length in seconds (a calendar month counts as 30 days).
    pub fn seconds(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
            Window::Month => 2_592_000,
        }
    }

    /// The rate window of counter slot `slot`.
    pub(crate) fn of_slot(slot: usize) -> Window {
        match slot {
            0 => Window::Second,
            1 => Window::Minute,
            _ => Window::Hour,
        }
    }
}

/// Calendar period of a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaPeriod {
    Day = 0,
    Month = 1,
}

impl PlanLimits {
    /// The configured rate windows, shortest first.
    pub(crate) fn rate_windows(&self) -> impl Iterator<Item = RateWindow> + '_ {
        let periods = [(self.per_second, 1u64), (self.per_minute, 60), (self.per_hour, 3600)];
        let nodes = u64::from(self.nodes.max(1));
        let at_once = ((u64::from(self.burst) + 1) / nodes).max(1);
        periods.into_iter().enumerate().filter_map(move |(slot, (limit, secs))| {
            let limit = u64::from(limit.filter(|l| *l > 0)?);
            let interval_ns = (secs * 1_000_000_000).div_ceil(limit).saturating_mul(nodes);
            Some(RateWindow { slot, limit, interval_ns, tolerance_ns: interval_ns.saturating_mul(at_once) })
        })
    }

    /// The promise of each window and quota: (window, units, seconds) — at most `units` in
    /// any interval of `seconds` (for quotas: per UTC calendar day or month).
    pub fn promises(&self) -> impl Iterator<Item = (Window, u64, u64)> + '_ {
        let rates =
            [(Window::Second, self.per_second), (Window::Minute, self.per_minute), (Window::Hour, self.per_hour)];
        let rates = rates.into_iter().filter_map(|(w, n)| {
            let n = u64::from(n.filter(|n| *n > 0)?);
            Some((w, n + u64::from(self.burst), w.seconds()))
        });
        let quotas = [(Window::Day, self.quota_per_day), (Window::Month, self.quota_per_month)];
        rates.chain(quotas.into_iter().filter_map(|(w, q)| Some((w, q?, w.seconds()))))
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

    /// This node's share when `nodes` nodes split the plan: the rate windows' intervals
    /// times `nodes`, ⌊(B + 1) / nodes⌋ units at once, ⌊quota / nodes⌋ (each at least 1).
    pub fn share(&self, nodes: u32) -> PlanLimits {
        let n = nodes.max(1);
        let div64 = |v: Option<u64>| v.map(|v| (v / u64::from(n)).max(1));
        PlanLimits {
            quota_per_day: div64(self.quota_per_day),
            quota_per_month: div64(self.quota_per_month),
            mode: Mode::Local,
            nodes: n,
            ..self.clone()
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
            nodes: 1,
        }
    }
}
