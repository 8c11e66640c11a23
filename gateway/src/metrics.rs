//! Prometheus metrics, kept in atomics (a few relaxed increments per request, no locks) and
//! rendered in the text exposition format on the separate metrics listener. Per-API series
//! live in a registry keyed by API id, so they survive config changes.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Request counts by status class and a latency histogram, for one API (or for requests
/// that matched no API).
#[derive(Default)]
pub struct RequestMetrics {
    /// 1xx..5xx.
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
    retries: AtomicU64,
}

impl RequestMetrics {
    /// Counts one answered request.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts one retry to the upstream.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    fn render_requests(&self, out: &mut String, label: &str) {
        for (i, n) in self.by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "tollgate_requests_total{{api=\"{label}\",code=\"{}xx\"}} {}",
                i + 1,
                n.load(Ordering::Relaxed)
            );
        }
    }

    fn render_duration(&self, out: &mut String, label: &str) {
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ =
                writeln!(out, "tollgate_request_duration_seconds_bucket{{api=\"{label}\",le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "tollgate_request_duration_seconds_bucket{{api=\"{label}\",le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "tollgate_request_duration_seconds_sum{{api=\"{label}\"}} {sum}");
        let _ = writeln!(out, "tollgate_request_duration_seconds_count{{api=\"{label}\"}} {count}");
    }

    fn render_retries(&self, out: &mut String, label: &str) {
        let _ = writeln!(
            out,
            "tollgate_upstream_retries_total{{api=\"{label}\"}} {}",
            self.retries.load(Ordering::Relaxed)
        );
    }
}

/// The `HELP` and `TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Per-API series with the API's current name.
type ApiSeries = HashMap<Uuid, (Arc<str>, Arc<RequestMetrics>)>;

/// All metrics of a node.
#[derive(Default)]
pub struct Registry {
    apis: Mutex<ApiSeries>,
    /// Requests answered before an API was known (no route, bad request, not ready).
    pub unrouted: RequestMetrics,
}

impl Registry {
    /// The series of API `id` (created on first use; called when compiling a snapshot).
    pub fn api(&self, id: Uuid, name: &Arc<str>) -> Arc<RequestMetrics> {
        let mut apis = match self.apis.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = apis.entry(id).or_insert_with(|| (name.clone(), Arc::default()));
        entry.0 = name.clone();
        entry.1.clone()
    }

    /// The text exposition, with `event_id` as the applied-config gauge: each family's
    /// `HELP` and `TYPE`, then all its samples together (requests before an API was known
    /// under `api=""`).
    pub fn render(&self, event_id: i64) -> String {
        let mut out = String::with_capacity(4096);
        family(&mut out, "tollgate_config_event_id", "gauge", "Id of the last configuration change applied.");
        let _ = writeln!(out, "tollgate_config_event_id {event_id}");
        let apis = match self.apis.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        let series: Vec<(String, &RequestMetrics)> = std::iter::once((String::new(), &self.unrouted))
            .chain(apis.values().map(|(name, m)| (escape(name), &**m)))
            .collect();
        family(&mut out, "tollgate_requests_total", "counter", "Requests answered, by API and status class.");
        for (label, m) in &series {
            m.render_requests(&mut out, label);
        }
        family(&mut out, "tollgate_request_duration_seconds", "histogram", "Time to the response head, by API.");
        for (label, m) in &series {
            m.render_duration(&mut out, label);
        }
        family(&mut out, "tollgate_upstream_retries_total", "counter", "Upstream attempts beyond the first, by API.");
        for (label, m) in &series {
            m.render_retries(&mut out, label);
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let r = Registry::default();
        let m = r.api(Uuid::nil(), &Arc::from("orders"));
        m.record(200, Duration::from_millis(3));
        m.record(503, Duration::from_millis(30));
        m.retried();
        let text = r.render(7);
        assert!(text.contains("tollgate_requests_total{api=\"orders\",code=\"2xx\"} 1"));
        assert!(text.contains("tollgate_requests_total{api=\"orders\",code=\"5xx\"} 1"));
        assert!(text.contains("tollgate_request_duration_seconds_bucket{api=\"orders\",le=\"0.005\"} 1"));
        assert!(text.contains("tollgate_request_duration_seconds_bucket{api=\"orders\",le=\"0.05\"} 2"));
        assert!(text.contains("tollgate_upstream_retries_total{api=\"orders\"} 1"));
        assert!(text.contains("tollgate_config_event_id 7"));
        check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }

    /// What `promtool check metrics` asks of a text exposition: every family has `HELP` and
    /// `TYPE` before its samples, a family's samples are together, and every sample belongs
    /// to a declared family (histograms by their `_bucket`, `_sum` and `_count`).
    pub(crate) fn check_exposition(text: &str) -> Result<(), String> {
        let mut seen: Vec<String> = Vec::new();
        let (mut helped, mut typed): (Option<String>, Option<(String, String)>) = (None, None);
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default().to_owned();
                if seen.contains(&name) {
                    return Err(format!("{name} declared twice or its samples are split"));
                }
                helped = Some(name);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (name, kind) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                if helped.as_deref() != Some(name) {
                    return Err(format!("{name} has no HELP right before its TYPE"));
                }
                seen.push(name.to_owned());
                typed = Some((name.to_owned(), kind.to_owned()));
            } else {
                let sample = line.split(['{', ' ']).next().unwrap_or_default();
                let Some((family, kind)) = &typed else { return Err(format!("sample before any TYPE: {line}")) };
                let suffix = sample.strip_prefix(family.as_str());
                let ok = match kind.as_str() {
                    "histogram" => suffix.is_some_and(|s| ["", "_bucket", "_sum", "_count"].contains(&s)),
                    _ => suffix == Some(""),
                };
                if !ok {
                    return Err(format!("sample {sample} is not of the family {family} it follows"));
                }
                let value = line.rsplit(' ').next().unwrap_or_default();
                if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
                    return Err(format!("not a number: {line}"));
                }
            }
        }
        Ok(())
    }
}
