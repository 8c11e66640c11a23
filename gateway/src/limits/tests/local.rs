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
async fn gcra_admits_burst_plus_one_at_once_then_one_per_interval() {
    let (l, k, p) = (limiter(), key("burst"), plan(Some(10), None, 5));
    assert_eq!(admitted(&l, &k, &p, 1, at(SEC), 20).await, 6, "B + 1 at once");
    let denied = l.check(&k, &p, 1, at(SEC)).await;
    assert_eq!((denied.denied_by, denied.retry_after), (Some(Denial::Rate), Some(ms(100))));
    assert_eq!(admitted(&l, &k, &p, 1, at(SEC + 99_000_000), 1).await, 0);
    assert_eq!(admitted(&l, &k, &p, 1, at(SEC + 100_000_000), 2).await, 1, "one per W / N");
    assert_eq!(admitted(&l, &k, &p, 1, at(3 * SEC), 20).await, 6, "idle for W: B + 1 again");
    let smooth = plan(None, Some(600), 0);
    assert_eq!(admitted(&l, &key("smooth"), &smooth, 1, at(0), 5).await, 1, "no burst: one at a time");
}

#[tokio::test]
async fn costs_take_several_units_and_a_refusal_takes_none() {
    let (l, k, p) = (limiter(), key("cost"), plan(None, Some(10), 5));
    assert!(l.check(&k, &p, 4, at(0)).await.allowed);
    let d = l.check(&k, &p, 2, at(0)).await;
    assert_eq!((d.allowed, d.remaining, d.limit), (true, 0, 10), "6 units at once, all taken");
    assert!(!l.check(&k, &p, 1, at(0)).await.allowed);
    assert!(!l.check(&k, &p, 2, at(6 * SEC)).await.allowed, "one interval (6 s) frees one unit");
    assert!(l.check(&k, &p, 1, at(6 * SEC)).await.allowed);
}

#[tokio::test]
async fn a_request_costing_more_than_the_burst_passes_only_when_the_window_is_full() {
    let (l, k, p) = (limiter(), key("dear"), plan(None, Some(10), 0));
    assert!(l.check(&k, &p, 4, at(0)).await.allowed, "a full window admits it");
    let d = l.check(&k, &p, 4, at(0)).await;
    assert_eq!((d.allowed, d.retry_after), (false, Some(Duration::from_secs(24))), "4 intervals of 6 s");
    assert!(!l.check(&k, &p, 4, at(23 * SEC)).await.allowed);
    assert!(l.check(&k, &p, 4, at(24 * SEC)).await.allowed);
}

#[tokio::test]
async fn a_full_window_gives_back_what_the_others_took() {
    let (l, k) = (limiter(), key("rollback"));
    let p = PlanLimits { quota_per_day: Some(100), ..plan(Some(2), Some(3), 2) };
    assert_eq!(admitted(&l, &k, &p, 1, at(0), 5).await, 3, "the second and minute windows take 3 at once");
    // The minute window refuses the next until 20 s: the second window and the quota kept 3.
    assert_eq!(admitted(&l, &k, &p, 1, at(SEC), 5).await, 0);
    let d = l.check(&k, &PlanLimits { per_second: None, per_minute: None, ..p.clone() }, 0, at(SEC)).await;
    assert_eq!(d.remaining, 97);
    assert_eq!(admitted(&l, &k, &p, 1, at(20 * SEC), 5).await, 1);
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
    let (k, p) = (key("race"), plan(None, Some(1000), 999));
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
    let (l, k, p) = (limiter(), key("paused"), plan(Some(5), None, 4));
    assert_eq!(admitted(&l, &k, &p, 1, l.now(), 10).await, 5);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(admitted(&l, &k, &p, 1, l.now(), 10).await, 5);
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(admitted(&l, &k, &p, 1, l.now(), 10).await, 1);
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

fn fields(d: &crate::limits::Decision) -> Vec<(String, String)> {
    let mut h = HeaderMap::new();
    d.write_headers(&mut h);
    let mut v: Vec<_> = h.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned())).collect();
    v.sort();
    v
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
    v.sort();
    v
}

#[tokio::test]
async fn headers_state_the_policy_and_agree_with_retry_after() {
    let (l, k) = (limiter(), key("headers"));
    let p = PlanLimits { quota_per_day: Some(1000), ..plan(Some(2), Some(100), 3) };
    let policy = crate::limits::policy_header(&p);
    let with_policy = |mut d: crate::limits::Decision| {
        d.policy.clone_from(&policy);
        d
    };
    let first = with_policy(l.check(&k, &p, 1, at(0)).await);
    let policy_text = "\"second\";q=5;w=1, \"minute\";q=103;w=60, \"day\";q=1000;w=86400";
    assert_eq!(
        fields(&first),
        pairs(&[("ratelimit-policy", policy_text), ("ratelimit", "\"minute\";r=3;t=1")]),
        "3 more at once in both windows: the one that takes longer to refill is named"
    );
    for _ in 0..3 {
        assert!(l.check(&k, &p, 1, at(0)).await.allowed);
    }
    let denied = with_policy(l.check(&k, &p, 1, at(0)).await);
    assert_eq!(denied.retry_after, Some(ms(600)), "the minute window frees a unit in 600 ms");
    assert_eq!(
        fields(&denied),
        pairs(&[("ratelimit-policy", policy_text), ("ratelimit", "\"minute\";r=0;t=1"), ("retry-after", "1")]),
        "t is the Retry-After value"
    );
    let legacy = crate::limits::Decision { style: crate::limits::HeaderStyle::Legacy, ..denied.clone() };
    assert_eq!(
        fields(&legacy),
        pairs(&[
            ("ratelimit-limit", "100"),
            ("x-ratelimit-limit", "100"),
            ("ratelimit-remaining", "0"),
            ("x-ratelimit-remaining", "0"),
            ("ratelimit-reset", "1"),
            ("x-ratelimit-reset", "1"),
            ("retry-after", "1"),
        ])
    );
    let both = crate::limits::Decision { style: crate::limits::HeaderStyle::Both, ..denied };
    assert_eq!(fields(&both).len(), 9);
    let unlimited = l.check(&k, &PlanLimits::default(), 1, at(0)).await;
    assert!(fields(&unlimited).is_empty(), "no limits, no headers");
    let closed = crate::limits::Decision::unavailable(Duration::from_millis(1500));
    assert_eq!(fields(&closed), pairs(&[("retry-after", "2")]), "no limit claimed while the counter is down");
}

/// The header lines written for HTTP/1.1 clients are exactly the header-map fields.
#[tokio::test]
async fn header_lines_equal_the_header_fields() {
    let (l, k, p) = (limiter(), key("lines"), plan(Some(2), Some(100), 1));
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
    assert_eq!((share.quota_per_month, share.mode, share.nodes), (Some(333), Mode::Local, 3));
    let w = share.rate_windows().next().unwrap();
    assert_eq!((w.interval_ns, w.tolerance_ns), (600_000_000, 600_000_000), "3 × 200 ms, ⌊4 / 3⌋ at once");
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
