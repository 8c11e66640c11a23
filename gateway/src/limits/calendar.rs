//! UTC calendar windows of quotas: a day starts at midnight UTC, a month on its first day.

use time::{Date, Duration as TimeDuration, OffsetDateTime, Time};

use super::plan::QuotaPeriod;

/// The window containing `now`: its start (Unix seconds) and nanoseconds until it ends.
pub(crate) fn window(period: QuotaPeriod, now: OffsetDateTime) -> Option<(i64, u64)> {
    let now = now.to_offset(time::UtcOffset::UTC);
    let (start, end) = match period {
        QuotaPeriod::Day => {
            let start = now.date();
            (start, start.next_day()?)
        }
        QuotaPeriod::Month => {
            let start = now.date().replace_day(1).ok()?;
            let (y, m) = match start.month() {
                time::Month::December => (start.year() + 1, time::Month::January),
                m => (start.year(), m.next()),
            };
            (start, Date::from_calendar_date(y, m, 1).ok()?)
        }
    };
    let at = |d: Date| d.with_time(Time::MIDNIGHT).assume_utc();
    let left: TimeDuration = at(end) - now;
    Some((at(start).unix_timestamp(), u64::try_from(left.whole_nanoseconds()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> OffsetDateTime {
        let date = Date::from_calendar_date(y, time::Month::try_from(mo).unwrap(), d).unwrap();
        date.with_hms(h, mi, s).unwrap().assume_utc()
    }

    #[test]
    fn day_and_month_windows_follow_utc_calendar() {
        let now = utc(2026, 12, 31, 23, 59, 59);
        let (day, left) = window(QuotaPeriod::Day, now).unwrap();
        assert_eq!(day, utc(2026, 12, 31, 0, 0, 0).unix_timestamp());
        assert_eq!(left, 1_000_000_000);
        let (month, _) = window(QuotaPeriod::Month, now).unwrap();
        assert_eq!(month, utc(2026, 12, 1, 0, 0, 0).unix_timestamp());
        let shifted = utc(2026, 12, 31, 23, 0, 0).to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        let (day, _) = window(QuotaPeriod::Day, shifted).unwrap();
        assert_eq!(day, utc(2026, 12, 31, 0, 0, 0).unix_timestamp());
    }
}
