//! The gateway's own HTTP/1.1 exchange with a plain-HTTP upstream, run on the request's
//! task: the request head is encoded straight into one buffer and written, the response
//! head parsed with `httparse` from the connection's read buffer, and the response body
//! decoded (length, chunked or until close) by the body the client's connection polls.
//! hyper's client would instead hand each request to a connection task over a channel and
//! wait for the answer on a oneshot (a third of the gateway's user-space instructions per
//! proxied request, measured with `bench/instructions`).
//!
//! Framing follows RFC 9112 §6: a response to `HEAD`, and `1xx`/`204`/`304` responses, have
//! no body; `Transfer-Encoding` wins over `Content-Length` (and the connection is not
//! reused); differing or malformed `Content-Length` values are an error; a body without
//! either runs until the upstream closes. Interim `1xx` answers (other than `101`) are
//! skipped. A connection is reused only when its response was read exactly to its end.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use smallvec::SmallVec;

use super::client::{Outgoing, ProxyBody, UpstreamError};
use super::headers;
use super::reply::{Fields, FieldsBuilder};
use crate::wire::codec::{Decode, Field, Seen, Step, Transfer, put, put_chunk};

/// Largest upstream response head.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most response header fields.
const MAX_HEADERS: usize = 100;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// A first request body frame up to this size is written with the head, in one system call.
const COALESCE_BODY: usize = 16 * 1024;

/// An open connection to an upstream, with the bytes read from it and not yet used, and its
/// deadline timer.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// Bounds each exchange (write and response head). One timer per connection, moved to a
    /// later deadline per request: tokio then only extends the registered entry (an atomic
    /// update) instead of inserting and removing a timer-wheel entry per request.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// How long the response body may go without a byte arriving: the exchange's own bound.
    stall_limit: Duration,
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqFraming {
    Empty,
    Length,
    Chunked,
}

impl ReqFraming {
    fn of(body: &ProxyBody) -> Self {
        if body.is_end_stream() {
            Self::Empty
        } else if body.size_hint().exact().is_some() {
            Self::Length
        } else {
            Self::Chunked
        }
    }
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head and what it says about the body and the connection.
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub fields: Fields,
    pub framing: Framing,
    /// Whether the connection can carry another request once the body has been read.
    pub keep_alive: bool,
}

/// Why an exchange failed, and whether the request may be sent again on a fresh connection:
/// nothing of the answer arrived and nothing of a request body was consumed.
pub struct Failure {
    pub error: UpstreamError,
    pub replayable: bool,
}

impl Conn {
    pub fn new(io: TcpStream) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            io,
            buf: BytesMut::new(),
            deadline: Box::pin(tokio::time::sleep_until(now)),
            stall_limit: Duration::ZERO,
        }
    }

    /// Whether an idle connection can take a request: the upstream has neither closed it
    /// nor sent anything unasked. Costs no system call unless the socket became readable.
    pub fn is_idle_usable(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Sends one request and reads the response head by `deadline`. `head` holds the encoded
    /// request head (see [`encode_head`]); the body, when not empty, is streamed after it.
    pub async fn exchange(
        &mut self,
        head: &[u8],
        body: ProxyBody,
        method: &Method,
        deadline: tokio::time::Instant,
        stall_limit: Duration,
    ) -> Result<Head, Failure> {
        self.deadline.as_mut().reset(deadline);
        self.stall_limit = stall_limit;
        let (wire, timer) = self.split();
        let work = wire.exchange(head, body, method);
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = work.as_mut().poll(cx) {
                return Poll::Ready(done);
            }
            // Whatever was sent may have been acted on: never replayed.
            timer.as_mut().poll(cx).map(|()| Err(Failure { error: UpstreamError::Timeout, replayable: false }))
        })
        .await
    }

    fn split(&mut self) -> (Wire<'_>, &mut Pin<Box<tokio::time::Sleep>>) {
        (Wire { io: &mut self.io, buf: &mut self.buf }, &mut self.deadline)
    }

    /// The connection after `101 Switching Protocols`, with the bytes already read from it.
    pub fn into_upgraded(self) -> (TcpStream, Bytes) {
        (self.io, self.buf.freeze())
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        Wire { io: &mut self.io, buf: &mut self.buf }.poll_fill(cx)
    }
}

/// The socket and read buffer of a connection, borrowed apart from its timer.
struct Wire<'c> {
    io: &'c mut TcpStream,
    buf: &'c mut BytesMut,
}

impl Wire<'_> {
    async fn exchange(mut self, head: &[u8], body: ProxyBody, method: &Method) -> Result<Head, Failure> {
        let failed = |error, replayable| Failure { error, replayable };
        if body.is_end_stream() {
            if let Err(e) = self.io.write_all(head).await {
                return Err(failed(UpstreamError::Io(e), true));
            }
        } else {
            // An upstream that answers early (say 413) and closes while the body is still
            // being sent: its answer is read if one arrived.
            // Boxed: streaming a body needs a large future, which would otherwise enlarge
            // every request's (most have no body).
            if let Err(e) = Box::pin(self.send_with_body(head, body)).await {
                if !matches!(&e, UpstreamError::Io(_)) {
                    return Err(failed(e, false));
                }
                return match self.read_head(method).await {
                    Ok(mut h) => {
                        h.keep_alive = false;
                        Ok(h)
                    }
                    Err(_) => Err(failed(e, false)),
                };
            }
        }
        // A request written whole may have been acted on even when no answer came (the
        // upstream may have closed after processing it): only idempotent ones go again.
        let again = method.is_idempotent();
        self.read_head(method).await.map_err(|(error, received)| failed(error, !received && again))
    }

    async fn send_with_body(&mut self, head: &[u8], mut body: ProxyBody) -> Result<(), UpstreamError> {
        let chunked = ReqFraming::of(&body) == ReqFraming::Chunked;
        // The first frame, when already there and small, goes out with the head.
        let mut out = Vec::with_capacity(head.len() + 256);
        out.extend_from_slice(head);
        let mut finished = false;
        if let Some(first) = futures_util::FutureExt::now_or_never(body.frame()) {
            match first {
                None => finished = true,
                Some(frame) => {
                    let frame = frame.map_err(UpstreamError::RequestBody)?;
                    if let Ok(data) = frame.into_data() {
                        if data.len() <= COALESCE_BODY {
                            put_chunk(&mut out, &data, chunked);
                        } else {
                            self.io.write_all(&out).await?;
                            out.clear();
                            self.write_chunk(&data, chunked).await?;
                        }
                    }
                    finished = body.is_end_stream();
                }
            }
        }
        if finished {
            if chunked {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            return Ok(self.io.write_all(&out).await?);
        }
        if !out.is_empty() {
            self.io.write_all(&out).await?;
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(UpstreamError::RequestBody)?;
            // Trailers are not forwarded (hop-by-hop in practice; RFC 9110 §6.5.1).
            if let Ok(data) = frame.into_data() {
                self.write_chunk(&data, chunked).await?;
            }
        }
        if chunked {
            self.io.write_all(b"0\r\n\r\n").await?;
        }
        Ok(())
    }

    async fn write_chunk(&mut self, data: &[u8], chunked: bool) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if !chunked {
            return self.io.write_all(data).await;
        }
        let mut framed = Vec::with_capacity(data.len() + 20);
        put_chunk(&mut framed, data, true);
        self.io.write_all(&framed).await
    }

    /// Reads until a final response head is complete. The error says whether any byte of
    /// the answer arrived.
    async fn read_head(&mut self, method: &Method) -> Result<Head, (UpstreamError, bool)> {
        let mut received = !self.buf.is_empty();
        loop {
            if !self.buf.is_empty() {
                match parse_head(self.buf, method) {
                    Ok(Some(head))
                        if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                    {
                        continue;
                    }
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) if self.buf.len() >= MAX_HEAD_BYTES => {
                        return Err((UpstreamError::Protocol("the response head is too large"), true));
                    }
                    Ok(None) => {}
                    Err(reason) => return Err((UpstreamError::Protocol(reason), true)),
                }
            }
            match std::future::poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) => return Err((UpstreamError::Closed, received)),
                Ok(_) => received = true,
                Err(e) => return Err((UpstreamError::Io(e), received)),
            }
        }
    }

    /// Reads what the socket has into the buffer; `Ok(0)` is end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        crate::wire::net::poll_fill(self.io, cx, self.buf, READ_CHUNK)
    }
}

/// Encodes a request head: the request line, then [`encode_fields`].
pub fn encode_head(out: &mut Vec<u8>, o: &Outgoing<'_>, host: &HeaderValue, body: &ProxyBody) {
    let target = o.path_and_query.as_str();
    let size: usize = o.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    // Room for what the gateway adds too (request id, identity and forwarding fields: ~350
    // bytes with a consumer), so the head is not copied into a larger buffer halfway.
    out.reserve(o.method.as_str().len() + target.len() + host.len() + size + 512);
    put(out, &[o.method.as_str().as_bytes(), b" ", target.as_bytes(), b" HTTP/1.1\r\n"]);
    encode_fields(out, o, host, body);
    out.extend_from_slice(b"\r\n");
}

/// The header fields of a request sent upstream, as `name: value\r\n` lines — built here
/// once for the plain codec and the TLS client alike: `Host`, the client's fields minus
/// `Host`, hop-by-hop ones, its request id and the framing fields (replaced by the body's
/// own framing), then the gateway's request id, the caller's identity, the forwarding
/// fields, `Connection: upgrade` for an upgrade and the body's framing.
pub fn encode_fields(out: &mut Vec<u8>, o: &Outgoing<'_>, host: &HeaderValue, body: &ProxyBody) {
    let framing = ReqFraming::of(body);
    put(out, &[b"host: ", host.as_bytes(), b"\r\n"]);
    let named = headers::connection_tokens(o.headers);
    for (name, value) in o.headers {
        let skip = *name == header::HOST
            || *name == header::CONTENT_LENGTH
            || *name == headers::X_REQUEST_ID
            || headers::is_hop_by_hop(name, o.upgrade, &named)
            || headers::replaced_by_forwarding(name, o.forwarding)
            || (o.traceparent.is_some() && name.as_str() == "traceparent");
        if !skip {
            put(out, &[name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"]);
        }
    }
    put(out, &[b"x-request-id: ", o.request_id.as_bytes(), b"\r\n"]);
    if let Some(tp) = &o.traceparent {
        put(out, &[b"traceparent: ", tp.as_bytes(), b"\r\n"]);
    }
    if let Some(identity) = o.identity {
        identity.write_lines(out);
    }
    headers::forwarding_fields(o.headers, o.forwarding, |name, parts| {
        put(out, &[name.as_str().as_bytes(), b": "]);
        put(out, parts);
        out.extend_from_slice(b"\r\n");
    });
    if o.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    match framing {
        ReqFraming::Length => {
            let len = body.size_hint().exact().unwrap_or_default();
            put(out, &[b"content-length: ", itoa::Buffer::new().format(len).as_bytes(), b"\r\n"]);
        }
        ReqFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // Methods whose requests normally carry content say so even when it is empty
        // (some servers answer 411 otherwise), as does a client that sent the header.
        ReqFraming::Empty
            if matches!(*o.method, Method::POST | Method::PUT | Method::PATCH)
                || o.headers.contains_key(header::CONTENT_LENGTH) =>
        {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        ReqFraming::Empty => {}
    }
}

/// Parses a response head from the front of `buf` (consuming it) once it is complete.
pub(crate) fn parse_head(buf: &mut BytesMut, method: &Method) -> Result<Option<Head>, &'static str> {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Complete(_)) => return Err("the response head is too large"),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("the response has too many header fields"),
        Err(_) => return Err("the response head is malformed"),
    };
    let code = res.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| "the response status is invalid")?;
    let version = if res.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    // What framing and persistence need, noted in one pass (no lookups afterwards).
    let mut seen = Seen::default();
    let mut kinds: SmallVec<[Field; 16]> = SmallVec::with_capacity(res.headers.len());
    for f in res.headers.iter() {
        let field = Field::of(f.name.as_bytes());
        seen.note(field, f.value);
        kinds.push(field);
    }
    let (framing, mut keep_alive) = framing_of(status, method, &seen)?;
    keep_alive &= if version == Version::HTTP_10 { seen.keep_alive } else { !seen.close };
    // Hop-by-hop fields are left out (the connection is the gateway's), except after `101`,
    // whose `Upgrade` and `Connection` the client needs; so is a length that chunked framing
    // overrode. What remains is kept as written, for the client's connection.
    let keep_all = status == StatusCode::SWITCHING_PROTOCOLS;
    let named: SmallVec<[&[u8]; 4]> = if seen.names_others && !keep_all {
        res.headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case("connection"))
            .flat_map(|f| f.value.split(|b| *b == b','))
            .map(<[u8]>::trim_ascii)
            .collect()
    } else {
        SmallVec::new()
    };
    let mut out = FieldsBuilder::with_capacity(len);
    for (f, field) in res.headers.iter().zip(kinds) {
        let name = f.name.as_bytes();
        let leave_out = !keep_all
            && (field.is_hop_by_hop()
                || (field == Field::ContentLength && seen.transfer.is_some())
                || named.iter().any(|t| t.eq_ignore_ascii_case(name)));
        if leave_out {
            continue;
        }
        out.push(field, name, f.value);
    }
    drop(named);
    bytes::Buf::advance(buf, len);
    Ok(Some(Head { status, version, fields: out.build(), framing, keep_alive }))
}

/// The body framing of a response (RFC 9112 §6.3) and whether it leaves the connection
/// reusable as far as framing goes.
fn framing_of(status: StatusCode, method: &Method, seen: &Seen) -> Result<(Framing, bool), &'static str> {
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::None, true));
    }
    if let Some(transfer) = seen.transfer {
        // Only `chunked` is decoded; another coding (`gzip, chunked`) would reach the client
        // de-chunked without it, a corrupt body (nginx answers 502 too).
        if transfer != Transfer::Chunked {
            return Err("the response's transfer coding is not chunked alone");
        }
        // Both present: Transfer-Encoding wins, the length is dropped, and the message may
        // have been crafted to be read two ways, so the connection is not reused.
        let both = seen.length.is_some() || seen.bad_length.is_some();
        return Ok((Framing::Chunked, !both));
    }
    if let Some(reason) = seen.bad_length {
        return Err(reason);
    }
    Ok(match seen.length {
        Some(0) => (Framing::None, true),
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

/// Where a connection goes once its response body has been read to the end.
pub trait Checkin: Send + Sync {
    fn checkin(&self, conn: Conn);
}

/// The body of an upstream response, decoded from its connection as it is polled.
pub struct H1Body {
    conn: Option<Conn>,
    state: Decode,
    keep_alive: bool,
    home: Option<std::sync::Arc<dyn Checkin>>,
    /// Whether the connection's timer bounds the current wait for body bytes.
    stall_armed: bool,
}

impl H1Body {
    /// The body of `head`, read from `conn`; the connection goes to `home` afterwards when
    /// it can be reused.
    pub fn new(conn: Conn, head: &Head, home: std::sync::Arc<dyn Checkin>) -> Self {
        let state = match head.framing {
            Framing::None => Decode::Done,
            Framing::Length(n) => Decode::Length(n),
            Framing::Chunked => Decode::CHUNKED,
            Framing::UntilClose => Decode::UntilClose,
        };
        let mut body =
            Self { conn: Some(conn), state, keep_alive: head.keep_alive, home: Some(home), stall_armed: false };
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the upgrade: see `take_conn`.
            body.home = None;
        } else if body.state == Decode::Done {
            body.finish();
        }
        body
    }

    /// The connection, for `101 Switching Protocols` (it is not returned to the pool).
    pub fn take_conn(&mut self) -> Option<Conn> {
        self.home = None;
        self.conn.take()
    }

    /// The body has been read to its end: the connection goes back when it can be reused
    /// (nothing unread after the body).
    fn finish(&mut self) {
        self.state = Decode::Done;
        if let (Some(conn), Some(home)) = (self.conn.take(), self.home.take())
            && self.keep_alive
            && conn.buf.is_empty()
        {
            home.checkin(conn);
        }
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else { return Poll::Ready(None) };
            match self.state.step(&mut conn.buf).map_err(UpstreamError::Protocol)? {
                Step::Data(data) => {
                    if self.state == Decode::Done {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Done => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Step::More => match ready!(poll_fill_or_stall(conn, cx, &mut self.stall_armed)) {
                    Ok(0) if self.state.at_eof() => {
                        self.keep_alive = false;
                        self.finish();
                    }
                    Ok(0) => return Poll::Ready(Some(Err(UpstreamError::Closed))),
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Some(Err(UpstreamError::Io(e)))),
                },
            }
        }
    }
}

/// Reads more of a response body; an error when no byte arrived for the connection's stall
/// limit (an upstream that stops sending mid-body must not hold the client forever).
fn poll_fill_or_stall(conn: &mut Conn, cx: &mut Context<'_>, armed: &mut bool) -> Poll<io::Result<usize>> {
    if let Poll::Ready(read) = conn.poll_fill(cx) {
        *armed = false;
        return Poll::Ready(read);
    }
    if !*armed {
        let limit = conn.stall_limit;
        conn.deadline.as_mut().reset(tokio::time::Instant::now() + limit);
        *armed = true;
    }
    ready!(conn.deadline.as_mut().poll(cx));
    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the response body stalled")))
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let polled = self.step(cx);
        if let Poll::Ready(Some(Err(_))) = polled {
            // A broken body leaves the connection in an unknown state.
            self.conn = None;
            self.state = Decode::Done;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.state == Decode::Done
    }

    fn size_hint(&self) -> SizeHint {
        self.state.remaining().map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Full, StreamBody};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use http::uri::PathAndQuery;

    use super::*;
    use crate::wire::client::empty_body as empty;
    use crate::wire::headers::Forwarding;
    use http::header::{HeaderMap, HeaderName};

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// Counts connections given back.
    #[derive(Default)]
    struct Home(Mutex<usize>);

    impl Checkin for Home {
        fn checkin(&self, _conn: Conn) {
            if let Ok(mut n) = self.0.lock() {
                *n += 1;
            }
        }
    }

    impl Home {
        fn returned(&self) -> usize {
            self.0.lock().map(|n| *n).unwrap_or_default()
        }
    }

    /// An upstream that reads one request (head, then `read_body` more bytes or until the
    /// zero chunk), answers `answer` and closes. Returns its address and what it read.
    async fn upstream(
        answer: &'static [u8],
        read_body: usize,
    ) -> std::io::Result<(String, tokio::task::JoinHandle<Vec<u8>>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let seen = tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else { return Vec::new() };
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let head_end = seen.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
                let done = match head_end {
                    Some(end) if seen.windows(17).any(|w| w == b"transfer-encoding") => {
                        seen[end..].ends_with(b"0\r\n\r\n")
                    }
                    Some(end) => seen.len() >= end + read_body,
                    None => false,
                };
                if done {
                    break;
                }
                match stream.read(&mut buf).await {
                    Ok(n @ 1..) => seen.extend_from_slice(&buf[..n]),
                    _ => return seen,
                }
            }
            let _ = stream.write_all(answer).await;
            seen
        });
        Ok((addr, seen))
    }

    /// Sends one request with `body` and returns the head, the collected body (or its
    /// error) and how many times the connection was given back.
    async fn call(
        addr: &str,
        method: Method,
        body: ProxyBody,
    ) -> Result<(Head, Result<Bytes, UpstreamError>, usize), BoxError> {
        let mut conn = Conn::new(TcpStream::connect(addr).await?);
        let mut head = Vec::new();
        let host = HeaderValue::from_str(addr)?;
        let mut headers = HeaderMap::new();
        headers.insert("x-test", HeaderValue::from_static("1"));
        let pq = PathAndQuery::from_static("/p?q=1");
        let forwarding = Forwarding { client_ip: [10, 0, 0, 1].into(), proto: "http", host: None };
        let out = Outgoing {
            method: &method,
            path_and_query: &pq,
            headers: &headers,
            request_id: &HeaderValue::from_static("test-id"),
            identity: None,
            forwarding: &forwarding,
            upgrade: false,
            traceparent: None,
        };
        encode_head(&mut head, &out, &host, &body);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let parsed =
            conn.exchange(&head, body, &method, deadline, Duration::from_secs(5)).await.map_err(|f| f.error)?;
        let home = Arc::new(Home::default());
        let collected = H1Body::new(conn, &parsed, home.clone()).collect().await.map(|c| c.to_bytes());
        Ok((parsed, collected, home.returned()))
    }

    #[tokio::test]
    async fn length_bodies_are_read_exactly_and_the_connection_returned() -> Result<(), BoxError> {
        let (addr, seen) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello", 0).await?;
        let (head, body, returned) = call(&addr, Method::GET, empty()).await?;
        assert_eq!((head.status, head.framing), (StatusCode::OK, Framing::Length(5)));
        assert_eq!(head.fields.to_map().get("x-a").map(HeaderValue::as_bytes), Some(&b"b"[..]));
        assert_eq!(body?, "hello");
        assert_eq!(returned, 1);
        let seen = String::from_utf8(seen.await?)?;
        let forwarding =
            "x-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\nforwarded: for=10.0.0.1;proto=http\r\n";
        assert_eq!(
            seen,
            format!("GET /p?q=1 HTTP/1.1\r\nhost: {addr}\r\nx-test: 1\r\nx-request-id: test-id\r\n{forwarding}\r\n")
        );
        Ok(())
    }

    /// Each answer: the request method, then the framing, body and whether the connection
    /// went back to the pool.
    #[tokio::test]
    async fn framings_decode_bodies_and_decide_reuse() -> Result<(), BoxError> {
        let cases: [(&'static [u8], Method, Framing, &str, usize); 9] = [
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
                Method::GET,
                Framing::Chunked,
                "hello world",
                1,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", Method::GET, Framing::UntilClose, "until the end", 0),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::HEAD, Framing::None, "", 1),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", Method::GET, Framing::None, "", 1),
            // Transfer-Encoding wins over a length; such a message is not trusted for reuse.
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                Method::GET,
                Framing::Chunked,
                "ok",
                0,
            ),
            (b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", Method::GET, Framing::Length(2), "ok", 0),
            (b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", Method::GET, Framing::Length(2), "ok", 0),
            // Bytes past the end of the body: the connection cannot be trusted again.
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA", Method::GET, Framing::Length(2), "ok", 0),
            (b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok", Method::GET, Framing::Length(2), "ok", 1),
        ];
        for (answer, method, framing, text, returned) in cases {
            let (addr, _) = upstream(answer, 0).await?;
            let (head, body, back) = call(&addr, method, empty()).await?;
            let case = String::from_utf8_lossy(answer);
            assert_eq!((head.framing, body?, back), (framing, Bytes::from(text), returned), "{case}");
            assert!(!head.fields.to_map().contains_key(header::TRANSFER_ENCODING), "{case}");
            // A length is dropped where chunked framing won, kept elsewhere (also on HEAD).
            let length_kept = head.fields.has_length();
            assert_eq!(length_kept, head.fields.to_map().contains_key(header::CONTENT_LENGTH));
            assert_eq!(length_kept, case.contains("content-length") && framing != Framing::Chunked, "{case}");
        }
        Ok(())
    }

    #[tokio::test]
    async fn malformed_answers_are_protocol_errors() -> Result<(), BoxError> {
        let cases: [(&'static [u8], &str); 8] = [
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok", "more than once"),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok", "Content-Length is invalid"),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "not chunked alone"),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nzz", "not chunked alone"),
            (b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok", "Content-Length is invalid"),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n", "Content-Length is invalid"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed"),
            (b"SMTP ready\r\n\r\n", "malformed"),
        ];
        for (answer, expected) in cases {
            let (addr, _) = upstream(answer, 0).await?;
            let err = call(&addr, Method::GET, empty()).await.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(expected), "{err} for {}", String::from_utf8_lossy(answer));
        }
        Ok(())
    }

    #[tokio::test]
    async fn truncated_bodies_and_chunks_are_errors() -> Result<(), BoxError> {
        let (addr, _) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", 0).await?;
        let (_, body, returned) = call(&addr, Method::GET, empty()).await?;
        assert!(matches!(body, Err(UpstreamError::Closed)), "{body:?}");
        assert_eq!(returned, 0);
        let (addr, _) = upstream(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", 0).await?;
        let (_, body, _) = call(&addr, Method::GET, empty()).await?;
        assert!(matches!(body, Err(UpstreamError::Protocol(_))), "{body:?}");
        Ok(())
    }

    #[tokio::test]
    async fn a_huge_head_is_refused() -> Result<(), BoxError> {
        static HUGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let huge = HUGE.get_or_init(|| {
            let mut v = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
            v.resize(v.len() + MAX_HEAD_BYTES, b'a');
            v.extend_from_slice(b"\r\n\r\n");
            v
        });
        let (addr, _) = upstream(huge, 0).await?;
        let err = call(&addr, Method::GET, empty()).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("too large"), "{err}");
        Ok(())
    }

    #[tokio::test]
    async fn request_bodies_are_framed_by_length_or_chunked() -> Result<(), BoxError> {
        let (addr, seen) = upstream(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n", 4).await?;
        let body = Full::new(Bytes::from_static(b"data")).map_err(|never| match never {}).boxed();
        let (head, _, returned) = call(&addr, Method::POST, body).await?;
        assert_eq!((head.status, returned), (StatusCode::CREATED, 1));
        let seen = String::from_utf8(seen.await?)?;
        assert!(seen.ends_with("content-length: 4\r\n\r\ndata"), "{seen}");

        let (addr, seen) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 0).await?;
        let frames = ["ab", "", "cde"].map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes()))));
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        call(&addr, Method::PUT, body).await?.1?;
        let seen = String::from_utf8(seen.await?)?;
        assert!(seen.ends_with("transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"), "{seen}");

        let (addr, seen) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 0).await?;
        call(&addr, Method::POST, empty()).await?.1?;
        let seen = String::from_utf8(seen.await?)?;
        assert!(seen.ends_with("content-length: 0\r\n\r\n"), "an empty POST says so: {seen}");
        Ok(())
    }

    #[tokio::test]
    async fn a_failing_request_body_is_the_clients_error() -> Result<(), BoxError> {
        let (addr, _) = upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", 1_000_000).await?;
        let frames: [Result<Frame<Bytes>, BoxError>; 2] =
            [Ok(Frame::data(Bytes::from_static(b"ab"))), Err("client went away".into())];
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed();
        let err = call(&addr, Method::POST, body).await.err();
        let is_body = err
            .as_ref()
            .and_then(|e| e.downcast_ref::<UpstreamError>())
            .is_some_and(|e| matches!(e, UpstreamError::RequestBody(_)));
        assert!(is_body, "{err:?}");
        Ok(())
    }

    #[tokio::test]
    async fn the_deadline_bounds_each_exchange_and_moves_with_the_next() -> Result<(), BoxError> {
        use std::time::Duration;
        // An upstream that answers the first request at once, the second never.
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let mut buf = [0u8; 4096];
            let mut answered = 0;
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && answered == 0 {
                    answered += 1;
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                }
            }
        });
        let mut conn = Conn::new(TcpStream::connect(addr).await?);
        let head = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        let short = Duration::from_millis(50);
        let first = conn.exchange(head, empty(), &Method::GET, tokio::time::Instant::now() + short, short).await;
        assert!(first.is_ok_and(|h| h.status == StatusCode::OK));
        // Past the first deadline: the timer fired while idle; the next exchange gets its own.
        tokio::time::sleep(short * 2).await;
        let started = std::time::Instant::now();
        let second = conn.exchange(head, empty(), &Method::GET, tokio::time::Instant::now() + short, short).await;
        assert!(matches!(second, Err(Failure { error: UpstreamError::Timeout, replayable: false })));
        assert!(started.elapsed() >= short, "timed out early: {:?}", started.elapsed());
        Ok(())
    }

    #[test]
    fn request_heads_drop_hop_by_hop_and_append_forwarding() {
        let mut headers = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic eA=="),
            ("upgrade", "websocket"),
            ("host", "client.example"),
            ("content-length", "0"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-host", "spoofed"),
            ("forwarded", "for=203.0.113.7"),
            ("x-kept", "yes"),
        ] {
            headers.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let host = HeaderValue::from_static("client.example");
        let forwarding = Forwarding { client_ip: [10, 0, 0, 1].into(), proto: "https", host: Some(&host) };
        let pq = PathAndQuery::from_static("/x");
        let body = empty();
        let encode = |upgrade| {
            let out = Outgoing {
                method: &Method::GET,
                path_and_query: &pq,
                headers: &headers,
                request_id: &HeaderValue::from_static("test-id"),
                identity: None,
                forwarding: &forwarding,
                upgrade,
                traceparent: None,
            };
            let mut head = Vec::new();
            encode_head(&mut head, &out, &HeaderValue::from_static("up:80"), &body);
            String::from_utf8(head).unwrap_or_default()
        };
        assert_eq!(
            encode(false),
            "GET /x HTTP/1.1\r\nhost: up:80\r\nx-kept: yes\r\nx-request-id: test-id\r\nx-forwarded-for: 203.0.113.7, 10.0.0.1\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: client.example\r\n\
             forwarded: for=203.0.113.7, for=10.0.0.1;proto=https;host=client.example\r\ncontent-length: 0\r\n\r\n"
        );
        let upgraded = encode(true);
        assert!(
            upgraded.contains("\r\nupgrade: websocket\r\n") && upgraded.contains("\r\nconnection: upgrade\r\n"),
            "{upgraded}"
        );
        assert!(!upgraded.contains("keep-alive") && !upgraded.contains("x-secret"), "{upgraded}");
    }

    #[test]
    fn response_heads_leave_hop_by_hop_fields_out_except_after_101() -> Result<(), BoxError> {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nconnection: keep-alive, x-hop\r\nx-hop: 1\r\nkeep-alive: timeout=5\r\nupgrade: h2c\r\nx-kept: 1\r\ncontent-length: 0\r\n\r\n"[..],
        );
        let head = parse_head(&mut buf, &Method::GET)?.ok_or("incomplete")?;
        let map = head.fields.to_map();
        let mut names: Vec<&str> = map.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "x-kept"]);
        assert!(head.keep_alive);
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"[..],
        );
        let head = parse_head(&mut buf, &Method::GET)?.ok_or("incomplete")?;
        assert_eq!(head.fields.to_map().len(), 2);
        Ok(())
    }

    #[test]
    fn raw_fields_note_what_the_gateway_writes_itself() -> Result<(), BoxError> {
        let parse = |text: &'static [u8]| parse_head(&mut BytesMut::from(text), &Method::GET);
        let plain = parse(b"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n")?.ok_or("incomplete")?;
        assert_eq!(&plain.fields.block()[..], b"Date: x\r\nContent-Length: 0\r\nX-A: 1\r\n");
        assert!(plain.fields.has_date() && plain.fields.has_length() && !plain.fields.collides());
        for colliding in
            [&b"X-Request-Id: 1"[..], b"RateLimit-Limit: 5", b"x-ratelimit-remaining-minute: 1", b"Retry-After: 3"]
        {
            let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
            text.extend_from_slice(colliding);
            text.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
            let head = parse_head(&mut BytesMut::from(&text[..]), &Method::GET)?.ok_or("incomplete")?;
            assert!(head.fields.collides(), "{}", String::from_utf8_lossy(colliding));
        }
        let map = plain.fields.to_map();
        assert_eq!(map.get("x-a").map(HeaderValue::as_bytes), Some(&b"1"[..]));
        assert_eq!(map.len(), 3);
        Ok(())
    }
}
