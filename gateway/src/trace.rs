//! Distributed traces, exported over OTLP/HTTP (JSON encoding) when `--otlp-endpoint` is set.
//!
//! Each request gets a server span, continuing the client's W3C `traceparent` (its trace id,
//! with the client's span as parent) or starting a trace; each upstream attempt gets a
//! client span under it, whose id goes upstream in a fresh `traceparent`. Sampling is
//! parent-based: a client's sampled flag is followed; requests without one are sampled
//! with `--trace-sample-ratio`. Unsampled requests still pass a `traceparent` upstream (flag
//! `00`), so the trace id is the same on both sides either way.
//!
//! Spans go to a bounded queue (never waited on; overflow counted) and an exporter task
//! posts them in batches to the collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

/// Spans sent in one export request at most.
const BATCH: usize = 512;
/// How often queued spans are exported.
const EXPORT_EVERY: Duration = Duration::from_millis(500);
/// Longest one export request may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub use http::Uri;

/// Parses `--otlp-endpoint`: an `http` or `https` URL with a host.
pub fn parse_endpoint(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("not a URL ({e}): {s:?}"))?;
    check_endpoint(&uri)?;
    Ok(uri)
}

/// An endpoint must be an `http` or `https` URL with a host.
fn check_endpoint(uri: &Uri) -> Result<(), String> {
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(()),
        _ => Err(format!("expected an http or https URL such as http://127.0.0.1:4318/v1/traces, not {uri}")),
    }
}

/// Trace export settings.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub endpoint: Uri,
    /// Share of requests without a sampled parent that are traced (0.0 to 1.0).
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// `service.instance.id` of the spans (the node id).
    pub instance_id: String,
    /// Spans that may wait for the exporter; beyond, they are dropped and counted.
    pub capacity: usize,
}

/// A W3C trace context (`traceparent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// Parses a `traceparent` (version `00` layout; later versions read by the same prefix, as
/// the spec asks). `None` for anything malformed, all-zero ids, or version `ff`.
pub fn parse_traceparent(headers: &HeaderMap) -> Option<Parent> {
    let v = headers.get("traceparent")?.as_bytes();
    let ok_len = v.len() == 55 || (v.len() > 55 && v[55] == b'-' && v[..2] != *b"00");
    if !ok_len || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' || v[..2] == *b"ff" {
        return None;
    }
    hex_bytes::<1>(&v[..2])?;
    let trace_id = hex_bytes::<16>(&v[3..35])?;
    let span_id = hex_bytes::<8>(&v[36..52])?;
    let flags = hex_bytes::<1>(&v[53..55])?;
    (trace_id != [0; 16] && span_id != [0; 8]).then_some(Parent { trace_id, span_id, sampled: flags[0] & 1 == 1 })
}

fn hex_bytes<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    if text.len() != N * 2 {
        return None;
    }
    for (i, pair) in text.chunks(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The `traceparent` naming `span_id` of `trace_id`.
pub fn traceparent(trace_id: &[u8; 16], span_id: &[u8; 8], sampled: bool) -> HeaderValue {
    let text = format!("00-{}-{}-{}", hex(trace_id), hex(span_id), if sampled { "01" } else { "00" });
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("00-00000000000000000000000000000000-0000000000000000-00"))
}

/// A random, non-zero span id.
pub fn span_id() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_le_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

fn trace_id() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..).to_le_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

/// One request's place in its trace.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub trace_id: [u8; 16],
    /// The request's server span.
    pub span_id: [u8; 8],
    /// The client's span, when it sent a `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub sampled: bool,
    pub start: SystemTime,
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    Int(i64),
}

/// `SPAN_KIND_SERVER` and `SPAN_KIND_CLIENT` of OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// A finished span.
#[derive(Debug, Clone)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: Kind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Value)>,
    /// Status ERROR with this message.
    pub error: Option<String>,
}

/// The node's tracer: cheap to call from any request.
pub struct Tracer {
    tx: mpsc::Sender<Span>,
    sample_ratio: f64,
    dropped: AtomicU64,
    stats: Arc<Stats>,
    stop: tokio::sync::watch::Sender<bool>,
    exporter: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Stats {
    exported: AtomicU64,
    failed: AtomicU64,
}

impl Tracer {
    /// Starts the exporter task (on the current runtime).
    pub fn start(opts: &TraceOptions) -> anyhow::Result<Arc<Self>> {
        check_endpoint(&opts.endpoint).map_err(|e| anyhow::anyhow!("--otlp-endpoint: {e}"))?;
        anyhow::ensure!((0.0..=1.0).contains(&opts.sample_ratio), "--trace-sample-ratio must be 0 to 1");
        let (tx, rx) = mpsc::channel(opts.capacity.max(1));
        let stats = Arc::new(Stats::default());
        let exporter = Exporter::new(opts, stats.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(exporter.run(rx, stopped));
        Ok(Arc::new(Self {
            tx,
            sample_ratio: opts.sample_ratio,
            dropped: AtomicU64::new(0),
            stats,
            stop,
            exporter: std::sync::Mutex::new(Some(task)),
        }))
    }

    /// The context of a request with these headers: the client's trace continued, or a new
    /// one; sampled as its parent says, else by the ratio.
    pub fn begin(&self, headers: &HeaderMap) -> Context {
        let start = SystemTime::now();
        match parse_traceparent(headers) {
            Some(p) => {
                Context { trace_id: p.trace_id, span_id: span_id(), parent: Some(p.span_id), sampled: p.sampled, start }
            }
            None => Context {
                trace_id: trace_id(),
                span_id: span_id(),
                parent: None,
                sampled: self.sample_ratio >= 1.0 || fastrand::f64() < self.sample_ratio,
                start,
            },
        }
    }

    /// Queues `span` for export; never waits. A full queue drops it (counted).
    pub fn record(&self, span: Span) {
        if self.tx.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Exports what is queued and stops the exporter (waiting at most `within`).
    pub async fn close(&self, within: Duration) {
        let task = match self.exporter.lock() {
            Ok(mut t) => t.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let _ = self.stop.send(true);
        if let Some(mut task) = task
            && tokio::time::timeout(within, &mut task).await.is_err()
        {
            task.abort();
        }
    }

    /// The tracer's counters in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let counters = [
            (
                "tollgate_trace_spans_exported_total",
                "Spans accepted by the OTLP collector.",
                self.stats.exported.load(Ordering::Relaxed),
            ),
            (
                "tollgate_trace_spans_dropped_total",
                "Spans dropped because the exporter was behind.",
                self.dropped.load(Ordering::Relaxed),
            ),
            (
                "tollgate_trace_export_failures_total",
                "OTLP export requests that failed (their spans are lost).",
                self.stats.failed.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            crate::metrics::family(out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Exporter {
    endpoint: Uri,
    resource: serde_json::Value,
    client: HttpClient,
    stats: Arc<Stats>,
}

impl Exporter {
    fn new(opts: &TraceOptions, stats: Arc<Stats>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(https);
        let attr = |k: &str, v: &str| serde_json::json!({"key": k, "value": {"stringValue": v}});
        let resource = serde_json::json!({
            "attributes": [
                attr("service.name", &opts.service_name),
                attr("service.instance.id", &opts.instance_id),
                attr("service.version", env!("CARGO_PKG_VERSION")),
            ]
        });
        Self { endpoint: opts.endpoint.clone(), resource, client, stats }
    }

    /// Every [`EXPORT_EVERY`] (and at `stop`), exports what is queued in batches. It never
    /// waits in the queue's receive, so recording a span wakes no task.
    async fn run(self, mut rx: mpsc::Receiver<Span>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(EXPORT_EVERY) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            while let Ok(span) = rx.try_recv() {
                batch.push(span);
                if batch.len() == BATCH {
                    self.export(std::mem::take(&mut batch)).await;
                }
            }
            if !batch.is_empty() {
                self.export(std::mem::take(&mut batch)).await;
            }
            if stopping {
                return;
            }
        }
    }

    async fn export(&self, spans: Vec<Span>) {
        let count = spans.len();
        // Encoding a batch takes a while: off the runtime's workers, which serve requests.
        let resource = self.resource.clone();
        let Ok(body) = tokio::task::spawn_blocking(move || encode(&resource, &spans)).await else { return };
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else { return };
        let sent = tokio::time::timeout(EXPORT_TIMEOUT, self.client.request(req)).await;
        match sent {
            Ok(Ok(res)) if res.status().is_success() => {
                self.stats.exported.fetch_add(count as u64, Ordering::Relaxed);
            }
            outcome => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let why = match outcome {
                    Ok(Ok(res)) => format!("status {}", res.status()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_owned(),
                };
                tracing::warn!(endpoint = %self.endpoint, error = %why, spans = count, "trace export failed");
            }
        }
    }
}

fn nanos(t: SystemTime) -> String {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()).to_string()
}

/// The OTLP/HTTP JSON body (`ExportTraceServiceRequest`) for `spans`.
pub fn encode(resource: &serde_json::Value, spans: &[Span]) -> Vec<u8> {
    // Written directly (no `serde_json::Value` tree per span: building one cost more than
    // the rest of tracing together).
    let mut out = Vec::with_capacity(256 + spans.len() * 640);
    out.extend_from_slice(b"{\"resourceSpans\":[{\"resource\":");
    if serde_json::to_writer(&mut out, resource).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b",\"scopeSpans\":[{\"scope\":{\"name\":\"tollgate-gateway\",\"version\":");
    json_str(&mut out, env!("CARGO_PKG_VERSION"));
    out.extend_from_slice(b"},\"spans\":[");
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_span(&mut out, s);
    }
    out.extend_from_slice(b"]}]}]}");
    out
}

fn encode_span(out: &mut Vec<u8>, s: &Span) {
    use std::io::Write as _;
    out.extend_from_slice(b"{\"traceId\":\"");
    out.extend_from_slice(hex(&s.trace_id).as_bytes());
    out.extend_from_slice(b"\",\"spanId\":\"");
    out.extend_from_slice(hex(&s.span_id).as_bytes());
    out.push(b'"');
    if let Some(parent) = &s.parent {
        out.extend_from_slice(b",\"parentSpanId\":\"");
        out.extend_from_slice(hex(parent).as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"name\":");
    json_str(out, &s.name);
    let _ = write!(
        out,
        ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[",
        s.kind as u8,
        nanos(s.start),
        nanos(s.end)
    );
    for (i, (key, value)) in s.attributes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        json_str(out, key);
        match value {
            Value::Str(text) => {
                out.extend_from_slice(b",\"value\":{\"stringValue\":");
                json_str(out, text);
            }
            Value::Int(n) => {
                let _ = write!(out, ",\"value\":{{\"intValue\":\"{n}\"");
            }
        }
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"],\"status\":");
    match &s.error {
        Some(message) => {
            out.extend_from_slice(b"{\"code\":2,\"message\":");
            json_str(out, message);
            out.extend_from_slice(b"}}");
        }
        None => out.extend_from_slice(b"{\"code\":0}}"),
    }
}

/// A JSON string (quotes, backslashes and control characters escaped).
fn json_str(out: &mut Vec<u8>, s: &str) {
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &'static str) -> Option<Parent> {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(v));
        parse_traceparent(&h)
    }

    #[test]
    fn traceparents_are_read_strictly() {
        let p = with("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(p.map(|p| (p.trace_id[0], p.span_id[7], p.sampled)), Some((0x0a, 0x31, true)));
        assert_eq!(with("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").map(|p| p.sampled), Some(false));
        assert!(with("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra").is_none(), "v00 has no more");
        assert!(with("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later").is_some(), "later versions");
        assert!(with("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_none());
        assert!(with("00-00000000000000000000000000000000-b7ad6b7169203331-01").is_none());
        assert!(with("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01").is_none());
        assert!(with("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").is_none(), "upper case");
        assert!(with("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g").is_none());
        assert!(with("00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").is_none());
    }

    #[test]
    fn a_traceparent_round_trips() {
        let (t, s) = (trace_id(), span_id());
        let mut h = HeaderMap::new();
        h.insert("traceparent", traceparent(&t, &s, true));
        assert_eq!(parse_traceparent(&h), Some(Parent { trace_id: t, span_id: s, sampled: true }));
    }

    fn span_of(start: SystemTime) -> Span {
        Span {
            trace_id: [9; 16],
            span_id: [8; 8],
            parent: None,
            name: String::new(),
            kind: Kind::Client,
            start,
            end: start,
            attributes: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn spans_encode_as_otlp_json() -> Result<(), serde_json::Error> {
        let start = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let span = Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent: Some([3; 8]),
            name: "GET orders".into(),
            kind: Kind::Server,
            start,
            end: start + Duration::from_millis(5),
            attributes: vec![("http.response.status_code", Value::Int(502)), ("url.path", Value::Str("/o".into()))],
            error: Some("upstream-unreachable".into()),
        };
        let doc: serde_json::Value = serde_json::from_slice(&encode(&serde_json::json!({"attributes": []}), &[span]))?;
        let s = &doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "01".repeat(16));
        assert_eq!(s["parentSpanId"], "03".repeat(8));
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(s["endTimeUnixNano"], "1700000000128456789");
        assert_eq!(s["attributes"][0]["value"]["intValue"], "502");
        assert_eq!(s["attributes"][1]["value"]["stringValue"], "/o");
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["status"]["message"], "upstream-unreachable");
        assert_eq!(doc["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"], "tollgate-gateway");
        let root = Span { parent: None, error: None, name: "q\"\n".into(), ..span_of(start) };
        let doc: serde_json::Value = serde_json::from_slice(&encode(&serde_json::json!({}), &[root.clone(), root]))?;
        let spans = &doc["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(spans.as_array().map(Vec::len), Some(2));
        assert!(spans[0].get("parentSpanId").is_none(), "a root span has no parent");
        assert_eq!(
            (spans[0]["name"].clone(), spans[0]["status"]["code"].clone()),
            (serde_json::json!("q\"\n"), serde_json::json!(0))
        );
        Ok(())
    }
}
