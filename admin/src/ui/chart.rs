//! Charts as server-rendered SVG (no script, no library): stacked bars of requests by
//! outcome, and latency percentiles as lines, for the portal's and the admin UI's usage
//! pages; and the time windows those pages offer. Colours come from the stylesheet's classes, so
//! they follow light and dark mode; every bar and point has a `<title>` with its numbers,
//! and each chart has a table beside it for screen readers and for exact values.

use std::fmt::Write;

use time::{Duration, OffsetDateTime};

use crate::usage::api::{Granularity, Stats, UsageQuery, UsageReport};

/// One time bucket.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    /// `10:31`, `4 Dec 14:00`, `4 Dec`.
    pub label: String,
    pub ok: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

impl Bucket {
    pub fn requests(&self) -> u64 {
        self.ok + self.client_errors + self.server_errors
    }
}

const W: f64 = 720.0;
const H: f64 = 200.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// A "nice" axis maximum at or above `v` (1, 2 or 5 times a power of ten).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|m| *m >= v).unwrap_or(10.0 * mag)
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

fn frame(out: &mut String, title: &str, max: f64, unit: &str, buckets: &[Bucket]) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{title}" preserveAspectRatio="none"><title>{title}</title>"#
    );
    for i in 0..=4 {
        let y = TOP + (H - TOP - BOTTOM) * f64::from(i) / 4.0;
        let v = max * f64::from(4 - i) / 4.0;
        let _ = write!(out, r#"<line class="grid" x1="{LEFT}" x2="{W}" y1="{y:.1}" y2="{y:.1}"/>"#);
        let _ = write!(
            out,
            r#"<text class="axis" x="{}" y="{:.1}" text-anchor="end">{}{unit}</text>"#,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
        let _ = write!(out, r#"<text class="axis" x="{LEFT}" y="{}">{}</text>"#, H - 4.0, first.label);
        let _ = write!(out, r#"<text class="axis" x="{W}" y="{}" text-anchor="end">{}</text>"#, H - 4.0, last.label);
    }
}

fn x_of(i: usize, n: usize) -> (f64, f64) {
    let slot = (W - LEFT) / n.max(1) as f64;
    (LEFT + slot * i as f64, slot)
}

fn y_of(v: f64, max: f64) -> f64 {
    H - BOTTOM - (H - TOP - BOTTOM) * (v / max).clamp(0.0, 1.0)
}

/// Requests per bucket, stacked: successes, client errors, server errors.
pub fn requests(buckets: &[Bucket]) -> String {
    let max = nice_max(buckets.iter().map(Bucket::requests).max().unwrap_or(0) as f64);
    let mut out = String::with_capacity(4096 + buckets.len() * 300);
    frame(&mut out, "Requests over time by outcome", max, "", buckets);
    for (i, b) in buckets.iter().enumerate() {
        let (x, slot) = x_of(i, buckets.len());
        let width = (slot * 0.8).max(1.0);
        let mut base = 0.0;
        for (class, n, what) in [
            ("ok", b.ok, "successful"),
            ("client", b.client_errors, "client errors"),
            ("server", b.server_errors, "server errors"),
        ] {
            if n == 0 {
                continue;
            }
            let (y0, y1) = (y_of(base, max), y_of(base + n as f64, max));
            base += n as f64;
            let _ = write!(
                out,
                r#"<rect class="bar {class}" x="{x:.1}" y="{y1:.1}" width="{width:.1}" height="{:.1}"><title>{}: {n} {what}</title></rect>"#,
                (y0 - y1).max(0.5),
                b.label
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// p50, p95 and p99 latency per bucket, in milliseconds, as lines (buckets without requests
/// break the line).
pub fn latency(buckets: &[Bucket]) -> String {
    let top = buckets.iter().filter_map(|b| b.p99.or(b.p95).or(b.p50)).fold(0.0, f64::max);
    let max = nice_max(top);
    let mut out = String::with_capacity(4096 + buckets.len() * 200);
    frame(&mut out, "Latency over time: p50, p95 and p99", max, " ms", buckets);
    for (class, pick) in [("p99", 2usize), ("p95", 1), ("p50", 0)] {
        let mut path = String::new();
        let mut pen_down = false;
        for (i, b) in buckets.iter().enumerate() {
            let v = [b.p50, b.p95, b.p99][pick];
            let (x, slot) = x_of(i, buckets.len());
            match v {
                Some(v) => {
                    let _ =
                        write!(path, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, x + slot / 2.0, y_of(v, max));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            let _ = write!(out, r#"<path class="line {class}" d="{}"><title>{class}</title></path>"#, path.trim_end());
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(label: &str, ok: u64, client: u64, server: u64, p: Option<f64>) -> Bucket {
        Bucket {
            label: label.into(),
            ok,
            client_errors: client,
            server_errors: server,
            p50: p,
            p95: p.map(|v| v * 2.0),
            p99: p.map(|v| v * 3.0),
        }
    }

    #[test]
    fn axes_round_up_to_readable_numbers() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(4500.0), 5000.0);
    }

    #[test]
    fn bars_stack_by_outcome_and_carry_their_numbers() {
        let svg = requests(&[bucket("10:00", 8, 1, 1, Some(2.0)), bucket("10:01", 0, 0, 0, None)]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(
            svg.contains("10:00: 8 successful")
                && svg.contains("10:00: 1 client errors")
                && svg.contains("10:00: 1 server errors")
        );
        assert_eq!(svg.matches("<rect").count(), 3, "an empty bucket draws nothing");
        assert!(!svg.contains("style="), "no inline style (the page's CSP forbids it)");
    }

    #[test]
    fn latency_lines_break_where_there_were_no_requests() {
        let svg =
            latency(&[bucket("a", 1, 0, 0, Some(1.0)), bucket("b", 0, 0, 0, None), bucket("c", 1, 0, 0, Some(2.0))]);
        let p50 = svg.split(r#"class="line p50" d=""#).nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
        assert_eq!(p50.matches('M').count(), 2, "{p50}");
        assert!(svg.contains(" ms</text>"));
    }
}

/// The windows offered (`?range=`), with their granularity and bucket count.
pub const RANGES: [(&str, &str, Granularity, i32); 3] = [
    ("hour", "Last hour", Granularity::Minute, 60),
    ("day", "Last 24 hours", Granularity::Hour, 24),
    ("month", "Last 30 days", Granularity::Day, 30),
];

/// One of [`RANGES`], anchored at the current time: `n` whole buckets ending with the
/// current one.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub range: &'static str,
    pub granularity: Granularity,
    pub buckets: i32,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

impl Window {
    /// The window named `range` (the last 24 hours when unknown), ending now.
    pub fn pick(range: &str) -> Self {
        let (range, _, g, n) = RANGES.iter().copied().find(|r| r.0 == range).unwrap_or(RANGES[1]);
        let to = floor(OffsetDateTime::now_utc(), g) + step(g);
        Self { range, granularity: g, buckets: n, from: to - step(g) * n, to }
    }

    /// A usage query over this window (filters and grouping left to the caller).
    pub fn query(&self) -> UsageQuery {
        let rfc = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).ok();
        UsageQuery {
            from: rfc(self.from),
            to: rfc(self.to),
            granularity: Some(self.granularity),
            ..UsageQuery::default()
        }
    }

    /// The report's points summed into this window's buckets (all series together).
    pub fn buckets(&self, r: &UsageReport) -> Vec<Bucket> {
        let g = self.granularity;
        let mut out: Vec<Bucket> = (0..self.buckets)
            .map(|i| Bucket { label: label(self.from + step(g) * i, g), ..Bucket::default() })
            .collect();
        for p in r.series.iter().flat_map(|s| &s.points) {
            let i = (p.at - self.from).whole_seconds() / step(g).whole_seconds();
            let Some(b) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) else { continue };
            let s = &p.stats;
            b.client_errors += s.client_errors;
            b.server_errors += s.server_errors;
            b.ok += s.requests.saturating_sub(s.client_errors + s.server_errors);
            (b.p50, b.p95, b.p99) = (s.p50_ms, s.p95_ms, s.p99_ms);
        }
        out
    }
}

fn step(g: Granularity) -> Duration {
    match g {
        Granularity::Minute => Duration::MINUTE,
        Granularity::Hour => Duration::HOUR,
        Granularity::Day => Duration::DAY,
    }
}

/// The start of the bucket holding `t`.
fn floor(t: OffsetDateTime, g: Granularity) -> OffsetDateTime {
    let secs = step(g).whole_seconds();
    let unix = t.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(unix - unix.rem_euclid(secs)).unwrap_or(t)
}

fn label(t: OffsetDateTime, g: Granularity) -> String {
    use time::macros::format_description;
    let f = match g {
        Granularity::Minute => t.format(format_description!("[hour]:[minute]")),
        Granularity::Hour => t.format(format_description!("[day padding:none] [month repr:short] [hour]:00")),
        Granularity::Day => t.format(format_description!("[day padding:none] [month repr:short]")),
    };
    f.unwrap_or_default()
}

/// A latency for people: `4.2 ms`, `120 ms`, or `–` when there were no requests.
pub fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| if v >= 100.0 { format!("{v:.0} ms") } else { format!("{v:.1} ms") })
}

/// `part` of `whole` as a percentage with one decimal, `–` for nothing.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 { "–".to_owned() } else { format!("{:.1} %", part as f64 * 100.0 / whole as f64) }
}

/// Headline numbers of a window.
#[derive(Debug, Clone)]
pub struct Totals {
    pub requests: String,
    pub error_rate: String,
    pub client_errors: String,
    pub server_errors: String,
    pub p50: String,
    pub p95: String,
    pub p99: String,
}

impl Totals {
    pub fn of(t: &Stats) -> Self {
        let n = |v: u64| crate::words::number(i64::try_from(v).unwrap_or(i64::MAX));
        Self {
            requests: n(t.requests),
            error_rate: percent(t.client_errors + t.server_errors, t.requests),
            client_errors: percent(t.client_errors, t.requests),
            server_errors: percent(t.server_errors, t.requests),
            p50: ms(t.p50_ms),
            p95: ms(t.p95_ms),
            p99: ms(t.p99_ms),
        }
    }
}
