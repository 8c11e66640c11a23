//! Where gateways read API keys: a request header, and optionally a query parameter.

use crate::validate::string_schema;

/// What [`valid_key_header`] accepts as to characters and length (an RFC 9110 token).
pub const KEY_HEADER_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$";
/// What [`valid_key_query_param`] accepts.
pub const KEY_QUERY_PARAM_PATTERN: &str = "^[A-Za-z0-9_.-]{1,128}$";
pub use tollgate_gateway::edge::{valid_key_header, valid_key_query_param};

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
        // No sample is a reserved name, so the pattern and the rule must agree on all.
        agree(KEY_HEADER_PATTERN, valid_key_header, &samples);
        agree(KEY_QUERY_PARAM_PATTERN, valid_key_query_param, &samples);
        let reserved = ["host", "content-length", "transfer-encoding", "connection", "x-consumer-id", "X-Plan"];
        assert!(reserved.iter().all(|h| !valid_key_header(h)), "reserved headers cannot carry keys");
    }
}
