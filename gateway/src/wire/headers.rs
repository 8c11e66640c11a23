//! Header rewriting between client and upstream: hop-by-hop headers removed (RFC 9110
//! §7.6.1, including those named by `Connection`), forwarding headers set
//! (`X-Forwarded-*` and RFC 7239 `Forwarded`), request ids kept or generated.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::wire::codec::Field;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = header::FORWARDED;

/// The names a message's `Connection` header lists (beyond the fixed hop-by-hop set).
pub fn connection_tokens(headers: &HeaderMap) -> SmallVec<[&str; 4]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect()
}

/// Whether `name` describes the connection rather than the message: the fixed hop-by-hop
/// set ([`Field::is_hop_by_hop`]), `Upgrade` unless the exchange is an upgrade, and the names
/// `Connection` lists.
pub fn is_hop_by_hop(name: &HeaderName, keep_upgrade: bool, named: &[&str]) -> bool {
    match Field::of(name.as_str().as_bytes()) {
        Field::Upgrade => !keep_upgrade,
        field if field.is_hop_by_hop() => true,
        _ => named.iter().any(|t| t.eq_ignore_ascii_case(name.as_str())),
    }
}

/// Removes hop-by-hop headers, and `Upgrade` unless the exchange is an upgrade.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds what to remove (usually nothing, or `Connection` alone):
    // cheaper than a hashed remove of every possible name.
    let named = connection_tokens(headers);
    let doomed: SmallVec<[HeaderName; 4]> =
        headers.keys().filter(|n| is_hop_by_hop(n, keep_upgrade, &named)).cloned().collect();
    drop(named);
    for name in &doomed {
        headers.remove(name);
    }
}

/// A request id worth keeping: 1–128 visible ASCII characters.
fn acceptable_id(v: &HeaderValue) -> bool {
    (1..=128).contains(&v.len()) && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
}

/// A UUID as a header value, hyphenated lower-case (always valid ASCII).
pub fn uuid_value(id: uuid::Uuid) -> HeaderValue {
    HeaderValue::from_bytes(&uuid_text(&id)).unwrap_or(HeaderValue::from_static(""))
}

/// A UUID's hyphenated lower-case text, a byte at a time from a table of hex pairs (the
/// `uuid` crate's encoder goes a nibble at a time, at twice the instructions).
pub fn uuid_text(id: &uuid::Uuid) -> [u8; 36] {
    const PAIRS: [[u8; 2]; 256] = {
        let hex = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [hex[i >> 4], hex[i & 15]];
            i += 1;
        }
        t
    };
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in id.as_bytes().iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        let pair = PAIRS[usize::from(*byte)];
        out[at] = pair[0];
        out[at + 1] = pair[1];
        at += 2;
    }
    out
}

/// The request's id: the client's `X-Request-ID` when sane, else a new one. (It reaches the
/// upstream as the request's only `X-Request-ID`: see `Outgoing::request_id`.)
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID).filter(|v| acceptable_id(v)) {
        return v.clone();
    }
    // A random (v4) UUID from the thread-local fast generator: request ids need to be unique,
    // not secret, and this avoids a getrandom system call per request.
    uuid_value(uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid())
}

/// What the gateway knows about the client side of the exchange.
pub struct Forwarding<'a> {
    pub client_ip: IpAddr,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The `Host` the client asked for.
    pub host: Option<&'a HeaderValue>,
}

/// Sets `X-Forwarded-For` (appended), `-Proto`, `-Host` and `Forwarded` (appended).
pub fn set_forwarding(headers: &mut HeaderMap, f: &Forwarding<'_>) {
    let mut fields: SmallVec<[(&HeaderName, Vec<u8>); 4]> = SmallVec::new();
    forwarding_fields(headers, f, |name, parts| fields.push((name, concat(parts))));
    for (name, value) in fields {
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
            headers.insert(name.clone(), v);
        }
    }
}

/// Whether the client's `name` header is replaced by one [`forwarding_fields`] emits.
pub fn replaced_by_forwarding(name: &HeaderName, f: &Forwarding<'_>) -> bool {
    *name == X_FORWARDED_FOR
        || *name == X_FORWARDED_PROTO
        || *name == FORWARDED
        || (*name == X_FORWARDED_HOST && f.host.is_some_and(|h| h.to_str().is_ok()))
}

/// The forwarding headers for a request with `headers` (previous `X-Forwarded-For` and
/// `Forwarded` values are appended to), each given to `emit` as its value's parts, in
/// order: written into a header map ([`set_forwarding`]) or straight into an encoded
/// request head. `X-Forwarded-Host` is emitted only when the client's host is known.
pub fn forwarding_fields<'h>(headers: &HeaderMap, f: &Forwarding<'_>, mut emit: impl FnMut(&'h HeaderName, &[&[u8]])) {
    let ip = IpText::new(f.client_ip);
    let ip = ip.as_bytes();
    match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => emit(&X_FORWARDED_FOR, &[prev.as_bytes(), b", ", ip]),
        _ => emit(&X_FORWARDED_FOR, &[ip]),
    }
    emit(&X_FORWARDED_PROTO, &[f.proto.as_bytes()]);
    let (open, close): (&[u8], &[u8]) = match f.client_ip {
        IpAddr::V4(_) => (b"for=", b""),
        IpAddr::V6(_) => (b"for=\"[", b"]\""),
    };
    let mut host_part: [&[u8]; 3] = [b"", b"", b""];
    if let Some((value, host)) = f.host.and_then(|h| Some((h, h.to_str().ok()?))) {
        emit(&X_FORWARDED_HOST, &[value.as_bytes()]);
        // RFC 7239 §4: a value that is not a token (a port's `:`, an IPv6 literal) is quoted.
        if host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b)) {
            host_part = [b";host=", host.as_bytes(), b""];
        } else if host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
            host_part = [b";host=\"", host.as_bytes(), b"\""];
        }
    }
    let prev = headers.get(header::FORWARDED).and_then(|v| v.to_str().ok());
    let (prev, sep): (&[u8], &[u8]) = prev.map_or((b"", b""), |p| (p.as_bytes(), b", "));
    emit(
        &FORWARDED,
        &[prev, sep, open, ip, close, b";proto=", f.proto.as_bytes(), host_part[0], host_part[1], host_part[2]],
    );
}

/// The parts, joined, in a buffer of exactly their size (so `Bytes` takes it without copying).
fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    parts.iter().for_each(|p| out.extend_from_slice(p));
    out
}

/// An IP address as text, formatted on the stack (`Display` goes through the formatting
/// machinery, which costs more than the rest of this module per request).
struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut text = Self { buf: [0; 45], len: 0 };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut cursor = std::io::Cursor::new(&mut text.buf[..]);
                // 45 bytes hold the longest form (IPv4-mapped with a full prefix).
                let _ = write!(cursor, "{v6}");
                text.len = usize::try_from(cursor.position()).unwrap_or(0);
            }
        }
        text
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

/// Whether the request asks for a WebSocket upgrade: `Connection` names `upgrade` and
/// `Upgrade` is `websocket` (the only protocol the gateway switches to; RFC 6455 §4.1).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    connection_upgrade && upgrades_to_websocket(headers)
}

/// Whether `Upgrade` names exactly one protocol, WebSocket.
pub fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    let only = values.next().filter(|_| values.next().is_none());
    only.is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_including_connection_named_ones() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarding_headers_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let host = HeaderValue::from_static("api.example.com");
        set_forwarding(&mut h, &Forwarding { client_ip: [10, 0, 0, 1].into(), proto: "https", host: Some(&host) });
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["forwarded"], "for=10.0.0.1;proto=https;host=api.example.com");
        let mut ported = HeaderMap::new();
        let host = HeaderValue::from_static("api.example.com:8443");
        set_forwarding(&mut ported, &Forwarding { client_ip: [10, 0, 0, 1].into(), proto: "http", host: Some(&host) });
        assert_eq!(ported["forwarded"], "for=10.0.0.1;proto=http;host=\"api.example.com:8443\"");
        let mut v6 = HeaderMap::new();
        set_forwarding(
            &mut v6,
            &Forwarding { client_ip: "::1".parse().unwrap_or(IpAddr::from([0u8; 16])), proto: "http", host: None },
        );
        assert_eq!(v6["forwarded"], "for=\"[::1]\";proto=http");
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in
            ["0.0.0.0", "10.0.0.1", "127.0.0.1", "192.168.100.255", "1.22.103.4", "::1", "2001:db8::8a2e:370:7334"]
        {
            let addr: IpAddr = ip.parse().unwrap_or(IpAddr::from([0u8; 4]));
            assert_eq!(IpText::new(addr).as_bytes(), addr.to_string().as_bytes());
        }
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".parse().unwrap_or(IpAddr::from([0u8; 4]));
        assert_eq!(IpText::new(longest).as_bytes(), longest.to_string().as_bytes());
    }

    #[test]
    fn forwarding_quotes_hosts_and_keeps_previous_values() {
        let mut h = HeaderMap::new();
        h.insert("forwarded", HeaderValue::from_static("for=192.0.2.1"));
        h.insert("x-forwarded-for", HeaderValue::from_static(" "));
        let host = HeaderValue::from_static("[::1]:8080");
        set_forwarding(&mut h, &Forwarding { client_ip: [10, 0, 0, 1].into(), proto: "http", host: Some(&host) });
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["forwarded"], "for=192.0.2.1, for=10.0.0.1;proto=http;host=\"[::1]:8080\"");
        let mut odd = HeaderMap::new();
        let host = HeaderValue::from_static("a_b");
        set_forwarding(&mut odd, &Forwarding { client_ip: [10, 0, 0, 1].into(), proto: "http", host: Some(&host) });
        assert_eq!(odd["forwarded"], "for=10.0.0.1;proto=http");
        assert_eq!(odd["x-forwarded-host"], "a_b");
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_untouched() {
        let mut h = HeaderMap::new();
        h.insert("x-kept", HeaderValue::from_static("1"));
        h.insert(header::HOST, HeaderValue::from_static("a"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.len(), 3);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn uuid_text_is_the_hyphenated_lower_case_form() {
        for id in [uuid::Uuid::nil(), uuid::Uuid::max(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4()] {
            assert_eq!(std::str::from_utf8(&uuid_text(&id)), Ok(id.hyphenated().to_string().as_str()));
        }
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        let mut bad = HeaderMap::new();
        bad.insert("x-request-id", HeaderValue::from_static("has space"));
        let fresh = request_id(&bad);
        assert!(fresh != "has space" && fresh.len() == 36, "{fresh:?}");
    }
}
