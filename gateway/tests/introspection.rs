//! Token introspection against a real RFC 7662 endpoint: a hyper server on `127.0.0.1:0` that
//! counts connections and requests and answers per token. Covers the request's shape,
//! answers, caching (positive, negative, bounded by `exp`), single-flight, endpoint
//! failures, the timeout and the SSRF policy.
#![expect(clippy::unwrap_used, reason = "test helpers: a failed unwrap is a failed test")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tollgate_gateway::auth::introspect::{IntrospectError, IntrospectionConfig, Introspector};
use tollgate_gateway::auth::ssrf::{SsrfError, UrlPolicy};

/// What the endpoint answers to one token.
struct Reply {
    status: u16,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(body: Value) -> Self {
        Self { status: 200, body: body.to_string(), delay: Duration::ZERO }
    }

    /// An active answer expiring in an hour, with `extra` members.
    fn active(extra: Value) -> Self {
        let mut body = json!({"active": true, "exp": unix_now() + 3600});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        Self::json(body)
    }

    fn status(status: u16) -> Self {
        Self { status, body: String::new(), delay: Duration::ZERO }
    }

    fn after(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }
}

/// One request as the endpoint saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    accept: String,
    body: String,
}

type Replies = Box<dyn Fn(&str) -> Reply + Send + Sync>;

struct State {
    connections: AtomicUsize,
    hits: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    reply: Replies,
}

/// The introspection endpoint under test, at `url`.
struct Idp {
    url: String,
    port: u16,
    state: Arc<State>,
}

impl Idp {
    async fn start(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            connections: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            reply: Box::new(reply),
        });
        tokio::spawn(serve(listener, Arc::clone(&state)));
        Self { url: format!("http://127.0.0.1:{port}/introspect"), port, state }
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&state), request));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    state.hits.fetch_add(1, Ordering::SeqCst);
    let header = |name| parts.headers.get(name).map_or("", |v| v.to_str().unwrap()).to_owned();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        authorization: header(http::header::AUTHORIZATION),
        content_type: header(http::header::CONTENT_TYPE),
        accept: header(http::header::ACCEPT),
        body: body.clone(),
    };
    state.seen.lock().unwrap().push(seen);
    let reply = (state.reply)(&form_token(&body));
    tokio::time::sleep(reply.delay).await;
    let response = Response::builder().status(reply.status).header("content-type", "application/json");
    Ok(response.body(Full::new(Bytes::from(reply.body))).unwrap())
}

/// The decoded `token` field of a form body.
fn form_token(body: &str) -> String {
    let field = body.split('&').find_map(|pair| pair.strip_prefix("token=")).unwrap_or_default();
    percent_encoding::percent_decode_str(&field.replace('+', " ")).decode_utf8().unwrap().into_owned()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn config(url: &str) -> IntrospectionConfig {
    IntrospectionConfig::from_json(json!({"url": url, "client_id": "gate way", "client_secret": "p@ss:w+rd"})).unwrap()
}

fn open(cfg: IntrospectionConfig) -> Introspector {
    Introspector::new(cfg, UrlPolicy { allow_private: true }).unwrap()
}

#[tokio::test]
async fn active_token_is_accepted_with_subject_and_scopes() {
    let idp = Idp::start(|token| match token {
        "tok+/= 1" => {
            Reply::active(json!({"client_id": "svc", "sub": "user-1", "scope": "read write", "username": "ann"}))
        }
        _ => Reply::active(json!({"client_id": "svc", "iss": "https://idp.example/"})),
    })
    .await;
    let introspector = open(config(&idp.url));
    let info = introspector.introspect("tok+/= 1").await.unwrap();
    assert!(info.active);
    assert_eq!(info.subject.as_deref(), Some("svc"), "subject_claim defaults to client_id");
    assert_eq!(info.scopes, ["read", "write"]);
    assert_eq!((info.username.as_deref(), info.client_id.as_deref()), (Some("ann"), Some("svc")));
    assert_eq!(info.issuer, idp.url, "no `iss` and no configured issuer: the URL");
    assert!(info.exp.unwrap() > i64::try_from(unix_now()).unwrap());

    let seen = &idp.seen()[0];
    assert_eq!((seen.method.as_str(), seen.path.as_str()), ("POST", "/introspect"));
    assert_eq!(seen.content_type, "application/x-www-form-urlencoded");
    assert_eq!(seen.accept, "application/json");
    let basic = format!("Basic {}", STANDARD.encode("gate%20way:p%40ss%3Aw%2Brd"));
    assert_eq!(seen.authorization, basic, "RFC 6749 §2.3.1: form-encoded, then Basic");
    assert_eq!(seen.body, "token=tok%2B%2F%3D%201&token_type_hint=access_token");

    let other = introspector.introspect("other").await.unwrap();
    assert_eq!(other.issuer, "https://idp.example/", "the answer's `iss` first");
    assert_eq!((idp.hits(), idp.connections()), (2, 1), "one keep-alive connection");
    let configured = IntrospectionConfig { issuer: Some("https://configured/".into()), ..config(&idp.url) };
    let by_name = format!("http://localhost:{}/introspect", idp.port);
    let info = open(IntrospectionConfig { url: by_name, ..configured }).introspect("tok+/= 1").await.unwrap();
    assert_eq!(info.issuer, "https://configured/", "then the configured issuer");
}

#[tokio::test]
async fn inactive_token_is_rejected_and_negatively_cached() {
    let expired = i64::try_from(unix_now()).unwrap() - 10;
    let idp = Idp::start(move |token| match token {
        "expired" => Reply::active(json!({"exp": expired})),
        _ => Reply::json(json!({"active": false})),
    })
    .await;
    let introspector = open(config(&idp.url));
    for _ in 0..3 {
        let error = introspector.introspect("revoked").await.unwrap_err();
        assert_eq!(error, IntrospectError::Inactive);
        assert!(!error.is_unavailable(), "a token error: 401");
    }
    assert_eq!(idp.hits(), 1, "inactive answers are cached");
    assert_eq!(introspector.introspect("expired").await, Err(IntrospectError::Inactive), "`exp` passed");

    let uncached = open(IntrospectionConfig { negative_cache_ttl_secs: 0, ..config(&idp.url) });
    for _ in 0..2 {
        assert_eq!(uncached.introspect("revoked").await, Err(IntrospectError::Inactive));
    }
    assert_eq!(idp.hits(), 4);
}

#[tokio::test]
async fn active_answers_are_cached_until_ttl_or_exp() {
    let idp = Idp::start(|token| match token {
        // `exp` two seconds ahead (whole seconds): cached for one to two seconds, not 60.
        "short" => Reply::active(json!({"exp": unix_now() + 2})),
        _ => Reply::active(json!({})),
    })
    .await;
    let introspector = open(config(&idp.url));
    for _ in 0..3 {
        introspector.introspect("long").await.unwrap();
    }
    assert_eq!(idp.hits(), 1, "cached for cache_ttl_secs");

    introspector.introspect("short").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while idp.hits() == 2 {
        assert!(Instant::now() < deadline, "the answer outlived its `exp`");
        tokio::time::sleep(Duration::from_millis(50)).await;
        introspector.introspect("short").await.unwrap();
    }

    let uncached = open(IntrospectionConfig { cache_ttl_secs: 0, ..config(&idp.url) });
    let before = idp.hits();
    uncached.introspect("long").await.unwrap();
    uncached.introspect("long").await.unwrap();
    assert_eq!(idp.hits(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_request() {
    let idp = Idp::start(|token| match token {
        "slow" => Reply::active(json!({})).after(Duration::from_millis(200)),
        _ => Reply::active(json!({})),
    })
    .await;
    let introspector = Arc::new(open(config(&idp.url)));
    let calls = (0..20).map(|_| introspector.introspect("same"));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(idp.hits(), 1);

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let introspector = Arc::clone(&introspector);
            tokio::spawn(async move { introspector.introspect("slow").await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(idp.hits(), 2, "eight tasks, one request");
}

#[tokio::test]
async fn endpoint_failures_are_unavailable_and_never_cached() {
    let calls = AtomicUsize::new(0);
    let idp = Idp::start(move |_| match calls.fetch_add(1, Ordering::SeqCst) {
        0 | 1 => Reply::status(503),
        _ => Reply::active(json!({})),
    })
    .await;
    let introspector = open(config(&idp.url));
    for _ in 0..2 {
        let error = introspector.introspect("t").await.unwrap_err();
        assert_eq!(error, IntrospectError::Status(http::StatusCode::SERVICE_UNAVAILABLE));
        assert!(error.is_unavailable(), "an endpoint error: 503");
    }
    assert!(introspector.introspect("t").await.is_ok());
    assert_eq!(idp.hits(), 3, "failures were not cached");

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let down = format!("http://{}/introspect", closed.local_addr().unwrap());
    drop(closed);
    let introspector = open(config(&down));
    for _ in 0..2 {
        let error = introspector.introspect("t").await.unwrap_err();
        assert!(matches!(error, IntrospectError::Unreachable(_)) && error.is_unavailable(), "{error:?}");
    }
    assert_eq!(introspector.cached(), 0);
}

#[tokio::test]
async fn slow_endpoint_times_out() {
    let idp = Idp::start(|_| Reply::active(json!({})).after(Duration::from_secs(30))).await;
    let introspector = open(IntrospectionConfig { timeout_ms: 100, ..config(&idp.url) });
    let started = Instant::now();
    for _ in 0..2 {
        let error = introspector.introspect("t").await.unwrap_err();
        assert_eq!(error, IntrospectError::Timeout);
        assert!(error.is_unavailable());
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(idp.hits(), 2, "a timeout is not cached");
}

#[tokio::test]
async fn required_scopes_must_all_be_granted() {
    let idp = Idp::start(|token| match token {
        "few" => Reply::active(json!({"scope": "read"})),
        _ => Reply::active(json!({"scope": "admin read extra"})),
    })
    .await;
    let required = vec!["read".to_owned(), "admin".to_owned()];
    let introspector = open(IntrospectionConfig { required_scopes: required, ..config(&idp.url) });
    for _ in 0..2 {
        let error = introspector.introspect("few").await.unwrap_err();
        assert_eq!(error, IntrospectError::MissingScope);
        assert!(!error.is_unavailable());
    }
    assert_eq!(introspector.introspect("all").await.unwrap().scopes, ["admin", "read", "extra"]);
    assert_eq!(idp.hits(), 2, "the scope check runs on cached answers too");
}

#[tokio::test]
async fn loopback_is_refused_before_connecting() {
    let idp = Idp::start(|_| Reply::active(json!({}))).await;
    let strict = UrlPolicy { allow_private: false };
    let plain = Introspector::new(config(&idp.url), strict).unwrap_err();
    assert_eq!(plain.to_string(), format!("url: {}", SsrfError::SchemeNotAllowed));
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{}/introspect", idp.port);
        let introspector = Introspector::new(config(&url), strict).unwrap();
        let error = introspector.introspect("t").await.unwrap_err();
        assert_eq!(error, IntrospectError::Refused(SsrfError::ForbiddenAddress("loopback")), "{host}");
        assert!(error.is_unavailable());
        assert_eq!(introspector.cached(), 0);
    }
    assert_eq!((idp.connections(), idp.hits()), (0, 0), "no connection to a forbidden address");
}

#[tokio::test]
async fn malformed_answers_are_unavailable() {
    let idp = Idp::start(|token| match token {
        "html" => Reply { body: "<html>oops</html>".into(), ..Reply::status(200) },
        _ => Reply::json(json!({"scope": "read"})),
    })
    .await;
    let introspector = open(config(&idp.url));
    for _ in 0..2 {
        assert_eq!(introspector.introspect("html").await, Err(IntrospectError::Malformed("not a JSON object")));
        let error = introspector.introspect("no-active").await.unwrap_err();
        assert_eq!(error, IntrospectError::Malformed("active"));
        assert!(error.is_unavailable());
    }
    assert_eq!(idp.hits(), 4, "malformed answers are not cached");
}
