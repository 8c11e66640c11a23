//! Pooled upstream HTTP clients (HTTP/1.1 keep-alive, plain or TLS). One client per
//! distinct connect timeout, shared by every API using it and kept across config changes,
//! so a change never drops warm upstream connections. The pool is keyed by scheme and
//! authority, i.e. by the full peer identity.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Errors a proxied body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request body sent upstream.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
/// The upstream client.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream authority.
const POOL_MAX_IDLE_PER_HOST: usize = 512;

fn build(connect_timeout: Duration) -> UpstreamClient {
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
        .pool_idle_timeout(POOL_IDLE)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
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
    map.entry(connect_timeout).or_insert_with(|| build(connect_timeout)).clone()
}
