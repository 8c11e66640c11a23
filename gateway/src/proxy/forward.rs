//! The request pipeline, phase by phase (see `docs/gateway.md` for the chart):
//! request id → framing and size guards → path normalisation → route match → API lookup →
//! authenticate → authorize → rate limit (see [`crate::edge`]) → pool choice (canary) → circuit breaker → pick target (LB, health) → proxy with timeouts
//! and retries → response headers. The inner [`Pipeline::forward`] returns a typed
//! [`GatewayError`]; [`Pipeline::handle`] logs it and renders problem+json once.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Body;

use crate::access_log::{self, AccessLog};
use crate::config::freshness::Freshness;
use crate::edge::{self, EdgeOptions};
use crate::error::GatewayError;
use crate::health;
use crate::router::{RequestView, normalize_path};
use crate::snapshot::{ApiRuntime, ConfigStore, Snapshot};
use crate::trace::{self, Tracer};
use crate::upstream::{Outcome, Upstream};
use crate::usage::{Recorder, StatusClass};
use crate::wire::client::{BoxError, Outgoing, ProxyBody, UpstreamError, empty_body};
use crate::wire::headers::{self, Forwarding};
use crate::wire::reclaim;
use crate::wire::reply::switches_to_websocket;
use crate::wire::{ClientBody, ConnInfo, Handler, Reject, Reply, upgrade};

/// Path of the gateway's own liveness endpoint; answered before any routing.
pub const HEALTH_PATH: &str = "/__tollgate/health";
/// Path of the readiness endpoint: like [`HEALTH_PATH`], and also not ready while the
/// configuration is stale (`--max-config-staleness`), saying why.
pub const READY_PATH: &str = "/__tollgate/ready";

/// Request limits enforced before anything is forwarded.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: u64,
    /// Largest total size of request header names and values; larger gets 431.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body_bytes: 10 * 1024 * 1024, max_header_bytes: 32 * 1024 }
    }
}

/// How long after start requests wait for the node's first configuration rather than being
/// answered 503 (a rolling restart's first requests arrive while it loads).
const STARTUP_HOLD: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything a request needs from the node: the config, the limits, the edge settings.
pub struct Pipeline {
    pub store: Arc<ConfigStore>,
    pub limits: Limits,
    pub edge: EdgeOptions,
    /// Usage recording (off: `None`).
    pub usage: Option<Arc<Recorder>>,
    /// Whether the configuration is known current (credentialed calls need it).
    pub freshness: Arc<Freshness>,
    /// The access log (off: `None`).
    pub access_log: Option<Arc<AccessLog>>,
    /// Trace export (off: `None`).
    pub tracer: Option<Arc<Tracer>>,
}

/// What the phases learnt about a request, for its metrics, usage and access log (also when
/// refused).
#[derive(Default)]
struct Seen {
    api: Option<Arc<ApiRuntime>>,
    learnt: edge::Learnt,
    attempts: Attempts,
}

/// The upstream attempts of a request, noted for the access log (`on`) and traces (`trace`).
#[derive(Default)]
struct Attempts {
    on: bool,
    count: u8,
    /// The last attempt's target and how long its response head took.
    target: Option<String>,
    latency: Option<std::time::Duration>,
    /// The request's trace (tracing on), and each sampled attempt's span.
    trace: Option<trace::Context>,
    spans: Vec<AttemptSpan>,
}

/// One upstream attempt of a traced request.
struct AttemptSpan {
    span_id: [u8; 8],
    start: std::time::SystemTime,
    end: std::time::SystemTime,
    target: String,
    /// The upstream's status, or why there was none.
    outcome: Result<u16, String>,
}

/// What the access log needs from the request before the pipeline consumes it.
struct Pre {
    method: http::Method,
    host: String,
    path: String,
    trace_id: Option<[u8; 16]>,
    client_ip: std::net::IpAddr,
}

impl Pre {
    /// `trace`: the trace the gateway continued or started (else the client's is read).
    #[cold]
    fn of(
        req: &Request<ClientBody>,
        conn: &ConnInfo,
        trusted: &[ipnet::IpNet],
        trace: Option<trace::Context>,
    ) -> Box<Self> {
        Box::new(Pre {
            method: req.method().clone(),
            host: request_host(req).into_owned(),
            path: req.uri().path().to_owned(),
            trace_id: trace.map(|t| t.trace_id).or_else(|| access_log::trace_id(req.headers())),
            client_ip: edge::client_ip::client_ip(conn.peer.ip(), req.headers(), trusted),
        })
    }
}

/// One request's state as it moves through the phases.
struct Ctx {
    request_id: HeaderValue,
    identity: edge::Identity,
    /// Path and query to send upstream.
    upstream_pq: String,
}

impl Pipeline {
    /// Handles one request; never fails (errors become problem responses).
    pub async fn handle(&self, req: Box<Request<ClientBody>>, conn: ConnInfo) -> Reply {
        if req.uri().path().starts_with("/__tollgate/") {
            match req.uri().path() {
                HEALTH_PATH => return self.health(),
                READY_PATH => return self.ready(),
                _ => {}
            }
        }
        if let Some(port) = self.edge.https_redirect_port.filter(|_| !conn.https) {
            return to_https(&req, port);
        }
        let started = std::time::Instant::now();
        let request_id = headers::request_id(req.headers());
        let hint = req.body().size_hint();
        let request_bytes = hint.exact().unwrap_or(hint.lower());
        let trace = self.tracer.as_ref().map(|t| t.begin(req.headers()));
        let pre = (self.access_log.is_some() || trace.is_some_and(|t| t.sampled))
            .then(|| Pre::of(&req, &conn, &self.edge.trusted_proxies, trace));
        let attempts = Attempts { on: self.access_log.is_some(), trace, ..Attempts::default() };
        let mut seen = Seen { attempts, ..Seen::default() };
        let mut reason = None;
        let https = conn.https;
        let res = match self.forward(req, conn, request_id.clone(), &mut seen).await {
            Ok(res) => res,
            Err(e) => {
                reason = Some(e.slug());
                refused(&e, &request_id)
            }
        };
        let elapsed = started.elapsed();
        let metrics = seen.api.as_ref().map_or(&self.store.metrics.unrouted, |a| &a.metrics);
        metrics.record(res.status.as_u16(), elapsed);
        if let Some(usage) = &self.usage {
            let made = matches!(res.body, Either::Right(_));
            let response_bytes = res.body.size_hint().exact().unwrap_or(0);
            let class = StatusClass::of(res.status, made);
            usage.record(&seen.learnt.who, class, started, elapsed, request_bytes, response_bytes);
        }
        if let Some(pre) = pre {
            let done = Done { request_id, request_bytes, elapsed, reason, https };
            if let (Some(tracer), Some(ctx)) = (&self.tracer, seen.attempts.trace.filter(|t| t.sampled)) {
                record_trace(tracer, ctx, &pre, &mut seen, &res, &done);
            }
            if let Some(log) = &self.access_log {
                log_access(log, *pre, seen, &res, done);
            }
        }
        res
    }

    /// The node's liveness answer on the proxy port ([`health::loaded`]).
    fn health(&self) -> Reply {
        let (status, body) = health::loaded(&self.store);
        json_reply(status, body)
    }

    /// The node's readiness answer ([`health::ready`]).
    fn ready(&self) -> Reply {
        let (status, body) = health::ready(&self.store, &self.freshness);
        json_reply(status, body)
    }

    async fn forward(
        &self,
        mut req: Box<Request<ClientBody>>,
        conn: ConnInfo,
        request_id: HeaderValue,
        seen: &mut Seen,
    ) -> Result<Reply, GatewayError> {
        self.guard(&req)?;
        if !self.store.is_loaded() && !self.store.wait_first_load(STARTUP_HOLD).await {
            return Err(GatewayError::NotReady);
        }
        let snapshot = self.store.load_full();
        let Routed { api, route_id, route_cost, route_methods, mut upstream_pq } = route(&snapshot, &req)?;
        seen.learnt.who.api = api.id;
        seen.learnt.who.route = route_id;
        seen.api = Some(api.clone());
        let call = edge::Call {
            snapshot: &snapshot,
            api: &api,
            route_id,
            route_cost,
            route_methods,
            peer: conn.peer.ip(),
            client_cert: conn.client_cert.as_deref(),
            trusted_proxies: &self.edge.trusted_proxies,
            rate_limit_headers: self.edge.rate_limit_headers,
            freshness: &self.freshness,
        };
        let edge::Admitted { identity, decision } =
            edge::admit(&call, &self.store.limiter, req.headers_mut(), &mut upstream_pq, &mut seen.learnt).await?;
        drop(snapshot);
        let ctx = Ctx { request_id, identity, upstream_pq };
        let pool = choose_pool(&api, req.headers());
        // Boxed: the exchange's future is most of a request's state; kept in place, every
        // future around it (and their moves) would be that much larger.
        let work = Box::pin(proxy(&api, &pool, ctx, req, conn, self.limits.max_body_bytes, &mut seen.attempts));
        let mut res = match api.total_timeout {
            Some(t) => tokio::time::timeout(t, work).await.map_err(|_| GatewayError::UpstreamTimeout)??,
            None => work.await?,
        };
        if let Some(d) = decision {
            res.fields.extra = Some(Box::new(d));
        }
        Ok(res)
    }

    /// Framing and size checks that need no configuration.
    fn guard(&self, req: &Request<ClientBody>) -> Result<(), GatewayError> {
        let h = req.headers();
        // (The HTTP/1.1 server refuses this while parsing; hyper's HTTP/2 requests are checked here.)
        if matches!(req.body(), ClientBody::Hyper(_))
            && h.contains_key(header::CONTENT_LENGTH)
            && h.contains_key(header::TRANSFER_ENCODING)
        {
            return Err(GatewayError::BadRequest("both Content-Length and Transfer-Encoding are present"));
        }
        let header_bytes: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        if header_bytes > self.limits.max_header_bytes {
            return Err(GatewayError::HeadersTooLarge);
        }
        if req.body().size_hint().lower() > self.limits.max_body_bytes {
            return Err(GatewayError::BodyTooLarge);
        }
        Ok(())
    }
}

impl Handler for Pipeline {
    fn handle(&self, req: Box<Request<ClientBody>>, conn: ConnInfo) -> impl std::future::Future<Output = Reply> + Send {
        Pipeline::handle(self, req, conn)
    }

    fn reject(&self, why: Reject, conn: &ConnInfo) -> Reply {
        let e = GatewayError::from(why);
        let res = Reply::made(e.to_response(None));
        self.store.metrics.unrouted.record(res.status.as_u16(), std::time::Duration::ZERO);
        if let Some(log) = &self.access_log {
            log_rejected(log, &e, &res, conn);
        }
        res
    }
}

/// `308` to the same host, path and query over HTTPS on `port` (RFC 9110 §15.4.9: the method
/// and body are kept). No host (an HTTP/1.0 request without one): 400.
#[cold]
fn to_https<B>(req: &Request<B>, port: u16) -> Reply {
    let host = request_host(req);
    if host.is_empty() {
        return Reply::made(GatewayError::BadRequest("a Host is needed to redirect to HTTPS").to_response(None));
    }
    let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = match port {
        443 => format!("https://{host}{pq}"),
        _ => format!("https://{host}:{port}{pq}"),
    };
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            return Reply::made(GatewayError::BadRequest("the request target cannot be redirected").to_response(None));
        }
    }
    Reply::made(res)
}

/// A JSON answer of the gateway's own endpoints.
fn json_reply(status: StatusCode, body: String) -> Reply {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Reply::made(res)
}

/// Logs a request the pipeline refused or failed and renders its problem response. Out of
/// line and cold: kept inline, the logging code spreads the request's hot path over more
/// instruction-cache lines.
#[cold]
#[inline(never)]
fn refused(e: &GatewayError, request_id: &HeaderValue) -> Reply {
    if e.status().is_server_error() {
        tracing::warn!(error = %e, request_id = ?request_id, "request failed");
    } else {
        tracing::debug!(error = %e, request_id = ?request_id, "request refused");
    }
    Reply::made(e.to_response(Some(request_id)))
}

/// A matched request: its API, route settings and the upstream path+query.
struct Routed {
    api: Arc<ApiRuntime>,
    route_id: uuid::Uuid,
    route_cost: u32,
    route_methods: Option<edge::Methods>,
    upstream_pq: String,
}

/// Normalises the path and matches a route of an enabled API.
fn route(snapshot: &Snapshot, req: &Request<ClientBody>) -> Result<Routed, GatewayError> {
    let path = normalize_path(req.uri().path()).map_err(|e| GatewayError::BadRequest(e.reason()))?;
    let host = request_host(req);
    let view = RequestView {
        host: &host,
        method: req.method(),
        path: &path,
        headers: req.headers(),
        query: req.uri().query(),
    };
    let m = snapshot.router.find(&view).ok_or(GatewayError::NoRoute)?;
    let api = snapshot.apis.get(&m.api_id()).filter(|a| a.enabled).ok_or(GatewayError::NoRoute)?.clone();
    let mut upstream_pq = m.upstream_path().into_owned();
    if let Some(q) = req.uri().query() {
        upstream_pq.push('?');
        upstream_pq.push_str(q);
    }
    Ok(Routed { api, route_id: m.id(), route_cost: m.cost(), route_methods: m.auth_methods(), upstream_pq })
}

/// The host the client asked for: lower-cased, without port (borrowed when it already is
/// lower case, the usual case: no allocation per request).
fn request_host<B>(req: &Request<B>) -> std::borrow::Cow<'_, str> {
    let raw = req.uri().host().or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok())).unwrap_or("");
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.as_bytes().iter().rposition(|b| *b == b':').map_or(raw, |at| &raw[..at])
    };
    if host.bytes().any(|b| b.is_ascii_uppercase()) { host.to_ascii_lowercase().into() } else { host.into() }
}

/// The stable pool, or the canary pool when forced by header or drawn by weight.
fn choose_pool(api: &ApiRuntime, headers: &HeaderMap) -> Arc<Upstream> {
    let Some((canary, weight)) = &api.canary else { return api.stable.clone() };
    let forced = api.canary_header.as_ref().and_then(|h| headers.get(h)).and_then(|v| v.to_str().ok());
    let use_canary = match forced {
        Some(v) if v.eq_ignore_ascii_case("canary") => true,
        Some(v) if v.eq_ignore_ascii_case("stable") => false,
        _ => *weight > 0 && fastrand::u8(0..100) < *weight,
    };
    if use_canary { canary.clone() } else { api.stable.clone() }
}

/// Sends the request to a target of `pool`, retrying where safe, and streams the answer back.
async fn proxy(
    api: &ApiRuntime,
    pool: &Upstream,
    mut ctx: Ctx,
    mut req: Box<Request<ClientBody>>,
    conn: ConnInfo,
    max_body: u64,
    attempts: &mut Attempts,
) -> Result<Reply, GatewayError> {
    let permit = match pool.admit() {
        Ok(p) => p,
        Err(rejected) => {
            return rejected.fallback.map(|f| fallback_response(&f, &ctx.request_id)).ok_or(GatewayError::CircuitOpen);
        }
    };
    pool.retry_policy().record_request();
    let upgrade = crate::wire::server::wants_upgrade(&req);
    let client_upgrade = upgrade.then(|| upgrade::ClientSide::of(&mut req));
    let body_empty = req.body().is_end_stream();
    let body = std::mem::replace(req.body_mut(), ClientBody::Empty);
    let host = client_host(&req);
    let forwarding =
        Forwarding { client_ip: conn.peer.ip(), proto: if conn.https { "https" } else { "http" }, host: host.as_ref() };
    let hash = pool.hash_key(req.headers(), Some(&ctx.identity), Some(conn.peer.ip()));
    // Most requests go upstream with the target they came with: its parsed form is shared.
    let pq = match req.uri().path_and_query() {
        Some(sent) if sent.as_str() == ctx.upstream_pq => sent.clone(),
        _ => PathAndQuery::from_maybe_shared(Bytes::from(std::mem::take(&mut ctx.upstream_pq)))
            .map_err(|_| GatewayError::BadRequest("the request target cannot be forwarded"))?,
    };
    let mut out = Outgoing {
        method: req.method(),
        path_and_query: &pq,
        headers: req.headers(),
        request_id: &ctx.request_id,
        identity: Some(&ctx.identity),
        forwarding: &forwarding,
        upgrade,
        traceparent: None,
    };
    let mut body = Some(limit_body(body, max_body));
    let mut tried: smallvec::SmallVec<[usize; 4]> = smallvec::SmallVec::new();
    let mut attempt = 0;
    let mut next = pool.pick(hash, &tried);
    loop {
        let pick = next.take().ok_or(GatewayError::NoHealthyTarget)?;
        tried.push(pick.index);
        let (attempt_body, reclaim) = match body.take() {
            Some(b) if !body_empty => {
                let (lent, reclaim) = reclaim::lend(b);
                (lent, Some(reclaim))
            }
            b => (b.unwrap_or_else(empty_body), None),
        };
        let sent = attempts.on.then(std::time::Instant::now);
        let span = attempts.trace.map(|t| {
            let id = trace::span_id();
            out.traceparent = Some(trace::traceparent(&t.trace_id, &id, t.sampled));
            (id, std::time::SystemTime::now())
        });
        let result = api.client.send(api.https, &pick.target.authority, &out, attempt_body, api.read_timeout).await;
        if let Some(sent) = sent {
            attempts.note(&pick.target.authority, sent.elapsed());
        }
        if let Some((id, start)) = span.filter(|_| attempts.trace.is_some_and(|t| t.sampled)) {
            attempts.note_span(id, start, &pick.target.authority, &result);
        }
        let outcome = outcome_of(&result);
        // A request body that failed (over the limit, malformed, cut off) is the client's
        // fault and says nothing about the target.
        if !matches!(&result, Err(e) if is_client_body_error(e)) {
            pool.report(pick.index, outcome);
        }
        drop(pick);
        // Nothing was sent: whatever the method and `retries`, the next untried target gets it.
        if matches!(&result, Err(e) if e.is_connect()) {
            let unread = if body_empty { Some(empty_body()) } else { reclaim.and_then(reclaim::Reclaim::take_unread) };
            next = unread.as_ref().and_then(|_| pool.pick_untried(hash, &tried));
            if next.is_some() {
                api.metrics.retried();
                body = unread;
                continue;
            }
        }
        // Only an empty body can be sent again (a non-empty one has been consumed).
        let retry =
            if body_empty { pool.retry_policy().should_retry(attempt, out.method, &outcome, true) } else { None };
        if let Some(wait) = retry {
            api.metrics.retried();
            attempt += 1;
            tokio::time::sleep(wait).await;
            next = pool.pick(hash, &tried);
            continue;
        }
        permit.record(!outcome.is_failure());
        let res = result.map_err(classify)?;
        return respond(res, &ctx, client_upgrade);
    }
}

impl Attempts {
    #[cold]
    fn note(&mut self, target: &str, latency: std::time::Duration) {
        self.count = self.count.saturating_add(1);
        self.target = Some(target.to_owned());
        self.latency = Some(latency);
    }

    #[cold]
    fn note_span(
        &mut self,
        span_id: [u8; 8],
        start: std::time::SystemTime,
        target: &str,
        result: &Result<Reply, UpstreamError>,
    ) {
        let outcome = match result {
            Ok(res) => Ok(res.status.as_u16()),
            Err(e) => Err(e.to_string()),
        };
        let end = std::time::SystemTime::now();
        self.spans.push(AttemptSpan { span_id, start, end, target: target.to_owned(), outcome });
    }
}

/// Hands a sampled request's server span and its attempts' client spans to the tracer.
#[cold]
#[inline(never)]
fn record_trace(tracer: &Tracer, ctx: trace::Context, pre: &Pre, seen: &mut Seen, res: &Reply, done: &Done) {
    use trace::{Kind, Span, Value};
    let status = res.status.as_u16();
    let api = seen.api.as_ref().map(|a| a.name.clone());
    let who = &seen.learnt.who;
    let mut attributes = vec![
        ("http.request.method", Value::Str(pre.method.as_str().to_owned())),
        ("url.path", Value::Str(pre.path.clone())),
        ("url.scheme", Value::Str(if done.https { "https" } else { "http" }.to_owned())),
        ("server.address", Value::Str(pre.host.clone())),
        ("client.address", Value::Str(pre.client_ip.to_string())),
        ("http.response.status_code", Value::Int(i64::from(status))),
        ("tollgate.request_id", Value::Str(String::from_utf8_lossy(done.request_id.as_bytes()).into_owned())),
    ];
    if let Some(api) = &api {
        attributes.push(("tollgate.api", Value::Str(api.to_string())));
        attributes.push(("tollgate.route_id", Value::Str(who.route.to_string())));
    }
    if !who.consumer.is_nil() {
        attributes.push(("tollgate.consumer_id", Value::Str(who.consumer.to_string())));
    }
    if let Some(reason) = done.reason {
        attributes.push(("error.type", Value::Str(reason.to_owned())));
    }
    let name = match &api {
        Some(api) => format!("{} {api}", pre.method),
        None => pre.method.to_string(),
    };
    let end = ctx.start + done.elapsed;
    for (n, a) in std::mem::take(&mut seen.attempts.spans).into_iter().enumerate() {
        let mut attributes = vec![
            ("http.request.method", Value::Str(pre.method.as_str().to_owned())),
            ("server.address", Value::Str(a.target.clone())),
            ("tollgate.attempt", Value::Int(i64::try_from(n + 1).unwrap_or(i64::MAX))),
        ];
        let error = match a.outcome {
            Ok(code) => {
                attributes.push(("http.response.status_code", Value::Int(i64::from(code))));
                (code >= 500).then(|| format!("upstream answered {code}"))
            }
            Err(why) => Some(why),
        };
        tracer.record(Span {
            trace_id: ctx.trace_id,
            span_id: a.span_id,
            parent: Some(ctx.span_id),
            name: pre.method.to_string(),
            kind: Kind::Client,
            start: a.start,
            end: a.end,
            attributes,
            error,
        });
    }
    tracer.record(Span {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        parent: ctx.parent,
        name,
        kind: Kind::Server,
        start: ctx.start,
        end,
        attributes,
        error: (status >= 500).then(|| done.reason.unwrap_or("upstream error").to_owned()),
    });
}

/// How a request ended, for its access log entry.
struct Done {
    request_id: HeaderValue,
    request_bytes: u64,
    elapsed: std::time::Duration,
    reason: Option<&'static str>,
    https: bool,
}

/// The access log entry of a request refused while its head or body was read: nothing of
/// the request is trusted enough to log but who sent it and why it was refused.
#[cold]
#[inline(never)]
fn log_rejected(log: &AccessLog, e: &GatewayError, res: &Reply, conn: &ConnInfo) {
    log.log(access_log::Entry {
        time: std::time::SystemTime::now(),
        request_id: None,
        trace_id: None,
        client_ip: conn.peer.ip(),
        https: conn.https,
        method: None,
        host: None,
        path: None,
        route_id: None,
        api_id: None,
        api: None,
        consumer_id: None,
        key_prefix: None,
        status: res.status.as_u16(),
        request_bytes: 0,
        response_bytes: res.body.size_hint().exact(),
        upstream: None,
        upstream_attempts: 0,
        upstream_latency: None,
        latency: std::time::Duration::ZERO,
        reason: Some(e.slug()),
    });
}

/// Hands the request's entry to the access log (the writer thread formats it).
#[cold]
#[inline(never)]
fn log_access(log: &AccessLog, pre: Pre, seen: Seen, res: &Reply, done: Done) {
    let api = seen.api.as_ref();
    let who = &seen.learnt.who;
    let some = |id: uuid::Uuid| (!id.is_nil()).then_some(id);
    log.log(access_log::Entry {
        time: std::time::SystemTime::now(),
        request_id: Some(done.request_id),
        trace_id: pre.trace_id,
        client_ip: pre.client_ip,
        https: done.https,
        method: Some(pre.method),
        host: Some(pre.host),
        path: Some(pre.path),
        route_id: some(who.route),
        api_id: api.map(|a| a.id),
        api: api.map(|a| a.name.clone()),
        consumer_id: some(who.consumer),
        key_prefix: seen.learnt.key_prefix,
        status: res.status.as_u16(),
        request_bytes: done.request_bytes,
        response_bytes: res.body.size_hint().exact(),
        upstream: seen.attempts.target,
        upstream_attempts: seen.attempts.count,
        upstream_latency: seen.attempts.latency,
        latency: done.elapsed,
        reason: done.reason,
    });
}

fn outcome_of(result: &Result<Reply, UpstreamError>) -> Outcome {
    match result {
        Err(UpstreamError::Timeout) => Outcome::Timeout,
        Err(e) if e.is_connect() => Outcome::ConnectFailure,
        Err(e) if is_client_body_error(e) => Outcome::Success,
        Err(_) => Outcome::Status(502),
        Ok(res) => Outcome::Status(res.status.as_u16()),
    }
}

fn classify(e: UpstreamError) -> GatewayError {
    if matches!(e, UpstreamError::Timeout) {
        return GatewayError::UpstreamTimeout;
    }
    if is_body_limit(&e) {
        return GatewayError::BodyTooLarge;
    }
    if is_client_body_error(&e) {
        return GatewayError::BadRequest("the request body could not be read");
    }
    if e.is_connect() {
        GatewayError::UpstreamConnect(e.to_string())
    } else {
        GatewayError::UpstreamProtocol(e.to_string())
    }
}

/// Whether sending failed because the client's request body did. The plain-HTTP codec says
/// so itself; hyper (TLS) reports an error of the body it was given as a user error carrying
/// that error as its cause (errors of its connection are hyper errors too, but further down
/// the chain).
fn is_client_body_error(e: &UpstreamError) -> bool {
    if matches!(e, UpstreamError::RequestBody(_)) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            return h.is_user() && std::error::Error::source(h).is_some();
        }
        cur = err.source();
    }
    false
}

fn is_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn limit_body(body: ClientBody, max: u64) -> ProxyBody {
    Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)).map_err(BoxError::from).boxed()
}

/// The client's host: the target's authority when it has one (HTTP/2 `:authority`, or an
/// absolute-form target, which RFC 9112 §3.2.2 says wins over `Host`), else `Host`.
fn client_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    let authority = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    authority.or_else(|| req.headers().get(header::HOST).cloned())
}

/// The upstream's response with the request id. A `101` is passed on only to a request
/// that asked for a WebSocket upgrade, and only when it switches to WebSocket; any other is
/// a 502 (the connection would otherwise carry bytes that no route or credential check ever
/// sees).
fn respond(mut res: Reply, ctx: &Ctx, client_upgrade: Option<upgrade::ClientSide>) -> Result<Reply, GatewayError> {
    if res.status == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = match (client_upgrade, &mut res.body) {
            (Some(client), Either::Left(body)) if switches_to_websocket(&res.fields) => {
                body.take_upgraded().map(|upstream| (client, upstream))
            }
            _ => None,
        };
        let Some((client, upstream)) = upstream else {
            unasked_switch();
            return Err(GatewayError::UpstreamProtocol("the upstream switched protocols unasked".to_owned()));
        };
        upgrade::splice(client, upstream);
    }
    res.fields.request_id = Some(ctx.request_id.clone());
    Ok(res)
}

#[cold]
#[inline(never)]
fn unasked_switch() {
    tracing::warn!("upstream answered 101 to a request that did not ask for that upgrade; answered 502");
}

fn fallback_response(f: &crate::upstream::FallbackResponse, request_id: &HeaderValue) -> Reply {
    let mut res = Response::new(Full::new(f.body.clone()));
    *res.status_mut() = StatusCode::from_u16(f.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if let Ok(ct) = HeaderValue::from_str(&f.content_type) {
        res.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    res.headers_mut().insert(headers::X_REQUEST_ID.clone(), request_id.clone());
    Reply::made(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_ports_and_case() {
        let req = |h: &'static str| Request::builder().header(header::HOST, h).body(()).unwrap_or_default();
        assert_eq!(request_host(&req("API.Example.com:8000")), "api.example.com");
        assert_eq!(request_host(&req("[::1]:8000")), "[::1]");
        assert_eq!(request_host(&req("example.com")), "example.com");
    }
}
