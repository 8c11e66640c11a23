//! Plans' rate limits and quotas: GCRA rate windows (per second/minute/hour, with burst),
//! UTC calendar quotas (day, month), counted per node ([`LocalCounter`]) or shared in Redis
//! ([`RedisCounter`]), with the plan's failure policy while Redis is unreachable.
//!
//! The promise of a plan is in [`plan`]: at most N + B units in any window of length W.
//! - `local` plans are split among the live nodes (each counts its share, see
//!   [`PlanLimits::share`]); the share follows the node count each heartbeat reports.
//! - `redis` plans count exactly in one Lua script per batch of decisions ([`batch`]). While
//!   Redis fails, a fail-open node counts its share in a fallback counter that each Redis
//!   answer set to the node's share of what the fleet had left, so an outage (or a slow
//!   moment) continues from what the fleet spent instead of handing out a fresh allowance;
//!   what the fallback admits is owed, and charged to Redis (uncapped) with the key's next
//!   decision there — also to a restarted, empty Redis. A decision Redis runs after its
//!   node stopped waiting (a stalled server resuming) is skipped ([`batch`]), so nothing
//!   the fallback decided counts twice. One timeout is not an outage:
//!   the circuit opens after [`FAILURES_TO_OPEN`] failures in a row (that request alone is
//!   decided by the fallback), then one probe at a time tries Redis every
//!   `circuit_open_for`, and the first answer closes it.
//!
//! The clock is explicit: every decision takes a [`Now`] (from [`Limiter::now`] in
//! production), so tests can drive windows and calendar boundaries.

mod batch;
mod calendar;
mod decision;
mod local;
mod plan;
mod redis;
mod reserve;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

pub use decision::{Backend, Decision, Denial, HeaderStyle, policy_header};
pub use local::LocalCounter;
pub use plan::{FailurePolicy, Mode, PlanLimits, QuotaPeriod, Window};
use redis::Fleet;
pub use redis::{CounterError, RedisCounter};

/// The calendar window of `period` containing `utc`: its start (Unix seconds) and the
/// nanoseconds left in it.
pub fn quota_window(period: QuotaPeriod, utc: OffsetDateTime) -> Option<(i64, u64)> {
    calendar::window(period, utc)
}

/// Failed Redis calls in a row that open the circuit (fewer are a slow moment: the request
/// that failed is decided by the fallback, the next ones try Redis again).
pub const FAILURES_TO_OPEN: u32 = 3;

/// Reserved units unused this long are given up at the next sweep.
const LEASE_IDLE_NS: u64 = 60_000_000_000;

/// The instant of a decision: monotonic time for rate windows, UTC for calendar quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Nanoseconds since the limiter started.
    pub mono_ns: u64,
    pub utc: OffsetDateTime,
}

/// Whose requests are counted together: a consumer on a plan, or an anonymous client IP.
/// Hashing and comparing it allocates nothing; its text form (for Redis) is
/// `<plan>:<consumer>` or `<plan>:ip:<address>`, never containing `{` or `}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// An identified consumer on a plan.
    Consumer { plan: Uuid, consumer: Uuid },
    /// An anonymous caller, by client IP (resolved through trusted proxies by the caller).
    Anonymous { plan: Uuid, ip: IpAddr },
    /// Any other subject (tests, tools); must not contain `{` or `}`.
    Named(Box<str>),
}

impl LimitKey {
    /// An identified consumer on a plan.
    pub fn consumer(plan: Uuid, consumer: Uuid) -> Self {
        LimitKey::Consumer { plan, consumer }
    }

    /// An anonymous caller, by client IP.
    pub fn anonymous(plan: Uuid, ip: IpAddr) -> Self {
        LimitKey::Anonymous { plan, ip }
    }
}

impl std::fmt::Display for LimitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitKey::Consumer { plan, consumer } => write!(f, "{plan}:{consumer}"),
            LimitKey::Anonymous { plan, ip } => write!(f, "{plan}:ip:{ip}"),
            LimitKey::Named(name) => f.write_str(name),
        }
    }
}

/// How a [`Limiter`] is set up.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Redis for `Mode::Redis` plans; without it they count as if Redis were down.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub namespace: String,
    /// Longest wait for Redis before the failure policy applies.
    pub redis_timeout: Duration,
    /// After a Redis failure, how long requests skip Redis instead of paying the timeout.
    pub circuit_open_for: Duration,
    /// Nodes sharing the limits: a fail-open node counts `limit / node_share` on its own.
    pub node_share: u32,
    /// Units a node may reserve per Redis round trip and spend locally (0 or 1: none);
    /// see [`reserve`] for the error bound.
    pub reserve_batch: u32,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            redis_url: None,
            namespace: "tg".to_owned(),
            redis_timeout: Duration::from_millis(100),
            circuit_open_for: Duration::from_secs(1),
            node_share: 1,
            reserve_batch: 0,
        }
    }
}

/// The rate limiter of one gateway node: local counters, the Redis counter, the fallback.
#[derive(Debug)]
pub struct Limiter {
    local: LocalCounter,
    fallback: LocalCounter,
    redis: Option<RedisCounter>,
    node_share: AtomicU32,
    /// Monotonic nanoseconds until which Redis is skipped (0: closed; past: one probe may go).
    circuit_until: AtomicU64,
    /// Redis calls that failed in a row.
    failures: AtomicU32,
    circuit_open_ns: u64,
    leases: reserve::Leases,
    reserve_batch: u32,
    epoch: tokio::time::Instant,
}

impl Limiter {
    /// A limiter; with a Redis URL it must be built inside a Tokio runtime. Redis need not be
    /// up: the connection is made on first use and remade after failures.
    pub fn new(config: LimiterConfig) -> Result<Self, CounterError> {
        let redis = match &config.redis_url {
            Some(url) => Some(RedisCounter::new(url, &config.namespace, config.redis_timeout)?),
            None => None,
        };
        Ok(Self::with_counter(&config, redis))
    }

    /// A limiter without Redis: `redis` plans count with their failure policy, as if Redis
    /// were down (fail-open plans locally with this node's share).
    pub fn local() -> Self {
        Self::with_counter(&LimiterConfig::default(), None)
    }

    fn with_counter(config: &LimiterConfig, redis: Option<RedisCounter>) -> Self {
        Limiter {
            local: LocalCounter::default(),
            fallback: LocalCounter::default(),
            redis,
            node_share: AtomicU32::new(config.node_share.max(1)),
            circuit_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            circuit_open_ns: u64::try_from(config.circuit_open_for.as_nanos()).unwrap_or(u64::MAX),
            leases: reserve::Leases::default(),
            reserve_batch: config.reserve_batch,
            epoch: tokio::time::Instant::now(),
        }
    }

    /// The current instant (Tokio's clock, so a paused test clock applies).
    pub fn now(&self) -> Now {
        Now { mono_ns: self.mono_ns(), utc: OffsetDateTime::now_utc() }
    }

    /// The instant for counting under `plan`: the UTC clock is read only when the plan has
    /// quotas (nothing else looks at it; a plan without them gets the Unix epoch there).
    pub fn now_for(&self, plan: &PlanLimits) -> Now {
        let utc = if plan.has_quotas() { OffsetDateTime::now_utc() } else { OffsetDateTime::UNIX_EPOCH };
        Now { mono_ns: self.mono_ns(), utc }
    }

    fn mono_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sets how many nodes share the limits (e.g. the number of live nodes); returns the
    /// number before.
    pub fn set_node_share(&self, nodes: u32) -> u32 {
        self.node_share.swap(nodes.max(1), Ordering::Relaxed)
    }

    /// How many nodes share the limits.
    pub fn node_share(&self) -> u32 {
        self.node_share.load(Ordering::Relaxed)
    }

    /// Counts a request of `cost` units (1 for most routes) for `key` under `plan`.
    pub async fn check(&self, key: &LimitKey, plan: &PlanLimits, cost: u32, now: Now) -> Decision {
        if plan.is_unlimited() {
            return Decision::unlimited();
        }
        match plan.mode {
            Mode::Local => match self.node_share() {
                1 => self.local.check(key, plan, cost, now, Backend::Local),
                n => self.local.check(key, &plan.share(n), cost, now, Backend::Local),
            },
            // Boxed: the Redis exchange's future would enlarge every request's (local and
            // unlimited plans too); one allocation is nothing next to the round trip.
            Mode::Redis => Box::pin(self.check_shared(key, plan, cost, now)).await,
        }
    }

    async fn check_shared(&self, key: &LimitKey, plan: &PlanLimits, cost: u32, now: Now) -> Decision {
        let Some(redis) = self.redis.as_ref().filter(|_| self.may_call_redis(now)) else {
            return self.degraded(key, plan, cost, now);
        };
        let fail_open = plan.failure_policy == FailurePolicy::FailOpen;
        let debt = if fail_open { self.fallback.take_owed(key) } else { 0 };
        match self.count_shared(redis, key, plan, cost, now, debt).await {
            Ok((d, fleet)) => {
                // Read first: a store on every decision would bounce the line between cores.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
                if self.circuit_until.load(Ordering::Relaxed) != 0 && self.circuit_until.swap(0, Ordering::Relaxed) != 0
                {
                    tracing::info!("rate-limit counter reachable again, counting in Redis");
                }
                if let Some(fleet) = fleet.filter(|_| fail_open) {
                    self.fallback.sync(key, plan, self.node_share(), &fleet, now);
                }
                d
            }
            Err(error) => {
                if debt > 0 {
                    self.fallback.owe(key, debt);
                }
                if self.failures.fetch_add(1, Ordering::Relaxed) + 1 >= FAILURES_TO_OPEN {
                    let next = now.mono_ns.saturating_add(self.circuit_open_ns).max(1);
                    if self.circuit_until.swap(next, Ordering::Relaxed) == 0 {
                        tracing::warn!(%error, "rate-limit counter unreachable, applying failure policies");
                    }
                }
                self.degraded(key, plan, cost, now)
            }
        }
    }

    /// Whether this request may use Redis: always while the circuit is closed; while it is
    /// open only the one request that claims the probe once its time has come.
    fn may_call_redis(&self, now: Now) -> bool {
        let until = self.circuit_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        if now.mono_ns < until {
            return false;
        }
        let next = now.mono_ns.saturating_add(self.circuit_open_ns).max(1);
        self.circuit_until.compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// Counts in Redis (first charging `debt`), through this node's reserved units when
    /// reservation is on; the fleet's counters after it when Redis answered this decision.
    async fn count_shared(
        &self,
        redis: &RedisCounter,
        key: &LimitKey,
        plan: &PlanLimits,
        cost: u32,
        now: Now,
        debt: u64,
    ) -> Result<(Decision, Option<Fleet>), CounterError> {
        let exact = |cost| async move { redis.check_at(key, plan, cost, now.utc, 0, debt).await };
        if self.reserve_batch <= 1 {
            return exact(cost).await;
        }
        if debt == 0
            && let Some(d) = self.leases.spend(key, u64::from(cost))
        {
            return Ok((d, None));
        }
        let batch = reserve::batch_for(plan, self.reserve_batch, self.node_share.load(Ordering::Relaxed));
        if let Ok(take) = u32::try_from(batch).map(|b| b.max(cost))
            && take > cost
        {
            let (d, fleet) = exact(take).await?;
            if d.allowed {
                let extra = u64::from(take - cost);
                self.leases.store(key, extra, &d, now.mono_ns);
                return Ok((Decision { remaining: d.remaining.saturating_add(extra), ..d }, fleet));
            }
            // The debt was charged by that call.
            return redis.check_at(key, plan, cost, now.utc, 0, 0).await;
        }
        // Too close to the limit for a batch: count exactly this request.
        exact(cost).await
    }

    /// Redis is unreachable: the plan's failure policy decides.
    fn degraded(&self, key: &LimitKey, plan: &PlanLimits, cost: u32, now: Now) -> Decision {
        match plan.failure_policy {
            FailurePolicy::FailClosed => {
                let until = self.circuit_until.load(Ordering::Relaxed);
                Decision::unavailable(
                    Duration::from_nanos(until.saturating_sub(now.mono_ns)).max(Duration::from_secs(1)),
                )
            }
            FailurePolicy::FailOpen => {
                let d = self.fallback.check(key, &plan.share(self.node_share()), cost, now, Backend::Fallback);
                if d.allowed {
                    // Told to Redis with this key's next decision there.
                    self.fallback.owe(key, u64::from(cost));
                }
                d
            }
        }
    }

    /// This node's counts of `key`'s quotas under a `local` plan: (period, window start in
    /// Unix seconds, used). Empty for other plans (their counts live in Redis).
    pub fn local_quota_used(
        &self,
        key: &LimitKey,
        plan: &PlanLimits,
        utc: OffsetDateTime,
    ) -> Vec<(QuotaPeriod, i64, u64)> {
        if plan.mode != Mode::Local {
            return Vec::new();
        }
        plan.quotas()
            .filter_map(|(period, _)| {
                self.local.quota_used(key, period, utc).map(|(start, used)| (period, start, used))
            })
            .collect()
    }

    /// Drops idle local keys (see [`LocalCounter::sweep`]); returns how many.
    pub fn sweep(&self, now: Now) -> usize {
        self.local.sweep(now) + self.fallback.sweep(now) + self.leases.sweep(now.mono_ns, LEASE_IDLE_NS)
    }

    /// Number of keys held locally (local and fallback counters).
    pub fn local_keys(&self) -> usize {
        self.local.len() + self.fallback.len()
    }

    /// Sweeps idle keys every `every` until the limiter is dropped elsewhere.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else { return };
                let dropped = limiter.sweep(limiter.now());
                tracing::debug!(dropped, "rate-limit keys swept");
            }
        })
    }
}
