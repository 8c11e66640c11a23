//! Where gateways read API keys: a request header, and optionally a query parameter.

use crate::validate::string_schema;

/// What [`valid_key_header`] accepts as to characters and length (an RFC 9110 token).
pub const KEY_HEADER_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$";
/// What [`valid_key_query_param`] accepts.
pub const KEY_QUERY_PARAM_PATTERN: &str = "^[A-Za-z0-9_.-]{1,128}$";
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

/// Whether `h` may carry API keys: a header name (of [`KEY_HEADER_PATTERN`]) that is not
/// reserved.
pub fn valid_key_header(h: &str) -> bool {
    let token = h.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    (1..=128).contains(&h.len()) && token && !RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(h))
}

/// Whether `p` is a query parameter name that may carry API keys.
pub fn valid_key_query_param(p: &str) -> bool {
    (1..=128).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

pub(crate) fn key_header_schema() -> utoipa::openapi::schema::ObjectBuilder {
    string_schema(KEY_HEADER_PATTERN, 128).description(Some(
        "Header carrying the API key, matched case-insensitively; not a framing, hop-by-hop or identity header.",
    ))
}

pub(crate) fn key_query_param_schema() -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{SchemaType, Type};
    string_schema(KEY_QUERY_PARAM_PATTERN, 128)
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some("Query parameter also accepted for the API key; null: the header only."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::agree;

    #[test]
    fn patterns_state_the_rules() {
        let long = "a".repeat(129);
        let samples = ["", "x-api-key", "X-Key", "apikey", "a b", "a:b", "a.b_c-d", "a~!", "é", &long];
        let token = |s: &str| valid_key_header(s) || RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(s));
        agree(KEY_HEADER_PATTERN, token, &samples);
        agree(KEY_QUERY_PARAM_PATTERN, valid_key_query_param, &samples);
        let reserved = ["host", "content-length", "transfer-encoding", "connection", "x-consumer-id", "X-Plan"];
        assert!(reserved.iter().all(|h| !valid_key_header(h)), "reserved headers cannot carry keys");
    }
}
