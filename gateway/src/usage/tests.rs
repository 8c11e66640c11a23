//! The recorder on its own: counts per series from several threads, the overflow folding,
//! and what one take returns. (Writing to PostgreSQL is tested with a real database in
//! `admin/tests/usage.rs`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use uuid::Uuid;

use super::*;

fn who(n: u128) -> Attribution {
    Attribution {
        api: Uuid::from_u128(1),
        route: Uuid::from_u128(2),
        consumer: Uuid::from_u128(1000 + n),
        credential: Uuid::from_u128(2000 + n),
        plan: Uuid::from_u128(3),
    }
}

#[test]
fn status_classes_tell_refusals_and_gateway_failures_apart() {
    let c = |s: u16, made| StatusClass::of(StatusCode::from_u16(s).unwrap_or(StatusCode::IM_A_TEAPOT), made).0;
    assert_eq!([c(200, false), c(204, true), c(301, false), c(101, false)], [2, 2, 3, 1]);
    assert_eq!([c(401, true), c(403, true), c(429, true), c(404, true), c(413, true)], [401, 403, 429, 4, 4]);
    assert_eq!([c(502, false), c(503, false), c(502, true), c(504, true)], [5, 5, 500, 500]);
    for code in StatusClass::ALL {
        assert_eq!(StatusClass::from_name(StatusClass(code).name()), Some(StatusClass(code)));
    }
}

#[test]
fn every_request_from_every_thread_is_counted_once() {
    let r = Arc::new(Recorder::new(1000));
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..5_000u64 {
                    let class = StatusClass(if i % 10 == 0 { 429 } else { 2 });
                    r.record(&who(u128::from(i % 7)), class, started, Duration::from_micros(100 + i % 900), 10, 20 + t);
                }
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_ok());
    }
    let batch = r.take();
    let total: u64 = batch.values().map(|c| c.requests).sum();
    assert_eq!(total, 20_000);
    assert_eq!(batch.len(), 14, "7 consumers × 2 classes, one series each across threads");
    let refused: u64 = batch.iter().filter(|(k, _)| k.class.0 == 429).map(|(_, c)| c.requests).sum();
    assert_eq!(refused, 2_000);
    let bytes_in: u64 = batch.values().map(|c| c.request_bytes).sum();
    assert_eq!(bytes_in, 200_000);
    assert!(batch.values().all(|c| c.hist.count() == c.requests));
    assert!(r.take().is_empty(), "a take empties the shards");
    assert_eq!(r.stats.live_series.load(Ordering::Relaxed), 0);
}

#[test]
fn new_series_past_the_cap_are_folded_not_lost() {
    let r = Recorder::new(10);
    let started = Instant::now();
    for n in 0..100u128 {
        for _ in 0..3 {
            r.record(&who(n), StatusClass(2), started, Duration::from_millis(1), 0, 0);
        }
    }
    let batch = r.take();
    assert_eq!(batch.values().map(|c| c.requests).sum::<u64>(), 300, "every request still counted");
    let own = batch.keys().filter(|k| !Recorder::is_overflow(k)).count();
    assert_eq!(own, 10);
    let folded: Vec<_> = batch.iter().filter(|(k, _)| Recorder::is_overflow(k)).collect();
    assert_eq!(folded.len(), 1, "one overflow series for the API");
    assert_eq!(folded[0].0.api, Uuid::from_u128(1), "the overflow series keeps its API");
    assert_eq!(folded[0].1.requests, 270);
    assert_eq!(r.stats.folded_requests.load(Ordering::Relaxed), 270);
}

#[test]
fn past_the_reserve_series_fold_into_one_per_class() {
    let r = Recorder::new(1);
    let started = Instant::now();
    // The reserve for per-API overflow series is 64 above the cap of 1.
    for api in 0..200u128 {
        let w = Attribution { api: Uuid::from_u128(10_000 + api), ..who(api) };
        r.record(&w, StatusClass(2), started, Duration::from_millis(1), 0, 0);
    }
    let batch = r.take();
    assert_eq!(batch.values().map(|c| c.requests).sum::<u64>(), 200);
    assert!(batch.len() <= 1 + 64 + 1, "bounded: {} series", batch.len());
    assert!(batch.keys().any(|k| k.api == OTHER));
}

#[test]
fn requests_land_in_the_minute_they_started() {
    let r = Recorder::new(10);
    let now = Instant::now();
    r.record(&who(0), StatusClass(2), now, Duration::ZERO, 0, 0);
    let wall_minute = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64 / 60);
    let batch = r.take();
    let minute = batch.keys().next().map(|k| k.minute).unwrap_or_default();
    assert!((minute - wall_minute).abs() <= 1, "{minute} vs {wall_minute}");
}

#[test]
fn two_recorders_on_one_thread_keep_their_own_counts() {
    let (a, b) = (Recorder::new(10), Recorder::new(10));
    let started = Instant::now();
    a.record(&who(0), StatusClass(2), started, Duration::ZERO, 0, 0);
    b.record(&who(0), StatusClass(2), started, Duration::ZERO, 0, 0);
    b.record(&who(0), StatusClass(2), started, Duration::ZERO, 0, 0);
    assert_eq!(a.take().values().map(|c| c.requests).sum::<u64>(), 1);
    assert_eq!(b.take().values().map(|c| c.requests).sum::<u64>(), 2);
}

#[test]
fn stats_render_as_prometheus_series() {
    let r = Recorder::new(10);
    r.stats.dropped_requests.store(7, Ordering::Relaxed);
    let mut text = String::new();
    r.stats.render(&mut text);
    assert!(
        text.contains(
            "# TYPE tollgate_usage_dropped_requests_total counter\ntollgate_usage_dropped_requests_total 7\n"
        )
    );
    assert!(text.contains("tollgate_usage_flush_lag_seconds -1\n"), "no flush yet: {text}");
}
