//! The gateway's own HTTP/1.1 server side: one task per client connection reads request
//! heads from the socket, runs the pipeline on the same task, and writes the response head
//! and body straight to the socket — no connection dispatcher, no body channel, no second
//! copy of the head (hyper's server side was ~8.5k of the ~29k user-space instructions per
//! proxied request; see `docs/benchmarks.md`). HTTP/2 stays on hyper ([`crate::listener`]).
//!
//! Requests are framed per RFC 9112 §6: `Transfer-Encoding` must be exactly `chunked`, and
//! with `Content-Length` beside it, malformed or differing lengths, a missing or repeated
//! `Host` (HTTP/1.1), a malformed head or target, the request is refused with a 400 problem
//! and the connection closed — nothing is forwarded that two parsers could read two ways.
//! Heads over the listener's limit get 431. `Expect: 100-continue` is answered when the
//! body is first read. A body the pipeline did not read to its end (a request refused
//! before it was forwarded, say) is read and thrown away after the response when at most
//! [`DISCARD_MAX`] bytes of it are left, within the header-read timeout, and the connection
//! kept; a larger remainder, or one still waiting for `100 Continue`, closes the connection
//! after the response. A new connection's first head must arrive within the header-read
//! timeout; between requests a connection may idle for the keep-alive timeout, and the first
//! byte of the next head starts the header-read timeout again. On drain, idle connections
//! close at once and busy ones after their response.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use super::conn::Conn;
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::{Notify, oneshot};

use super::client::BoxError;
use super::codec::{Decode, Field, Seen, Step, Transfer, put, put_chunk, put_chunk_size};
use super::net::{Prefixed, Stall};
use super::reply::Reply;
use super::{ConnInfo, Handler, Reject};

/// Most request header fields.
const MAX_HEADERS: usize = 100;
/// Read buffer growth step.
pub const READ_CHUNK: usize = 8 * 1024;
/// Body frames up to this size are copied into the write buffer (one system call for head
/// and body); larger ones are written from where they are.
const COALESCE: usize = 16 * 1024;

/// What every connection of a listener shares.
pub struct Http1<H> {
    /// What answers the requests.
    pub handler: Arc<H>,
    pub header_read_timeout: Duration,
    /// How long a connection may wait idle between requests.
    pub keepalive_timeout: Duration,
    /// How long a request body may go without a byte arriving (408, or the body fails).
    pub body_read_timeout: Duration,
    /// How long a client may go without taking a byte of its response (then it is closed).
    pub send_timeout: Duration,
    /// Largest request head; larger gets 431.
    pub max_head_bytes: usize,
    pub drain: Drain,
}

/// The listener's drain signal: set once, wakes idle connections.
#[derive(Default)]
pub struct Drain {
    started: AtomicBool,
    notify: Notify,
}

impl Drain {
    pub fn start(&self) {
        self.started.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub(crate) fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// A future completing at [`Drain::start`]; create it before checking [`Drain::started`]
    /// (it sees every start from its creation on, polled or not).
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

/// A request body: read from the client's HTTP/1.1 connection, or hyper's (HTTP/2).
pub enum ClientBody {
    Empty,
    H1(RequestBody),
    Hyper(Incoming),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::H1(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            Self::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::H1(b) => b.is_end_stream(),
            Self::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::H1(b) => b.size_hint(),
            Self::Hyper(b) => b.size_hint(),
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is malformed: {0}")]
    Malformed(&'static str),
    #[error("the client closed the connection before the request body was complete")]
    Closed,
    #[error("the request body stalled")]
    TimedOut,
    #[error("reading the request body failed: {0}")]
    Io(#[from] io::Error),
}

/// The read side of a connection while a request body is being read from it; it goes back
/// to the connection when the body is dropped.
struct ReadSide {
    buf: BytesMut,
    state: Decode,
    /// No `100 Continue` is owed (none was asked for, or it was written).
    continued: bool,
}

/// Most bytes of an unread request body thrown away to keep a connection (nginx discards
/// unread bodies too); a longer remainder closes the connection.
pub const DISCARD_MAX: u64 = 64 * 1024;

impl ReadSide {
    /// Whether the rest of the body may be read and discarded: the client is not waiting for
    /// `100 Continue` before sending it, and its length is declared and no more than
    /// [`DISCARD_MAX`] (a chunked rest has no known end, and a broken one no end at all: the
    /// response then says `Connection: close` rather than promising a connection it drops).
    fn discardable(&self) -> bool {
        self.continued && matches!(self.state, Decode::Length(n) if n <= DISCARD_MAX)
    }
}

/// Throws away what is buffered of an unread request body: `Some(true)` when its end was
/// there, `Some(false)` when more must be read, `None` when it is malformed or (with what
/// was `thrown` before) longer than [`DISCARD_MAX`].
fn skip_buffered(side: &mut ReadSide, thrown: &mut u64) -> Option<bool> {
    loop {
        match side.state.step(&mut side.buf).ok()? {
            Step::Data(data) => {
                *thrown += data.len() as u64;
                if *thrown > DISCARD_MAX {
                    return None;
                }
            }
            Step::Done => return Some(true),
            Step::More => return Some(false),
        }
    }
}

/// Throws away the rest of an unread request body when all of it is already buffered (a
/// short chunked body sent with its head, say): `true` when it ended there.
fn discard_buffered(side: &mut ReadSide) -> bool {
    side.continued && skip_buffered(side, &mut 0) == Some(true)
}

/// Reads the rest of a request body nobody read and throws it away; the buffer after it
/// (the start of the next request, if any) is returned. `None` when it is malformed, ends
/// early, or turns out longer than [`DISCARD_MAX`] (chunked bodies declare no length).
async fn discard(io: &Conn, mut side: ReadSide) -> Option<BytesMut> {
    let mut thrown = 0u64;
    while !skip_buffered(&mut side, &mut thrown)? {
        let read = std::future::poll_fn(|cx| io.poll_fill(cx, &mut side.buf, READ_CHUNK)).await;
        if read.ok()? == 0 {
            return None;
        }
    }
    Some(side.buf)
}

type Home = Arc<Mutex<Option<ReadSide>>>;

/// A request body, decoded from the client's connection as the pipeline polls it.
pub struct RequestBody {
    io: Arc<Conn>,
    buf: BytesMut,
    state: Decode,
    /// Bytes of `100 Continue` still to write before the body is read.
    continue_left: usize,
    home: Home,
    /// How long a read may wait for a byte.
    stall: Stall,
}

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl RequestBody {
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.continue_left == 0 {
            return Poll::Ready(Ok(()));
        }
        while self.continue_left > 0 {
            self.continue_left -= ready!(self.io.poll_write(cx, &CONTINUE[CONTINUE.len() - self.continue_left..]))?;
        }
        self.io.poll_flush(cx)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        ready!(this.poll_continue(cx))?;
        loop {
            match this.state.step(&mut this.buf).map_err(BodyError::Malformed)? {
                Step::Data(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Step::Done => return Poll::Ready(None),
                Step::More => match this.io.poll_fill(cx, &mut this.buf, READ_CHUNK) {
                    Poll::Ready(read) => {
                        this.stall.progressed();
                        if read? == 0 {
                            this.state.at_eof();
                            return Poll::Ready(Some(Err(BodyError::Closed)));
                        }
                    }
                    Poll::Pending => {
                        ready!(this.stall.poll_expired(cx));
                        this.state = Decode::Failed;
                        return Poll::Ready(Some(Err(BodyError::TimedOut)));
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == Decode::Done
    }

    fn size_hint(&self) -> SizeHint {
        self.state.remaining().map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // A body cut off or malformed leaves its connection unusable: `Done` is only set by
        // reading it to the end (or by `at_eof`, which the connection then sees as closed).
        let side =
            ReadSide { buf: std::mem::take(&mut self.buf), state: self.state, continued: self.continue_left == 0 };
        if let Ok(mut home) = self.home.lock() {
            *home = Some(side);
        }
    }
}

/// The client's side of an upgrade (WebSocket): the connection, with the bytes the client
/// sent after its request, once the `101` has been written. (Request extensions must be
/// `Clone`; the receiver is taken out once.)
#[derive(Clone)]
pub struct OwnUpgrade(Arc<Mutex<Option<oneshot::Receiver<Prefixed>>>>);

impl OwnUpgrade {
    pub fn take(&self) -> Option<oneshot::Receiver<Prefixed>> {
        self.0.lock().ok()?.take()
    }
}

/// Whether a request asks for a protocol upgrade (this server decided while parsing; HTTP/2
/// has no `Upgrade`, RFC 9113 §8.2.2).
pub fn wants_upgrade(req: &Request<ClientBody>) -> bool {
    req.extensions().get::<OwnUpgrade>().is_some()
}

/// A request head, ready for the pipeline, and what the connection needs to know about it.
struct Parsed {
    /// Boxed: the request passes through several futures, each of which would otherwise
    /// copy (and hold) its ~300 bytes.
    req: Box<Request<ClientBody>>,
    keep_alive: bool,
    version: Version,
    head_only: bool,
    home: Option<Home>,
    upgrade: Option<oneshot::Sender<Prefixed>>,
}

/// Serves one HTTP/1.1 connection whose first bytes the listener read into `buf` (empty when
/// it read none; the buffer then grows on the first read); `timer` is set to when the first
/// head must be complete (the header-read timeout from accept).
pub async fn serve<H: Handler>(
    stream: Conn,
    mut buf: BytesMut,
    conn: ConnInfo,
    srv: Arc<Http1<H>>,
    mut timer: Pin<Box<tokio::time::Sleep>>,
) {
    let io = Arc::new(stream);
    let mut out = Vec::with_capacity(1024);
    let writer = Writer { io: &io, timeout: srv.send_timeout };
    let mut names = Vec::new();
    // The first head's timer runs from accept (the listener's wait for the first bytes
    // included), so it is already armed for a head.
    let mut first = true;
    // Not enabled: a `Notified` sees every `notify_waiters` from its creation on, so it joins
    // the waiter list (a lock) only when the connection first waits idle, which a connection
    // closing after one request never does.
    let drained = srv.drain.notified();
    let mut drained = std::pin::pin!(drained);
    // Whether the client may still be sending when the connection ends (see [`close`]).
    let mut linger = false;
    loop {
        // Parsing stays out of the read future, which is then only a few words: a request
        // (~300 bytes) is moved as little as possible.
        let mut armed = if std::mem::take(&mut first) { Wait::Head } else { Wait::Unarmed };
        let parsed = loop {
            match parse_request(&mut buf, &io, &srv, &mut names) {
                Ok(Some(p)) => break Some(p),
                Ok(None) => {}
                Err(why) => {
                    write_refusal(writer, &mut out, srv.handler.reject(why, &conn), Version::HTTP_11).await;
                    linger = true;
                    break None;
                }
            }
            if !read_more(&io, &mut buf, timer.as_mut(), drained.as_mut(), &srv, &mut armed).await {
                break None;
            }
        };
        let Some(parsed) = parsed else { break };
        let Parsed { mut req, mut keep_alive, version, head_only, home, upgrade } = parsed;
        if let ClientBody::H1(body) = req.body_mut()
            && let Err(refusal) = Box::pin(prefetch(body)).await
        {
            if let Some(why) = refusal {
                write_refusal(writer, &mut out, srv.handler.reject(why, &conn), version).await;
            }
            linger = true;
            break;
        }
        let res = srv.handler.handle(req, conn.clone()).await;
        // A request body not read to its end leaves unread bytes ahead of the next request:
        // a short rest is discarded after this response, else (or while the body is still
        // held) the connection closes after it.
        let mut unread = None;
        if let Some(home) = &home {
            match home.lock().ok().and_then(|mut h| h.take()) {
                Some(mut side) => {
                    if side.state == Decode::Done || discard_buffered(&mut side) {
                        buf = side.buf;
                    } else if side.discardable() {
                        unread = Some(side);
                    } else {
                        keep_alive = false;
                        linger = true;
                    }
                }
                None => {
                    keep_alive = false;
                    linger = true;
                }
            }
        }
        keep_alive &= !srv.drain.started();
        let switching = res.status == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_some();
        match write_response(writer, &mut out, res, version, head_only, keep_alive || switching).await {
            Ok(intact) => keep_alive &= intact,
            Err(_) => return,
        }
        if switching {
            return hand_over(io, buf, upgrade);
        }
        if let Some(side) = unread {
            if !keep_alive {
                linger = true;
                break;
            }
            // Boxed: a rare path, kept out of the connection's future.
            match tokio::time::timeout(srv.header_read_timeout, Box::pin(discard(&io, side))).await {
                Ok(Some(rest)) => buf = rest,
                Ok(None) | Err(_) => {
                    linger = true;
                    break;
                }
            }
        }
        if !keep_alive {
            break;
        }
    }
    // Bytes read past the last request (pipelined, or part of a head) are unread too.
    close(io, linger || !buf.is_empty()).await;
}

/// Request bodies of at most this many declared bytes are read whole before the pipeline
/// runs (nginx buffers bodies too): a slow client then holds no upstream connection, and
/// the body goes upstream with its head in one write.
const PREFETCH_MAX: u64 = 64 * 1024;

/// Reads a short declared-length body into its buffer (unless the client waits for `100
/// Continue`). `Err(Some)`: the body stalled (408); `Err(None)`: the client went away.
async fn prefetch(body: &mut RequestBody) -> Result<(), Option<Reject>> {
    let Decode::Length(n) = body.state else { return Ok(()) };
    if n > PREFETCH_MAX || body.continue_left > 0 {
        return Ok(());
    }
    let wanted = usize::try_from(n).unwrap_or(usize::MAX);
    while body.buf.len() < wanted {
        let read = std::future::poll_fn(|cx| body.io.poll_fill(cx, &mut body.buf, READ_CHUNK));
        match tokio::time::timeout(body.stall.limit(), read).await {
            Ok(Ok(1..)) => {}
            Ok(_) => return Err(None),
            Err(_) => return Err(Some(Reject::RequestTimeout)),
        }
    }
    Ok(())
}

/// Answers a request refused before the pipeline saw it; the connection closes after it.
async fn write_refusal(writer: Writer<'_>, out: &mut Vec<u8>, res: Reply, version: Version) {
    let _ = write_response(writer, out, res, version, false, false).await;
}

/// Ends a connection. Closing a socket with unread bytes in it resets the connection, and a
/// reset can destroy a response the client has not read yet; so when the client may still be
/// sending (`linger`: a refused or unread request body, bytes read past the last request) or
/// has bytes waiting in the socket now, the write side is closed first and what the client
/// sends is read and thrown away until it closes (at most [`LINGER_BYTES`], for at most
/// [`LINGER`]). Otherwise the socket closes at once (after TLS's `close_notify`), as nginx's
/// `lingering_close on` does: no wait for the client's FIN, no timer, no connection slot held.
async fn close(io: Arc<Conn>, mut linger: bool) {
    let Ok(mut stream) = Arc::try_unwrap(io) else { return };
    if !linger {
        let mut probe = [0u8; 64];
        match stream.try_read_raw(&mut probe) {
            // Nothing waiting: the client has sent all it meant to.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(1..) => linger = true,
            // The client closed (or the socket failed): nothing to say or wait for.
            Ok(0) | Err(_) => return,
        }
    }
    if !linger && matches!(stream, Conn::Tcp(_)) {
        // close(2), as the stream drops, sends the FIN.
        return;
    }
    let ending = async {
        if stream.shutdown().await.is_err() || !linger {
            return;
        }
        let mut sink = Vec::with_capacity(4096);
        let mut total = 0usize;
        while total < LINGER_BYTES {
            sink.clear();
            match std::future::poll_fn(|cx| stream.poll_read_raw(cx, &mut sink)).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    // Bounded as a whole: a TLS `close_notify` waits for room in the socket too.
    let _ = tokio::time::timeout(LINGER, ending).await;
}

/// How long, and how many bytes, a closing connection reads from a client still sending.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Gives the connection to the upgrade's splice (see [`super::upgrade`]).
fn hand_over(io: Arc<Conn>, buf: BytesMut, upgrade: Option<oneshot::Sender<Prefixed>>) {
    if let (Ok(stream), Some(tx)) = (Arc::try_unwrap(io), upgrade) {
        let _ = tx.send(Prefixed::new(buf.freeze(), stream));
    }
}

/// What a connection's read timer bounds while it waits for a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Not set for this request yet.
    Unarmed,
    /// No byte of the next request yet: the keep-alive timeout.
    Idle,
    /// Part of a head: the header-read timeout, from its first byte (a slow head is bounded
    /// however long the connection idled before it).
    Head,
}

/// Reads more of a request head; `false` when the client closed, the keep-alive timeout
/// passed while idle or the header-read timeout while a head came in, or the listener
/// drains while the connection is idle.
async fn read_more(
    io: &Conn,
    buf: &mut BytesMut,
    mut timer: Pin<&mut tokio::time::Sleep>,
    mut drained: Pin<&mut tokio::sync::futures::Notified<'_>>,
    srv: &Http1<impl Handler>,
    armed: &mut Wait,
) -> bool {
    let idle = buf.is_empty();
    if idle && srv.drain.started() {
        return false;
    }
    let wait = if idle { Wait::Idle } else { Wait::Head };
    if *armed != wait {
        let limit = if idle { srv.keepalive_timeout } else { srv.header_read_timeout };
        timer.as_mut().reset(tokio::time::Instant::now() + limit);
        *armed = wait;
    }
    std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = io.poll_fill(cx, buf, READ_CHUNK) {
            return Poll::Ready(matches!(r, Ok(n) if n > 0));
        }
        if timer.as_mut().poll(cx).is_ready() || (idle && drained.as_mut().poll(cx).is_ready()) {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

/// Parses a request head from the front of `buf` (consuming it) once it is complete.
fn parse_request(
    buf: &mut BytesMut,
    io: &Arc<Conn>,
    srv: &Http1<impl Handler>,
    names: &mut Vec<(Box<[u8]>, HeaderName)>,
) -> Result<Option<Parsed>, Reject> {
    let max_head = srv.max_head_bytes;
    if buf.is_empty() {
        return Ok(None);
    }
    let bad = Reject::BadRequest;
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Partial) if buf.len() <= max_head => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadersTooLarge),
        Err(_) => return Err(bad("the request head is malformed")),
    };
    let method = request_method(parsed.method.unwrap_or_default().as_bytes())?;
    let version = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    if !is_routable_target(parsed.path.unwrap_or_default().as_bytes()) {
        // `*` (OPTIONS) and authority form (CONNECT) are a proxy's business, not a gateway's.
        return Err(bad("the request target must be a path or an absolute URI"));
    }
    // Where the target and each field sit in the head, so they can share its bytes.
    let base = buf.as_ptr() as usize;
    let target = parsed.path.unwrap_or_default();
    let target = (target.as_ptr() as usize - base, target.len());
    let mut spans: smallvec::SmallVec<[(usize, usize, usize, usize); 16]> = smallvec::SmallVec::new();
    for f in parsed.headers.iter() {
        // An empty value's slice may point anywhere: it is read as the head's first 0 bytes.
        let value_at = if f.value.is_empty() { 0 } else { f.value.as_ptr() as usize - base };
        spans.push((f.name.as_ptr() as usize - base, f.name.len(), value_at, f.value.len()));
    }
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(target.0..target.0 + target.1))
        .map_err(|_| bad("the request target is invalid"))?;
    // Sized for the fields alone: nothing is added to a request's map later (the gateway's
    // own fields are written into the upstream head directly), and a map of up to six fields
    // stays under 1 KiB, in the allocator's small-block classes.
    let mut headers = HeaderMap::with_capacity(spans.len());
    let mut seen = Seen::default();
    for (i, (name_at, name_len, value_at, value_len)) in spans.into_iter().enumerate() {
        let name =
            field_name(names, i, &head[name_at..name_at + name_len]).ok_or(bad("a request header name is invalid"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_at + value_len))
            .map_err(|_| bad("a request header value is invalid"))?;
        let field = Field::of(name.as_str().as_bytes());
        let gap = || head.get(name_at + name_len + 1..value_at).unwrap_or_default();
        if field.is_framing() && gap().iter().any(|b| *b != b' ') {
            // `Transfer-Encoding:\tchunked`: nginx reads the tab as part of the value.
            return Err(bad("a framing header has a tab before its value"));
        }
        if field == Field::Host && !is_host(value.as_bytes()) {
            return Err(bad("the Host header is invalid"));
        }
        seen.note(field, value.as_bytes());
        headers.append(name, value);
    }
    let state = framing(&seen, version)?;
    let keep_alive = if version == Version::HTTP_10 { seen.keep_alive } else { !seen.close };
    let (body, home) = if state == Decode::Done {
        (ClientBody::Empty, None)
    } else {
        let home = Home::default();
        let continue_left = if seen.expect_continue && version == Version::HTTP_11 { CONTINUE.len() } else { 0 };
        let body = RequestBody {
            io: io.clone(),
            buf: std::mem::take(buf),
            state,
            continue_left,
            home: home.clone(),
            stall: Stall::new(srv.body_read_timeout),
        };
        (ClientBody::H1(body), Some(home))
    };
    let head_only = method == Method::HEAD;
    let mut req = Box::new(Request::new(body));
    // Only WebSocket, only by an HTTP/1.1 GET (RFC 6455 §4.1; RFC 9110 §7.8 has HTTP/1.0
    // upgrades ignored). Any other `Upgrade` (`h2c` above all: after its 101 the connection
    // would bypass routing and auth) is hop-by-hop and dropped.
    let wants = version == Version::HTTP_11 && method == Method::GET && seen.names_others;
    let upgrade = (wants && super::headers::is_upgrade(&headers)).then(|| {
        let (tx, rx) = oneshot::channel();
        req.extensions_mut().insert(OwnUpgrade(Arc::new(Mutex::new(Some(rx)))));
        tx
    });
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Ok(Some(Parsed { req, keep_alive, version, head_only, home, upgrade }))
}

/// A request method: upper-case letters, `-` and `_` (as nginx), not `CONNECT` or `TRACE`.
pub(crate) fn request_method(raw: &[u8]) -> Result<Method, Reject> {
    if raw.is_empty() || !raw.iter().all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_') {
        return Err(Reject::BadRequest("the request method is invalid"));
    }
    let method = Method::from_bytes(raw).map_err(|_| Reject::BadRequest("the request method is invalid"))?;
    if method == Method::CONNECT || method == Method::TRACE {
        return Err(Reject::MethodNotAllowed);
    }
    Ok(method)
}

/// Origin form (`/path`) or absolute form (`http://host/path`, RFC 9112 §3.2.2).
pub(crate) fn is_routable_target(target: &[u8]) -> bool {
    let scheme = |s: &[u8]| target.len() > s.len() && target[..s.len()].eq_ignore_ascii_case(s);
    target.starts_with(b"/") || scheme(b"http://") || scheme(b"https://")
}

/// A `Host` value: a host name or IP literal and an optional port (RFC 9110 §7.2), never
/// empty, with no path, user info or anything else a router or upstream could misread.
pub(crate) fn is_host(value: &[u8]) -> bool {
    let (host, port) = match value.iter().rposition(|b| *b == b':') {
        Some(colon) if !value.ends_with(b"]") => (&value[..colon], &value[colon + 1..]),
        _ => (value, &b""[..]),
    };
    let literal = host.len() > 2 && host.starts_with(b"[") && host.ends_with(b"]");
    let host_ok = if literal {
        host[1..host.len() - 1].iter().all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
    } else {
        !host.is_empty() && host.iter().all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(b))
    };
    host_ok && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
}

/// How many field names a connection remembers (see [`field_name`]).
const REMEMBERED_NAMES: usize = 16;

/// The name of the `i`-th field of a request, given the names of the connection's previous
/// request by position (each with its bytes as sent): clients send the same fields in the
/// same order with every request, and a clone of the previous request's name skips
/// validation and, for a name the http crate does not know (`x-api-key`), an allocation.
/// `None` for an invalid name.
fn field_name(previous: &mut Vec<(Box<[u8]>, HeaderName)>, i: usize, raw: &[u8]) -> Option<HeaderName> {
    if let Some((_, name)) = previous.get(i).filter(|(sent, _)| **sent == *raw) {
        return Some(name.clone());
    }
    let name = HeaderName::from_bytes(raw).ok()?;
    if let Some(slot) = previous.get_mut(i) {
        *slot = (raw.into(), name.clone());
    } else if i == previous.len() && i < REMEMBERED_NAMES {
        previous.push((raw.into(), name.clone()));
    }
    Some(name)
}

/// The body framing of a request (RFC 9112 §6.3), refusing every ambiguous case.
pub(crate) fn framing(seen: &Seen, version: Version) -> Result<Decode, Reject> {
    let bad = Reject::BadRequest;
    if seen.hosts > 1 {
        return Err(bad("the request has several Host fields"));
    }
    if version == Version::HTTP_11 && seen.hosts == 0 {
        return Err(bad("the request has no Host"));
    }
    match seen.transfer {
        Some(_) if seen.length.is_some() || seen.bad_length.is_some() => {
            Err(bad("both Content-Length and Transfer-Encoding are present"))
        }
        Some(_) if version == Version::HTTP_10 => Err(bad("Transfer-Encoding is not allowed in HTTP/1.0")),
        Some(Transfer::Chunked) => Ok(Decode::CHUNKED),
        Some(_) => Err(bad("the only transfer coding accepted is chunked")),
        None => match (seen.bad_length, seen.length) {
            (Some(reason), _) => Err(bad(reason)),
            (None, Some(n)) if n > 0 => Ok(Decode::Length(n)),
            _ => Ok(Decode::Done),
        },
    }
}

/// How the response body is delimited on the wire.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Out {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Writes a response; `Ok(false)` when its body ended early or failed (the connection must
/// then close: the client cannot tell where the next response starts).
async fn write_response(
    io: Writer<'_>,
    out: &mut Vec<u8>,
    res: Reply,
    version: Version,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<bool> {
    let Reply { status, fields, mut body } = res;
    let bodyless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match body.size_hint().exact() {
        _ if bodyless => Out::None,
        Some(n) => Out::Length(n),
        None if version == Version::HTTP_11 => Out::Chunked,
        None => Out::Close,
    };
    let keep_alive = keep_alive && framing != Out::Close;
    out.clear();
    out.reserve(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    // No framing field is among them but a length that is the body's (a HEAD or 304 answer
    // keeps the length it describes).
    fields.write(out);
    if !fields.has_date() {
        put(out, &[b"date: ", &date(), b"\r\n"]);
    }
    match framing {
        // The upstream's own length, already written, is the body's exact length.
        Out::Length(_) if fields.has_length() => {}
        Out::Length(n) => put(out, &[b"content-length: ", itoa::Buffer::new().format(n).as_bytes(), b"\r\n"]),
        Out::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Out::None | Out::Close => {}
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if version == Version::HTTP_10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    if framing == Out::None || framing == Out::Length(0) {
        io.write_all(out).await?;
        return Ok(keep_alive);
    }
    let chunked = framing == Out::Chunked;
    let mut sent = 0u64;
    loop {
        // A frame already there joins what is buffered; otherwise the buffer goes out first.
        let next = match futures_util::FutureExt::now_or_never(body.frame()) {
            Some(next) => next,
            None => {
                io.write_all(out).await?;
                out.clear();
                body.frame().await
            }
        };
        let data = match next {
            None => break,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed");
                io.write_all(out).await?;
                return Ok(false);
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers are not forwarded
            },
        };
        sent += data.len() as u64;
        if data.len() <= COALESCE {
            put_chunk(out, &data, chunked);
        } else {
            // What is buffered (and the chunk's size line) goes first; the data from where it is.
            if chunked {
                put_chunk_size(out, data.len());
            }
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
            if chunked {
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Out::Length(n) = framing
            && sent > n
        {
            return Ok(false);
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    io.write_all(out).await?;
    Ok(keep_alive && !matches!(framing, Out::Length(n) if sent != n))
}

/// A client connection's write side, with how long a write may wait for the client to
/// take bytes (a client that stops reading is cut off, not waited for forever).
#[derive(Clone, Copy)]
struct Writer<'a> {
    io: &'a Conn,
    timeout: Duration,
}

impl Writer<'_> {
    async fn write_all(self, mut data: &[u8]) -> io::Result<()> {
        let Conn::Tcp(tcp) = self.io else { return self.write_all_tls(data).await };
        while !data.is_empty() {
            match tcp.try_write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::timeout(self.timeout, tcp.writable())
                        .await
                        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// TLS: each step (taking bytes into the send buffer, sending it) must make progress
    /// within the timeout; a step that completes at once arms no timer.
    async fn write_all_tls(self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.step(|cx| self.io.poll_write(cx, data)).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => data = &data[n..],
            }
        }
        self.step(|cx| self.io.poll_flush(cx)).await
    }

    async fn step<T>(self, mut poll: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>) -> io::Result<T> {
        use futures_util::FutureExt;
        if let Some(done) = std::future::poll_fn(&mut poll).now_or_never() {
            return done;
        }
        let waited = tokio::time::timeout(self.timeout, std::future::poll_fn(poll)).await;
        waited.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

/// The `Date` value (IMF-fixdate), formatted once per second per thread.
fn date() -> [u8; 29] {
    use std::cell::Cell;
    thread_local! {
        static CACHED: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
    }
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let (at, text) = c.get();
        if at == secs {
            return text;
        }
        let mut fresh = [0u8; 29];
        let formatted = httpdate::fmt_http_date(now);
        let n = formatted.len().min(29);
        fresh[..n].copy_from_slice(&formatted.as_bytes()[..n]);
        c.set((secs, fresh));
        fresh
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn seen(fields: &[(&'static str, &'static str)]) -> Seen {
        let mut s = Seen::default();
        for (n, v) in fields {
            s.note(Field::of(n.as_bytes()), v.as_bytes());
        }
        s
    }

    #[test]
    fn field_names_are_reused_by_position_and_still_validated() {
        let mut previous = Vec::new();
        let first = field_name(&mut previous, 0, b"Host").zip(field_name(&mut previous, 1, b"X-Api-Key"));
        assert_eq!(first, Some((header::HOST, HeaderName::from_static("x-api-key"))));
        assert_eq!(previous.len(), 2);
        // The same names in another case are the same names; another name takes the slot.
        assert_eq!(field_name(&mut previous, 1, b"x-API-key"), Some(HeaderName::from_static("x-api-key")));
        assert_eq!(field_name(&mut previous, 1, b"x-tenant"), Some(HeaderName::from_static("x-tenant")));
        assert_eq!(previous[1].1, "x-tenant");
        // Invalid names stay invalid, whatever was remembered there.
        assert_eq!(field_name(&mut previous, 1, b"x tenant"), None);
        assert_eq!(field_name(&mut previous, 0, b"h\xc3\xb6st"), None);
        // A bounded memory: positions past the limit parse without being remembered.
        let many: Vec<String> = (0..40).map(|i| format!("x-f{i}")).collect();
        for (i, n) in many.iter().enumerate() {
            assert_eq!(field_name(&mut previous, i, n.as_bytes()).map(|h| h.to_string()), Some(n.clone()));
        }
        assert_eq!(previous.len(), REMEMBERED_NAMES);
    }

    #[test]
    fn request_framing_refuses_every_ambiguous_case() {
        let h = ("host", "x");
        let ok = |f: &[(&'static str, &'static str)]| framing(&seen(f), Version::HTTP_11).ok();
        assert_eq!(ok(&[h]), Some(Decode::Done));
        assert_eq!(ok(&[h, ("content-length", "0")]), Some(Decode::Done));
        assert_eq!(ok(&[h, ("content-length", "12")]), Some(Decode::Length(12)));
        assert_eq!(ok(&[h, ("transfer-encoding", "chunked")]), Some(Decode::CHUNKED));
        for refused in [
            &[h, ("content-length", "5"), ("transfer-encoding", "chunked")][..],
            &[h, ("transfer-encoding", "chunked"), ("content-length", "5")],
            &[h, ("transfer-encoding", "gzip, chunked")],
            &[h, ("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")],
            &[h, ("transfer-encoding", "identity")],
            &[h, ("content-length", "5, 6")],
            &[h, ("content-length", "12, 12")],
            &[h, ("content-length", "5"), ("content-length", "5")],
            &[h, ("transfer-encoding", "chunked,")],
            &[h, ("content-length", "1e3")],
            &[],
            &[h, h],
        ] {
            assert_eq!(ok(refused), None, "{refused:?}");
        }
        let ten = |f: &[(&'static str, &'static str)]| framing(&seen(f), Version::HTTP_10).ok();
        assert_eq!(ten(&[]), Some(Decode::Done), "HTTP/1.0 needs no Host");
        assert_eq!(ten(&[("transfer-encoding", "chunked")]), None);
        assert_eq!(ten(&[h, h]), None, "several Host fields, whatever the version");
    }

    #[test]
    fn hosts_and_methods_are_strict() {
        for ok in ["x", "api.example.com", "a:8080", "[::1]", "[::1]:80", "127.0.0.1:1", "x:"] {
            assert!(is_host(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "x/private", "a@b", "a b", "[::1", "x:port", "x:123456", ":80", "[]", "a:b:c", "x\\y"] {
            assert!(!is_host(bad.as_bytes()), "{bad}");
        }
        for ok in ["GET", "POST", "PROPFIND", "M-SEARCH", "X_Y"] {
            assert!(request_method(ok.as_bytes()).is_ok(), "{ok}");
        }
        for bad in ["get", "Get", "GET1", "G.T", "", "CONNECT", "TRACE"] {
            assert!(request_method(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let d = date();
        let text = String::from_utf8_lossy(&d);
        assert!(text.ends_with(" GMT") && text.as_bytes()[3] == b',', "{text}");
        assert!(httpdate::parse_http_date(&text).is_ok(), "{text}");
    }
}
