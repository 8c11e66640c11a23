//! Circuit breaker state transitions, on tokio's paused clock.

use std::time::Duration;

use bytes::Bytes;

use super::*;

fn config() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: 3,
        failure_rate_percent: 50,
        min_requests: 10,
        window: Duration::from_secs(10),
        open_for: Duration::from_secs(5),
        half_open_requests: 2,
        fallback: None,
    }
}

fn run(breaker: &Breaker, success: bool) {
    if let Ok(permit) = breaker.admit() {
        permit.record(success);
    }
}

fn open_by_consecutive_failures(breaker: &Breaker) {
    (0..3).for_each(|_| run(breaker, false));
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_and_a_success_resets_the_count() {
    let breaker = Breaker::new(&config());
    run(&breaker, false);
    run(&breaker, false);
    run(&breaker, true);
    run(&breaker, false);
    run(&breaker, false);
    assert_eq!(breaker.state(), BreakerState::Closed);
    run(&breaker, false);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_opens_once_min_requests_are_seen() {
    let breaker = Breaker::new(&BreakerConfig { consecutive_failures: 0, ..config() });
    for _ in 0..4 {
        run(&breaker, true);
        run(&breaker, false);
    }
    assert_eq!(breaker.state(), BreakerState::Closed, "8 requests are below min_requests");
    run(&breaker, true);
    run(&breaker, false);
    assert_eq!(breaker.state(), BreakerState::Open, "10 requests, 50 % failed");
}

#[tokio::test(start_paused = true)]
async fn old_failures_slide_out_of_the_window() {
    let breaker = Breaker::new(&BreakerConfig { consecutive_failures: 0, ..config() });
    (0..9).for_each(|_| run(&breaker, false));
    tokio::time::advance(Duration::from_secs(11)).await;
    (0..9).for_each(|_| run(&breaker, true));
    run(&breaker, false);
    assert_eq!(breaker.state(), BreakerState::Closed, "1 failure in 10 recent requests");
}

#[tokio::test(start_paused = true)]
async fn open_rejects_with_the_fallback_until_open_for_has_passed() {
    let fallback = FallbackResponse { status: 200, content_type: "text/plain".into(), body: Bytes::from("later") };
    let breaker = Breaker::new(&BreakerConfig { fallback: Some(fallback.clone()), ..config() });
    open_by_consecutive_failures(&breaker);
    let rejected = breaker.admit().err();
    assert_eq!(rejected.as_ref().and_then(|r| r.fallback.as_deref()), Some(&fallback));
    assert_eq!(rejected.as_ref().map(Rejected::status), Some(200));
    assert_eq!(rejected.and_then(|r| r.retry_after), Some(Duration::from_secs(5)));
    tokio::time::advance(Duration::from_millis(4999)).await;
    assert!(breaker.admit().is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(breaker.admit().is_ok_and(|p| p.is_trial()));
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_only_the_trials_and_closes_when_all_succeed() {
    let breaker = Breaker::new(&config());
    open_by_consecutive_failures(&breaker);
    tokio::time::advance(Duration::from_secs(5)).await;
    let (first, second) = (breaker.admit(), breaker.admit());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert!(breaker.admit().is_err_and(|r| r.retry_after.is_none() && r.status() == 503));
    let (Ok(first), Ok(second)) = (first, second) else { panic!("two trials are admitted") };
    first.record(true);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    second.record(true);
    assert_eq!(breaker.state(), BreakerState::Closed);
    // Fresh counters: it takes the full number of failures again.
    run(&breaker, false);
    run(&breaker, false);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_or_dropped_trial_reopens() {
    let breaker = Breaker::new(&config());
    open_by_consecutive_failures(&breaker);
    tokio::time::advance(Duration::from_secs(5)).await;
    let late = breaker.admit();
    assert!(late.as_ref().is_ok_and(Permit::is_trial));
    run(&breaker, false);
    assert_eq!(breaker.state(), BreakerState::Open);
    // A trial of the finished round changes nothing, even when it succeeds.
    if let Ok(permit) = late {
        permit.record(true);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(5)).await;
    drop(breaker.admit());
    assert_eq!(breaker.state(), BreakerState::Open, "dropping a permit counts as failure");
}

#[tokio::test(start_paused = true)]
async fn results_of_closed_permits_do_not_reopen_after_a_trip() {
    let breaker = Breaker::new(&config());
    let straggler = breaker.admit();
    open_by_consecutive_failures(&breaker);
    tokio::time::advance(Duration::from_secs(5)).await;
    let trial = breaker.admit();
    drop(straggler);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    drop(trial);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[test]
fn word_round_trips() {
    let w = Word { state: HALF_OPEN, generation: GENERATION_MASK, issued: 7, succeeded: MAX_TRIALS };
    assert_eq!(Word::unpack(w.pack()), w);
    assert_eq!(w.next(CLOSED).generation, 0);
}
