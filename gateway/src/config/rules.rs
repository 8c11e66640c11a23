//! Rules on API settings that the admin (when they are saved), the declarative file (when
//! it is loaded) and the gateway (when it compiles them) all apply: one definition each.

/// Headers that cannot carry API keys: framing and hop-by-hop headers (which proxies
/// consume or strip) and the identity headers gateways set for the upstream.
const RESERVED_HEADERS: [&str; 15] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-consumer-id",
    "x-consumer-username",
    "x-consumer-custom-id",
    "x-credential-id",
    "x-plan",
    "x-anonymous-consumer",
];

/// Whether `h` may carry API keys: an HTTP header name (RFC 9110 token, 1–128 characters)
/// that is not reserved. The admin and the declarative file both apply it.
pub fn valid_key_header(h: &str) -> bool {
    let token = h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    (1..=128).contains(&h.len()) && token && !RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(h))
}

/// Whether `p` is a query parameter name that may carry API keys (1–128 of `A-Za-z0-9_.-`).
pub fn valid_key_query_param(p: &str) -> bool {
    (1..=128).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}
