//! A keep-alive pool of plain HTTP/1.1 upstream connections over hyper's connection API.
//!
//! Per target authority: a LIFO stack of idle connections (the most recently used one is the
//! warmest), reused only when ready, never shared by two requests at once. A connection goes
//! back to its stack when the response body has been read to the end and dropped; a body
//! dropped early closes it (HTTP/1 cannot resume a half-read response). Connections idle past
//! [`IDLE_TIMEOUT`], or closed by the upstream, are dropped at checkout and by a sweep.
//! Unlike hyper-util's general client this needs no extra task per request to wait for the
//! connection to become idle, and no pool key hashing of a full URI.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use super::client::{ProxyBody, UpstreamError};
use crate::router::fx::FxBuildHasher;

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
    conn: SendRequest<ProxyBody>,
    since: Instant,
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

    /// Sends `req` (origin-form URI) to `target` on an idle connection, or a new one. A reused
    /// connection that closed before the request could be written is replaced transparently.
    pub async fn send(
        self: &Arc<Self>,
        target: Arc<Target>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        req.headers_mut().insert(http::header::HOST, target.host.clone());
        loop {
            let (mut conn, reused) = match target.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect(&target.authority).await?, false),
            };
            match conn.try_send_request(req).await {
                Ok(res) => return Ok(self.wrap(res, conn, target)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(UpstreamError::Send(e.into_error())),
                },
            }
        }
    }

    fn wrap(
        self: &Arc<Self>,
        res: Response<Incoming>,
        conn: SendRequest<ProxyBody>,
        target: Arc<Target>,
    ) -> Response<PooledBody> {
        // After `101 Switching Protocols` the connection belongs to the upgrade.
        let back = (res.status() != http::StatusCode::SWITCHING_PROTOCOLS).then(|| {
            self.start_sweeper();
            Checkin { conn, target }
        });
        res.map(|inner| PooledBody { inner, back, done: false })
    }

    async fn connect(&self, authority: &str) -> Result<SendRequest<ProxyBody>, UpstreamError> {
        let stream = tokio::time::timeout(self.connect_timeout, tcp_connect(authority))
            .await
            .map_err(|_| UpstreamError::Connect(std::io::ErrorKind::TimedOut.into()))?
            .map_err(UpstreamError::Connect)?;
        // Request heads (and bodies) copied into one buffer and written with `write`, as on
        // the listener side: cheaper than queueing them for `writev` for typical requests.
        let (conn, driver) =
            http1::Builder::new().writev(false).handshake(TokioIo::new(stream)).await.map_err(UpstreamError::Send)?;
        tokio::spawn(async move {
            if let Err(e) = driver.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(conn)
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

/// Drops expired and closed idle connections, and targets nobody uses any more.
async fn sweep(pool: Weak<Http1Pool>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let now = Instant::now();
        lock(&pool.targets).retain(|_, t| {
            let mut idle = lock(&t.idle);
            idle.retain(|i| !i.conn.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT);
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

    /// The most recently used idle connection that is ready; closed and expired ones are
    /// dropped, busy ones (still finishing a request body) stay.
    fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        let mut idle = lock(&self.idle);
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let entry = &idle[i];
            if entry.conn.is_closed() || entry.since.elapsed() >= IDLE_TIMEOUT {
                idle.swap_remove(i);
            } else if entry.conn.is_ready() {
                return Some(idle.swap_remove(i).conn);
            }
        }
        None
    }

    fn checkin(&self, conn: SendRequest<ProxyBody>) {
        if conn.is_closed() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_PER_TARGET {
            idle.push(Idle { conn, since: Instant::now() });
        }
    }
}

/// Where a connection goes back once its response has been read.
struct Checkin {
    conn: SendRequest<ProxyBody>,
    target: Arc<Target>,
}

/// An upstream response body; returns its connection to the pool when read to the end.
pub struct PooledBody {
    inner: Incoming,
    back: Option<Checkin>,
    done: bool,
}

impl PooledBody {
    /// A body with no connection to return (TLS client).
    pub fn unpooled(inner: Incoming) -> Self {
        Self { inner, back: None, done: false }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.done = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        let finished = self.done || self.inner.is_end_stream();
        if let Some(Checkin { conn, target }) = self.back.take()
            && finished
        {
            target.checkin(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// An upstream answering `ok` to each request; with `close`, it closes the connection
    /// after the first answer. Returns its address and a count of accepted connections.
    async fn upstream(close: bool) -> std::io::Result<(String, Arc<AtomicUsize>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Ok((addr, accepted))
    }

    async fn get(pool: &Arc<Http1Pool>, target: &Arc<Target>) -> Result<Bytes, BoxError> {
        let body: ProxyBody = Empty::<Bytes>::new().map_err(|never| match never {}).boxed();
        let res = pool.send(target.clone(), Request::builder().uri("/").body(body)?).await?;
        assert_eq!(res.status(), 200);
        Ok(res.into_body().collect().await?.to_bytes())
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
            while lock(&target.idle).iter().any(|i| !i.conn.is_closed()) {
                assert!(Instant::now() < deadline, "the closed connection was never noticed");
                tokio::task::yield_now().await;
            }
            assert_eq!(accepted.load(Ordering::SeqCst), round);
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() -> Result<(), BoxError> {
        let addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.to_string();
        let pool = Arc::new(Http1Pool::new(Duration::from_secs(1)));
        let target = pool.target(&addr)?;
        let body: ProxyBody = Empty::<Bytes>::new().map_err(|never| match never {}).boxed();
        let err = pool.send(target, Request::builder().uri("/").body(body)?).await.err();
        assert!(err.is_some_and(|e| e.is_connect()));
        Ok(())
    }
}
