//! Upstreams: choosing a target for a request (weighted round robin, least requests, consistent
//! hashing; backups only when no primary is available), judging targets (passive ejection from
//! request outcomes, active HTTP probes), a circuit breaker per upstream, and retry decisions.
//!
//! An [`Upstream`] is compiled from an [`UpstreamConfig`] off the request path and shared as
//! `Arc<Upstream>` inside the config snapshot. The request path only reads it: picking,
//! reporting, admitting and retrying use atomics, never locks. A typical attempt:
//!
//! 1. `upstream.admit()` — the breaker's permit, or answer its fallback / 503;
//! 2. `upstream.pick(upstream.hash_key(&headers, identity, ip), &tried)` — a target and its in-flight guard;
//! 3. send, then `upstream.report(pick.index, outcome)` and `permit.record(!outcome.is_failure())`;
//! 4. on a connect failure (nothing sent) the request goes to `upstream.pick_untried(...)`, each
//!    target at most once; on other failures `upstream.retry_policy().should_retry(...)` says
//!    whether and when to try again.

mod active;
mod balance;
mod breaker;
mod config;
mod hash;
mod retry;
mod target;
pub mod tls;
mod window;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use tokio::sync::watch;
use tokio::time::Instant;

use self::balance::Tier;
pub use self::breaker::{Breaker, BreakerState, Permit, Rejected};
pub use self::config::{
    ActiveHealthConfig, BreakerConfig, DEFAULT_WEIGHT, FallbackResponse, HashOn, LbPolicy, PassiveHealthConfig,
    RetryConfig, TargetConfig, UpstreamConfig, UpstreamConfigError,
};
pub use self::retry::{BUDGET_WINDOW, MIN_RETRIES_PER_SEC, RetryPolicy, is_idempotent};
use self::target::TargetShared;
pub use self::target::{InFlight, Outcome, TargetState};
use self::window::nanos_since;

/// A compiled upstream: its targets with their live state, the balancing structures, the
/// breaker and the retry policy.
#[derive(Debug)]
pub struct Upstream {
    config: UpstreamConfig,
    targets: Vec<TargetState>,
    primary: Tier,
    backup: Tier,
    breaker: Option<Arc<Breaker>>,
    retry: Arc<RetryPolicy>,
    /// Time origin of the targets' health state; inherited by rebuilt upstreams.
    epoch: Instant,
    /// Dropped with the upstream, which stops its active-check task.
    stop: watch::Sender<()>,
}

/// A chosen target. Holding it counts the request as in flight on the target.
#[derive(Debug)]
pub struct Pick<'a> {
    /// Index of the target in the config's target list (for `report` and `exclude`).
    pub index: usize,
    pub target: &'a TargetState,
    /// Decrements the target's in-flight count when dropped.
    pub in_flight: InFlight<'a>,
}

impl Upstream {
    /// Compiles `cfg`. Never fails: odd values are tolerated (see [`UpstreamConfig::validate`]).
    pub fn new(cfg: UpstreamConfig) -> Self {
        Self::build(cfg, None)
    }

    /// Compiles a changed config, carrying state over from this upstream: targets with the same
    /// id and address share their health, ejection and in-flight state with the old ones (an
    /// address change starts fresh), and the breaker and retry budget are kept when their
    /// config is unchanged. Active checks must be started again on the result.
    pub fn rebuild(&self, cfg: UpstreamConfig) -> Upstream {
        Self::build(cfg, Some(self))
    }

    fn build(cfg: UpstreamConfig, previous: Option<&Upstream>) -> Self {
        let carried: HashMap<_, _> =
            previous.map(|p| p.targets.iter().map(|t| (t.id, t)).collect()).unwrap_or_default();
        let targets: Vec<TargetState> = cfg.targets.iter().map(|t| TargetState::new(t, carry(&carried, t))).collect();
        if cfg.active.is_none() {
            // A verdict from checks that no longer run would never be revised.
            targets.iter().for_each(|t| t.shared.health.clear_probes());
        }
        let breaker = cfg.breaker.as_ref().map(|b| {
            let same = previous.and_then(|p| p.breaker.clone()).filter(|old| old.config() == b);
            same.unwrap_or_else(|| Arc::new(Breaker::new(b)))
        });
        let retry = previous.map(|p| p.retry.clone()).filter(|old| *old.config() == cfg.retry);
        Self {
            primary: Tier::build(&targets, false, &cfg.policy),
            backup: Tier::build(&targets, true, &cfg.policy),
            retry: retry.unwrap_or_else(|| Arc::new(RetryPolicy::new(&cfg.retry))),
            breaker,
            targets,
            epoch: previous.map_or_else(Instant::now, |p| p.epoch),
            stop: watch::channel(()).0,
            config: cfg,
        }
    }

    /// The config this upstream was compiled from.
    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// All targets, in config order.
    pub fn targets(&self) -> &[TargetState] {
        &self.targets
    }

    /// The circuit breaker, if configured.
    pub fn breaker(&self) -> Option<&Breaker> {
        self.breaker.as_deref()
    }

    /// The retry rules and budget.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Asks the breaker to let a request through; always admits when there is no breaker.
    pub fn admit(&self) -> Result<Permit<'_>, Rejected> {
        self.breaker.as_deref().map_or_else(|| Ok(Permit::unguarded()), Breaker::admit)
    }

    /// Whether target `index` may be picked now (weight above 0, healthy, not ejected).
    pub fn is_available(&self, index: usize) -> bool {
        let now = self.now();
        self.targets.get(index).is_some_and(|t| t.is_available(now))
    }

    /// Chooses a target by the policy among available primaries, else available backups,
    /// skipping the `exclude`d ones (already tried by this request) as long as another target
    /// is available. `hash` is the [`Upstream::hash_key`] for consistent hashing (ignored by
    /// other policies; without it the choice is random). `None`: no target is available.
    pub fn pick(&self, hash: Option<u64>, exclude: &[usize]) -> Option<Pick<'_>> {
        let now = self.now();
        let available = |i: usize| self.targets.get(i).is_some_and(|t| t.is_available(now));
        let untried = |i: usize| !exclude.contains(&i) && available(i);
        let chosen = self.choose(hash, untried);
        let index = if exclude.is_empty() { chosen } else { chosen.or_else(|| self.choose(hash, available)) }?;
        let target = self.targets.get(index)?;
        Some(Pick { index, target, in_flight: target.begin() })
    }

    /// Like [`Upstream::pick`], but only a target not in `exclude`: where a request goes
    /// after a connect failure (each target at most once).
    pub fn pick_untried(&self, hash: Option<u64>, exclude: &[usize]) -> Option<Pick<'_>> {
        let now = self.now();
        let untried = |i: usize| !exclude.contains(&i) && self.targets.get(i).is_some_and(|t| t.is_available(now));
        let index = self.choose(hash, untried)?;
        let target = self.targets.get(index)?;
        Some(Pick { index, target, in_flight: target.begin() })
    }

    fn choose(&self, hash: Option<u64>, ok: impl Fn(usize) -> bool + Copy) -> Option<usize> {
        let policy = &self.config.policy;
        let primary = self.primary.pick(&self.targets, policy, hash, ok);
        primary.or_else(|| self.backup.pick(&self.targets, policy, hash, ok))
    }

    /// The consistent-hash input of a request, per the configured [`HashOn`]; `None` for other
    /// policies or when the request lacks the attribute. A hashed identity header is the
    /// caller's `identity` (which the upstream gets), not a client-sent copy.
    pub fn hash_key(
        &self,
        headers: &HeaderMap,
        identity: Option<&dyn crate::wire::ExtraFields>,
        client_ip: Option<IpAddr>,
    ) -> Option<u64> {
        match &self.config.policy {
            LbPolicy::ConsistentHash(on) => hash::request_hash(on, headers, identity, client_ip),
            LbPolicy::RoundRobin | LbPolicy::LeastRequests => None,
        }
    }

    /// Feeds passive health with how an attempt on target `index` ended. Unknown indices are
    /// ignored.
    pub fn report(&self, index: usize, outcome: Outcome) {
        let Some(target) = self.targets.get(index) else { return };
        let now = self.now();
        let ejected = target.shared.health.record_passive(outcome.is_failure(), &self.config.passive, now);
        if let Some(time) = ejected {
            log_ejection(target, time, outcome);
        }
    }

    fn now(&self) -> u64 {
        nanos_since(self.epoch)
    }
}

/// (Cold and out of line: see `proxy::forward::refused`.)
#[cold]
#[inline(never)]
fn log_ejection(target: &TargetState, time: std::time::Duration, outcome: Outcome) {
    tracing::warn!(
        target_id = %target.id,
        authority = %target.authority,
        ejected_ms = time.as_millis() as u64,
        ?outcome,
        "upstream target ejected"
    );
}

/// The state to carry over for `cfg`: the old target's, if it has the same id and address.
fn carry(carried: &HashMap<uuid::Uuid, &TargetState>, cfg: &TargetConfig) -> Option<Arc<TargetShared>> {
    carried.get(&cfg.id).filter(|old| old.host == cfg.host && old.port == cfg.port).map(|old| old.shared.clone())
}

#[cfg(test)]
mod tests;
