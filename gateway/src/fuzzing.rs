//! Entry points for the fuzz targets in `gateway/fuzz` (see `docs/fuzzing.md`): the
//! gateway's pure HTTP/1.1 parsing, reachable without a socket. Not an API: nothing here
//! is for use outside the fuzz targets.

use std::mem::MaybeUninit;

use bytes::BytesMut;
use http::Method;
pub use http::Version;

pub use crate::router::oracle::percent_decode;
pub use crate::wire::codec::pieces::{Outcome, decode_in_pieces};
pub use crate::wire::codec::{Decode, Field, Seen, Step, Transfer, chunk, parse_length};
pub use crate::wire::h1::Framing;

/// Header fields parsed at most (the server's and the upstream codec's bound).
const MAX_HEADERS: usize = 100;

/// What a request head says, as far as framing goes.
pub struct RequestHead {
    pub method: Vec<u8>,
    pub target: Vec<u8>,
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
    let method = req.method.unwrap_or_default().as_bytes().to_vec();
    let target = req.path.unwrap_or_default().as_bytes().to_vec();
    Ok(Some(RequestHead { method, target, version, fields, seen, len }))
}

/// The server's own decisions on a parsed head, in its order: the method, the target form,
/// each `Host` value's syntax, then the framing (`Err`: the reason of the 400/405 the server
/// answers, closing the connection).
pub fn server_decision(head: &RequestHead) -> Result<Decode, &'static str> {
    use crate::wire::Reject;
    use crate::wire::server::{framing, is_host, is_routable_target, request_method};
    let reason = |r: Reject| match r {
        Reject::BadRequest(why) => why,
        Reject::MethodNotAllowed => "method not allowed",
        Reject::HeadersTooLarge => "headers too large",
        Reject::RequestTimeout => "request timeout",
    };
    request_method(&head.method).map_err(reason)?;
    if !is_routable_target(&head.target) {
        return Err("the request target must be a path or an absolute URI");
    }
    let hosts = head.fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"host"));
    if hosts.into_iter().any(|(_, v)| !is_host(v)) {
        return Err("the Host header is invalid");
    }
    framing(&head.seen, head.version).map_err(reason)
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
