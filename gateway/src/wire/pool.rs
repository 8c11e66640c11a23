//! A keep-alive pool of plain HTTP/1.1 upstream connections, spoken by the gateway's own
//! codec ([`super::h1`]) on the request's task.
//!
//! Per target authority: a LIFO stack of idle connections (the most recently used one is the
//! warmest), never shared by two requests at once. A connection goes back to its stack when
//! the response body has been read exactly to its end; a body dropped early closes it
//! (HTTP/1 cannot resume a half-read response). Connections idle past [`IDLE_TIMEOUT`], or
//! closed by the upstream, are dropped at checkout and by a sweep. A request on a reused
//! connection that the upstream had closed meanwhile (nothing of an answer arrived) is sent
//! again on a new connection when that is safe: its body was empty and nothing was lost.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::Authority;
use http_body_util::Either;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::net::{TcpSocket, TcpStream};

use super::client::{BoxError, Outgoing, ProxyBody, UpstreamError, empty_body};
use super::h1::{self, Conn, H1Body};
use super::reply::Reply;
use crate::fx::FxBuildHasher;
pub use crate::wire::net::Stall;

/// How long an idle upstream connection is kept for reuse.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream authority.
pub const MAX_IDLE_PER_TARGET: usize = 512;
/// How often idle connections past their timeout are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// Connections to every plain-HTTP target, for one connect timeout.
pub struct Http1Pool {
    connect_timeout: Duration,
    /// Keyed by the configured targets' authorities (not client input): the Fx hash is enough.
    targets: Mutex<HashMap<Box<str>, Arc<Target>, FxBuildHasher>>,
    sweeper: OnceLock<()>,
}

/// One upstream authority: what its requests need precomputed, and its idle connections.
pub struct Target {
    authority: Box<str>,
    /// For the absolute URI of a TLS request.
    pub uri_authority: Authority,
    /// The `Host` header value.
    pub host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: Conn,
    since: tokio::time::Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Http1Pool {
    pub fn new(connect_timeout: Duration) -> Self {
        Self { connect_timeout, targets: Mutex::new(HashMap::default()), sweeper: OnceLock::new() }
    }

    /// The target for `authority` (`host:port`), created on first use.
    pub fn target(&self, authority: &str) -> Result<Arc<Target>, UpstreamError> {
        let mut targets = lock(&self.targets);
        if let Some(t) = targets.get(authority) {
            return Ok(t.clone());
        }
        let target = Arc::new(Target::new(authority)?);
        targets.insert(authority.into(), target.clone());
        Ok(target)
    }

    /// Sends the request to `target`, with `Host` its authority; the response head must come
    /// within `read_timeout`, and its body may stall no longer than that.
    pub async fn send(
        self: &Arc<Self>,
        target: Arc<Target>,
        out: &Outgoing<'_>,
        body: ProxyBody,
        read_timeout: Duration,
    ) -> Result<Reply, UpstreamError> {
        // One clock read per request: the head's deadline, and the age of idle connections.
        let now = tokio::time::Instant::now();
        let deadline = now + read_timeout;
        let mut head = Vec::new();
        h1::encode_head(&mut head, out, &target.host, &body);
        let replayable = body.is_end_stream();
        let mut body = Some(body);
        loop {
            let (mut conn, reused) = match target.checkout(now) {
                Some(conn) => (conn, true),
                // Boxed: a new connection is the rare case, and its future would enlarge every
                // request's.
                None => (Box::pin(self.connect(&target.authority)).await?, false),
            };
            let attempt = body.take().unwrap_or_else(empty_body);
            match conn.exchange(&head, attempt, out.method, deadline, read_timeout).await {
                Ok(head) => {
                    self.start_sweeper();
                    return Ok(response(head, conn, target));
                }
                Err(f) if reused && replayable && f.replayable => {}
                Err(f) => return Err(f.error),
            }
        }
    }

    async fn connect(&self, authority: &str) -> Result<Conn, UpstreamError> {
        let stream = tokio::time::timeout(self.connect_timeout, tcp_connect(authority))
            .await
            .map_err(|_| UpstreamError::Connect(std::io::ErrorKind::TimedOut.into()))?
            .map_err(UpstreamError::Connect)?;
        Ok(Conn::new(stream))
    }

    /// Starts the idle sweep once, from inside the runtime (the pool itself may be built
    /// outside one).
    fn start_sweeper(self: &Arc<Self>) {
        self.sweeper.get_or_init(|| {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(sweep(Arc::downgrade(self)));
            }
        });
    }
}

/// The response for a parsed head; its body reads from `conn` and returns it to `target`.
fn response(head: h1::Head, conn: Conn, target: Arc<Target>) -> Reply {
    let body = PooledBody::Plain(H1Body::new(conn, &head, target));
    Reply { status: head.status, fields: head.fields, body: Either::Left(body) }
}

/// Drops expired and closed idle connections, and targets nobody uses any more.
async fn sweep(pool: Weak<Http1Pool>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let now = tokio::time::Instant::now();
        lock(&pool.targets).retain(|_, t| {
            let mut idle = lock(&t.idle);
            idle.retain(|i| i.conn.is_idle_usable() && now.saturating_duration_since(i.since) < IDLE_TIMEOUT);
            !idle.is_empty() || Arc::strong_count(t) > 1
        });
    }
}

/// Resolves `authority` and connects to the first address that answers.
async fn tcp_connect(authority: &str) -> std::io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host(authority).await? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_keepalive(true)?;
        socket.set_nodelay(true)?;
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the target")))
}

impl Target {
    #[cfg(test)]
    pub(crate) fn for_tests(authority: &str) -> Result<Self, UpstreamError> {
        Self::new(authority)
    }

    fn new(authority: &str) -> Result<Self, UpstreamError> {
        let invalid = |_| UpstreamError::InvalidTarget;
        Ok(Self {
            authority: authority.into(),
            uri_authority: Authority::from_maybe_shared(Bytes::copy_from_slice(authority.as_bytes()))
                .map_err(invalid)?,
            host: HeaderValue::from_str(authority).map_err(|_| UpstreamError::InvalidTarget)?,
            idle: Mutex::default(),
        })
    }

    /// The most recently used idle connection that is still usable at `now`; closed and
    /// expired ones are dropped on the way.
    fn checkout(&self, now: tokio::time::Instant) -> Option<Conn> {
        let mut idle = lock(&self.idle);
        while let Some(entry) = idle.pop() {
            if now.saturating_duration_since(entry.since) < IDLE_TIMEOUT && entry.conn.is_idle_usable() {
                return Some(entry.conn);
            }
        }
        None
    }
}

impl h1::Checkin for Target {
    fn checkin(&self, conn: Conn) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_PER_TARGET {
            idle.push(Idle { conn, since: tokio::time::Instant::now() });
        }
    }
}

/// An upstream response body: read by the gateway's codec from a pooled plain connection
/// (which goes back to the pool when the body was read to its end), or hyper-util's for TLS.
pub enum PooledBody {
    Plain(H1Body),
    Tls(Incoming, Stall),
    /// A TLS upstream's `101`: no body, the connection is hyper's upgrade.
    Switched(Option<hyper::upgrade::OnUpgrade>),
}

/// Polls a TLS upstream's body for a frame, failing once none came for the stall limit
/// (the plain codec bounds its own reads): an upstream that stops sending mid-body must not
/// hold the client forever.
fn poll_tls(
    body: &mut Incoming,
    stall: &mut Stall,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    if let Poll::Ready(frame) = Pin::new(body).poll_frame(cx) {
        stall.progressed();
        return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
    }
    std::task::ready!(stall.poll_expired(cx));
    let stalled = std::io::Error::new(std::io::ErrorKind::TimedOut, "the response body stalled");
    Poll::Ready(Some(Err(UpstreamError::Io(stalled).into())))
}

impl PooledBody {
    /// The upstream side of a `101 Switching Protocols`: the plain connection with the bytes
    /// already read from it, or hyper's upgrade (TLS). `None` once taken, or for a body that
    /// is not a switch.
    pub fn take_upgraded(&mut self) -> Option<super::upgrade::Upstream> {
        match self {
            Self::Plain(b) => {
                b.take_conn().map(Conn::into_upgraded).map(|(io, read)| super::upgrade::Upstream::Plain(io, read))
            }
            Self::Switched(on) => on.take().map(super::upgrade::Upstream::Hyper),
            Self::Tls(..) => None,
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Plain(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            Self::Tls(b, stall) => poll_tls(b, stall, cx),
            Self::Switched(_) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Plain(b) => b.is_end_stream(),
            Self::Tls(b, _) => b.is_end_stream(),
            Self::Switched(_) => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Plain(b) => b.size_hint(),
            Self::Tls(b, _) => b.size_hint(),
            Self::Switched(_) => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use http::uri::PathAndQuery;
    use http::{HeaderMap, Method};
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::wire::headers::Forwarding;

    /// What the test upstream does with a request.
    #[derive(Clone, Copy, PartialEq)]
    enum Reply {
        Answer,
        AnswerAndClose,
        /// Close the connection without answering.
        Drop,
    }

    /// An upstream answering `ok` to each request; with `close`, it closes the connection
    /// after the first answer. Returns its address and a count of accepted connections.
    async fn upstream(close: bool) -> std::io::Result<(String, Arc<AtomicUsize>)> {
        upstream_with(if close { |_, _| Reply::AnswerAndClose } else { |_, _| Reply::Answer }).await
    }

    /// An upstream doing with request `r` (0-based) on connection `c` what `rule(c, r)` says.
    async fn upstream_with(rule: fn(usize, usize) -> Reply) -> std::io::Result<(String, Arc<AtomicUsize>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let connection = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    let mut request = 0;
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let reply = rule(connection, request);
                            request += 1;
                            if reply == Reply::Drop {
                                return;
                            }
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() || reply == Reply::AnswerAndClose {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Ok((addr, accepted))
    }

    /// Sends a GET for `/` with an empty body.
    async fn send_get(pool: &Arc<Http1Pool>, target: &Arc<Target>) -> Result<super::Reply, UpstreamError> {
        let body = empty_body();
        let forwarding = Forwarding { client_ip: [127, 0, 0, 1].into(), proto: "http", host: None };
        let pq = PathAndQuery::from_static("/");
        let headers = HeaderMap::new();
        let out = Outgoing {
            method: &Method::GET,
            path_and_query: &pq,
            headers: &headers,
            request_id: &HeaderValue::from_static("test-id"),
            identity: None,
            forwarding: &forwarding,
            upgrade: false,
            traceparent: None,
        };
        pool.send(target.clone(), &out, body, Duration::from_secs(5)).await
    }

    async fn get(pool: &Arc<Http1Pool>, target: &Arc<Target>) -> Result<Bytes, BoxError> {
        let res = send_get(pool, target).await?;
        assert_eq!(res.status, 200);
        Ok(res.body.collect().await?.to_bytes())
    }

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    #[tokio::test]
    async fn connections_are_reused_once_the_body_is_read() -> Result<(), BoxError> {
        let (addr, accepted) = upstream(false).await?;
        let pool = Arc::new(Http1Pool::new(Duration::from_secs(1)));
        let target = pool.target(&addr)?;
        for _ in 0..5 {
            assert_eq!(get(&pool, &target).await?, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced() -> Result<(), BoxError> {
        let (addr, accepted) = upstream(true).await?;
        let pool = Arc::new(Http1Pool::new(Duration::from_secs(1)));
        let target = pool.target(&addr)?;
        for round in 1..=3 {
            assert_eq!(get(&pool, &target).await?, "ok");
            // Wait (bounded) until the pooled connection has seen the upstream's close.
            let deadline = Instant::now() + Duration::from_secs(5);
            while lock(&target.idle).iter().any(|i| i.conn.is_idle_usable()) {
                assert!(Instant::now() < deadline, "the closed connection was never noticed");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(accepted.load(Ordering::SeqCst), round);
        }
        Ok(())
    }

    /// The race every keep-alive client meets: the upstream closes an idle connection just as
    /// a request goes out on it. Nothing of an answer arrives, so the (body-less) request is
    /// sent again on a new connection.
    #[tokio::test]
    async fn a_request_lost_to_an_upstream_close_is_sent_again() -> Result<(), BoxError> {
        // The first connection takes one request, then drops the next unanswered.
        let (addr, accepted) = upstream_with(
            |connection, request| if (connection, request) == (0, 1) { Reply::Drop } else { Reply::Answer },
        )
        .await?;
        let pool = Arc::new(Http1Pool::new(Duration::from_secs(1)));
        let target = pool.target(&addr)?;
        assert_eq!(get(&pool, &target).await?, "ok");
        assert_eq!(get(&pool, &target).await?, "ok", "the second request is replayed on a new connection");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() -> Result<(), BoxError> {
        let addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.to_string();
        let pool = Arc::new(Http1Pool::new(Duration::from_secs(1)));
        let target = pool.target(&addr)?;
        let err = send_get(&pool, &target).await.err();
        assert!(err.is_some_and(|e| e.is_connect()));
        Ok(())
    }
}
