//! Retry decisions: which failed attempts may be tried again, after how long (exponential
//! backoff with full jitter), and a retry budget so that retries cannot multiply load on an
//! upstream that is already failing.
//!
//! The budget is lock-free: requests and retries are counted in a rolling 10 s window of
//! atomic buckets. Retries may add `budget_percent` of the requests in the window, and at
//! least [`MIN_RETRIES_PER_SEC`] per second so that a quiet upstream can still retry. The
//! check and the count are two steps, so racing requests may overshoot by a few retries.

use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use super::config::RetryConfig;
use super::target::Outcome;
use super::window::{RollingCounter, nanos_since, to_nanos};

/// Retries the budget always allows per second, whatever the request rate.
pub const MIN_RETRIES_PER_SEC: u64 = 3;
/// The window over which the budget compares retries with requests.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);

/// Whether a request with this method may be sent twice without changing the outcome
/// (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

/// Retry rules and budget of one upstream.
#[derive(Debug)]
pub struct RetryPolicy {
    cfg: RetryConfig,
    /// (requests, retries).
    budget: RollingCounter,
    epoch: Instant,
}

impl RetryPolicy {
    /// A policy with an empty budget window.
    pub fn new(cfg: &RetryConfig) -> Self {
        Self { cfg: cfg.clone(), budget: RollingCounter::new(BUDGET_WINDOW), epoch: Instant::now() }
    }

    /// The configuration this policy was built from.
    pub fn config(&self) -> &RetryConfig {
        &self.cfg
    }

    /// Counts one client request (not its retries) towards the budget; call it once per
    /// request that reaches the upstream.
    pub fn record_request(&self) {
        self.budget.add(nanos_since(self.epoch), 1, 0);
    }

    /// Decides whether to retry after `failure`, where `attempt` is the number of retries
    /// already made (0 after the original request failed). Returns how long to wait first.
    ///
    /// Connect failures are retried for any method: nothing was sent, so the body is still
    /// intact. Timeouts and the configured statuses are retried only for idempotent methods
    /// whose body can be sent again. Never more than `retries`, and never past the budget
    /// (a granted retry is counted in it).
    pub fn should_retry(
        &self,
        attempt: u32,
        method: &Method,
        failure: &Outcome,
        body_replayable: bool,
    ) -> Option<Duration> {
        if attempt >= self.cfg.retries || !self.is_retryable(method, failure, body_replayable) {
            return None;
        }
        if !self.spend_budget() {
            tracing::debug!(attempt, "retry budget exhausted");
            return None;
        }
        Some(self.backoff(attempt))
    }

    fn is_retryable(&self, method: &Method, failure: &Outcome, body_replayable: bool) -> bool {
        let replayable = is_idempotent(method) && body_replayable;
        match failure {
            Outcome::Success => false,
            Outcome::ConnectFailure => true,
            Outcome::Timeout => replayable,
            Outcome::Status(status) => replayable && self.cfg.retry_on_statuses.contains(status),
        }
    }

    /// Takes one retry from the budget if there is one left.
    fn spend_budget(&self) -> bool {
        let now = nanos_since(self.epoch);
        let (requests, retries) = self.budget.totals(now);
        let floor = MIN_RETRIES_PER_SEC * BUDGET_WINDOW.as_secs();
        let allowed = (requests * u64::from(self.cfg.budget_percent) / 100).max(floor);
        if retries >= allowed {
            return false;
        }
        self.budget.add(now, 0, 1);
        true
    }

    /// A random wait in `[0, min(max_backoff, base_backoff × 2^attempt)]` ("full jitter"),
    /// which spreads retries of many clients that failed together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.cfg.base_backoff.saturating_mul(1 << attempt.min(31)).min(self.cfg.max_backoff);
        Duration::from_nanos(fastrand::u64(..=to_nanos(ceiling)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy::new(&RetryConfig { retries, ..RetryConfig::default() })
    }

    #[test]
    fn connect_failures_retry_for_any_method_others_only_when_safe() {
        let p = policy(10);
        assert!(p.should_retry(0, &Method::POST, &Outcome::ConnectFailure, false).is_some());
        assert!(p.should_retry(0, &Method::POST, &Outcome::Timeout, true).is_none());
        assert!(p.should_retry(0, &Method::POST, &Outcome::Status(503), true).is_none());
        assert!(p.should_retry(0, &Method::GET, &Outcome::Timeout, true).is_some());
        assert!(p.should_retry(0, &Method::PUT, &Outcome::Status(502), true).is_some());
        assert!(p.should_retry(0, &Method::PUT, &Outcome::Status(502), false).is_none(), "body gone");
        assert!(p.should_retry(0, &Method::GET, &Outcome::Status(500), true).is_none(), "not listed");
        assert!(p.should_retry(0, &Method::GET, &Outcome::Success, true).is_none());
        assert!(p.should_retry(0, &Method::PATCH, &Outcome::Timeout, true).is_none());
    }

    #[test]
    fn never_more_than_the_configured_retries() {
        let p = policy(2);
        assert!(p.should_retry(1, &Method::GET, &Outcome::ConnectFailure, true).is_some());
        assert!(p.should_retry(2, &Method::GET, &Outcome::ConnectFailure, true).is_none());
        assert!(policy(0).should_retry(0, &Method::GET, &Outcome::ConnectFailure, true).is_none());
    }

    #[test]
    fn backoff_is_jittered_under_an_exponential_cap() {
        let p = policy(10);
        for attempt in 0..12 {
            let cap = Duration::from_millis(25 << attempt).min(Duration::from_secs(1));
            assert!((0..50).all(|_| p.backoff(attempt) <= cap));
        }
        assert!((0..50).any(|_| p.backoff(5) > Duration::from_millis(400)), "full range is used");
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_the_floor_then_a_percentage_and_refills_over_time() {
        let p = policy(u32::MAX);
        let retry = || p.should_retry(0, &Method::GET, &Outcome::ConnectFailure, true).is_some();
        (0..100).for_each(|_| p.record_request());
        // 20 % of 100 is below the floor of 3/s × 10 s.
        assert_eq!((0..40).filter(|_| retry()).count(), 30);
        (0..200).for_each(|_| p.record_request());
        assert_eq!((0..40).filter(|_| retry()).count(), 30, "20 % of 300 requests is 60");
        tokio::time::advance(BUDGET_WINDOW + Duration::from_secs(1)).await;
        assert_eq!((0..40).filter(|_| retry()).count(), 30, "the window slid");
    }
}
