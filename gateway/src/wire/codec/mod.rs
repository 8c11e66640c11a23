//! HTTP/1.1 message framing shared by the gateway's two HTTP/1.1 sides — the server side
//! that reads clients' requests ([`crate::wire::server`]) and the upstream codec that reads
//! responses ([`crate::wire::h1`]): the framing-relevant header fields, and a body decoder
//! (length, chunked, until close) that works on a connection's read buffer, one step at a
//! time, leaving reading the socket to its caller.

use bytes::{Bytes, BytesMut};

use chunk::Line;

pub mod chunk;
#[doc(hidden)]
pub mod pieces;

/// Longest chunk-size line (size, extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section accepted (trailers are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;
/// Most trailer fields accepted.
const MAX_TRAILER_FIELDS: usize = 100;

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
    /// A response field the gateway sets itself: `X-Request-ID`, `Retry-After`, `RateLimit`,
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
            9 if is(b"ratelimit") => Self::GatewaySet,
            10 if is(b"connection") => Self::Connection,
            10 if is(b"keep-alive") => Self::HopByHop,
            11 if is(b"retry-after") => Self::GatewaySet,
            12 if is(b"x-request-id") => Self::GatewaySet,
            14 if is(b"content-length") => Self::ContentLength,
            14 if is(b"http2-settings") => Self::HopByHop,
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

    /// Whether the field decides where a message's body ends.
    pub fn is_framing(self) -> bool {
        matches!(self, Self::ContentLength | Self::TransferEncoding)
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
                // One field, one number (nginx refuses lists and repeated fields alike).
                self.bad_length = if self.length.is_some() || self.bad_length.is_some() {
                    Some("Content-Length appears more than once")
                } else {
                    match parse_length(value.trim_ascii()) {
                        Some(n) => {
                            self.length = Some(n);
                            None
                        }
                        None => Some("Content-Length is invalid"),
                    }
                };
            }
            Field::TransferEncoding => {
                // Several fields are one list: the last coding of the last field counts. An
                // empty list element (`chunked,`) is a coding nobody knows.
                let before = self.transfer;
                let mut codings = tokens();
                let last = codings.next_back();
                let only = codings.next().is_none() && before.is_none();
                self.transfer = Some(match last {
                    _ if tokens().any(<[u8]>::is_empty) => Transfer::Other,
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
    /// A chunk-size line, of which the buffer's first `scanned` bytes hold no line end.
    ChunkSize {
        scanned: u16,
    },
    ChunkData(u64),
    ChunkEnd,
    /// The trailer section: `seen` bytes and `fields` lines of it so far.
    Trailers {
        seen: u16,
        fields: u8,
        scanned: u16,
    },
    /// Until the peer closes the connection (responses only).
    UntilClose,
    Done,
    /// The framing was found broken: nothing more is read from this stream (its
    /// connection cannot be used again: where the next message starts is unknown).
    Failed,
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
    /// The start of a chunked body.
    pub const CHUNKED: Self = Self::ChunkSize { scanned: 0 };

    /// Decodes from the front of `buf` (consuming it) until a data frame, the end of the
    /// body, or a need for more bytes. An error leaves the decoder [`Decode::Failed`].
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, &'static str> {
        let stepped = self.step_framed(buf);
        if stepped.is_err() {
            *self = Self::Failed;
        }
        stepped
    }

    fn step_framed(&mut self, buf: &mut BytesMut) -> Result<Step, &'static str> {
        loop {
            match *self {
                Self::Done => return Ok(Step::Done),
                Self::Failed => return Err("the message framing is broken"),
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
                Self::ChunkSize { scanned } => match chunk::take_line(buf, scanned.into(), MAX_CHUNK_LINE)? {
                    Line::Done(line) => {
                        let size = chunk::parse_size_line(&line)?;
                        *self = if size == 0 {
                            Self::Trailers { seen: 0, fields: 0, scanned: 0 }
                        } else {
                            Self::ChunkData(size)
                        };
                    }
                    Line::More { scanned } => {
                        *self = Self::ChunkSize { scanned: short(scanned) };
                        return Ok(Step::More);
                    }
                },
                Self::ChunkEnd => {
                    if buf.len() < 2 {
                        return match buf.first() {
                            Some(b'\r') | None => Ok(Step::More),
                            Some(_) => Err("a chunk is longer than its size"),
                        };
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("a chunk is longer than its size");
                    }
                    let _ = buf.split_to(2);
                    *self = Self::CHUNKED;
                }
                Self::Trailers { seen, fields, scanned } => {
                    if let Some(step) = self.trailer(buf, seen, fields, scanned)? {
                        return Ok(step);
                    }
                }
                Self::UntilClose if buf.is_empty() => return Ok(Step::More),
                Self::UntilClose => return Ok(Step::Data(buf.split().freeze())),
            }
        }
    }

    /// One trailer line: the section ends at an empty line. Trailers are checked as field
    /// lines and bounded (bytes and lines), then dropped: they are not forwarded.
    fn trailer(
        &mut self,
        buf: &mut BytesMut,
        seen: u16,
        fields: u8,
        scanned: u16,
    ) -> Result<Option<Step>, &'static str> {
        let room = MAX_TRAILERS.saturating_sub(usize::from(seen));
        match chunk::take_line(buf, scanned.into(), room)? {
            Line::Done(line) if line.is_empty() => *self = Self::Done,
            Line::Done(line) => {
                chunk::check_field_line(&line)?;
                let seen = usize::from(seen) + line.len() + 2;
                if seen > MAX_TRAILERS || usize::from(fields) >= MAX_TRAILER_FIELDS {
                    return Err("the trailer section is too large");
                }
                *self = Self::Trailers { seen: short(seen), fields: fields + 1, scanned: 0 };
            }
            Line::More { scanned } => {
                *self = Self::Trailers { seen, fields, scanned: short(scanned) };
                return Ok(Some(Step::More));
            }
        }
        Ok(None)
    }

    /// The peer closed the connection: the end of an until-close body, else a cut-off one.
    pub fn at_eof(&mut self) -> bool {
        let complete = matches!(self, Self::UntilClose | Self::Done);
        *self = if complete { Self::Done } else { Self::Failed };
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

/// A line length or offset, bounded by the line limits (all below `u16::MAX`).
fn short(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
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
mod proptests;
#[cfg(test)]
mod tests;
