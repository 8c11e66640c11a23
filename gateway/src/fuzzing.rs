//! Entry points for the fuzz targets in `gateway/fuzz` (see `docs/fuzzing.md`): the
//! gateway's pure HTTP/1.1 parsing, reachable without a socket. Not an API: nothing here
//! is for use outside the fuzz targets.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::{Method, Version};

pub use crate::router::oracle::percent_decode;
pub use crate::wire::codec::pieces::{Outcome, decode_in_pieces};
pub use crate::wire::codec::{Decode, Field, Seen, Step, Transfer, chunk, parse_length};
pub use crate::wire::h1::Framing;

/// Header fields parsed at most (the server's and the upstream codec's bound).
const MAX_HEADERS: usize = 100;

/// What a request head says, as far as framing goes.
pub struct RequestHead {
    pub version: Version,
    /// Each field as sent (name, value), in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The framing-relevant fields, noted one by one as the server notes them.
    pub seen: Seen,
    /// The head's length in bytes.
    pub len: usize,
}

/// Parses a request head as the server does before its own checks: `httparse`, then each
/// field classified ([`Field::of`]) and noted ([`Seen::note`]). `Ok(None)`: incomplete.
pub fn request_head(bytes: &[u8]) -> Result<Option<RequestHead>, httparse::Error> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(bytes, &mut headers)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut seen = Seen::default();
    let mut fields = Vec::with_capacity(req.headers.len());
    for f in req.headers.iter() {
        seen.note(Field::of(f.name.as_bytes()), f.value);
        fields.push((f.name.as_bytes().to_vec(), f.value.to_vec()));
    }
    Ok(Some(RequestHead { version, fields, seen, len }))
}

/// What an upstream response head parsed to.
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    pub framing: Framing,
    pub keep_alive: bool,
    /// The fields kept for the client, one `name: value\r\n` line each.
    pub block: Vec<u8>,
    /// Bytes of the input the head took.
    pub consumed: usize,
}

/// Parses an upstream response head exactly as the upstream codec does (the answer to a
/// `HEAD` request when `head_request`). `Ok(None)`: incomplete.
pub fn response_head(bytes: &[u8], head_request: bool) -> Result<Option<ResponseHead>, &'static str> {
    let mut buf = BytesMut::from(bytes);
    let method = if head_request { Method::HEAD } else { Method::GET };
    let Some(head) = crate::wire::h1::parse_head(&mut buf, &method)? else {
        return Ok(None);
    };
    Ok(Some(ResponseHead {
        status: head.status.as_u16(),
        version: head.version,
        framing: head.framing,
        keep_alive: head.keep_alive,
        block: head.fields.block().to_vec(),
        consumed: bytes.len() - buf.len(),
    }))
}
