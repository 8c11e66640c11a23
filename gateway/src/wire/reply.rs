//! A response on its way to the client, with its header fields in one representation
//! whatever made it — a plain upstream (the fields as it wrote them), a TLS upstream, or the
//! gateway itself — so every phase reads and extends them the same way.
//!
//! The fields are `name: value\r\n` lines: an HTTP/1.1 client gets them copied as they are,
//! and they become a header map only where one is needed (HTTP/2 clients, the rare `101`).
//! Building a header map per response was a tenth of the gateway's instructions per proxied
//! request.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use super::codec::{Field, put};
use super::headers::X_REQUEST_ID;
use super::{ExtraFields, GwBody};

/// A response: status, fields, body.
pub struct Reply {
    pub status: StatusCode,
    pub fields: Fields,
    pub body: GwBody,
}

impl Reply {
    /// A response the gateway made (a problem document, a health answer): its header map
    /// becomes [`Fields`]; its framing is the server's to write.
    pub fn made(res: Response<Full<Bytes>>) -> Self {
        let (parts, body) = res.into_parts();
        Self { status: parts.status, fields: Fields::from_map(&parts.headers, false), body: Either::Right(body) }
    }

    /// The response with a header map (for hyper's HTTP/2 server).
    pub fn into_response(self) -> Response<GwBody> {
        let mut res = Response::new(self.body);
        *res.status_mut() = self.status;
        self.fields.append_to(res.headers_mut());
        res
    }
}

/// Header fields of a response: the source's (minus hop-by-hop ones) as lines, then the
/// gateway's own — the request id and, for a request under a plan, its rate-limit fields.
/// Where the source has a field of a name the gateway sets, the gateway's rate-limit fields
/// replace it and the source's request id is kept.
#[derive(Debug, Default)]
pub struct Fields {
    block: Bytes,
    has_date: bool,
    has_length: bool,
    /// A field the gateway sets on responses (`X-Request-ID`, rate-limit fields) is in `block`.
    collides: bool,
    /// The gateway's `X-Request-ID`, written after the block unless the block has one.
    pub request_id: Option<HeaderValue>,
    /// Fields the gateway adds after the block (the rate-limit fields of a plan), replacing
    /// the block's of the same names. Boxed: only some responses have them.
    pub extra: Option<Box<dyn ExtraFields>>,
}

/// Builds [`Fields`] one source field at a time.
#[derive(Default)]
pub(crate) struct FieldsBuilder {
    block: Vec<u8>,
    has_date: bool,
    has_length: bool,
    collides: bool,
}

impl FieldsBuilder {
    pub(crate) fn with_capacity(len: usize) -> Self {
        Self { block: Vec::with_capacity(len), ..Self::default() }
    }

    /// Adds a field kept for the client, of kind `field` (its name classified).
    pub(crate) fn push(&mut self, field: Field, name: &[u8], value: &[u8]) {
        self.has_date |= field == Field::Date;
        self.has_length |= field == Field::ContentLength;
        self.collides |= field == Field::GatewaySet;
        put(&mut self.block, &[name, b": ", value, b"\r\n"]);
    }

    pub(crate) fn build(self) -> Fields {
        Fields {
            block: Bytes::from(self.block),
            has_date: self.has_date,
            has_length: self.has_length,
            collides: self.collides,
            request_id: None,
            extra: None,
        }
    }
}

impl Fields {
    /// The fields of a header map, without `Transfer-Encoding` (the body is decoded) and, unless
    /// `keep_length`, without `Content-Length` (the server frames the body itself).
    pub fn from_map(headers: &HeaderMap, keep_length: bool) -> Self {
        let len = headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        let mut b = FieldsBuilder::with_capacity(len);
        for (name, value) in headers {
            let field = Field::of(name.as_str().as_bytes());
            if field == Field::TransferEncoding || (field == Field::ContentLength && !keep_length) {
                continue;
            }
            b.push(field, name.as_str().as_bytes(), value.as_bytes());
        }
        b.build()
    }

    /// The source's fields as written (without the gateway's).
    pub fn block(&self) -> &Bytes {
        &self.block
    }

    /// Whether the fields carry a `Date`.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// Whether the source's `Content-Length` (exactly the body's length) is among them.
    pub fn has_length(&self) -> bool {
        self.has_length
    }

    /// Whether the source has a field of a name the gateway sets itself.
    pub fn collides(&self) -> bool {
        self.collides
    }

    /// Writes every field as header lines.
    pub fn write(&self, out: &mut Vec<u8>) {
        if self.collides {
            return self.write_colliding(out);
        }
        out.extend_from_slice(&self.block);
        if let Some(id) = &self.request_id {
            put(out, &[b"x-request-id: ", id.as_bytes(), b"\r\n"]);
        }
        if let Some(extra) = &self.extra {
            extra.write_lines(out);
        }
    }

    /// [`Self::write`] when the block has a field of a name the gateway sets (rare).
    #[cold]
    fn write_colliding(&self, out: &mut Vec<u8>) {
        let mut has_id = false;
        for (name, value) in lines(&self.block) {
            has_id |= name.eq_ignore_ascii_case(X_REQUEST_ID.as_str().as_bytes());
            let replaced = self.extra.as_ref().is_some_and(|e| {
                HeaderName::from_bytes(name).is_ok_and(|n| Field::of(name) == Field::GatewaySet && e.replaces(&n))
            });
            if !replaced {
                put(out, &[name, b": ", value, b"\r\n"]);
            }
        }
        if let Some(id) = self.request_id.as_ref().filter(|_| !has_id) {
            put(out, &[b"x-request-id: ", id.as_bytes(), b"\r\n"]);
        }
        if let Some(extra) = &self.extra {
            extra.write_lines(out);
        }
    }

    /// Appends every field to `headers` (the gateway's rate-limit fields replacing the
    /// source's of the same names, the source's request id kept).
    pub fn append_to(&self, headers: &mut HeaderMap) {
        append_lines(&self.block, headers);
        if let Some(id) = &self.request_id {
            headers.entry(X_REQUEST_ID.clone()).or_insert_with(|| id.clone());
        }
        if let Some(extra) = &self.extra {
            extra.write_headers(headers);
        }
    }

    /// Every field in a header map.
    pub fn to_map(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        self.append_to(&mut headers);
        headers
    }
}

/// The `(name, value)` of each `name: value\r\n` line of `block`.
fn lines(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|b| *b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r")?;
        let colon = line.iter().position(|b| *b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii_start()))
    })
}

/// Appends the fields of `name: value\r\n` lines to `headers` (the values share `block`).
pub(crate) fn append_lines(block: &Bytes, headers: &mut HeaderMap) {
    for (name, value) in lines(block) {
        let at = value.as_ptr() as usize - block.as_ptr() as usize;
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_maybe_shared(block.slice(at..at + value.len())))
        else {
            continue;
        };
        headers.append(name, value);
    }
}

/// Whether the fields say the response switches to WebSocket (the only upgrade passed on).
pub fn switches_to_websocket(fields: &Fields) -> bool {
    super::headers::upgrades_to_websocket(&fields.to_map())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    #[derive(Debug)]
    struct Limits;

    impl ExtraFields for Limits {
        fn each(&self, field: &mut dyn FnMut(&HeaderName, &[u8])) {
            field(&HeaderName::from_static("ratelimit-remaining"), b"7");
        }
    }

    fn fields(block: &'static [u8]) -> Fields {
        let mut b = FieldsBuilder::default();
        for (name, value) in lines(block) {
            b.push(Field::of(name), name, value);
        }
        b.build()
    }

    fn written(f: &Fields) -> String {
        let mut out = Vec::new();
        f.write(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn the_gateways_fields_follow_the_sources() {
        let mut f = fields(b"content-type: text/plain\r\ndate: x\r\ncontent-length: 2\r\n");
        assert!(f.has_date() && f.has_length());
        f.request_id = Some(HeaderValue::from_static("id-1"));
        f.extra = Some(Box::new(Limits));
        let text = "content-type: text/plain\r\ndate: x\r\ncontent-length: 2\r\nx-request-id: id-1\r\nratelimit-remaining: 7\r\n";
        assert_eq!(written(&f), text);
        let map = f.to_map();
        assert_eq!(map.len(), 5);
        assert_eq!(map.get("x-request-id"), Some(&HeaderValue::from_static("id-1")));
    }

    #[test]
    fn colliding_fields_read_the_same_as_lines_and_as_a_map() {
        // The upstream's request id is kept; its rate-limit field is replaced by the gateway's.
        let mut f = fields(b"X-Request-ID: theirs\r\nRateLimit-Remaining: 999\r\nx-a: b\r\n");
        f.request_id = Some(HeaderValue::from_static("ours"));
        f.extra = Some(Box::new(Limits));
        assert_eq!(written(&f), "X-Request-ID: theirs\r\nx-a: b\r\nratelimit-remaining: 7\r\n");
        let map = f.to_map();
        assert_eq!(map.get_all("x-request-id").iter().collect::<Vec<_>>(), ["theirs"]);
        assert_eq!(map.get_all("ratelimit-remaining").iter().collect::<Vec<_>>(), ["7"]);
        assert_eq!(map.get("x-a"), Some(&HeaderValue::from_static("b")));
    }

    #[test]
    fn made_responses_leave_framing_to_the_server() {
        let mut res = Response::new(Full::new(Bytes::from_static(b"{}")));
        res.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        res.headers_mut().insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let reply = Reply::made(res);
        assert!(!reply.fields.has_length());
        assert_eq!(written(&reply.fields), "content-type: application/json\r\n");
        let res = reply.into_response();
        assert_eq!(res.headers().len(), 1);
    }

    #[test]
    fn values_keep_their_inner_spaces_and_lose_the_leading_ones() {
        let f = fields(b"x-a:   two  words\r\nbroken line\r\nx-b:\r\n");
        let map = f.to_map();
        assert_eq!(map.get("x-a"), Some(&HeaderValue::from_static("two  words")));
        assert_eq!(map.get("x-b"), Some(&HeaderValue::from_static("")));
        assert_eq!(map.len(), 2);
    }
}
