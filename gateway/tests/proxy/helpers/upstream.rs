//! Real upstream servers for the tests: hyper HTTP/1.1 servers on `127.0.0.1:0` built from a
//! handler closure (echo, status, stream, hold, upgrade …), and raw TCP servers for tests that
//! must control every byte. Each counts its connections and requests and can be killed.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Errors of test bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body of upstream responses (and of client requests).
pub type Body = BoxBody<Bytes, BoxError>;

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as received.
    pub path: String,
    pub headers: HeaderMap,
}

/// Counters shared between a server and the test.
#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

/// A running upstream server.
pub struct Upstream {
    pub addr: SocketAddr,
    stats: Arc<Stats>,
    task: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Serves `handler` over HTTP/1.1 (with upgrades) on a fresh port.
    pub async fn start<F, Fut>(name: &str, handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        Self::listen(name, move |stream, stats| {
            let handler = handler.clone();
            async move { serve_http(stream, stats, handler).await }
        })
        .await
    }

    /// Hands every accepted connection to `conn` (raw TCP).
    pub async fn raw<F, Fut>(name: &str, conn: F) -> Upstream
    where
        F: Fn(TcpStream, Arc<Stats>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::listen(name, conn).await
    }

    async fn listen<F, Fut>(name: &str, conn: F) -> Upstream
    where
        F: Fn(TcpStream, Arc<Stats>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let stats = Arc::new(Stats::default());
        let (task_stats, name) = (stats.clone(), name.to_owned());
        let task = tokio::spawn(async move {
            // Connections live in the set: killing the accept task closes them all.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let stream = match accepted {
                            Ok((stream, _)) => stream,
                            Err(e) => {
                                eprintln!("upstream {name}: accept failed: {e}");
                                continue;
                            }
                        };
                        task_stats.connections.fetch_add(1, Ordering::SeqCst);
                        conns.spawn(conn(stream, task_stats.clone()));
                    }
                    Some(_) = conns.join_next() => {}
                }
            }
        });
        Upstream { addr, stats, task: Some(task) }
    }

    /// Answers every request with a JSON echo of it (see [`echo`]).
    pub async fn echo(name: &str) -> Upstream {
        let owned = name.to_owned();
        Self::start(name, move |req| echo(owned.clone(), req)).await
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// This upstream as a target in the declarative config.
    pub fn target(&self) -> Value {
        json!({ "host": "127.0.0.1", "port": self.port() })
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Requests received so far (by hyper servers; raw ones record what they choose).
    pub fn requests(&self) -> usize {
        self.seen().len()
    }

    /// The most requests handled at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests received so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.stats.seen.lock().expect("stats lock").clone()
    }

    /// Stops the server: the port refuses connections and open connections are closed.
    pub async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl Stats {
    /// Records a request (raw servers call it themselves).
    pub fn record(&self, seen: Seen) {
        self.seen.lock().expect("stats lock").push(seen);
    }
}

async fn serve_http<F, Fut>(stream: TcpStream, stats: Arc<Stats>, handler: Arc<F>)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let service = service_fn(move |req: Request<Incoming>| {
        let (handler, stats) = (handler.clone(), stats.clone());
        async move {
            let path = req.uri().path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.to_string());
            stats.record(Seen { method: req.method().to_string(), path, headers: req.headers().clone() });
            let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let res = handler(req).await;
            stats.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(res)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let _ = conn.with_upgrades().await;
}

/// The JSON echo of a request: upstream name, method, path and query, headers (name →
/// values), body length, SHA-256 and (when short) text.
pub async fn echo(name: String, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return with_status(500, json_body(json!({ "error": e.to_string() }).to_string())),
    };
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> =
            parts.headers.get_all(name).iter().map(|v| Value::from(String::from_utf8_lossy(v.as_bytes()))).collect();
        headers.insert(name.as_str().to_owned(), Value::Array(values));
    }
    let doc = json!({
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "headers": headers,
        "body_len": body.len(),
        "body_sha256": sha256_hex(&body),
        "body": if body.len() <= 64 * 1024 { String::from_utf8_lossy(&body).into_owned() } else { String::new() },
    });
    with_status(200, json_body(doc.to_string()))
}

/// Hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A complete body.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed()
}

fn json_body(text: String) -> Response<Body> {
    let mut res = Response::new(full(text));
    res.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    res
}

/// `res` with its status set to `status`.
pub fn with_status(status: u16, mut res: Response<Body>) -> Response<Body> {
    *res.status_mut() = StatusCode::from_u16(status).expect("valid status");
    res
}

/// A response with `status` and a text body.
pub fn text(status: u16, body: &str) -> Response<Body> {
    with_status(status, Response::new(full(body.to_owned())))
}
