//! Pooled upstream HTTP clients (HTTP/1.1 keep-alive, plain or TLS). One client per
//! distinct connect timeout, shared by every API using it and kept across config changes,
//! so a change never drops warm upstream connections. Connections are pooled by scheme and
//! authority, i.e. by the full peer identity: plain HTTP in the gateway's own pool
//! ([`super::pool`]), TLS in hyper-util's client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::h1;
use super::headers::{self, Forwarding};
use super::pool::{self, Http1Pool, PooledBody, Stall, Target};
use super::reply::{Fields, Reply, append_lines};

/// Errors a proxied body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request body sent upstream.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
/// Upstream response body.
pub type UpstreamBody = PooledBody;

/// A request body with nothing in it.
pub fn empty_body() -> ProxyBody {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}
type TlsClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (name resolution, TCP connect, connect timeout): nothing
    /// was sent.
    #[error("upstream connect error: {0}")]
    Connect(std::io::Error),
    /// Reading or writing an open connection failed.
    #[error("upstream I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The upstream closed the connection before its answer was complete.
    #[error("the upstream closed the connection before its response was complete")]
    Closed,
    /// No response head within the read timeout.
    #[error("the upstream did not answer within the read timeout")]
    Timeout,
    /// The upstream's answer is not valid HTTP/1.1.
    #[error("invalid upstream response: {0}")]
    Protocol(&'static str),
    /// The client's request body failed (over the limit, malformed, cut off) while it was
    /// being forwarded.
    #[error("the request body could not be read: {0}")]
    RequestBody(#[source] BoxError),
    /// From the TLS client.
    #[error(transparent)]
    Tls(hyper_util::client::legacy::Error),
    /// The target's address is not a valid authority.
    #[error("the target address is not a valid authority")]
    InvalidTarget,
}

impl UpstreamError {
    /// Whether the failure happened before anything was sent (the target was not reached).
    pub fn is_connect(&self) -> bool {
        match self {
            Self::Connect(_) | Self::InvalidTarget => true,
            Self::Tls(e) => e.is_connect(),
            Self::Io(_) | Self::Closed | Self::Timeout | Self::Protocol(_) | Self::RequestBody(_) => false,
        }
    }
}

/// The client for one connect timeout: cheap to clone.
#[derive(Clone)]
pub struct UpstreamClient {
    plain: Arc<Http1Pool>,
    tls: TlsClient,
}

impl UpstreamClient {
    /// Sends the request to `authority` (`host:port`), with `Host` set to it, hop-by-hop
    /// headers removed and forwarding headers added; no response head within
    /// `read_timeout` is [`UpstreamError::Timeout`].
    pub async fn send(
        &self,
        https: bool,
        authority: &str,
        out: &Outgoing<'_>,
        body: ProxyBody,
        read_timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        let target = self.plain.target(authority)?;
        // (TLS boxed: hyper's client future would enlarge every plain request's too.)
        if !https {
            return self.plain.send(target, out, body, read_timeout).await;
        }
        let req = tls_request(&target, out, body)?;
        let res = tokio::time::timeout(read_timeout, Box::pin(self.tls.request(req)))
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(UpstreamError::Tls)?;
        // Each wait for a body frame gets what the exchange was allowed (the API's read timeout).
        Ok(tls_reply(res, Stall::new(read_timeout)))
    }
}

/// The request hyper's client sends to a TLS upstream: an absolute URI, and the header fields
/// the plain codec writes ([`h1::encode_fields`], built by the same code).
fn tls_request(target: &Target, out: &Outgoing<'_>, body: ProxyBody) -> Result<Request<ProxyBody>, UpstreamError> {
    let mut block = Vec::with_capacity(512);
    h1::encode_fields(&mut block, out, &target.host, &body);
    let mut headers = HeaderMap::with_capacity(out.headers.len() + 8);
    append_lines(&Bytes::from(block), &mut headers);
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTPS);
    parts.authority = Some(target.uri_authority.clone());
    parts.path_and_query = Some(out.path_and_query.clone());
    let mut req = Request::new(body);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| UpstreamError::InvalidTarget)?;
    *req.method_mut() = out.method.clone();
    *req.headers_mut() = headers;
    Ok(req)
}

/// A TLS upstream's response as a [`Reply`]: its fields as the plain codec keeps them (no
/// hop-by-hop ones except after `101`, whose `Upgrade` and `Connection` the client needs; no
/// `Transfer-Encoding`, as hyper decodes the body; the length only when it frames the body).
fn tls_reply(mut res: Response<Incoming>, stall: Stall) -> Reply {
    let status = res.status();
    let keep_length = !res.headers().contains_key(http::header::TRANSFER_ENCODING);
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        let on = hyper::upgrade::on(&mut res);
        let fields = Fields::from_map(res.headers(), keep_length);
        return Reply { status, fields, body: Either::Left(PooledBody::Switched(Some(on))) };
    }
    headers::strip_hop_by_hop(res.headers_mut(), false);
    let fields = Fields::from_map(res.headers(), keep_length);
    Reply { status, fields, body: Either::Left(PooledBody::Tls(res.into_body(), stall)) }
}

/// What goes upstream, borrowed from the client's request (so a retry copies nothing):
/// each client writes `Host`, hop-by-hop removal and the forwarding headers its own way.
pub struct Outgoing<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a PathAndQuery,
    /// The client's headers (without its copies of the identity headers).
    pub headers: &'a HeaderMap,
    /// Sent as the request's only `X-Request-ID` (the client's, when it was sane).
    pub request_id: &'a HeaderValue,
    /// The caller's identity headers (the client's own copies are already gone).
    pub identity: Option<&'a dyn super::ExtraFields>,
    pub forwarding: &'a Forwarding<'a>,
    /// A protocol upgrade: `Upgrade` is kept and `Connection: upgrade` sent.
    pub upgrade: bool,
    /// Sent instead of the client's `traceparent` (tracing on: this attempt's span).
    pub traceparent: Option<HeaderValue>,
}

/// TLS settings of one API's upstream connections (its own trust, name or verification);
/// without them, the public roots and the target's host.
#[derive(Clone)]
pub struct TlsSettings {
    pub config: Arc<rustls::ClientConfig>,
    /// Sent as SNI and verified instead of the target's host.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
}

fn build_tls(connect_timeout: Duration, settings: Option<TlsSettings>) -> TlsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let https = match settings {
        None => builder.with_webpki_roots().https_or_http().enable_http1().wrap_connector(http),
        Some(TlsSettings { config, server_name }) => {
            let builder = builder.with_tls_config((*config).clone()).https_or_http();
            let builder = match server_name {
                Some(name) => builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name)),
                None => builder,
            };
            builder.enable_http1().wrap_connector(http)
        }
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool::IDLE_TIMEOUT)
        .pool_max_idle_per_host(pool::MAX_IDLE_PER_TARGET)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// The shared client for `connect_timeout` (created on first use, off the request path:
/// the snapshot compiler asks for it).
pub fn client_for(connect_timeout: Duration) -> UpstreamClient {
    static CLIENTS: OnceLock<Mutex<HashMap<Duration, UpstreamClient>>> = OnceLock::new();
    let clients = CLIENTS.get_or_init(Default::default);
    let mut map = match clients.lock() {
        Ok(m) => m,
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(connect_timeout)
        .or_insert_with(|| UpstreamClient {
            plain: Arc::new(Http1Pool::new(connect_timeout)),
            tls: build_tls(connect_timeout, None),
        })
        .clone()
}

/// A client of its own for an API with TLS `settings` (plain connections still go to the
/// shared pool of `connect_timeout`).
pub fn client_with_tls(connect_timeout: Duration, settings: TlsSettings) -> UpstreamClient {
    UpstreamClient { plain: client_for(connect_timeout).plain, tls: build_tls(connect_timeout, Some(settings)) }
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use http_body_util::Full;

    use super::*;

    #[derive(Debug)]
    struct Caller;

    impl super::super::ExtraFields for Caller {
        fn each(&self, field: &mut dyn FnMut(&http::HeaderName, &[u8])) {
            field(&http::HeaderName::from_static("x-consumer-id"), b"c-1");
            field(&http::HeaderName::from_static("x-plan"), b"gold");
        }
    }

    /// The fields of an encoded plain request head, in order, lower-cased.
    fn plain_fields(head: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 64];
        let mut req = httparse::Request::new(&mut []);
        let parsed = req.parse_with_uninit_headers(head, &mut fields);
        assert!(matches!(parsed, Ok(httparse::Status::Complete(n)) if n == head.len()), "{parsed:?}");
        req.headers.iter().map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec())).collect()
    }

    /// One client request, sent plain and over TLS: the two upstreams get the same fields.
    #[test]
    fn plain_and_tls_upstreams_get_the_same_request() -> Result<(), BoxError> {
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("host", "api.example.com"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "dropped"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-request-id", "client-chosen"),
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("content-length", "5"),
            ("accept", "application/json"),
            ("accept", "text/plain"),
            ("x-api-key", "secret"),
            ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ] {
            client.append(http::HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        let forwarding =
            Forwarding { client_ip: [10, 0, 0, 1].into(), proto: "https", host: client.get(http::header::HOST) };
        let pq = PathAndQuery::from_static("/v1/orders?limit=5");
        let target = Target::for_tests("orders.internal:8443")?;
        let ours = HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
        for (method, body, upgrade, traceparent) in [
            (Method::POST, Full::new(Bytes::from_static(b"hello")).map_err(|n| match n {}).boxed(), false, None),
            (Method::GET, empty_body(), false, Some(ours.clone())),
            (Method::GET, empty_body(), true, None),
        ] {
            let out = Outgoing {
                method: &method,
                path_and_query: &pq,
                headers: &client,
                request_id: &HeaderValue::from_static("gw-id"),
                identity: Some(&Caller),
                forwarding: &forwarding,
                upgrade,
                traceparent: traceparent.clone(),
            };
            let mut head = Vec::new();
            h1::encode_head(&mut head, &out, &target.host, &body);
            let mut plain = plain_fields(&head);
            let req = tls_request(&target, &out, body)?;
            assert_eq!(req.uri().to_string(), "https://orders.internal:8443/v1/orders?limit=5");
            assert_eq!(req.method(), method);
            let mut tls: Vec<(String, Vec<u8>)> =
                req.headers().iter().map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec())).collect();
            // A header map groups values by name; the order of names is the map's.
            plain.sort();
            tls.sort();
            assert_eq!(plain, tls, "{}", String::from_utf8_lossy(&head));
            let get =
                |name: &str| plain.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_slice()).collect::<Vec<_>>();
            assert_eq!(get("host"), [b"orders.internal:8443"]);
            assert_eq!(get("x-request-id"), [b"gw-id"]);
            assert_eq!(get("x-consumer-id"), [b"c-1"]);
            assert_eq!(get("x-forwarded-for"), [&b"203.0.113.9, 10.0.0.1"[..]]);
            assert_eq!(get("accept").len(), 2);
            for hop in ["x-hop", "keep-alive", "te"] {
                assert!(get(hop).is_empty(), "{hop} was forwarded");
            }
            let expected_length: &[&[u8]] = if method == Method::POST { &[b"5"] } else { &[b"0"] };
            assert_eq!(get("content-length"), expected_length, "{method}");
            assert_eq!(get("connection"), if upgrade { vec![&b"upgrade"[..]] } else { vec![] });
            // Tracing on: the attempt's traceparent replaces the client's; off: the client's goes.
            let expected = traceparent.as_ref().map_or(&client["traceparent"], |t| t);
            assert_eq!(get("traceparent"), [expected.as_bytes()]);
        }
        Ok(())
    }
}
