//! Typed upstream configuration: plain data with documented defaults, compiled into an
//! [`Upstream`](super::Upstream) by [`Upstream::new`](super::Upstream::new). Nothing here is
//! read on the request path; the compiled upstream keeps what it needs.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderName;
use uuid::Uuid;

/// Weight a target gets when none is configured; weights are relative to each other.
pub const DEFAULT_WEIGHT: u32 = 100;

/// Everything about one upstream: its targets, how one is chosen, how they are judged, and
/// how failed requests are retried. `Default`: round robin, no targets, passive health on
/// (see [`PassiveHealthConfig`]), no active checks, no circuit breaker, default retries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamConfig {
    /// How a target is chosen among the available ones.
    pub policy: LbPolicy,
    /// The targets, primaries and backups, in configuration order (indices refer to this order).
    pub targets: Vec<TargetConfig>,
    /// Ejection of targets that keep failing real requests.
    pub passive: PassiveHealthConfig,
    /// Periodic probes; `None` disables them.
    pub active: Option<ActiveHealthConfig>,
    /// Circuit breaker for the whole upstream; `None` disables it.
    pub breaker: Option<BreakerConfig>,
    /// Retries of failed attempts.
    pub retry: RetryConfig,
}

/// Load-balancing policy. `Default`: [`LbPolicy::RoundRobin`].
#[derive(Clone, Debug, Default, PartialEq)]
pub enum LbPolicy {
    /// Smooth weighted round robin (nginx's sequence).
    #[default]
    RoundRobin,
    /// Least outstanding requests relative to weight, by power of two random choices.
    LeastRequests,
    /// Consistent hashing of a request attribute on a ring of weighted virtual nodes. Requests
    /// without the attribute are spread at random (weighted).
    ConsistentHash(HashOn),
}

/// The request attribute hashed by [`LbPolicy::ConsistentHash`].
#[derive(Clone, Debug, PartialEq)]
pub enum HashOn {
    /// The first value of this header.
    Header(HeaderName),
    /// The value of the cookie with this name.
    Cookie(String),
    /// The client's IP address (IPv4-mapped IPv6 addresses hash as IPv4).
    ClientIp,
}

/// One target. `Default`: nil id, `127.0.0.1:80`, weight [`DEFAULT_WEIGHT`], primary. Ids
/// identify targets across config changes ([`Upstream::rebuild`](super::Upstream::rebuild))
/// and place them on the hash ring, so they must be unique and stable.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetConfig {
    pub id: Uuid,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Relative share of traffic; 0 means never picked (drained).
    pub weight: u32,
    /// Used only when no primary target is available.
    pub backup: bool,
}

impl Default for TargetConfig {
    fn default() -> Self {
        Self { id: Uuid::nil(), host: "127.0.0.1".to_owned(), port: 80, weight: DEFAULT_WEIGHT, backup: false }
    }
}

impl TargetConfig {
    /// A primary target with a fresh random id and the default weight.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self { id: Uuid::new_v4(), host: host.into(), port, ..Self::default() }
    }
}

/// Passive health (outlier ejection). `Default`: 5 consecutive failures eject a target for
/// 30 s, doubling with each further ejection up to 5 min. `consecutive_failures: 0` disables it.
#[derive(Clone, Debug, PartialEq)]
pub struct PassiveHealthConfig {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for PassiveHealthConfig {
    fn default() -> Self {
        Self { consecutive_failures: 5, base_ejection: Duration::from_secs(30), max_ejection: Duration::from_secs(300) }
    }
}

/// Active health checks. `Default`: `GET /` every 10 s with a 2 s timeout; 3 failures mark a
/// target unhealthy, 2 successes healthy again; statuses 200..400 count as success.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveHealthConfig {
    /// Path (and query) probed, starting with `/`.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub expected_statuses: Range<u16>,
}

impl Default for ActiveHealthConfig {
    fn default() -> Self {
        Self {
            path: "/".to_owned(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_statuses: 200..400,
        }
    }
}

/// Circuit breaker. `Default`: opens after 5 consecutive failures, or when at least 20
/// requests in the last 10 s failed at a rate of 50 % or more; stays open 30 s; then lets 3
/// trial requests through. `0` for `consecutive_failures` or `failure_rate_percent` disables
/// that trigger.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub failure_rate_percent: u8,
    pub min_requests: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub half_open_requests: u32,
    /// What to answer while open; `None` means a 503 problem document.
    pub fallback: Option<FallbackResponse>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate_percent: 50,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            half_open_requests: 3,
            fallback: None,
        }
    }
}

/// A canned response served while the breaker is open. `Default`: an empty 503.
#[derive(Clone, Debug, PartialEq)]
pub struct FallbackResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

impl Default for FallbackResponse {
    fn default() -> Self {
        Self { status: 503, content_type: "text/plain; charset=utf-8".to_owned(), body: Bytes::new() }
    }
}

/// Retries. `Default`: 2 retries, on 502/503/504 (plus connect failures and timeouts),
/// backoff from 25 ms doubling up to 1 s with full jitter, and a budget of 20 % extra load
/// over a rolling 10 s window (at least 3 retries per second).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    pub retries: u32,
    pub retry_on_statuses: Vec<u16>,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    pub budget_percent: u8,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            retries: 2,
            retry_on_statuses: vec![502, 503, 504],
            base_backoff: Duration::from_millis(25),
            max_backoff: Duration::from_secs(1),
            budget_percent: 20,
        }
    }
}

/// Why an [`UpstreamConfig`] is not acceptable. Compiling never fails, so callers that load
/// config from users check [`UpstreamConfig::validate`] first to report mistakes clearly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("target {0}: host is empty")]
    EmptyHost(Uuid),
    #[error("target {0}: port 0")]
    ZeroPort(Uuid),
    #[error("target id {0} appears more than once")]
    DuplicateTarget(Uuid),
    #[error("active health check path must start with '/'")]
    BadCheckPath,
    #[error("{0} must be between 0 and 100")]
    BadPercent(&'static str),
    #[error("circuit breaker half_open_requests must be at least 1")]
    NoHalfOpenRequests,
}

impl UpstreamConfig {
    /// Checks what compiling would silently tolerate.
    pub fn validate(&self) -> Result<(), UpstreamConfigError> {
        let mut seen = std::collections::HashSet::new();
        for t in &self.targets {
            if t.host.is_empty() {
                return Err(UpstreamConfigError::EmptyHost(t.id));
            }
            if t.port == 0 {
                return Err(UpstreamConfigError::ZeroPort(t.id));
            }
            if !seen.insert(t.id) {
                return Err(UpstreamConfigError::DuplicateTarget(t.id));
            }
        }
        if self.active.as_ref().is_some_and(|a| !a.path.starts_with('/')) {
            return Err(UpstreamConfigError::BadCheckPath);
        }
        if self.retry.budget_percent > 100 {
            return Err(UpstreamConfigError::BadPercent("retry budget_percent"));
        }
        self.breaker.as_ref().map_or(Ok(()), BreakerConfig::validate)
    }
}

impl BreakerConfig {
    fn validate(&self) -> Result<(), UpstreamConfigError> {
        if self.failure_rate_percent > 100 {
            return Err(UpstreamConfigError::BadPercent("breaker failure_rate_percent"));
        }
        if self.half_open_requests == 0 {
            return Err(UpstreamConfigError::NoHalfOpenRequests);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = PassiveHealthConfig::default();
        assert_eq!(
            (p.consecutive_failures, p.base_ejection, p.max_ejection),
            (5, Duration::from_secs(30), Duration::from_secs(300))
        );
        assert_eq!(ActiveHealthConfig::default().expected_statuses, 200..400);
        assert_eq!(RetryConfig::default().retry_on_statuses, vec![502, 503, 504]);
        assert_eq!(UpstreamConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_reports_mistakes() {
        let t = TargetConfig::new("a", 80);
        let cfg = UpstreamConfig { targets: vec![t.clone(), t.clone()], ..Default::default() };
        assert_eq!(cfg.validate(), Err(UpstreamConfigError::DuplicateTarget(t.id)));
        let cfg = UpstreamConfig { targets: vec![TargetConfig { port: 0, ..t.clone() }], ..Default::default() };
        assert_eq!(cfg.validate(), Err(UpstreamConfigError::ZeroPort(t.id)));
        let breaker = BreakerConfig { half_open_requests: 0, ..Default::default() };
        let cfg = UpstreamConfig { breaker: Some(breaker), ..Default::default() };
        assert_eq!(cfg.validate(), Err(UpstreamConfigError::NoHalfOpenRequests));
    }
}
