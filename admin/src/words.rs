//! Plans and numbers in words, as the portal and the admin UI show them ("600 requests a
//! minute, 10,000 a month, resets on the 1st, UTC"). One wording for both faces.

use crate::plans::PlanInput;

/// `1,234,567`.
pub fn number(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn requests(n: i64) -> String {
    if n == 1 { "1 request".to_owned() } else { format!("{} requests", number(n)) }
}

/// Time in words, rounded up (so the spacing a client reads is never too short): "100 ms",
/// "3.6 s", "2 min".
fn spacing(ns: u64) -> String {
    let tenths = |unit: u64| {
        let t = ns.div_ceil(unit / 10);
        if t.is_multiple_of(10) { format!("{}", t / 10) } else { format!("{}.{}", t / 10, t % 10) }
    };
    match ns {
        0..1_000_000 => format!("{} µs", ns.div_ceil(1_000)),
        1_000_000..1_000_000_000 => format!("{} ms", ns.div_ceil(1_000_000)),
        1_000_000_000..60_000_000_000 => format!("{} s", tenths(1_000_000_000)),
        _ => format!("{} min", tenths(60_000_000_000)),
    }
}

/// The plan's limits, one sentence each, stating the promise the gateway keeps (see
/// `gateway/src/limits/plan.rs`): N per window with burst B means one request every W / N,
/// up to B + 1 at once, and never more than N + B in any window; a plan without limits says so.
pub fn plan(p: &PlanInput) -> Vec<String> {
    let burst = i64::from(p.burst);
    let mut out: Vec<String> = [
        (p.rate_limit_per_second, "a second", 1),
        (p.rate_limit_per_minute, "a minute", 60),
        (p.rate_limit_per_hour, "an hour", 3600),
    ]
    .into_iter()
    .filter_map(|(n, unit, secs)| n.filter(|n| *n > 0).map(|n| (i64::from(n), unit, secs)))
    .map(|(n, unit, secs)| {
        let every = spacing((secs * 1_000_000_000u64).div_ceil(n.unsigned_abs()));
        if burst > 0 {
            format!(
                "{} {unit}: one every {every}, up to {} at once, never more than {} in any {}",
                requests(n),
                number(burst + 1),
                number(n + burst),
                unit.rsplit(' ').next().unwrap_or(unit),
            )
        } else {
            format!("{} {unit}: one every {every}, no bursts", requests(n))
        }
    })
    .collect();
    if let Some(d) = p.quota_per_day {
        out.push(format!("{} a day, resets at midnight UTC", requests(d)));
    }
    if let Some(m) = p.quota_per_month {
        out.push(format!("{} a month, resets on the 1st, UTC", requests(m)));
    }
    if out.is_empty() {
        out.push("No rate limit or quota".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(number(0), "0");
        assert_eq!(number(600), "600");
        assert_eq!(number(10_000), "10,000");
        assert_eq!(number(-1_234_567), "-1,234,567");
    }

    #[test]
    fn spacing_is_rounded_up_in_a_readable_unit() {
        assert_eq!(spacing(100_000_000), "100 ms");
        assert_eq!(spacing(3_600_000_000), "3.6 s");
        assert_eq!(spacing(6_000_000_000), "6 s");
        assert_eq!(spacing(100_000), "100 µs");
        assert_eq!(spacing(33_333_334), "34 ms");
        assert_eq!(spacing(120_000_000_000), "2 min");
    }

    #[test]
    fn a_plan_states_its_promise() {
        let input = |v: serde_json::Value| serde_json::from_value::<PlanInput>(v).expect("a plan");
        let p = input(
            serde_json::json!({"name": "free", "rate_limit_per_minute": 600, "burst": 100, "quota_per_month": 10_000}),
        );
        assert_eq!(
            plan(&p),
            [
                "600 requests a minute: one every 100 ms, up to 101 at once, never more than 700 in any minute",
                "10,000 requests a month, resets on the 1st, UTC",
            ]
        );
        let smooth = input(serde_json::json!({"name": "smooth", "rate_limit_per_hour": 1000}));
        assert_eq!(plan(&smooth), ["1,000 requests an hour: one every 3.6 s, no bursts"]);
    }
}
