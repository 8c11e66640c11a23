//! Socket reads that know when the socket is drained.
//!
//! tokio clears a socket's read readiness only when a read fails with `WouldBlock`, so
//! after every successful read the next one is a wasted system call (`EAGAIN`) — one per
//! proxied request on each side of a keep-alive connection. A *short* read (fewer bytes
//! than asked for) already proves the receive queue was empty at that moment, so the
//! readiness is cleared there, as nginx does; tokio's readiness ticks make this safe
//! against an event that arrived in between (it is then kept).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::conn::Conn;
use super::socket::Socket;

/// Reads what `io` has into `buf`; `Ok(0)` is end of stream (or a full `buf`).
pub fn poll_read(io: &TcpStream, cx: &mut Context<'_>, buf: &mut impl BufMut) -> Poll<io::Result<usize>> {
    loop {
        ready!(io.poll_read_ready(cx))?;
        // What one read can take (the spare capacity), not what the buffer could grow to.
        let room = buf.chunk_mut().len();
        match read_draining(io, room, || io.try_read_buf(&mut *buf)) {
            // Stale readiness: wait for the next event.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            read => return Poll::Ready(read),
        }
    }
}

/// One read of at most `room` bytes (`read`) under tokio's readiness for `io`, without
/// waiting: a read that fills less than `room` has drained the socket, so the readiness is
/// cleared and the next read waits for the next event instead of costing an `EAGAIN` (a
/// kept-alive connection's next request is never there as the response goes out); bytes
/// arriving after the read raise a new edge-triggered event. `WouldBlock`: nothing to read.
pub fn read_draining(io: &TcpStream, room: usize, read: impl FnOnce() -> io::Result<usize>) -> io::Result<usize> {
    let mut n = 0;
    match io.try_io(Interest::READABLE, || {
        n = read()?;
        if n > 0 && n < room { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
    }) {
        // Drained (readiness cleared) after reading something: done for now.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => Ok(n),
        done => done.map(|()| n),
    }
}

/// A socket read that does not wait for tokio's readiness: for a new connection's first bytes.
/// A client sends its request (or TLS ClientHello) right after the TCP handshake's last ACK,
/// so by the time the connection is accepted the bytes are usually waiting, while tokio knows
/// a new socket as readable only after its first epoll event: reading at once spares the
/// connection's task a round through the event loop (a wakeup, a poll that finds nothing, a
/// timer armed). When nothing is there yet it costs one `EAGAIN` (`WouldBlock`, then wait as
/// usual); when it read something, tokio's readiness from that first event is still to be
/// cleared by a later `EAGAIN`.
pub struct Unwaited<'a>(pub &'a TcpStream);

impl io::Read for Unwaited<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut &*socket2::SockRef::from(self.0), buf)
    }
}

thread_local! {
    /// Where reads that cannot land in a buffer's spare capacity ([`read_now`], a socket not
    /// yet registered) go before being copied: one per thread, so that no buffer is zeroed
    /// for each read.
    static FIRST_READ: std::cell::RefCell<Box<[u8]>> = std::cell::RefCell::new(vec![0; 8 * 1024].into_boxed_slice());
}

/// Appends what `io` has now (up to 8 KiB) to `buf` through [`Unwaited`]; `Ok(0)` is end of
/// stream, `WouldBlock` nothing yet.
pub fn read_now(io: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    read_via_buffer(&mut Unwaited(io), buf, usize::MAX)
}

/// One read of at most `max` bytes (and 8 KiB) from `from`, appended to `buf`.
pub fn read_via_buffer(from: &mut impl io::Read, buf: &mut impl BufMut, max: usize) -> io::Result<usize> {
    FIRST_READ.with_borrow_mut(|first| {
        let len = first.len().min(max).min(buf.remaining_mut());
        let n = from.read(&mut first[..len])?;
        buf.put_slice(&first[..n]);
        Ok(n)
    })
}

/// Makes room in `buf` (at least 1 KiB spare, growing by `chunk`), then [`poll_read`]s.
pub fn poll_fill(io: &TcpStream, cx: &mut Context<'_>, buf: &mut BytesMut, chunk: usize) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(chunk);
    }
    poll_read(io, cx, buf)
}

/// A connection whose first bytes were already read: they are replayed before the rest.
/// (The listener's connections after protocol detection, TLS connections for hyper, and
/// the upstream side of an upgraded plain-HTTP connection.)
pub struct Prefixed {
    prefix: Bytes,
    stream: Conn,
}

impl Prefixed {
    pub fn new(prefix: Bytes, stream: impl Into<Conn>) -> Self {
        Self { prefix, stream: stream.into() }
    }
}

impl From<TcpStream> for Conn {
    fn from(s: TcpStream) -> Self {
        Conn::Tcp(Socket::registered(s))
    }
}

impl From<Socket> for Conn {
    fn from(s: Socket) -> Self {
        Conn::Tcp(s)
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return this.stream.poll_read(cx, buf).map_ok(drop);
        }
        let head = this.prefix.split_to(this.prefix.len().min(buf.remaining()));
        buf.put_slice(&head);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().stream.poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Conn::Tcp(s) => s.poll_write_vectored(cx, bufs),
            tls => {
                let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &**b);
                tls.poll_write(cx, first)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        matches!(self.stream, Conn::Tcp(_))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream.poll_shutdown(cx)
    }
}

/// How long a stream may go without progress: a timer armed when a wait begins and dropped
/// when bytes arrive, so only a wait that really lasts holds one.
pub struct Stall {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    pub fn new(limit: Duration) -> Self {
        Self { limit, timer: None }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Bytes arrived: the next wait gets the whole limit again.
    pub fn progressed(&mut self) {
        self.timer = None;
    }

    /// Waiting: ready once the limit has passed since this wait began.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let limit = self.limit;
        self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit))).as_mut().poll(cx)
    }
}
