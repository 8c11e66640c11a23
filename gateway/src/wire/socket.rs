//! A client's plain TCP socket, which joins the event loop only when it first has to wait.
//!
//! tokio registers a socket with epoll as it wraps it (`epoll_ctl(ADD)`), deregisters it as
//! it drops it (`epoll_ctl(DEL)`), and handles the registration's first event (the socket is
//! writable) though nothing waits for it. A client that sends its request with the
//! connection and closes it after the response (`Connection: close`: scripts, health
//! checkers, many API clients) never makes the gateway wait: the listener reads the request
//! on accept, the response fits the socket's send buffer, and the close finds nothing
//! unread. So an accepted socket starts as a plain non-blocking socket, read and written
//! directly, and becomes a tokio [`TcpStream`] the first time a read or write would block
//! (a keep-alive connection waiting for its next request, a head or body still on its way, a
//! client slow to take a response); from then on it is used exactly as before. (nginx, for
//! comparison, registers each connection for reads on accept and adds writes when it first
//! writes; it does not deregister.)
//!
//! Both states are used through `&self` (a request body reads while the server loop holds
//! the connection): the unregistered socket sits behind a mutex that only the reads and
//! writes before the first wait take, and the registered stream in a [`OnceLock`] that is set
//! once, under that mutex, and read without a lock after.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{BufMut, BytesMut};
use tokio::net::TcpStream;

use super::net;

/// A client's TCP socket (see the module documentation).
pub struct Socket {
    /// The socket once it has had to wait, registered with the event loop.
    waited: OnceLock<TcpStream>,
    /// The socket until then (`None` after).
    raw: Mutex<Option<std::net::TcpStream>>,
}

/// What an operation on the socket runs on.
enum Io<'a> {
    Raw(MutexGuard<'a, Option<std::net::TcpStream>>),
    Waited(&'a TcpStream),
}

impl Socket {
    /// An accepted, non-blocking socket, not registered with the event loop.
    pub fn new(tcp: std::net::TcpStream) -> Self {
        Self { waited: OnceLock::new(), raw: Mutex::new(Some(tcp)) }
    }

    /// A socket already registered with the event loop.
    pub fn registered(tcp: TcpStream) -> Self {
        Self { waited: OnceLock::from(tcp), raw: Mutex::new(None) }
    }

    fn io(&self) -> io::Result<Io<'_>> {
        if let Some(tcp) = self.waited.get() {
            return Ok(Io::Waited(tcp));
        }
        // Nothing panics while holding the lock; a poisoned one still holds a sound socket.
        let raw = self.raw.lock().unwrap_or_else(PoisonError::into_inner);
        if raw.is_some() {
            return Ok(Io::Raw(raw));
        }
        drop(raw);
        // Registered by another holder meanwhile, or its registration failed.
        self.waited.get().map(Io::Waited).ok_or_else(|| io::Error::other("socket lost in registration"))
    }

    /// The registered stream, registering the socket now if it is not yet.
    fn waiting(&self) -> io::Result<&TcpStream> {
        if let Some(tcp) = self.waited.get() {
            return Ok(tcp);
        }
        let mut raw = self.raw.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tcp) = raw.take() {
            // Set while the lock is held, so no other holder finds neither state.
            let _ = self.waited.set(TcpStream::from_std(tcp)?);
        }
        drop(raw);
        self.waited.get().ok_or_else(|| io::Error::other("socket lost in registration"))
    }

    /// Reads what the socket has now (up to 8 KiB) into `buf` without waiting: `Ok(0)` is
    /// the end of the stream, `WouldBlock` nothing yet. For a new connection's first bytes
    /// (see [`net::Unwaited`]).
    pub fn read_now(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self.io()? {
            Io::Raw(raw) => net::read_via_buffer(&mut raw_ref(&raw)?, buf, usize::MAX),
            Io::Waited(tcp) => net::read_now(tcp, buf),
        }
    }

    /// Reads what the socket has into `buf`; `Ok(0)` is the end of the stream (or a full
    /// `buf`).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut impl BufMut) -> Poll<io::Result<usize>> {
        if let Some(tcp) = self.waited.get() {
            return net::poll_read(tcp, cx, buf);
        }
        if let Io::Raw(raw) = self.io()? {
            let room = buf.chunk_mut().len();
            match net::read_via_buffer(&mut raw_ref(&raw)?, buf, room) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                read => return Poll::Ready(read),
            }
        }
        net::poll_read(self.waiting()?, cx, buf)
    }

    /// Makes room in `buf` (at least 1 KiB spare, growing by `chunk`), then
    /// [`Self::poll_read`]s.
    pub fn poll_fill(&self, cx: &mut Context<'_>, buf: &mut BytesMut, chunk: usize) -> Poll<io::Result<usize>> {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(chunk);
        }
        self.poll_read(cx, buf)
    }

    /// Reads what the socket has now into `buf`, without waiting (`WouldBlock`: nothing).
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io()? {
            Io::Raw(raw) => raw_ref(&raw)?.read(buf),
            Io::Waited(tcp) => tcp.try_read(buf),
        }
    }

    /// Writes what the socket takes of `data` now, without waiting (`WouldBlock`: no room).
    pub fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self.io()? {
            Io::Raw(raw) => raw_ref(&raw)?.write(data),
            Io::Waited(tcp) => tcp.try_write(data),
        }
    }

    /// Ready once the socket may take more bytes (registering it).
    pub async fn writable(&self) -> io::Result<()> {
        self.waiting()?.writable().await
    }

    /// Writes some of `data`.
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |w| w.write(data), |tcp| tcp.try_write(data))
    }

    /// Writes some of `bufs`, in order.
    pub fn poll_write_vectored(&self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |w| w.write_vectored(bufs), |tcp| tcp.try_write_vectored(bufs))
    }

    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        mut raw_write: impl FnMut(&mut &std::net::TcpStream) -> io::Result<usize>,
        mut try_write: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        if self.waited.get().is_none()
            && let Io::Raw(raw) = self.io()?
        {
            match raw_write(&mut raw_ref(&raw)?) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
        let tcp = self.waiting()?;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match try_write(tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    /// Ends the write side (sends the FIN).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self.io()? {
            Io::Raw(raw) => raw_ref(&raw)?.shutdown(Shutdown::Write),
            Io::Waited(tcp) => socket2::SockRef::from(tcp).shutdown(Shutdown::Write),
        }
    }
}

fn raw_ref<'a>(raw: &'a MutexGuard<'_, Option<std::net::TcpStream>>) -> io::Result<&'a std::net::TcpStream> {
    raw.as_ref().ok_or_else(|| io::Error::other("socket lost in registration"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> io::Result<(Socket, TcpStream)> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?).await?;
        let (server, _) = listener.accept()?;
        server.set_nonblocking(true)?;
        Ok((Socket::new(server), client))
    }

    #[tokio::test]
    async fn reads_and_writes_without_registering_until_a_wait() -> io::Result<()> {
        let (socket, mut client) = pair().await?;
        client.write_all(b"hello").await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut buf = BytesMut::new();
        assert_eq!(socket.read_now(&mut buf)?, 5);
        assert_eq!(&buf[..], b"hello");
        assert!(socket.waited.get().is_none(), "a read that found bytes registers nothing");
        assert_eq!(socket.try_write(b"world")?, 5);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await?;
        assert_eq!(&got, b"world");
        assert!(socket.waited.get().is_none());
        // Nothing to read: the read waits, registered, and wakes when bytes come.
        let reader = async {
            let mut more = BytesMut::new();
            let n = std::future::poll_fn(|cx| socket.poll_fill(cx, &mut more, 1024)).await?;
            Ok::<_, io::Error>((n, more))
        };
        let writer = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            client.write_all(b"again").await
        };
        let (read, written) = tokio::join!(reader, writer);
        written?;
        let (n, more) = read?;
        assert_eq!((n, &more[..]), (5, &b"again"[..]));
        assert!(socket.waited.get().is_some(), "a wait registers the socket");
        // Registered, it still reads and writes.
        assert_eq!(socket.try_write(b"!")?, 1);
        client.read_exact(&mut got[..1]).await?;
        assert_eq!(got[0], b'!');
        socket.shutdown_write()?;
        assert_eq!(client.read(&mut got).await?, 0, "the FIN reached the client");
        Ok(())
    }

    #[tokio::test]
    async fn a_write_the_socket_cannot_take_waits_for_room() -> io::Result<()> {
        let (socket, mut client) = pair().await?;
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        // Fill the socket until a write would block, then wait for room while the client reads.
        while let Poll::Ready(n) = std::future::poll_fn(|cx| Poll::Ready(socket.poll_write(cx, &chunk))).await {
            sent += n?;
        }
        assert!(socket.waited.get().is_some(), "a full socket registers it");
        let reader = async {
            let mut got = vec![0u8; sent + 1];
            client.read_exact(&mut got).await.map(|_| got)
        };
        let writer = std::future::poll_fn(|cx| socket.poll_write(cx, &chunk[..1]));
        let (got, written) = tokio::join!(reader, writer);
        assert_eq!(written?, 1);
        assert!(got?.iter().all(|&b| b == 7));
        Ok(())
    }
}
