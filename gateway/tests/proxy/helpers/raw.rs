//! Raw HTTP/1.1 over a `TcpStream` or over TLS, for tests about bytes on the wire: malformed
//! framing, partial heads, hop-by-hop headers as sent, upgrades. Every read is bounded by a
//! deadline. Over TLS every `send` is flushed: each one goes out as TLS records of its own.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{WAIT, within};

/// A response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// The write half of a connection.
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A client connection with a read buffer.
pub struct Raw {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    writer: Option<Writer>,
    buf: Vec<u8>,
}

/// How a wait for the peer to close ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// EOF or reset, after these bytes.
    Yes(Vec<u8>),
    /// Still open when the deadline passed.
    No,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let stream = within(WAIT, "connect", TcpStream::connect(addr)).await.expect("connect");
        let (reader, writer) = stream.into_split();
        Raw { reader: Box::new(reader), writer: Some(Box::new(writer)), buf: Vec::new() }
    }

    /// Connects over TLS with the client settings `config`, asking for `name` (SNI).
    pub async fn connect_tls_with(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        name: &str,
    ) -> std::io::Result<Raw> {
        let tls = within(WAIT, "TLS handshake", tls_stream_with(addr, config, name)).await?;
        let (reader, writer) = tokio::io::split(tls);
        Ok(Raw { reader: Box::new(reader), writer: Some(Box::new(writer)), buf: Vec::new() })
    }

    /// Connects over TLS, trusting only `ca` (DER), asking for `name` (SNI) and offering
    /// `alpn`.
    pub async fn connect_tls(addr: SocketAddr, ca: &[u8], name: &str, alpn: &[&[u8]]) -> Raw {
        let tls = within(WAIT, "TLS handshake", tls_stream(addr, ca, name, alpn)).await.expect("TLS handshake");
        let (reader, writer) = tokio::io::split(tls);
        Raw { reader: Box::new(reader), writer: Some(Box::new(writer)), buf: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let writer = self.writer.as_mut().expect("the writer was taken");
        let sent = async {
            writer.write_all(bytes).await?;
            writer.flush().await
        };
        within(WAIT, "write", sent).await.expect("write");
    }

    /// Sends `bytes`, returning whether the peer took them all.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        let writer = self.writer.as_mut().expect("the writer was taken");
        let sent = async {
            writer.write_all(bytes).await?;
            writer.flush().await
        };
        matches!(tokio::time::timeout(WAIT, sent).await, Ok(Ok(())))
    }

    /// The write half, for writing from another task while this one reads.
    pub fn take_writer(&mut self) -> Writer {
        self.writer.take().expect("the writer was taken")
    }

    /// Reads at least one more byte into the buffer; `false` on EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match within(WAIT, "bytes from the peer", self.reader.read(&mut chunk)).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response (head and body, framed by `Content-Length`, chunked, or — with
    /// neither — nothing for 1xx/204/304 and the rest of the connection otherwise).
    pub async fn response(&mut self) -> RawResponse {
        let mut res = self.response_head().await;
        res.body = self.body(&res).await;
        res
    }

    /// Reads one response, or `None` when the connection closed before a response head.
    pub async fn try_response(&mut self) -> Option<RawResponse> {
        while find(&self.buf, b"\r\n\r\n").is_none() {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.response().await)
    }

    /// Reads one response head, for an answer that has no body whatever its headers say
    /// (to `HEAD`).
    pub async fn response_head(&mut self) -> RawResponse {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill().await, "connection closed before a response head: {:?}", self.text_so_far());
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        RawResponse { status, headers, body: Vec::new() }
    }

    async fn body(&mut self, res: &RawResponse) -> Vec<u8> {
        if let Some(len) = res.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            while self.buf.len() < len {
                assert!(self.fill().await, "connection closed inside a body");
            }
            return self.buf.drain(..len).collect();
        }
        if res.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            return self.chunked().await;
        }
        if res.status < 200 || res.status == 204 || res.status == 304 {
            return Vec::new();
        }
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    async fn chunked(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                assert!(self.fill().await, "connection closed inside a chunk size");
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("chunk size");
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                assert!(self.fill().await, "connection closed inside a chunk");
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }

    /// Waits up to `limit` for the peer to close the connection.
    pub async fn closed_within(&mut self, limit: Duration) -> Closed {
        let wait = async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(()) => Closed::Yes(std::mem::take(&mut self.buf)),
            Err(_) => Closed::No,
        }
    }

    /// Reads exactly `n` bytes (after anything already buffered).
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection closed early");
        }
        self.buf.drain(..n).collect()
    }

    /// Whether any byte arrives within `limit` (buffered bytes count).
    pub async fn anything_within(&mut self, limit: Duration) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(limit, self.reader.read(&mut chunk)).await {
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Ok(Err(_)) => true,
            Err(_) => false,
        }
    }

    fn text_so_far(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// Index of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends one `GET path` with `Connection: close` on a fresh connection and reads the answer.
pub async fn get(addr: SocketAddr, path: &str, host: &str) -> RawResponse {
    let mut raw = Raw::connect(addr).await;
    raw.send(format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes()).await;
    raw.response().await
}

/// A TLS client connection trusting only `ca` (DER).
pub async fn tls_stream(
    addr: SocketAddr,
    ca: &[u8],
    name: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(ca.to_vec())).map_err(std::io::Error::other)?;
    let mut config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tls_stream_with(addr, Arc::new(config), name).await
}

/// A TLS client connection with the client settings `config`.
pub async fn tls_stream_with(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let server = rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(std::io::Error::other)?;
    connector.connect(server, TcpStream::connect(addr).await?).await
}
