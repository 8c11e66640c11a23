//! Upstream targets at run time: address, in-flight count and health — passive ejection from
//! real traffic and the verdict of active probes — all in atomics, so the request path never
//! takes a lock. The mutable part lives behind an `Arc` so a rebuilt upstream can share it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use uuid::Uuid;

use super::config::{ActiveHealthConfig, PassiveHealthConfig, TargetConfig};
use super::window::to_nanos;

/// How an attempt against a target ended, as far as the upstream layer cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500 (or a success in any other sense).
    Success,
    /// The connection could not be established: nothing was sent.
    ConnectFailure,
    /// The target did not answer in time.
    Timeout,
    /// A response with this status; 5xx counts as a failure.
    Status(u16),
}

impl Outcome {
    /// Whether this outcome counts against the target's health.
    pub fn is_failure(&self) -> bool {
        match self {
            Self::Success => false,
            Self::ConnectFailure | Self::Timeout => true,
            Self::Status(status) => *status >= 500,
        }
    }
}

/// One target of a compiled upstream. Read-only to callers; the counters inside are shared with
/// the target of the same id in a [rebuilt](super::Upstream::rebuild) upstream.
#[derive(Debug)]
pub struct TargetState {
    pub id: Uuid,
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub backup: bool,
    /// `host:port` (`[host]:port` for IPv6), ready for the `Host` header and for connecting.
    pub authority: String,
    pub(crate) shared: Arc<TargetShared>,
}

/// The mutable state of a target.
#[derive(Debug, Default)]
pub(crate) struct TargetShared {
    pub(crate) in_flight: AtomicUsize,
    pub(crate) health: Health,
}

impl TargetState {
    /// A target from its config, with fresh state unless `shared` carries some over.
    pub(crate) fn new(cfg: &TargetConfig, shared: Option<Arc<TargetShared>>) -> Self {
        let authority = if cfg.host.contains(':') && !cfg.host.starts_with('[') {
            format!("[{}]:{}", cfg.host, cfg.port)
        } else {
            format!("{}:{}", cfg.host, cfg.port)
        };
        Self {
            id: cfg.id,
            host: cfg.host.clone(),
            port: cfg.port,
            weight: cfg.weight,
            backup: cfg.backup,
            authority,
            shared: shared.unwrap_or_default(),
        }
    }

    /// Requests currently outstanding on this target (across rebuilds).
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// The verdict of active checks (always `true` without them).
    pub fn is_healthy(&self) -> bool {
        self.shared.health.healthy.load(Ordering::Relaxed)
    }

    /// Whether passive health has this target ejected at `now` (nanoseconds since the epoch).
    pub(crate) fn is_ejected(&self, now: u64) -> bool {
        now < self.shared.health.ejected_until.load(Ordering::Acquire)
    }

    /// Whether the target may be picked at `now`.
    pub(crate) fn is_available(&self, now: u64) -> bool {
        self.weight > 0 && self.is_healthy() && !self.is_ejected(now)
    }

    /// Counts one more request in flight until the guard drops.
    pub(crate) fn begin(&self) -> InFlight<'_> {
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.shared.in_flight)
    }
}

/// Counts a request as outstanding on its target; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Health counters. Times are nanoseconds since the owning upstream's epoch, which rebuilt
/// upstreams inherit, so shared state stays meaningful.
#[derive(Debug)]
pub(crate) struct Health {
    /// Active verdict.
    healthy: AtomicBool,
    probe_successes: AtomicU32,
    probe_failures: AtomicU32,
    /// Passive: consecutive failed requests since the last success or ejection.
    failures: AtomicU32,
    /// Passive: ejections since the last success; above 0 the target is on probation.
    ejections: AtomicU32,
    /// Passive: ejected until this time (0: never ejected).
    ejected_until: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            probe_successes: AtomicU32::new(0),
            probe_failures: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }
}

impl Health {
    /// Records a request outcome; returns the ejection time if this report ejected the target.
    ///
    /// After an ejection expires the target is on probation: one more failure ejects it again
    /// (for twice as long) instead of waiting for N, so a dead target costs one request per
    /// ejection period. A success ends probation. Failures reported while ejected (requests
    /// that were already in flight) are ignored.
    pub(crate) fn record_passive(&self, failed: bool, cfg: &PassiveHealthConfig, now: u64) -> Option<Duration> {
        if !failed {
            self.failures.store(0, Ordering::Relaxed);
            self.ejections.store(0, Ordering::Relaxed);
            return None;
        }
        let until = self.ejected_until.load(Ordering::Acquire);
        if cfg.consecutive_failures == 0 || now < until {
            return None;
        }
        let on_probation = self.ejections.load(Ordering::Relaxed) > 0;
        let failures = self.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if failures < cfg.consecutive_failures && !on_probation {
            return None;
        }
        self.eject(until, cfg, now)
    }

    /// Ejects unless a concurrent report already did (the CAS on `ejected_until` decides).
    fn eject(&self, seen_until: u64, cfg: &PassiveHealthConfig, now: u64) -> Option<Duration> {
        let level = self.ejections.load(Ordering::Relaxed).saturating_add(1);
        let time = ejection_time(level, cfg);
        let until = now.saturating_add(to_nanos(time)).max(1);
        self.ejected_until.compare_exchange(seen_until, until, Ordering::AcqRel, Ordering::Relaxed).ok()?;
        self.ejections.fetch_max(level, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        Some(time)
    }

    /// Records an active probe; returns the new verdict when it changed.
    pub(crate) fn record_probe(&self, ok: bool, cfg: &ActiveHealthConfig) -> Option<bool> {
        let (mine, other, threshold) = if ok {
            (&self.probe_successes, &self.probe_failures, cfg.healthy_threshold)
        } else {
            (&self.probe_failures, &self.probe_successes, cfg.unhealthy_threshold)
        };
        other.store(0, Ordering::Relaxed);
        let streak = mine.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        let changed = streak >= threshold.max(1) && self.healthy.swap(ok, Ordering::Relaxed) != ok;
        changed.then_some(ok)
    }

    /// Forgets the active verdict (used when active checks are turned off).
    pub(crate) fn clear_probes(&self) {
        self.healthy.store(true, Ordering::Relaxed);
        self.probe_successes.store(0, Ordering::Relaxed);
        self.probe_failures.store(0, Ordering::Relaxed);
    }
}

/// `base × 2^(level-1)`, capped at `max`.
fn ejection_time(level: u32, cfg: &PassiveHealthConfig) -> Duration {
    let doublings = level.saturating_sub(1).min(31);
    cfg.base_ejection.saturating_mul(1 << doublings).min(cfg.max_ejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn passive() -> PassiveHealthConfig {
        PassiveHealthConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
        }
    }

    #[test]
    fn outcomes_classify_5xx_as_failure() {
        assert!(Outcome::Status(503).is_failure() && Outcome::Timeout.is_failure());
        assert!(!Outcome::Status(404).is_failure() && !Outcome::Success.is_failure());
    }

    #[test]
    fn authority_brackets_ipv6() {
        let t = TargetState::new(&TargetConfig { host: "::1".into(), port: 8080, ..Default::default() }, None);
        assert_eq!(t.authority, "[::1]:8080");
        let t = TargetState::new(&TargetConfig { host: "api.local".into(), port: 81, ..Default::default() }, None);
        assert_eq!(t.authority, "api.local:81");
    }

    #[test]
    fn ejection_doubles_on_probation_and_is_capped() {
        let (h, cfg) = (Health::default(), passive());
        assert_eq!(h.record_passive(true, &cfg, SEC), None);
        assert_eq!(h.record_passive(true, &cfg, SEC), None);
        assert_eq!(h.record_passive(true, &cfg, SEC), Some(Duration::from_secs(10)));
        // Stragglers while ejected change nothing.
        assert_eq!(h.record_passive(true, &cfg, 2 * SEC), None);
        // After expiry, on probation: one failure re-ejects for twice as long, then the cap.
        assert_eq!(h.record_passive(true, &cfg, 11 * SEC), Some(Duration::from_secs(20)));
        assert_eq!(h.record_passive(true, &cfg, 31 * SEC), Some(Duration::from_secs(25)));
        // A success ends probation: it takes N failures again, at the base time.
        h.record_passive(false, &cfg, 56 * SEC);
        assert_eq!(h.record_passive(true, &cfg, 57 * SEC), None);
        assert_eq!(h.record_passive(true, &cfg, 57 * SEC), None);
        assert_eq!(h.record_passive(true, &cfg, 57 * SEC), Some(Duration::from_secs(10)));
    }

    #[test]
    fn probes_flip_the_verdict_at_the_thresholds() {
        let h = Health::default();
        let cfg = ActiveHealthConfig { healthy_threshold: 2, unhealthy_threshold: 3, ..Default::default() };
        assert_eq!(h.record_probe(false, &cfg), None);
        assert_eq!(h.record_probe(false, &cfg), None);
        assert_eq!(h.record_probe(false, &cfg), Some(false));
        assert_eq!(h.record_probe(false, &cfg), None);
        assert_eq!(h.record_probe(true, &cfg), None);
        assert_eq!(h.record_probe(true, &cfg), Some(true));
    }
}
