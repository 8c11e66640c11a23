//! Tests of the limits module: local counting with an explicit clock, and shared counting
//! against a real Redis (private servers where a test stops one).

mod local;
mod promise;
mod redis_server;
mod shared;

use std::time::Duration;

use time::{Date, Month, OffsetDateTime};

use super::{FailurePolicy, LimitKey, Mode, Now, PlanLimits};

const SEC: u64 = 1_000_000_000;

fn utc(y: i32, mo: Month, d: u8, h: u8, mi: u8, s: u8) -> OffsetDateTime {
    Date::from_calendar_date(y, mo, d).unwrap().with_hms(h, mi, s).unwrap().assume_utc()
}

fn at(mono_ns: u64) -> Now {
    Now { mono_ns, utc: utc(2026, Month::June, 15, 12, 0, 0) }
}

fn key(name: &str) -> LimitKey {
    LimitKey::Named(format!("test-{name}-{}", uuid::Uuid::new_v4()).into())
}

fn plan(per_second: Option<u32>, per_minute: Option<u32>, burst: u32) -> PlanLimits {
    PlanLimits { per_second, per_minute, burst, ..PlanLimits::default() }
}

fn redis_plan(per_minute: u32, burst: u32, policy: FailurePolicy) -> PlanLimits {
    PlanLimits {
        per_minute: Some(per_minute),
        burst,
        mode: Mode::Redis,
        failure_policy: policy,
        ..PlanLimits::default()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
