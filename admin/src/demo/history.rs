//! The demo's usage history: 30 days of *synthetic* hourly usage, made up from a seeded
//! random number generator (a daily rhythm, quieter weekends, slow growth, some errors and
//! refusals), so the 30-day and 24-hour charts have something to show on a fresh install.
//! No request behind these numbers ever happened; real usage starts with the live traffic.
//!
//! The rows are those a gateway's flush and the admin's roll-up would have produced: each
//! hour written to the hour tiers with the gateway's own series writer, stopping before the
//! current hour (which the roll-up computes from the live minutes); the days are then
//! computed by the admin's roll-up, so days and hours agree.

use std::f64::consts::PI;

use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use tollgate_gateway::usage::flush::{insert_series, per_api};
use tollgate_gateway::usage::histogram::bucket_of;
use tollgate_gateway::usage::{Counts, SeriesKey, StatusClass};
use uuid::Uuid;

use super::CreatedApi;
use crate::usage::Retention;
use crate::usage::rollup::roll_up;

/// Hours of history.
const HOURS: i64 = 30 * 24;
/// Series written per statement.
const CHUNK: usize = 5_000;
/// Keyless calls (refused with 401) per API and hour at the busiest time.
const KEYLESS_PER_HOUR: f64 = 120.0;

/// Calls of one consumer's key on one route (or keyless calls on one route).
#[derive(Debug, Clone)]
pub struct Stream {
    api: Uuid,
    route: Uuid,
    consumer: Uuid,
    credential: Uuid,
    plan: Uuid,
    /// Calls in the busiest hour of the day.
    per_hour: f64,
    /// Typical upstream latency.
    latency_ms: f64,
    /// Share refused with 429 (the app calls more than its plan allows).
    limited: f64,
}

impl Stream {
    /// The streams of a subscription: `per_hour` calls split over the API's routes by weight.
    pub fn for_subscription(
        api: &CreatedApi,
        consumer: Uuid,
        credential: Uuid,
        plan: Uuid,
        per_hour: f64,
        limited: f64,
    ) -> Vec<Stream> {
        let total: u32 = api.spec.routes.iter().map(|r| r.weight).sum();
        api.spec
            .routes
            .iter()
            .zip(&api.routes)
            .map(|(spec, route)| Stream {
                api: api.id,
                route: *route,
                consumer,
                credential,
                plan,
                per_hour: per_hour * f64::from(spec.weight) / f64::from(total.max(1)),
                latency_ms: spec.latency_ms,
                limited,
            })
            .collect()
    }

    /// Calls without a key on the API's first route: all refused with 401.
    pub fn keyless(api: &CreatedApi) -> Option<Stream> {
        let route = *api.routes.first()?;
        let nil = Uuid::nil();
        Some(Stream {
            api: api.id,
            route,
            consumer: nil,
            credential: nil,
            plan: nil,
            per_hour: KEYLESS_PER_HOUR,
            latency_ms: 0.0,
            limited: 0.0,
        })
    }

    fn keyless_only(&self) -> bool {
        self.credential.is_nil()
    }
}

/// Writes the history of `streams` for the 30 days before the current hour and rolls it up
/// into days; returns the number of requests it holds.
pub async fn write(pool: &PgPool, streams: &[Stream], retention: &Retention) -> anyhow::Result<u64> {
    let now = OffsetDateTime::now_utc();
    let this_hour = now.unix_timestamp().div_euclid(3600) * 60;
    let mut rng = fastrand::Rng::with_seed(15);
    let mut rows = Vec::new();
    for age in 1..=HOURS {
        let minute = this_hour - age * 60;
        let load = load_at(minute, age);
        for stream in streams {
            rows.extend(hour_of(&mut rng, stream, minute, load));
        }
    }
    rows.sort_unstable_by_key(|(key, _)| *key);
    let requests = rows.iter().map(|(_, c)| c.requests).sum();
    let mut tx = pool.begin().await?;
    for chunk in rows.chunks(CHUNK) {
        insert_series(&mut tx, "usage_hours", chunk).await?;
    }
    for chunk in per_api(&rows).chunks(CHUNK) {
        insert_series(&mut tx, "usage_api_hours", chunk).await?;
    }
    let first = now - Duration::hours(HOURS + 1);
    sqlx::query(
        "INSERT INTO usage_rollup_pending (tier, bucket)
         SELECT 'day', d FROM generate_series(date_trunc('day', $1::timestamptz, 'UTC'), $2::timestamptz, '1 day') AS d
         ON CONFLICT (tier, bucket) DO UPDATE SET touched_at = now()",
    )
    .bind(first)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    roll_up(pool, retention).await?;
    Ok(requests)
}

/// How busy the hour starting at `minute` (Unix minutes) is, relative to the busiest: a
/// daily rhythm peaking at 14:00 UTC, quieter weekends, and 40 % growth over the month.
fn load_at(minute: i64, age_hours: i64) -> f64 {
    let hour = minute.div_euclid(60).rem_euclid(24) as f64;
    let daily = 0.3 + 0.7 * (0.5 + 0.5 * (2.0 * PI * (hour - 14.0) / 24.0).cos());
    // 1970-01-01 was a Thursday: days 2 and 3 of the week counted from it are Saturday and Sunday.
    let weekday = minute.div_euclid(24 * 60).rem_euclid(7);
    let weekend = if matches!(weekday, 2 | 3) { 0.6 } else { 1.0 };
    let growth = 1.0 - 0.4 * age_hours as f64 / HOURS as f64;
    daily * weekend * growth
}

/// One hour of `stream`: its requests split into status classes.
fn hour_of(rng: &mut fastrand::Rng, stream: &Stream, minute: i64, load: f64) -> Vec<(SeriesKey, Counts)> {
    let calls = (stream.per_hour * load * (0.85 + 0.3 * rng.f64())).round() as u64;
    let key = |class: i16| SeriesKey {
        minute,
        api: stream.api,
        route: stream.route,
        consumer: stream.consumer,
        credential: stream.credential,
        plan: stream.plan,
        class: StatusClass(class),
    };
    // Refusals are the gateway's own answers: fast and small.
    if stream.keyless_only() {
        return vec![(key(401), counts(rng, calls, 0.3, 180))];
    }
    let share = |rng: &mut fastrand::Rng, n: u64, p: f64| ((n as f64) * p * 2.0 * rng.f64()).round() as u64;
    let limited = share(rng, calls, stream.limited).min(calls);
    let left = calls - limited;
    let failed = share(rng, left, 0.006).min(left);
    let rejected = share(rng, left - failed, 0.02).min(left - failed);
    let ok = left - failed - rejected;
    let ms = stream.latency_ms;
    [(2, ok, ms, 950), (4, rejected, ms * 0.8, 220), (5, failed, ms * 1.6, 160), (429, limited, 0.3, 210)]
        .into_iter()
        .filter(|(_, n, _, _)| *n > 0)
        .map(|(class, n, ms, bytes)| (key(class), counts(rng, n, ms, bytes)))
        .collect()
}

/// Counts of `n` requests with latencies around `median_ms` (log-normal) and responses of
/// about `response_bytes`; a few sampled latencies stand for all of them.
fn counts(rng: &mut fastrand::Rng, n: u64, median_ms: f64, response_bytes: u64) -> Counts {
    let mut c = Counts { requests: n, request_bytes: n * 320, response_bytes: n * response_bytes, ..Counts::default() };
    let samples = n.min(16);
    for i in 0..samples {
        let weight = n / samples + u64::from(i < n % samples);
        let us = (median_ms * 1000.0 * (0.45 * gaussian(rng)).exp()).max(50.0) as u64;
        c.latency_us_sum += us * weight;
        c.hist.add(bucket_of(us), weight);
    }
    c
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut fastrand::Rng) -> f64 {
    let u = 1.0 - rng.f64();
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * rng.f64()).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busiest_hour_is_the_afternoon_of_a_recent_weekday() {
        // 2026-12-01 (a Tuesday) 14:00 UTC, an hour ago; and 04:00 the same day.
        let afternoon = 1_796_133_600 / 60;
        assert!((load_at(afternoon, 1) - 1.0).abs() < 0.01);
        assert!(load_at(afternoon - 10 * 60, 11) < 0.4);
        // The Saturday before, same time, is quieter.
        assert!(load_at(afternoon - 3 * 24 * 60, 73) < 0.65);
    }

    #[test]
    fn an_hour_splits_into_classes_that_add_up() {
        let mut rng = fastrand::Rng::with_seed(1);
        let id = Uuid::now_v7();
        let stream = Stream {
            api: id,
            route: id,
            consumer: id,
            credential: id,
            plan: id,
            per_hour: 1000.0,
            latency_ms: 20.0,
            limited: 0.1,
        };
        let rows = hour_of(&mut rng, &stream, 0, 1.0);
        let total: u64 = rows.iter().map(|(_, c)| c.requests).sum();
        assert!((850..=1150).contains(&total), "{total}");
        for (key, c) in &rows {
            assert_eq!(c.hist.count(), c.requests, "class {:?}: the histogram counts every request", key.class);
        }
        let ok = rows.iter().find(|(k, _)| k.class == StatusClass(2)).map(|(_, c)| c.hist.quantile(0.5));
        let p50 = ok.flatten().unwrap_or_default();
        assert!((10_000.0..40_000.0).contains(&p50), "median {p50} µs");
    }
}
