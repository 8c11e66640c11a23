//! HTTP/1.1 message framing shared by the gateway's two HTTP/1.1 sides — the server side
//! that reads clients' requests ([`crate::server`]) and the upstream codec that reads
//! responses ([`crate::proxy::h1`]): the framing-relevant header fields, and a body decoder
//! (length, chunked, until close) that works on a connection's read buffer, one step at a
//! time, leaving reading the socket to its caller.

use bytes::{Bytes, BytesMut};

/// Longest chunk-size line (size, extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section accepted (trailers are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// The header fields that decide a message's framing and its connection's persistence,
/// noted while its head is parsed (no lookups afterwards).
#[derive(Default)]
pub struct Seen {
    /// Whether `Transfer-Encoding` is present and, if so, whether `chunked` is its only coding.
    pub transfer: Option<Transfer>,
    pub length: Option<u64>,
    pub bad_length: Option<&'static str>,
    pub close: bool,
    pub keep_alive: bool,
    /// Whether `Connection` names other fields (hop-by-hop for this message).
    pub names_others: bool,
    /// `Host` fields seen (requests).
    pub hosts: u8,
    /// `Expect: 100-continue` (requests).
    pub expect_continue: bool,
}

/// What `Transfer-Encoding` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// `chunked`, and nothing else.
    Chunked,
    /// `chunked` last, after other codings.
    ChunkedLast,
    /// Anything that does not end in `chunked`.
    Other,
}

/// The header fields HTTP/1.1 handling must recognise, by name in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    Host,
    Expect,
    Date,
    Upgrade,
    /// The rest of the fixed hop-by-hop set (RFC 9110 §7.6.1, and `Keep-Alive`,
    /// `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization` by practice).
    HopByHop,
    /// A response field the gateway sets itself: `X-Request-ID`, `Retry-After`,
    /// `RateLimit-*`, `X-RateLimit-*`.
    GatewaySet,
    Other,
}

impl Field {
    /// Classifies a field name: one length dispatch, then at most a few comparisons.
    pub fn of(name: &[u8]) -> Self {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        let starts = |prefix: &[u8]| name.len() > prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix);
        let known = match name.len() {
            2 if is(b"te") => Self::HopByHop,
            4 if is(b"host") => Self::Host,
            4 if is(b"date") => Self::Date,
            6 if is(b"expect") => Self::Expect,
            7 if is(b"upgrade") => Self::Upgrade,
            7 if is(b"trailer") => Self::HopByHop,
            10 if is(b"connection") => Self::Connection,
            10 if is(b"keep-alive") => Self::HopByHop,
            11 if is(b"retry-after") => Self::GatewaySet,
            12 if is(b"x-request-id") => Self::GatewaySet,
            14 if is(b"content-length") => Self::ContentLength,
            16 if is(b"proxy-connection") => Self::HopByHop,
            17 if is(b"transfer-encoding") => Self::TransferEncoding,
            18 if is(b"proxy-authenticate") => Self::HopByHop,
            19 if is(b"proxy-authorization") => Self::HopByHop,
            _ => Self::Other,
        };
        if known == Self::Other && (starts(b"ratelimit-") || starts(b"x-ratelimit-")) {
            return Self::GatewaySet;
        }
        known
    }

    /// Whether the field describes the connection (never passed on), `Upgrade` included.
    pub fn is_hop_by_hop(self) -> bool {
        matches!(self, Self::Connection | Self::TransferEncoding | Self::Upgrade | Self::HopByHop)
    }
}

impl Seen {
    /// Notes one field.
    pub fn note(&mut self, field: Field, value: &[u8]) {
        let tokens = || value.split(|b| *b == b',').map(<[u8]>::trim_ascii);
        match field {
            Field::ContentLength => {
                for part in tokens() {
                    match parse_length(part) {
                        None => self.bad_length = Some("Content-Length is invalid"),
                        Some(n) if self.length.is_some_and(|l| l != n) => {
                            self.bad_length = Some("Content-Length values differ");
                        }
                        Some(n) => self.length = Some(n),
                    }
                }
            }
            Field::TransferEncoding => {
                // Several fields are one list: the last coding of the last field counts.
                let before = self.transfer;
                let mut codings = tokens().filter(|t| !t.is_empty());
                let last = codings.next_back();
                let only = codings.next().is_none() && before.is_none();
                self.transfer = Some(match last {
                    Some(t) if t.eq_ignore_ascii_case(b"chunked") && only => Transfer::Chunked,
                    Some(t) if t.eq_ignore_ascii_case(b"chunked") => Transfer::ChunkedLast,
                    _ => Transfer::Other,
                });
            }
            Field::Connection => {
                let mut others = false;
                for t in tokens() {
                    let close = t.eq_ignore_ascii_case(b"close");
                    let keep_alive = t.eq_ignore_ascii_case(b"keep-alive");
                    self.close |= close;
                    self.keep_alive |= keep_alive;
                    others |= !(close || keep_alive || t.is_empty());
                }
                self.names_others |= others;
            }
            Field::Host => self.hosts = self.hosts.saturating_add(1),
            Field::Expect => self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue"),
            _ => {}
        }
    }
}

/// A `Content-Length` value: decimal digits only.
pub fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// Where a body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers(usize),
    /// Until the peer closes the connection (responses only).
    UntilClose,
    Done,
}

/// What one decoding step produced.
pub enum Step {
    Data(Bytes),
    /// The buffer holds too little: read more (end of stream ends an until-close body, and
    /// is an error for every other state — see [`Decode::at_eof`]).
    More,
    Done,
}

impl Decode {
    /// Decodes from the front of `buf` (consuming it) until a data frame, the end of the
    /// body, or a need for more bytes.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, &'static str> {
        loop {
            match *self {
                Self::Done => return Ok(Step::Done),
                Self::Length(0) => *self = Self::Done,
                Self::Length(left) | Self::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    *self = match *self {
                        Self::Length(_) if left == 0 => Self::Done,
                        Self::Length(_) => Self::Length(left),
                        _ if left == 0 => Self::ChunkEnd,
                        _ => Self::ChunkData(left),
                    };
                    return Ok(Step::Data(data));
                }
                Self::ChunkSize => match take_line(buf, MAX_CHUNK_LINE)? {
                    Some(line) => {
                        let size = parse_chunk_size(&line)?;
                        *self = if size == 0 { Self::Trailers(0) } else { Self::ChunkData(size) };
                    }
                    None => return Ok(Step::More),
                },
                Self::ChunkEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("a chunk is malformed");
                    }
                    let _ = buf.split_to(2);
                    *self = Self::ChunkSize;
                }
                Self::Trailers(seen) => match take_line(buf, MAX_TRAILERS - seen)? {
                    // Trailers end at an empty line; they are not forwarded.
                    Some(line) if line.is_empty() => *self = Self::Done,
                    Some(line) => *self = Self::Trailers(seen + line.len() + 2),
                    None => return Ok(Step::More),
                },
                Self::UntilClose if buf.is_empty() => return Ok(Step::More),
                Self::UntilClose => return Ok(Step::Data(buf.split().freeze())),
            }
        }
    }

    /// The peer closed the connection: the end of an until-close body, else a cut-off one.
    pub fn at_eof(&mut self) -> bool {
        let complete = matches!(self, Self::UntilClose | Self::Done);
        *self = Self::Done;
        complete
    }

    /// Bytes still expected, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Self::Done => Some(0),
            Self::Length(n) => Some(*n),
            _ => None,
        }
    }
}

/// The next CRLF-terminated line, without its CRLF, once complete.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, &'static str> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(at) if at <= max => {
            let line = buf.split_to(at);
            let _ = buf.split_to(2);
            Ok(Some(line))
        }
        Some(_) => Err("a chunk line is too long"),
        None if buf.len() > max => Err("a chunk line is too long"),
        None => Ok(None),
    }
}

/// A chunk size: hex digits, then optional extensions (ignored).
fn parse_chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    const BAD: &str = "a chunk size is invalid";
    let digits = line.split(|b| *b == b';').next().unwrap_or_default().trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 {
        return Err(BAD);
    }
    digits.iter().try_fold(0u64, |n, d| {
        let v = char::from(*d).to_digit(16).ok_or(BAD)?;
        Ok((n << 4) | u64::from(v))
    })
}

/// Appends each of `parts` (a header line in pieces, say).
pub fn put(out: &mut Vec<u8>, parts: &[&[u8]]) {
    parts.iter().for_each(|p| out.extend_from_slice(p));
}

/// Appends a body frame, chunk-framed when `chunked`.
pub fn put_chunk(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        put_chunk_size(out, data.len());
        put(out, &[data, b"\r\n"]);
    } else {
        out.extend_from_slice(data);
    }
}

/// Appends a chunk's size line (the data and its CRLF follow).
pub fn put_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut size = [0u8; 16];
    put(out, &[hex_len(len, &mut size), b"\r\n"]);
}

fn hex_len(mut n: usize, buf: &mut [u8; 16]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(mut state: Decode, input: &[u8]) -> Result<(Vec<u8>, Decode, usize), &'static str> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match state.step(&mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::More | Step::Done => return Ok((out, state, buf.len())),
            }
        }
    }

    #[test]
    fn chunk_sizes_and_lengths_parse_strictly() {
        assert_eq!(parse_chunk_size(b"1aF").ok(), Some(0x1af));
        assert_eq!(parse_chunk_size(b"10;name=value").ok(), Some(16));
        assert!(parse_chunk_size(b"").is_err());
        assert!(parse_chunk_size(b"g").is_err());
        assert!(parse_chunk_size(b"ffffffffffffffff").is_err(), "overflow");
        assert_eq!(parse_length(b"0012"), Some(12));
        assert_eq!(parse_length(b"+1"), None);
        assert_eq!(parse_length(b"99999999999999999999"), None, "overflow");
    }

    #[test]
    fn chunked_bodies_decode_and_stop_at_their_end() -> Result<(), &'static str> {
        let (data, state, left) =
            decode_all(Decode::ChunkSize, b"3\r\nabc\r\na;x=y\r\n0123456789\r\n0\r\nT: v\r\n\r\nNEXT")?;
        assert_eq!((data.as_slice(), state, left), (&b"abc0123456789"[..], Decode::Done, 4));
        // Incomplete input asks for more, keeping its place.
        let (data, state, _) = decode_all(Decode::ChunkSize, b"5\r\nab")?;
        assert_eq!((data.as_slice(), state), (&b"ab"[..], Decode::ChunkData(3)));
        assert!(decode_all(Decode::ChunkSize, b"3\r\nabcXY").is_err(), "chunk without CRLF");
        assert!(decode_all(Decode::ChunkSize, &[b'1'; 5000]).is_err(), "endless size line");
        let (data, state, left) = decode_all(Decode::Length(3), b"abcdef")?;
        assert_eq!((data.as_slice(), state, left), (&b"abc"[..], Decode::Done, 3));
        Ok(())
    }

    #[test]
    fn end_of_stream_completes_only_until_close_bodies() {
        assert!(Decode::UntilClose.at_eof());
        assert!(!Decode::Length(3).at_eof());
        assert!(!Decode::ChunkSize.at_eof());
        let mut out = Vec::new();
        put_chunk(&mut out, &[b'x'; 300], true);
        assert!(out.starts_with(b"12c\r\nxx") && out.ends_with(b"x\r\n"));
    }

    #[test]
    fn field_names_are_recognised_in_any_case() {
        let cases: [(&[u8], Field); 14] = [
            (b"Content-Length", Field::ContentLength),
            (b"TRANSFER-ENCODING", Field::TransferEncoding),
            (b"connection", Field::Connection),
            (b"Host", Field::Host),
            (b"te", Field::HopByHop),
            (b"Keep-Alive", Field::HopByHop),
            (b"Proxy-Authorization", Field::HopByHop),
            (b"upgrade", Field::Upgrade),
            (b"X-Request-Id", Field::GatewaySet),
            (b"RateLimit-Reset", Field::GatewaySet),
            (b"x-ratelimit-limit-minute", Field::GatewaySet),
            (b"ratelimit-", Field::Other),
            (b"x-hosts", Field::Other),
            (b"content-type", Field::Other),
        ];
        for (name, field) in cases {
            assert_eq!(Field::of(name), field, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn transfer_codings_are_classified() {
        let seen = |values: &[&'static str]| {
            let mut s = Seen::default();
            values.iter().for_each(|v| s.note(Field::of(b"Transfer-Encoding"), v.as_bytes()));
            s.transfer
        };
        assert_eq!(seen(&["chunked"]), Some(Transfer::Chunked));
        assert_eq!(seen(&["Chunked "]), Some(Transfer::Chunked));
        assert_eq!(seen(&["gzip, chunked"]), Some(Transfer::ChunkedLast));
        assert_eq!(seen(&["gzip", "chunked"]), Some(Transfer::ChunkedLast));
        assert_eq!(seen(&["chunked, gzip"]), Some(Transfer::Other));
        assert_eq!(seen(&["gzip"]), Some(Transfer::Other));
        assert_eq!(seen(&[]), None);
    }
}
