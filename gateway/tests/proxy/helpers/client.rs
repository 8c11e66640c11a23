//! HTTP clients for the tests: hyper's pooled client over HTTP/1.1 or HTTP/2 with prior
//! knowledge (h2c). Every call is bounded by [`WAIT`].

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as Legacy;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::upstream::{Body, full};
use super::{WAIT, within};

/// A pooled client.
#[derive(Clone)]
pub struct Client {
    inner: Legacy<HttpConnector, Body>,
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `upstream` field of an echo response.
    pub fn upstream(&self) -> String {
        self.json()["upstream"].as_str().unwrap_or_default().to_owned()
    }

    /// Asserts a gateway problem document with `status` and type slug `slug`.
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.text());
        let doc = self.json();
        assert_eq!(doc["type"], format!("urn:tollgate:problem:{slug}"), "{doc}");
        assert_eq!(doc["status"], status, "{doc}");
    }
}

impl Client {
    /// HTTP/1.1 with keep-alive.
    pub fn http1() -> Client {
        Client { inner: Legacy::builder(TokioExecutor::new()).build_http() }
    }

    /// HTTP/2 over cleartext with prior knowledge.
    pub fn h2c() -> Client {
        Client { inner: Legacy::builder(TokioExecutor::new()).http2_only(true).build_http() }
    }

    /// Sends `req` and returns the response head with its streaming body.
    pub async fn stream(&self, req: Request<Body>) -> Response<Incoming> {
        within(WAIT, "a response", self.inner.request(req)).await.expect("request failed")
    }

    /// Sends `req` and reads the whole response.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.stream(req).await;
        collect(res).await
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Reply {
        self.send(get(url).body(empty()).expect("request")).await
    }

    /// Sends `req`, or `None` if the exchange failed.
    pub async fn try_send(&self, req: Request<Body>) -> Option<Reply> {
        let res = tokio::time::timeout(WAIT, self.inner.request(req)).await.ok()?.ok()?;
        let (parts, body) = res.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect()).await.ok()?.ok()?.to_bytes();
        Some(Reply { status: parts.status, version: parts.version, headers: parts.headers, body })
    }

    /// `method url` with a complete body.
    pub async fn send_body(&self, method: Method, url: &str, body: impl Into<Bytes>) -> Reply {
        self.send(Request::builder().method(method).uri(url).body(full(body)).expect("request")).await
    }
}

/// Reads the rest of a response.
pub async fn collect(res: Response<Incoming>) -> Reply {
    let (parts, body) = res.into_parts();
    let body = within(WAIT, "the response body", body.collect()).await.expect("response body").to_bytes();
    Reply { status: parts.status, version: parts.version, headers: parts.headers, body }
}

/// A `GET` request builder for `url`.
pub fn get(url: &str) -> http::request::Builder {
    Request::builder().method(Method::GET).uri(url)
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|never| match never {}).boxed()
}

/// One HTTP/2 (h2c) connection of its own, outside any pool: its sender of bodiless requests
/// and the task driving it, which ends when the connection does (`Ok` after a GOAWAY).
pub async fn h2_connection(
    addr: std::net::SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<hyper::Result<()>>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    h2_over(tcp).await
}

/// An HTTP/2 client connection over `io` (a TCP or TLS stream), driven by a task.
pub async fn h2_over<T>(
    io: T,
) -> (hyper::client::conn::http2::SendRequest<Empty<Bytes>>, tokio::task::JoinHandle<hyper::Result<()>>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = within(
        WAIT,
        "an HTTP/2 handshake",
        hyper::client::conn::http2::handshake(TokioExecutor::new(), hyper_util::rt::TokioIo::new(io)),
    )
    .await
    .expect("an HTTP/2 handshake");
    (sender, tokio::spawn(conn))
}

/// A bodiless GET of `path` for [`h2_connection`]'s sender.
pub fn h2_get(addr: std::net::SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = format!("http://{addr}{path}").parse().expect("a valid URI");
    req
}
