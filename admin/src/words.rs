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

/// The plan's limits, one sentence each; a plan without limits says so.
pub fn plan(p: &PlanInput) -> Vec<String> {
    let burst = i64::from(p.burst);
    let mut out: Vec<String> =
        [(p.rate_limit_per_second, "second"), (p.rate_limit_per_minute, "minute"), (p.rate_limit_per_hour, "hour")]
            .into_iter()
            .filter_map(|(n, unit)| n.map(|n| (i64::from(n), unit)))
            .map(|(n, unit)| {
                let base = format!("{} a {unit}", requests(n));
                if burst > 0 { format!("{base}, with bursts of up to {} more", number(burst)) } else { base }
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
}
