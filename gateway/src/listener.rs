//! The client-facing listeners: HTTP/1.1 by the gateway's own server ([`crate::wire::server`]) and
//! HTTP/2 by prior knowledge (h2c) by hyper, told apart by the connection's first bytes, and
//! on the TLS listener the same two chosen by ALPN after a rustls handshake; with
//! work bounded at accept time — a connection cap (excess connections get a 503 problem and
//! are closed), a header-read timeout against slowloris (also bounding protocol detection),
//! HTTP/2 stream and header-list limits, and a keep-alive timeout for idle connections of
//! both protocols. On shutdown it stops accepting, closes idle connections, and drains busy
//! ones up to a deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::error::GatewayError;
use crate::proxy::Pipeline;
use crate::wire::conn::{Conn, TlsConn};
use crate::wire::net::Prefixed;
use crate::wire::server::{Drain, Http1, READ_CHUNK};
use crate::wire::socket::Socket;
use crate::wire::{ClientBody, ConnInfo};

/// Listener limits.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Open client connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time a client has to send a complete request head (from the connection's start, or
    /// from the first byte of a later request on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// How long a connection may stay idle: an HTTP/1.1 connection waiting for its next
    /// request, an HTTP/2 connection with no stream started or in the pipeline.
    pub keepalive_timeout: Duration,
    /// How long an HTTP/1.1 request body may go without a byte arriving.
    pub body_read_timeout: Duration,
    /// How long an HTTP/1.1 client may go without taking a byte of its response.
    pub send_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Largest request head read at all (431 beyond; the pipeline's header limit applies below it).
    pub max_head_bytes: usize,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 256,
            drain_timeout: Duration::from_secs(30),
            max_head_bytes: 64 * 1024,
        }
    }
}

/// The whole HTTP/1.1 answer to a connection over the cap, written before hyper is involved:
/// the same problem document the pipeline renders for [`GatewayError::Overloaded`].
fn overloaded_response() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let body = GatewayError::Overloaded.problem_json();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nconnection: close\r\n\
             retry-after: 1\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
}

/// A TLS listener: its socket and where its rustls settings come from (certificates by
/// SNI, ALPN; renewed when certificates change).
pub struct TlsListener {
    pub listener: TcpListener,
    pub certs: Arc<crate::tls::CertStore>,
}

/// The plain listener, which accepts sockets without registering them with the event loop
/// (see [`crate::wire::socket`]). tokio's `TcpListener` registers every socket it accepts and
/// offers no readiness of its own, and `AsyncFd` takes `unsafe`; so the listening socket is
/// held as a tokio `TcpStream`, used only for its readiness (`readable`, `try_io`), and
/// accepts through `socket2` (`accept4`, non-blocking and close-on-exec in the same call).
/// Nothing else is called on it.
pub struct Acceptor(TcpStream);

impl Acceptor {
    pub fn new(listener: TcpListener) -> std::io::Result<Self> {
        let fd = std::os::fd::OwnedFd::from(listener.into_std()?);
        Ok(Self(TcpStream::from_std(std::net::TcpStream::from(fd))?))
    }

    /// The next connection.
    async fn accept(&self) -> std::io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
        loop {
            self.0.readable().await?;
            match self.0.try_io(Interest::READABLE, || accept_nonblocking(&self.0)) {
                Ok((socket, peer)) => {
                    let peer = peer.as_socket().ok_or_else(|| std::io::Error::other("a peer without an IP address"))?;
                    return Ok((socket.into(), peer));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// `accept4` with the accepted socket non-blocking and close-on-exec in one call.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn accept_nonblocking(listener: &TcpStream) -> std::io::Result<(socket2::Socket, socket2::SockAddr)> {
    socket2::SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
}

/// `accept` (close-on-exec where the system allows), then the socket made non-blocking.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn accept_nonblocking(listener: &TcpStream) -> std::io::Result<(socket2::Socket, socket2::SockAddr)> {
    let (socket, peer) = socket2::SockRef::from(listener).accept()?;
    socket.set_nonblocking(true)?;
    Ok((socket, peer))
}

/// A connection as accepted: plain (not yet registered with the event loop), or TLS with
/// the certificates' configuration current at accept.
enum Accepted {
    Plain(std::net::TcpStream),
    Tls(TcpStream, Arc<rustls::ServerConfig>),
}

impl Accepted {
    fn is_tls(&self) -> bool {
        matches!(self, Accepted::Tls(..))
    }

    fn set_nodelay(&self) -> std::io::Result<()> {
        match self {
            Accepted::Plain(s) => s.set_nodelay(true),
            Accepted::Tls(s, _) => s.set_nodelay(true),
        }
    }
}

async fn accept_tls(tls: Option<&TlsListener>) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match tls {
        Some(t) => t.listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves `pipeline` on `listener` (plain HTTP) and `tls` (HTTPS) until `shutdown`
/// completes, then drains.
pub async fn serve(
    listener: Acceptor,
    tls: Option<TlsListener>,
    pipeline: Arc<Pipeline>,
    opts: ListenerOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    // hyper's HTTP/2 server, shared: a connection task holds a pointer to it, not a copy.
    let builder = Arc::new(builder(&opts));
    let h1 = Arc::new(Http1 {
        handler: pipeline,
        header_read_timeout: opts.header_read_timeout,
        keepalive_timeout: opts.keepalive_timeout,
        body_read_timeout: opts.body_read_timeout,
        send_timeout: opts.send_timeout,
        max_head_bytes: opts.max_head_bytes,
        drain: Drain::default(),
    });
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let plain_nodelay = inherits_nodelay(&listener.0);
    let tls_nodelay = tls.as_ref().is_some_and(|t| inherits_nodelay(&t.listener));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted.map(|(s, peer)| (Accepted::Plain(s), peer)),
            accepted = accept_tls(tls.as_ref()) => match tls.as_ref().map(|t| t.certs.config()) {
                Some(Ok(config)) => accepted.map(|(s, peer)| (Accepted::Tls(s, config), peer)),
                // Made at start, so never missing after; were it, the connection closes.
                _ => continue,
            },
        };
        match accepted {
            Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let conn = ConnInfo::new(peer, stream.is_tls());
                    let inherited = if stream.is_tls() { tls_nodelay } else { plain_nodelay };
                    if !inherited {
                        let _ = stream.set_nodelay();
                    }
                    serve_connection(&builder, stream, h1.clone(), conn, slot);
                }
                Err(_) => refuse(stream),
            },
            Err(err) => {
                // Out of file descriptors and the like: pause so open connections can finish.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    drop(tls);
    h1.drain.start();
    // Every connection holds a slot until it ends: all slots back means all closed (the
    // drain signal closes idle ones and has HTTP/2 ones send GOAWAY).
    let all = u32::try_from(opts.max_connections).unwrap_or(u32::MAX);
    let drained = slots.acquire_many(all);
    tokio::select! {
        _ = drained => tracing::info!("connections drained"),
        () = tokio::time::sleep(opts.drain_timeout) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

/// Sets `TCP_NODELAY` on a listening socket where the sockets it accepts inherit it (Linux
/// copies it to each accepted socket), which spares a `setsockopt` per connection; `false`
/// where each accepted socket must be set itself.
fn inherits_nodelay(listener: &impl std::os::fd::AsFd) -> bool {
    cfg!(target_os = "linux") && socket2::SockRef::from(listener).set_tcp_nodelay(true).is_ok()
}

/// hyper's server, for HTTP/2 (prior knowledge) connections.
fn builder(opts: &ListenerOptions) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new()).http2_only();
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(opts.max_head_bytes).unwrap_or(u32::MAX));
    b
}

fn serve_connection(
    builder: &Arc<auto::Builder<TokioExecutor>>,
    stream: Accepted,
    h1: Arc<Http1<Pipeline>>,
    conn: ConnInfo,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let builder = builder.clone();
    let accepted = tokio::time::Instant::now();
    // The task's future is kept to a few hundred bytes: tokio copies it whole when it is
    // spawned and again (up to three times) as it ends, so every larger state — the TLS
    // handshake, hyper's HTTP/2 connection, the HTTP/1 server loop — lives on the heap.
    tokio::spawn(async move {
        // The handshake and the first head share the header-read timeout from accept: one
        // timer bounds both.
        let timer = Box::pin(tokio::time::sleep_until(accepted + h1.header_read_timeout));
        match stream {
            Accepted::Tls(stream, config) => Box::pin(serve_tls(builder, stream, config, h1, conn, timer)).await,
            Accepted::Plain(stream) => serve_plain(builder, Socket::new(stream), h1, conn, timer).await,
        }
        drop(slot);
    });
}

/// A plain connection: HTTP/1 by the gateway's server, or HTTP/2 by prior knowledge.
async fn serve_plain(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: Socket,
    h1: Arc<Http1<Pipeline>>,
    conn: ConnInfo,
    mut timer: Pin<Box<tokio::time::Sleep>>,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let read = tokio::select! {
        biased;
        read = read_preface(&stream, &mut buf) => read,
        () = timer.as_mut() => return tracing::debug!("no request head within the header-read timeout"),
    };
    if let Err(err) = read {
        return tracing::debug!(error = %err, "connection closed before a request");
    }
    if buf.starts_with(H2_PREFACE) {
        Box::pin(serve_h2(builder, Prefixed::new(buf.freeze(), Conn::Tcp(stream)), h1, conn)).await;
    } else {
        Box::pin(crate::wire::server::serve(Conn::Tcp(stream), buf, conn, h1, timer)).await;
    }
}

/// A TLS connection: the handshake, then HTTP/2 or HTTP/1 as ALPN chose.
async fn serve_tls(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    h1: Arc<Http1<Pipeline>>,
    conn: ConnInfo,
    mut timer: Pin<Box<tokio::time::Sleep>>,
) {
    let accepted = tokio::select! {
        biased;
        accepted = TlsConn::accept(stream, config) => accepted,
        () = timer.as_mut() => return tracing::debug!("no TLS handshake within the header-read timeout"),
    };
    let tls = match accepted {
        Ok(done) => done,
        Err(err) => return tracing::debug!(error = %err, "TLS handshake failed"),
    };
    let h2 = tls.is_h2();
    let conn = ConnInfo { client_cert: tls.client_cert().map(Arc::new), ..conn };
    let io = Conn::Tls(Box::new(tls));
    if h2 {
        Box::pin(serve_h2(builder, Prefixed::new(Bytes::new(), io), h1, conn)).await;
    } else {
        Box::pin(crate::wire::server::serve(io, BytesMut::new(), conn, h1, timer)).await;
    }
}

/// Serves an HTTP/2 connection (prior knowledge on plain TCP, or ALPN `h2` over TLS) with
/// hyper.
async fn serve_h2(builder: Arc<auto::Builder<TokioExecutor>>, io: Prefixed, h1: Arc<Http1<Pipeline>>, conn: ConnInfo) {
    let pipeline = h1.handler.clone();
    let activity = Arc::new(Activity::new());
    let seen = activity.clone();
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let pipeline = pipeline.clone();
        let busy = seen.begin();
        let conn = conn.clone();
        async move {
            let reply = pipeline.handle(Box::new(req.map(ClientBody::Hyper)), conn).await;
            drop(busy);
            // HTTP/2 answers carry header maps.
            Ok::<_, std::convert::Infallible>(reply.into_response())
        }
    });
    // On the listener's drain, or once idle for the keep-alive timeout, the connection
    // sends GOAWAY (streams already started still finish) and ends when they have.
    let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(io), service));
    let mut drained = std::pin::pin!(h1.drain.notified());
    drained.as_mut().enable();
    let mut closing = h1.drain.started();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    let mut idle = std::pin::pin!(tokio::time::sleep(h1.keepalive_timeout));
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            () = drained.as_mut(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle.as_mut(), if !closing => match activity.idle_deadline(h1.keepalive_timeout) {
                Some(next) => idle.as_mut().reset(next),
                None => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            },
        }
    };
    if let Err(err) = ended {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}

/// When an HTTP/2 connection last had work: streams in the pipeline, and when the last one
/// started or got its response head (milliseconds since the connection began).
struct Activity {
    born: tokio::time::Instant,
    busy: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { born: tokio::time::Instant::now(), busy: AtomicUsize::new(0), last_ms: AtomicU64::new(0) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
        Busy(self.clone())
    }

    /// When the connection has been idle long enough, else when to look again.
    fn idle_deadline(&self, keepalive: Duration) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Some(now + keepalive);
        }
        let idle = Duration::from_millis(self.now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed)));
        keepalive.checked_sub(idle).filter(|left| !left.is_zero()).map(|left| now + left)
    }
}

/// A stream in the pipeline (until its response head).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The HTTP/2 client preface: its first bytes tell HTTP/2 (prior knowledge) from HTTP/1.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads a connection's first bytes into `buf`, until they tell HTTP/2 (prior knowledge) from
/// HTTP/1: one read for an HTTP/1 request, which the HTTP/1 server then parses from `buf` (a
/// client that connects and sends nothing, or a stalled preface, is bounded by the caller's
/// header-read timeout).
async fn read_preface(stream: &Socket, buf: &mut BytesMut) -> std::io::Result<()> {
    // Usually the whole request, at once (see `Unwaited`).
    match stream.read_now(buf) {
        Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {}
        Err(e) => return Err(e),
    }
    // An empty buffer is a prefix of the preface too.
    while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        let n = std::future::poll_fn(|cx| stream.poll_fill(cx, buf, READ_CHUNK)).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Answers a connection over the cap with a fixed 503 and closes it, off the accept loop (a
/// TLS connection is closed unanswered: a handshake is the work the cap is there to bound).
fn refuse(stream: Accepted) {
    let Accepted::Plain(stream) = stream else { return };
    let Ok(mut stream) = TcpStream::from_std(stream) else { return };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(overloaded_response())).await;
        let _ = stream.shutdown().await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overloaded_response_has_a_correct_length() {
        let text = String::from_utf8_lossy(overloaded_response());
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head} / {}", body.len());
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }

    /// Every accepted socket has `TCP_NODELAY` (responses are not held back by Nagle's
    /// algorithm), whether inherited from the listener or set on it; it is non-blocking, not
    /// yet registered with the event loop, and comes with its peer's address.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay_and_do_not_block() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let acceptor = Acceptor::new(listener)?;
        let inherited = inherits_nodelay(&acceptor.0);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let client = TcpStream::connect(addr).await?;
        let (accepted, peer) = acceptor.accept().await?;
        assert_eq!(peer, client.local_addr()?);
        if !inherited {
            accepted.set_nodelay(true)?;
        }
        assert!(accepted.nodelay()?, "an accepted socket without TCP_NODELAY");
        let mut byte = [0u8; 1];
        let read = std::io::Read::read(&mut &accepted, &mut byte);
        assert!(matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "{read:?}");
        Ok(())
    }
}
