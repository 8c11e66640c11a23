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
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::headers::{self, Forwarding};
use super::pool::{self, Http1Pool, PooledBody, Stall, Target};

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
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let target = self.plain.target(authority)?;
        // (TLS boxed: hyper's client future would enlarge every plain request's too.)
        if !https {
            return self.plain.send(target, out, body, read_timeout).await;
        }
        let res = tokio::time::timeout(read_timeout, Box::pin(self.send_tls(&target, out, body)))
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        // Each wait for a body frame gets what the exchange was allowed (the API's read timeout).
        Ok(res.map(|b| PooledBody::Tls(b, Stall::new(read_timeout))))
    }

    async fn send_tls(
        &self,
        target: &Target,
        out: &Outgoing<'_>,
        body: ProxyBody,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // hyper's client takes an owned request with an absolute URI.
        let mut headers = out.headers.clone();
        headers::strip_hop_by_hop(&mut headers, out.upgrade);
        headers::set_forwarding(&mut headers, out.forwarding);
        headers.insert(headers::X_REQUEST_ID.clone(), out.request_id.clone());
        if let Some(identity) = out.identity {
            identity.write_headers(&mut headers);
        }
        if out.upgrade {
            headers.insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        headers.insert(http::header::HOST, target.host.clone());
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(target.uri_authority.clone());
        parts.path_and_query = Some(out.path_and_query.clone());
        let mut req = Request::new(body);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|_| UpstreamError::InvalidTarget)?;
        *req.method_mut() = out.method.clone();
        *req.headers_mut() = headers;
        let mut res = self.tls.request(req).await.map_err(UpstreamError::Tls)?;
        // As the plain-HTTP codec does while parsing: the client gets no hop-by-hop fields,
        // except after `101`, whose `Upgrade` and `Connection` it needs.
        if res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            headers::strip_hop_by_hop(res.headers_mut(), false);
        }
        Ok(res)
    }
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
}

fn build_tls(connect_timeout: Duration) -> TlsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
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
            tls: build_tls(connect_timeout),
        })
        .clone()
}
