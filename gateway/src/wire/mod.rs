//! The HTTP/1.1 wire layer: framing and parsing ([`codec`]), socket reads ([`net`]), the
//! client connections, plain or TLS ([`conn`]) over a socket registered only once it waits ([`socket`]), the client-facing server loop ([`server`]), the upstream codec ([`h1`]), its connection pool
//! ([`pool`]) and the upstream client ([`client`]), header-field rules ([`headers`]) and
//! upgrade splicing ([`upgrade`]). It imports nothing else from the crate: routing, auth,
//! limits and the configuration plug in through [`Handler`] (what answers a request) and
//! [`ExtraFields`] (fields the gateway adds to what it forwards), so the riskiest code can
//! be read, tested and fuzzed on its own (`module_graph` keeps it so).

pub mod client;
pub(crate) mod codec;
pub mod conn;
pub mod h1;
pub mod headers;
pub(crate) mod net;
pub mod pool;
pub mod reclaim;
pub mod reply;
pub mod server;
pub mod socket;
pub mod upgrade;

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{Either, Full};

pub use client::BoxError;
pub use reply::{Fields, Reply};
pub use server::ClientBody;

/// Response body: the upstream's, streamed, or one the gateway made.
pub type GwBody = Either<client::UpstreamBody, Full<Bytes>>;

/// The client side of a connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub https: bool,
    /// The certificate a TLS client presented (only when the listener asked for one).
    pub client_cert: Option<std::sync::Arc<conn::ClientCert>>,
}

impl ConnInfo {
    /// A connection without a client certificate.
    pub fn new(peer: SocketAddr, https: bool) -> Self {
        Self { peer, https, client_cert: None }
    }
}

/// Why the server refused a request before any handler saw it; the connection closes after
/// the answer the handler renders for it ([`Handler::reject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A malformed or ambiguous head (400), with the reason shown to the client.
    BadRequest(&'static str),
    /// A head over the size or field-count limit (431).
    HeadersTooLarge,
    /// `CONNECT` or `TRACE` (405).
    MethodNotAllowed,
    /// A short body that did not arrive in time (408).
    RequestTimeout,
}

/// What answers the requests a server reads: the gateway's pipeline, or a test's.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request; never fails (errors become responses).
    fn handle(&self, req: Box<Request<ClientBody>>, conn: ConnInfo) -> impl Future<Output = Reply> + Send;

    /// The answer to a request refused while it was read, on the connection `conn`.
    fn reject(&self, why: Reject, conn: &ConnInfo) -> Reply;
}

/// Header fields the gateway adds to what it forwards — the caller's identity to the
/// upstream, the rate-limit fields to the client — without this layer knowing what they
/// mean: written as header lines by the HTTP/1.1 codecs, into a header map elsewhere.
pub trait ExtraFields: Send + Sync + std::fmt::Debug {
    /// Calls `field` with each name and value, in a fixed order.
    fn each(&self, field: &mut dyn FnMut(&HeaderName, &[u8]));

    /// Writes the fields as `name: value\r\n` lines.
    fn write_lines(&self, out: &mut Vec<u8>) {
        self.each(&mut |name, value| codec::put(out, &[name.as_str().as_bytes(), b": ", value, b"\r\n"]));
    }

    /// Sets the fields in a header map (replacing what is there under their names).
    fn write_headers(&self, headers: &mut HeaderMap) {
        self.each(&mut |name, value| {
            if let Ok(v) = HeaderValue::from_bytes(value) {
                headers.insert(name.clone(), v);
            }
        });
    }

    /// Whether a field `name` from the message's source gives way to these (by default: when
    /// these have a field of that name).
    fn replaces(&self, name: &HeaderName) -> bool {
        self.get(name).is_some()
    }

    /// The value of field `name`, when there is one.
    fn get(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.find(name)
    }

    /// The first value of field `name` among all of them (what [`Self::get`] does unless an
    /// implementation knows a shorter way).
    fn find(&self, name: &HeaderName) -> Option<HeaderValue> {
        let mut found = None;
        self.each(&mut |n, v| {
            if n == name && found.is_none() {
                found = HeaderValue::from_bytes(v).ok();
            }
        });
        found
    }
}
