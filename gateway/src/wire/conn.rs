//! A client connection as the HTTP/1.1 server drives it: a plain TCP socket, or TLS (rustls)
//! over one. Both are used through `&self` — a request body is read while the server loop
//! holds the same connection to write — with readiness-based reads and writes, so the
//! server's loop, its timeouts and its framing rules are the same code for both.
//!
//! TLS keeps the connection state (`rustls::ServerConnection`) under a mutex that is only
//! held while bytes are moved in or out of it, never across an await.

use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use rustls::pki_types::CertificateDer;
use rustls::{ServerConfig, ServerConnection};
use sha2::Digest;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::socket::Socket;

/// A client connection.
pub enum Conn {
    Tcp(Socket),
    Tls(Box<TlsConn>),
}

/// The certificate chain a TLS client presented, leaf first. The handshake proved only that
/// the client holds the leaf's private key; whether an API trusts the chain is judged per
/// request by whoever handles it, and its verdicts are remembered here for the connection.
pub struct ClientCert {
    pub chain: Vec<CertificateDer<'static>>,
    /// SHA-256 of the leaf's DER bytes.
    pub sha256: [u8; 32],
    verdicts: Mutex<Vec<Verdict>>,
}

/// A judgement of the chain: by whom (an id the judge chose), when, and its outcome.
#[derive(Clone, Copy)]
struct Verdict {
    by: u64,
    at: Instant,
    outcome: Result<(), &'static str>,
}

/// Most verdicts a connection remembers (one per API it called with the certificate).
const MAX_VERDICTS: usize = 16;

impl ClientCert {
    /// A presented chain (leaf first; `None` when empty).
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Option<Self> {
        let leaf = chain.first()?;
        let sha256 = sha2::Sha256::digest(leaf.as_ref()).into();
        Some(Self { chain, sha256, verdicts: Mutex::new(Vec::new()) })
    }

    /// The outcome judge `by` gave less than `max_age` ago, if any.
    pub fn verdict(&self, by: u64, max_age: Duration) -> Option<Result<(), &'static str>> {
        let verdicts = self.verdicts.lock().ok()?;
        verdicts.iter().find(|v| v.by == by && v.at.elapsed() < max_age).map(|v| v.outcome)
    }

    /// Remembers judge `by`'s outcome (the oldest verdict makes room when full).
    pub fn remember(&self, by: u64, outcome: Result<(), &'static str>) {
        let Ok(mut verdicts) = self.verdicts.lock() else { return };
        verdicts.retain(|v| v.by != by);
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.remove(0);
        }
        verdicts.push(Verdict { by, at: Instant::now(), outcome });
    }
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert").field("certificates", &self.chain.len()).finish_non_exhaustive()
    }
}

/// TLS over a TCP socket, after the handshake.
pub struct TlsConn {
    tcp: TcpStream,
    tls: Mutex<ServerConnection>,
}

impl Conn {
    /// Reads what the connection has into `buf` (growing it by `chunk` when less than 1 KiB
    /// is spare); `Ok(0)` is the end of the stream.
    pub fn poll_fill(&self, cx: &mut Context<'_>, buf: &mut BytesMut, chunk: usize) -> Poll<io::Result<usize>> {
        match self {
            Conn::Tcp(s) => s.poll_fill(cx, buf, chunk),
            Conn::Tls(t) => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(chunk);
                }
                t.poll_read(cx, buf)
            }
        }
    }

    /// Reads into any buffer (see [`Self::poll_fill`]).
    pub fn poll_read(&self, cx: &mut Context<'_>, buf: &mut impl BufMut) -> Poll<io::Result<usize>> {
        match self {
            Conn::Tcp(s) => s.poll_read(cx, buf),
            Conn::Tls(t) => t.poll_read(cx, buf),
        }
    }

    /// Writes some of `data` (for TLS: takes it into the connection's send buffer, which is
    /// bounded, and starts sending it; [`Self::poll_flush`] finishes).
    pub fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Conn::Tcp(s) => s.poll_write(cx, data),
            Conn::Tls(t) => t.poll_write(cx, data),
        }
    }

    /// Ready once everything written has been handed to the socket.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Conn::Tcp(_) => Poll::Ready(Ok(())),
            Conn::Tls(t) => t.poll_flush(cx),
        }
    }

    /// Ends the write side (TLS: a `close_notify` alert first).
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Conn::Tcp(s) => Poll::Ready(s.shutdown_write()),
            Conn::Tls(t) => {
                t.lock()?.send_close_notify();
                ready!(t.poll_flush(cx))?;
                std::pin::Pin::new(&mut t.tcp).poll_shutdown(cx)
            }
        }
    }

    /// [`Self::poll_shutdown`], awaited.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_shutdown(cx)).await
    }

    /// Reads what the TCP socket underneath has now, without waiting and past TLS (to see
    /// whether the client is still sending as the connection closes).
    pub fn try_read_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.try_read(buf),
            Conn::Tls(t) => t.tcp.try_read(buf),
        }
    }

    /// Reads raw bytes from the TCP socket underneath (past TLS), to throw away what a
    /// client sends after a shutdown (lingering).
    pub fn poll_read_raw(&self, cx: &mut Context<'_>, buf: &mut impl BufMut) -> Poll<io::Result<usize>> {
        match self {
            Conn::Tcp(s) => s.poll_read(cx, buf),
            Conn::Tls(t) => super::net::poll_read(&t.tcp, cx, buf),
        }
    }
}

/// Reads and writes on a TCP socket that never wait: `WouldBlock` when it has nothing (or
/// no room), as rustls's `read_tls`/`write_tls` expect.
struct TryIo<'a>(&'a TcpStream);

impl Read for TryIo<'_> {
    /// A short read clears tokio's readiness ([`super::net::read_draining`]), as plain
    /// connections' reads do.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        super::net::read_draining(self.0, buf.len(), || self.0.try_read(buf))
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Bytes of TLS records the send buffer holds before writes wait for the socket.
const SEND_BUFFER: usize = 64 * 1024;

impl TlsConn {
    /// Runs the server side of a TLS handshake on `tcp`. A client that stalls is bounded by
    /// the caller (the header-read timeout); a failed handshake sends its alert first.
    pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let mut tls = ServerConnection::new(config).map_err(tls_error)?;
        tls.set_buffer_limit(Some(SEND_BUFFER));
        // The ClientHello is usually waiting already: the first read is tried at once.
        let mut first = true;
        loop {
            flush_blocking(&tcp, &mut tls).await?;
            if !tls.is_handshaking() {
                break;
            }
            let read = if std::mem::take(&mut first) {
                tls.read_tls(&mut super::net::Unwaited(&tcp))
            } else {
                tcp.readable().await?;
                tls.read_tls(&mut TryIo(&tcp))
            };
            match read {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = tls.process_new_packets() {
                // The alert telling the client why, on a best-effort basis.
                let _ = flush_blocking(&tcp, &mut tls).await;
                return Err(tls_error(e));
            }
        }
        Ok(Self { tcp, tls: Mutex::new(tls) })
    }

    /// The chain the client presented, if it did.
    pub fn client_cert(&self) -> Option<ClientCert> {
        let tls = self.lock().ok()?;
        let chain = tls.peer_certificates()?.iter().map(|c| c.clone().into_owned()).collect();
        ClientCert::new(chain)
    }

    /// Whether the handshake agreed on HTTP/2 (ALPN `h2`).
    pub fn is_h2(&self) -> bool {
        self.lock().is_ok_and(|tls| tls.alpn_protocol() == Some(b"h2"))
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, ServerConnection>> {
        self.tls.lock().map_err(|_| io::Error::other("TLS state poisoned"))
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut impl BufMut) -> Poll<io::Result<usize>> {
        let mut tls = self.lock()?;
        loop {
            // Plaintext already decrypted comes first.
            match tls.reader().fill_buf() {
                Ok([]) => return Poll::Ready(Ok(0)),
                Ok(chunk) => {
                    let n = chunk.len().min(buf.remaining_mut());
                    buf.put_slice(&chunk[..n]);
                    tls.reader().consume(n);
                    return Poll::Ready(Ok(n));
                }
                // The client closed the TCP connection without `close_notify`.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(0)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match tls.read_tls(&mut TryIo(&self.tcp)) {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        let _ = poll_flush_tls(&self.tcp, &mut tls, cx);
                        return Poll::Ready(Err(tls_error(e)));
                    }
                    // A key update to answer: sent now if the socket takes it, else with
                    // the next write.
                    if tls.wants_write() {
                        let _ = poll_flush_tls(&self.tcp, &mut tls, cx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut tls = self.lock()?;
        // Records already queued go first, so the send buffer stays bounded.
        ready!(poll_flush_tls(&self.tcp, &mut tls, cx))?;
        let n = tls.writer().write(data)?;
        if let Poll::Ready(Err(e)) = poll_flush_tls(&self.tcp, &mut tls, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut tls = self.lock()?;
        poll_flush_tls(&self.tcp, &mut tls, cx)
    }
}

/// Sends the TLS records `tls` has queued, as far as the socket takes them.
fn poll_flush_tls(tcp: &TcpStream, tls: &mut ServerConnection, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    while tls.wants_write() {
        match tls.write_tls(&mut TryIo(tcp)) {
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                ready!(tcp.poll_write_ready(cx))?;
            }
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    Poll::Ready(Ok(()))
}

async fn flush_blocking(tcp: &TcpStream, tls: &mut ServerConnection) -> io::Result<()> {
    std::future::poll_fn(|cx| poll_flush_tls(tcp, tls, cx)).await
}
