//! Local counting: GCRA bursts and refill, costs, calendar quotas, rollback, sweep, headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use time::Month;

use super::*;
use crate::config::model::PlanDef;
use crate::limits::{Backend, Denial, Limiter, LimiterConfig};

fn limiter() -> Limiter {
    Limiter::new(LimiterConfig::default()).unwrap()
}

async fn admitted(l: &Limiter, k: &LimitKey, p: &PlanLimits, cost: u32, now: Now, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        ok += usize::from(l.check(k, p, cost, now).await.allowed);
    }
    ok
}

#[tokio::test]
async fn gcra_admits_limit_plus_burst_then_refills() {
    let (l, k, p) = (limiter(), key("burst"), plan(Some(10), None, 5));
    assert_eq!(admitted(&l, &k, &p, 1, at(SEC), 20).await, 15);
    let denied = l.check(&k, &p, 1, at(SEC)).await;
    assert_eq!((denied.denied_by, denied.retry_after), (Some(Denial::Rate), Some(ms(100))));
    assert_eq!(admitted(&l, &k, &p, 1, at(SEC + 99_000_000), 1).await, 0);
    assert_eq!(admitted(&l, &k, &p, 1, at(SEC + 100_000_000), 2).await, 1);
    assert_eq!(admitted(&l, &k, &p, 1, at(3 * SEC), 20).await, 15);
}

#[tokio::test]
async fn costs_take_several_units_and_a_refusal_takes_none() {
    let (l, k, p) = (limiter(), key("cost"), plan(None, Some(10), 0));
    assert!(l.check(&k, &p, 4, at(0)).await.allowed);
    let d = l.check(&k, &p, 4, at(0)).await;
    assert_eq!((d.allowed, d.remaining, d.limit), (true, 2, 10));
    assert!(!l.check(&k, &p, 4, at(0)).await.allowed);
    assert!(l.check(&k, &p, 2, at(0)).await.allowed);
    assert!(!l.check(&k, &p, 1, at(0)).await.allowed);
}

#[tokio::test]
async fn a_full_window_gives_back_what_the_others_took() {
    let (l, k) = (limiter(), key("rollback"));
    let p = PlanLimits { quota_per_day: Some(100), ..plan(Some(2), Some(3), 0) };
    assert_eq!(admitted(&l, &k, &p, 1, at(0), 5).await, 2);
    // The second window refused the third: the minute window and the quota kept 2, not 5.
    assert_eq!(admitted(&l, &k, &p, 1, at(SEC), 5).await, 1);
    let d = l.check(&k, &PlanLimits { per_second: None, per_minute: None, ..p.clone() }, 0, at(SEC)).await;
    assert_eq!(d.remaining, 97);
}

#[tokio::test]
async fn quotas_reset_at_utc_midnight_and_on_the_first_of_the_month() {
    let (l, k) = (limiter(), key("quota"));
    let p = PlanLimits { quota_per_day: Some(3), quota_per_month: Some(5), ..PlanLimits::default() };
    let eve = Now { mono_ns: 0, utc: utc(2026, Month::January, 30, 23, 59, 59) };
    assert_eq!(admitted(&l, &k, &p, 1, eve, 5).await, 3);
    let d = l.check(&k, &p, 1, eve).await;
    assert_eq!((d.denied_by, d.retry_after, d.limit), (Some(Denial::Quota), Some(ms(1000)), 3));
    let next_day = Now { mono_ns: 0, utc: utc(2026, Month::January, 31, 0, 0, 0) };
    assert_eq!(admitted(&l, &k, &p, 1, next_day, 5).await, 2, "the month quota (5) binds");
    let d = l.check(&k, &p, 1, next_day).await;
    assert_eq!((d.limit, d.retry_after), (5, Some(ms(86_400_000))));
    let february = Now { mono_ns: 0, utc: utc(2026, Month::February, 1, 0, 0, 0) };
    assert_eq!(admitted(&l, &k, &p, 1, february, 5).await, 3);
}

#[tokio::test]
async fn concurrent_requests_on_one_key_never_exceed_the_limit() {
    let l = Arc::new(limiter());
    let (k, p) = (key("race"), plan(None, Some(1000), 0));
    let ok = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (l, k, p, ok) = (l.clone(), k.clone(), p.clone(), ok.clone());
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let d = l.local.check(&k, &p, 1, at(0), Backend::Local);
                    ok.fetch_add(u64::from(d.allowed), Ordering::Relaxed);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(ok.load(Ordering::Relaxed), 1000);
}

#[tokio::test(start_paused = true)]
async fn the_limiter_clock_follows_tokio_time() {
    let (l, k, p) = (limiter(), key("paused"), plan(Some(5), None, 0));
    assert_eq!(admitted(&l, &k, &p, 1, l.now(), 10).await, 5);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(admitted(&l, &k, &p, 1, l.now(), 10).await, 5);
}

#[tokio::test]
async fn sweep_drops_idle_keys_and_keeps_live_quotas() {
    let l = limiter();
    let (idle, quota) = (key("idle"), key("quota"));
    assert!(l.check(&idle, &plan(Some(10), None, 0), 1, at(0)).await.allowed);
    let q = PlanLimits { quota_per_day: Some(10), ..PlanLimits::default() };
    assert!(l.check(&quota, &q, 1, at(0)).await.allowed);
    assert_eq!(l.sweep(at(SEC / 20)), 0, "the rate window is still refilling");
    assert_eq!(l.sweep(at(SEC)), 1);
    let tomorrow = Now { mono_ns: SEC, utc: utc(2026, Month::June, 16, 0, 0, 0) };
    assert_eq!((l.sweep(tomorrow), l.local_keys()), (1, 0));
}

#[tokio::test]
async fn headers_carry_the_tightest_limit_and_retry_after() {
    let (l, k, p) = (limiter(), key("headers"), plan(Some(2), Some(100), 0));
    let mut h = HeaderMap::new();
    l.check(&k, &p, 1, at(0)).await.write_headers(&mut h);
    assert_eq!((h["ratelimit-limit"].to_str().unwrap(), h["x-ratelimit-remaining"].to_str().unwrap()), ("2", "1"));
    assert!(h.get("retry-after").is_none());
    l.check(&k, &p, 1, at(0)).await;
    let mut h = HeaderMap::new();
    let d = l.check(&k, &p, 1, at(0)).await;
    d.write_headers(&mut h);
    assert_eq!((h["retry-after"].to_str().unwrap(), h["ratelimit-remaining"].to_str().unwrap()), ("1", "0"));
    assert_eq!(h["ratelimit-reset"].to_str().unwrap(), "1");
    let mut h = HeaderMap::new();
    l.check(&k, &PlanLimits::default(), 1, at(0)).await.write_headers(&mut h);
    assert!(h.is_empty(), "no limits, no headers");
}

/// The header lines written for HTTP/1.1 clients are exactly the header-map fields.
#[tokio::test]
async fn header_lines_equal_the_header_fields() {
    let (l, k, p) = (limiter(), key("lines"), plan(Some(2), Some(100), 0));
    let as_lines = |h: &HeaderMap| -> String {
        h.iter().map(|(n, v)| format!("{}: {}\r\n", n, v.to_str().unwrap_or("?"))).collect()
    };
    let mut seen = 0;
    for d in [l.check(&k, &p, 1, at(0)).await, l.check(&k, &p, 1, at(0)).await, l.check(&k, &p, 1, at(0)).await] {
        let (mut lines, mut h) = (Vec::new(), HeaderMap::new());
        d.write_lines(&mut lines);
        d.write_headers(&mut h);
        assert_eq!(String::from_utf8_lossy(&lines), as_lines(&h));
        seen += usize::from(h.contains_key("retry-after"));
    }
    assert_eq!(seen, 1, "the third request was refused, with Retry-After");
    let mut lines = Vec::new();
    l.check(&k, &PlanLimits::default(), 1, at(0)).await.write_lines(&mut lines);
    assert!(lines.is_empty());
}

#[test]
fn plan_limits_come_from_the_plan_definition() {
    let def = PlanDef {
        id: uuid::Uuid::nil(),
        api_id: uuid::Uuid::nil(),
        name: "gold".into(),
        rate_limit_per_second: Some(5),
        rate_limit_per_minute: None,
        rate_limit_per_hour: Some(-1),
        burst: 3,
        quota_per_day: None,
        quota_per_month: Some(1000),
        limit_mode: "redis".into(),
        redis_failure_policy: "fail_closed".into(),
        route_costs: Default::default(),
    };
    let p = PlanLimits::from(&def);
    assert_eq!((p.per_second, p.per_hour, p.burst, p.quota_per_month), (Some(5), None, 3, Some(1000)));
    assert_eq!((p.mode, p.failure_policy), (Mode::Redis, FailurePolicy::FailClosed));
    let share = p.share(3);
    assert_eq!(
        (share.per_second, share.burst, share.quota_per_month, share.mode),
        (Some(1), 1, Some(333), Mode::Local)
    );
}

#[test]
fn the_utc_clock_is_read_only_for_plans_with_quotas() {
    let l = limiter();
    let rate_only = plan(Some(10), None, 0);
    assert!(!rate_only.has_quotas());
    assert_eq!(l.now_for(&rate_only).utc, time::OffsetDateTime::UNIX_EPOCH);
    let quota = PlanLimits { quota_per_month: Some(10), ..PlanLimits::default() };
    assert!(quota.has_quotas());
    let drift = (l.now_for(&quota).utc - time::OffsetDateTime::now_utc()).abs();
    assert!(drift < time::Duration::seconds(5), "{drift}");
}
