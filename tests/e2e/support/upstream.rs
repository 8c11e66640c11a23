//! Real upstream servers on 127.0.0.1:0. Each answers every request with the plain-text body
//! `<name> <METHOD> <path>`, so a test can tell which upstream served which path; `/slow?ms=N`
//! answers after N milliseconds (a request still in flight when the gateway is stopped), and
//! so does any path ending in `/slow`; a path ending in `/fail` is answered 500.
//! An echo upstream ([`Upstream::start_echo`]) answers JSON describing the request instead,
//! headers included, so a test can see what the gateway forwarded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use tokio::task::JoinHandle;

/// Longest delay `/slow` accepts, so a typo cannot hang a test.
const MAX_SLOW: Duration = Duration::from_secs(30);

/// A running upstream; stopped on drop.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    seen: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    name: Arc<str>,
    seen: Arc<AtomicUsize>,
}

impl Upstream {
    /// Starts an upstream called `name` on a free loopback port.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        Self::serve(name, |shared| axum::Router::new().fallback(answer).with_state(shared)).await
    }

    /// Starts an echo upstream: every answer is `{"upstream", "method", "path", "headers"}`,
    /// `headers` mapping each lower-case name to all its values in order.
    pub async fn start_echo(name: &str) -> anyhow::Result<Self> {
        Self::serve(name, |shared| axum::Router::new().fallback(echo).with_state(shared)).await
    }

    async fn serve(name: &str, app: impl FnOnce(Shared) -> axum::Router) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(AtomicUsize::new(0));
        let app = app(Shared { name: Arc::from(name), seen: Arc::clone(&seen) });
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("upstream stopped: {err}");
            }
        });
        Ok(Self { name: name.to_owned(), addr, seen, task })
    }

    /// The body this upstream sends for `GET path`.
    pub fn body_for(&self, path: &str) -> String {
        format!("{} GET {path}", self.name)
    }

    /// Requests received so far (counted when they arrive, before any delay).
    pub fn requests_seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(shared): State<Shared>, req: Request) -> (axum::http::StatusCode, String) {
    shared.seen.fetch_add(1, Ordering::SeqCst);
    let uri = req.uri();
    if uri.path().ends_with("/slow") {
        let ms = uri.query().and_then(|q| q.strip_prefix("ms=")).and_then(|v| v.parse().ok()).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms).min(MAX_SLOW)).await;
    }
    // `…/fail` is this upstream's own failure (a 500 the gateway passes on).
    let status = if uri.path().ends_with("/fail") {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    } else {
        axum::http::StatusCode::OK
    };
    (status, format!("{} {} {}", shared.name, req.method(), uri.path()))
}

async fn echo(State(shared): State<Shared>, req: Request) -> axum::Json<serde_json::Value> {
    shared.seen.fetch_add(1, Ordering::SeqCst);
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        let values = headers.entry(name.as_str()).or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(list) = values {
            list.push(String::from_utf8_lossy(value.as_bytes()).into_owned().into());
        }
    }
    axum::Json(serde_json::json!({
        "upstream": &*shared.name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "headers": headers,
    }))
}
