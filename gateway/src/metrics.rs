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

    fn render(&self, out: &mut String, api: &str) {
        let label = escape(api);
        for (i, n) in self.by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "tollgate_requests_total{{api=\"{label}\",code=\"{}xx\"}} {}",
                i + 1,
                n.load(Ordering::Relaxed)
            );
        }
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
        let _ = writeln!(
            out,
            "tollgate_upstream_retries_total{{api=\"{label}\"}} {}",
            self.retries.load(Ordering::Relaxed)
        );
    }
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

    /// The text exposition, with `event_id` as the applied-config gauge.
    pub fn render(&self, event_id: i64) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# TYPE tollgate_requests_total counter\n# TYPE tollgate_request_duration_seconds histogram\n");
        out.push_str("# TYPE tollgate_upstream_retries_total counter\n# TYPE tollgate_config_event_id gauge\n");
        let _ = writeln!(out, "tollgate_config_event_id {event_id}");
        self.unrouted.render(&mut out, "");
        let apis = match self.apis.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (name, m) in apis.values() {
            m.render(&mut out, name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
    }
}
