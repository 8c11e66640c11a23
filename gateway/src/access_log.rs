//! The access log: one JSON object per line for each request the pipeline answered, written
//! off the request path. A request hands its [`Entry`] to a bounded channel and goes on; a
//! thread formats and writes. When the writer falls behind (a slow disk, a full pipe on
//! stderr) entries are dropped and counted — a request never waits for its log line.
//!
//! The file is reopened on [`AccessLog::reopen`] (the binary calls it on `SIGHUP`), so
//! logrotate's rename-then-signal works without `copytruncate`. Fields are chosen by name
//! ([`FieldSet::parse`]); the query string is never logged (it may carry an API key).

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method};
use uuid::Uuid;

pub use crate::key_format::KeyPrefix;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    /// Appended to; created when missing.
    File(PathBuf),
}

/// Access log settings (`--access-log`, `--access-log-fields`, `--access-log-buffer`).
#[derive(Debug, Clone)]
pub struct AccessLogOptions {
    pub sink: Sink,
    pub fields: FieldSet,
    /// Entries that may wait for the writer; past that they are dropped and counted.
    pub capacity: usize,
}

impl AccessLogOptions {
    /// Every field, to `sink`, with the default buffer.
    pub fn new(sink: Sink) -> Self {
        Self { sink, fields: FieldSet::ALL, capacity: DEFAULT_CAPACITY }
    }
}

/// Entries buffered by default: a few seconds of a busy node's traffic.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// The fields, in the order they are written.
pub const FIELDS: &[&str] = &[
    "time",
    "request_id",
    "trace_id",
    "client_ip",
    "scheme",
    "method",
    "host",
    "path",
    "route_id",
    "api_id",
    "api",
    "consumer_id",
    "key_prefix",
    "status",
    "request_bytes",
    "response_bytes",
    "upstream",
    "upstream_attempts",
    "upstream_latency_ms",
    "latency_ms",
    "reason",
];

/// Which of [`FIELDS`] are written (bit `i` for `FIELDS[i]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet(u32);

impl FieldSet {
    pub const ALL: FieldSet = FieldSet((1 << FIELDS.len()) - 1);

    /// A comma-separated list of field names (`all` for every one); an unknown name is an
    /// error naming it and the known ones.
    pub fn parse(list: &str) -> Result<Self, String> {
        if list.trim().eq_ignore_ascii_case("all") {
            return Ok(Self::ALL);
        }
        let mut bits = 0u32;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(i) = FIELDS.iter().position(|f| *f == name) else {
                return Err(format!("unknown access log field `{name}`; known: {}", FIELDS.join(", ")));
            };
            bits |= 1 << i;
        }
        if bits == 0 {
            return Err("name at least one access log field (or `all`)".to_owned());
        }
        Ok(Self(bits))
    }

    fn has(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// One answered request, as the pipeline saw it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    /// `None` (and method, host, path) for a request refused while its head was read.
    pub request_id: Option<HeaderValue>,
    /// From the client's W3C `traceparent`, when it sent a valid one.
    pub trace_id: Option<[u8; 16]>,
    pub client_ip: IpAddr,
    pub https: bool,
    pub method: Option<Method>,
    pub host: Option<String>,
    /// As the client sent it, without the query.
    pub path: Option<String>,
    pub route_id: Option<Uuid>,
    pub api_id: Option<Uuid>,
    pub api: Option<Arc<str>>,
    pub consumer_id: Option<Uuid>,
    /// The first characters of the API key presented, as the admin shows them (`tg_a1b2c3`).
    pub key_prefix: Option<KeyPrefix>,
    pub status: u16,
    /// The request body's declared length (0 without a body).
    pub request_bytes: u64,
    /// The response body's length when known with the head (`Content-Length`); streamed
    /// bodies of unknown length are `null`.
    pub response_bytes: Option<u64>,
    /// The target (`host:port`) of the last attempt.
    pub upstream: Option<String>,
    pub upstream_attempts: u8,
    /// From sending the last attempt to its response head.
    pub upstream_latency: Option<Duration>,
    /// From the request head to the response head.
    pub latency: Duration,
    /// Why the gateway refused or failed the request (the problem type's last part).
    pub reason: Option<&'static str>,
}

/// The trace id of the client's W3C `traceparent`, if valid (the rules of
/// [`crate::trace::parse_traceparent`]).
pub fn trace_id(headers: &HeaderMap) -> Option<[u8; 16]> {
    crate::trace::parse_traceparent(headers).map(|p| p.trace_id)
}

enum Msg {
    Entry(Box<Entry>),
    /// Write what is queued, flush and stop.
    Close,
}

/// The access log of one node: cheap to call from any request.
pub struct AccessLog {
    tx: SyncSender<Msg>,
    dropped: AtomicU64,
    shared: Arc<Shared>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Shared {
    written: AtomicU64,
    failed_writes: AtomicU64,
    reopen: AtomicBool,
}

/// How often the writer takes what is queued (and looks for a reopen request).
const TICK: Duration = Duration::from_millis(20);

impl AccessLog {
    /// Opens the sink (a file that cannot be opened is an error naming it) and starts the
    /// writer thread.
    pub fn start(opts: &AccessLogOptions) -> anyhow::Result<Arc<Self>> {
        let out = open(&opts.sink)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(opts.capacity.max(1));
        let shared = Arc::new(Shared {
            written: AtomicU64::new(0),
            failed_writes: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
        });
        let writer =
            Writer { sink: opts.sink.clone(), fields: opts.fields, out, shared: shared.clone(), line: Vec::new() };
        let handle =
            std::thread::Builder::new().name("tollgate-access-log".to_owned()).spawn(move || writer.run(rx))?;
        Ok(Arc::new(Self { tx, dropped: AtomicU64::new(0), shared, writer: Mutex::new(Some(handle)) }))
    }

    /// Queues `entry`; never waits. A full queue drops it (counted).
    pub fn log(&self, entry: Entry) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(Msg::Entry(Box::new(entry)))
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the writer to reopen its file (within 20 ms).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
    }

    /// Writes what is queued, flushes and stops the writer (waiting at most `within`).
    pub fn close(&self, within: Duration) {
        let handle = match self.writer.lock() {
            Ok(mut w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(handle) = handle else { return };
        let tx = self.tx.clone();
        // (A full queue would block the send: done on a helper thread, bounded by `within`.)
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Msg::Close);
            let _ = handle.join();
            let _ = done_tx.send(());
        });
        let _ = done_rx.recv_timeout(within);
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Entries dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The access log's counters in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let counters = [
            ("tollgate_access_log_lines_total", "Access log lines written.", self.written()),
            (
                "tollgate_access_log_dropped_total",
                "Access log entries dropped because the writer was behind.",
                self.dropped(),
            ),
            (
                "tollgate_access_log_write_errors_total",
                "Access log writes that failed (disk full, file gone).",
                self.shared.failed_writes.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            crate::metrics::family(out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

fn open(sink: &Sink) -> anyhow::Result<Box<dyn Write + Send>> {
    Ok(match sink {
        Sink::Stderr => Box::new(std::io::stderr()),
        Sink::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open the access log {}: {e}", path.display()))?;
            Box::new(std::io::BufWriter::with_capacity(64 * 1024, file))
        }
    })
}

struct Writer {
    sink: Sink,
    fields: FieldSet,
    out: Box<dyn Write + Send>,
    shared: Arc<Shared>,
    line: Vec<u8>,
}

impl Writer {
    /// Every [`TICK`], writes what is queued and flushes once. The writer never blocks in
    /// the channel's receive: a request's `try_send` then finds no sleeping receiver to wake,
    /// and costs no system call (measured: waking the writer per entry cost ~10 µs of CPU
    /// per request, a third of the node's throughput).
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let mut closing = false;
            let mut wrote = false;
            loop {
                match rx.try_recv() {
                    Ok(Msg::Entry(e)) => {
                        self.write(&e);
                        wrote = true;
                    }
                    Ok(Msg::Close) | Err(TryRecvError::Disconnected) => {
                        closing = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
            if wrote && self.out.flush().is_err() {
                self.shared.failed_writes.fetch_add(1, Ordering::Relaxed);
            }
            if closing {
                let _ = self.out.flush();
                return;
            }
            if self.shared.reopen.swap(false, Ordering::AcqRel) {
                self.reopen();
            }
            std::thread::sleep(TICK);
        }
    }

    fn reopen(&mut self) {
        match open(&self.sink) {
            Ok(out) => self.out = out,
            Err(e) => {
                self.shared.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "access log not reopened; still writing to the old file");
            }
        }
    }

    fn write(&mut self, e: &Entry) {
        self.line.clear();
        format_entry(&mut self.line, e, self.fields);
        match self.out.write_all(&self.line) {
            Ok(()) => {
                self.shared.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.shared.failed_writes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One JSON line for `e` with the fields of `set`; absent values are `null`.
pub fn format_entry(out: &mut Vec<u8>, e: &Entry, set: FieldSet) {
    out.push(b'{');
    let mut first = true;
    for (i, name) in FIELDS.iter().enumerate() {
        if !set.has(i) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        value(out, i, e);
    }
    out.extend_from_slice(b"}\n");
}

fn value(out: &mut Vec<u8>, field: usize, e: &Entry) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    match FIELDS[field] {
        "time" => timestamp(out, e.time),
        "request_id" => match &e.request_id {
            Some(id) => string(out, &String::from_utf8_lossy(id.as_bytes())),
            None => null(out),
        },
        "trace_id" => match e.trace_id {
            Some(id) => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                out.push(b'"');
                for b in id {
                    out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]]);
                }
                out.push(b'"');
            }
            None => null(out),
        },
        "client_ip" => {
            use std::io::Write as _;
            let _ = write!(out, "\"{}\"", e.client_ip);
        }
        "scheme" => string(out, if e.https { "https" } else { "http" }),
        "method" => opt(out, e.method.as_ref().map(Method::as_str)),
        "host" => opt(out, e.host.as_deref()),
        "path" => opt(out, e.path.as_deref()),
        "route_id" => id(out, e.route_id),
        "api_id" => id(out, e.api_id),
        "api" => opt(out, e.api.as_deref()),
        "consumer_id" => id(out, e.consumer_id),
        "key_prefix" => opt(out, e.key_prefix.as_ref().map(KeyPrefix::as_str)),
        "status" => number(out, u64::from(e.status)),
        "request_bytes" => number(out, e.request_bytes),
        "response_bytes" => match e.response_bytes {
            Some(n) => number(out, n),
            None => null(out),
        },
        "upstream" => opt(out, e.upstream.as_deref()),
        "upstream_attempts" => number(out, u64::from(e.upstream_attempts)),
        "upstream_latency_ms" => match e.upstream_latency {
            Some(d) => float(out, ms(d)),
            None => null(out),
        },
        "latency_ms" => float(out, ms(e.latency)),
        "reason" => opt(out, e.reason),
        _ => null(out),
    }
}

/// RFC 3339 UTC with milliseconds (`2026-12-05T07:14:02.118Z`).
fn timestamp(out: &mut Vec<u8>, t: SystemTime) {
    use std::io::Write as _;
    let t = time::OffsetDateTime::from(t);
    let (date, clock) = (t.date(), t.time());
    let _ = write!(
        out,
        "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\"",
        date.year(),
        u8::from(date.month()),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second(),
        clock.millisecond()
    );
}

fn id(out: &mut Vec<u8>, id: Option<Uuid>) {
    match id {
        Some(id) => {
            let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
            out.push(b'"');
            out.extend_from_slice(id.as_hyphenated().encode_lower(&mut buf).as_bytes());
            out.push(b'"');
        }
        None => null(out),
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes quotes, backslashes and control characters.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => null(out),
    }
}

fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Milliseconds with microsecond precision.
fn float(out: &mut Vec<u8>, v: f64) {
    use std::io::Write as _;
    let _ = write!(out, "{v:.3}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_000_000_123),
            request_id: Some(HeaderValue::from_static("req-1")),
            trace_id: Some([0x4b; 16]),
            client_ip: [192, 0, 2, 7].into(),
            https: true,
            method: Some(Method::POST),
            host: Some("api.example.com".to_owned()),
            path: Some("/orders/\"x\"\n".to_owned()),
            route_id: Some(Uuid::nil()),
            api_id: None,
            api: Some("orders".into()),
            consumer_id: None,
            key_prefix: KeyPrefix::of(b"tg_abc123zzzzzzzz"),
            status: 201,
            request_bytes: 12,
            response_bytes: None,
            upstream: Some("10.0.0.1:80".to_owned()),
            upstream_attempts: 2,
            upstream_latency: Some(Duration::from_micros(1500)),
            latency: Duration::from_micros(2250),
            reason: None,
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() -> Result<(), serde_json::Error> {
        let mut line = Vec::new();
        format_entry(&mut line, &entry(), FieldSet::ALL);
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line: the path's newline is escaped");
        let v: serde_json::Value = serde_json::from_slice(&line)?;
        let obj = v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(obj.len(), FIELDS.len());
        assert_eq!(v["path"], "/orders/\"x\"\n");
        assert_eq!(v["time"], "2026-11-30T00:53:20.123Z");
        assert_eq!(v["trace_id"], "4b".repeat(16));
        assert_eq!(v["key_prefix"], "tg_abc123");
        assert_eq!(v["status"], 201);
        assert_eq!(v["response_bytes"], serde_json::Value::Null);
        assert_eq!(v["upstream_latency_ms"], 1.5);
        assert_eq!(v["latency_ms"], 2.25);
        assert_eq!(v["scheme"], "https");
        Ok(())
    }

    #[test]
    fn fields_are_chosen_by_name() -> Result<(), String> {
        let set = FieldSet::parse("status, path")?;
        let mut line = Vec::new();
        format_entry(&mut line, &entry(), set);
        assert_eq!(String::from_utf8_lossy(&line), "{\"path\":\"/orders/\\\"x\\\"\\n\",\"status\":201}\n");
        let err = FieldSet::parse("status,query").err().unwrap_or_default();
        assert!(err.contains("`query`") && err.contains("latency_ms"), "{err}");
        assert!(FieldSet::parse(" , ").is_err());
        assert_eq!(FieldSet::parse("all")?, FieldSet::ALL);
        Ok(())
    }

    #[test]
    fn trace_ids_come_only_from_valid_traceparents() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("traceparent", HeaderValue::from_static(v));
            trace_id(&h)
        };
        let id = with("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(id.map(|i| i[0]), Some(0x0a));
        assert_eq!(with("00-00000000000000000000000000000000-b7ad6b7169203331-01"), None, "all zeros");
        assert_eq!(with("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"), None, "upper case");
        assert_eq!(with("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), None, "version ff");
        assert_eq!(with("00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01"), None, "short");
        assert_eq!(trace_id(&HeaderMap::new()), None);
    }

    #[test]
    fn key_prefixes_only_of_our_keys() {
        assert_eq!(KeyPrefix::of(b"tg_AbC123rest").map(|p| p.as_str().to_owned()), Some("tg_AbC123".to_owned()));
        assert_eq!(KeyPrefix::of(b"tg_ab\"123rest"), None);
        assert_eq!(KeyPrefix::of(b"sk_abc123rest"), None);
        assert_eq!(KeyPrefix::of(b"tg_ab"), None);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_close_flushes() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("tollgate-access-log-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("access.log");
        let log =
            AccessLog::start(&AccessLogOptions { capacity: 4, ..AccessLogOptions::new(Sink::File(path.clone())) })?;
        for _ in 0..10_000 {
            log.log(entry());
        }
        log.close(Duration::from_secs(10));
        let text = std::fs::read_to_string(&path)?;
        let lines = text.lines().count() as u64;
        assert_eq!(lines, log.written());
        assert_eq!(lines + log.dropped(), 10_000, "every entry written or counted as dropped");
        assert!(log.dropped() > 0, "a queue of 4 overflows under 10,000 entries sent at once");
        // Rotation: rename, reopen, and the next lines go to a new file of the old name.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated)?;
        let log = AccessLog::start(&AccessLogOptions::new(Sink::File(rotated.clone())))?;
        log.log(entry());
        let renamed = dir.join("access.log.2");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while log.written() < 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::rename(&rotated, &renamed)?;
        log.reopen();
        std::thread::sleep(TICK * 10);
        log.log(entry());
        log.close(Duration::from_secs(10));
        assert_eq!(std::fs::read_to_string(&renamed)?.lines().count(), lines as usize + 1);
        assert_eq!(std::fs::read_to_string(&rotated)?.lines().count(), 1, "reopened under the old name");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
