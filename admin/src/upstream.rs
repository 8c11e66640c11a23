//! Resilience settings of an API's upstream, stored as JSON objects on the API: active and
//! passive health checks and the circuit breaker. Absent means the gateway's defaults
//! (passive checks on, active checks and breaker off).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::{HEADER_VALUE_PATTERN, Violations, blank_or_control_class, is_blank_or_control, is_header_value};

/// Longest probe path, in characters.
const MAX_PROBE_PATH: usize = 1024;
/// Largest fallback body, in characters.
const MAX_FALLBACK_BODY: usize = 65_536;

/// An absolute path without white space or control characters.
const PROBE_PATH_PATTERN: &str = concat!("^/[^", blank_or_control_class!(), "]*$");

fn probe_path_schema() -> utoipa::openapi::schema::ObjectBuilder {
    crate::validate::string_schema(PROBE_PATH_PATTERN, MAX_PROBE_PATH).description(Some("Probe path, e.g. `/healthz`."))
}

fn content_type_schema() -> utoipa::openapi::schema::ObjectBuilder {
    crate::validate::string_schema(HEADER_VALUE_PATTERN, 1024).description(Some("Content-Type of the fallback body."))
}

fn valid_probe_path(p: &str) -> bool {
    p.starts_with('/') && p.chars().count() <= MAX_PROBE_PATH && !p.chars().any(is_blank_or_control)
}

/// Active health checks: the gateway probes every target with `GET path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Probe path, e.g. `/healthz`.
    #[schema(schema_with = probe_path_schema)]
    pub path: String,
    #[schema(minimum = 100, maximum = 3600000)]
    pub interval_ms: u32,
    #[schema(minimum = 10, maximum = 60000)]
    pub timeout_ms: u32,
    /// Consecutive successes that mark a target healthy again.
    #[schema(minimum = 1, maximum = 100)]
    pub healthy_threshold: u32,
    /// Consecutive failures that mark a target unhealthy.
    #[schema(minimum = 1, maximum = 100)]
    pub unhealthy_threshold: u32,
}

/// Passive health: targets failing live traffic are ejected for a growing period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PassiveHealth {
    #[schema(minimum = 1, maximum = 1000)]
    pub consecutive_failures: u32,
    #[schema(minimum = 100, maximum = 3600000)]
    pub base_ejection_ms: u32,
    #[schema(minimum = 100, maximum = 86400000)]
    pub max_ejection_ms: u32,
}

/// A fixed response sent while the circuit is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fallback {
    #[schema(minimum = 200, maximum = 599)]
    pub status: u16,
    #[schema(schema_with = content_type_schema)]
    pub content_type: String,
    #[schema(max_length = 65536)]
    pub body: String,
}

/// Circuit breaker of the upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Consecutive failures that open the circuit.
    #[schema(minimum = 1, maximum = 10000)]
    pub consecutive_failures: u32,
    /// Failure rate (percent) over `window_ms` that opens the circuit, given `min_requests`.
    #[schema(minimum = 1, maximum = 100)]
    pub failure_rate_percent: u8,
    #[schema(minimum = 1, maximum = 1000000)]
    pub min_requests: u32,
    #[schema(minimum = 100, maximum = 3600000)]
    pub window_ms: u32,
    /// How long the circuit stays open before trial requests.
    #[schema(minimum = 100, maximum = 3600000)]
    pub open_ms: u32,
    #[schema(minimum = 1, maximum = 1000)]
    pub half_open_requests: u32,
    #[serde(default)]
    pub fallback: Option<Fallback>,
}

fn within(v: &mut Violations, field: &str, value: u32, lo: u32, hi: u32) {
    v.check((lo..=hi).contains(&value), field, &format!("must be {lo} to {hi}"));
}

impl HealthCheck {
    pub(crate) fn validate(&self, v: &mut Violations) {
        v.check(valid_probe_path(&self.path), "health_check", "path must be an absolute path");
        within(v, "health_check", self.interval_ms, 100, 3_600_000);
        within(v, "health_check", self.timeout_ms, 10, 60_000);
        within(v, "health_check", self.healthy_threshold, 1, 100);
        within(v, "health_check", self.unhealthy_threshold, 1, 100);
    }
}

impl PassiveHealth {
    pub(crate) fn validate(&self, v: &mut Violations) {
        within(v, "passive_health", self.consecutive_failures, 1, 1000);
        within(v, "passive_health", self.base_ejection_ms, 100, 3_600_000);
        within(v, "passive_health", self.max_ejection_ms, self.base_ejection_ms.max(100), 86_400_000);
    }
}

impl CircuitBreaker {
    pub(crate) fn validate(&self, v: &mut Violations) {
        within(v, "circuit_breaker", self.consecutive_failures, 1, 10_000);
        within(v, "circuit_breaker", u32::from(self.failure_rate_percent), 1, 100);
        within(v, "circuit_breaker", self.min_requests, 1, 1_000_000);
        within(v, "circuit_breaker", self.window_ms, 100, 3_600_000);
        within(v, "circuit_breaker", self.open_ms, 100, 3_600_000);
        within(v, "circuit_breaker", self.half_open_requests, 1, 1000);
        if let Some(f) = &self.fallback {
            within(v, "circuit_breaker", u32::from(f.status), 200, 599);
            let body_ok = f.body.chars().count() <= MAX_FALLBACK_BODY;
            v.check(body_ok, "circuit_breaker", "fallback body must be at most 65536 characters");
            let type_ok = is_header_value(&f.content_type) && f.content_type.len() <= 1024;
            v.check(type_ok, "circuit_breaker", "fallback content_type must be a header value");
        }
    }
}

/// Whether `s` is `ip`, `header:<name>` or `cookie:<name>`.
pub fn valid_hash_on(s: &str) -> bool {
    let name_ok = |n: &str, extra: &[char]| {
        (1..=128).contains(&n.len()) && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
    };
    s == "ip"
        || s.strip_prefix("header:").is_some_and(|n| name_ok(n, &[]))
        || s.strip_prefix("cookie:").is_some_and(|n| name_ok(n, &['_', '.']))
}
