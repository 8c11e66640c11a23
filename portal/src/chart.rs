//! Charts as server-rendered SVG (no script, no library): stacked bars of requests by
//! outcome, and latency percentiles as lines. Colours come from the stylesheet's classes, so
//! they follow light and dark mode; every bar and point has a `<title>` with its numbers,
//! and each chart has a table beside it for screen readers and for exact values.

use std::fmt::Write;

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
