//! How gateways authenticate an API's callers (`docs/auth.md`), as the admin stores and
//! checks it: where API keys are read ([`api_key`]), and the `jwt` ([`jwt`]) and
//! `introspection` ([`introspection`]) settings stored as JSON objects on the API, with the
//! shapes, defaults and ranges of `docs/auth.md`. Keys are checked with the gateway's own
//! loader and URLs with its SSRF policy, so what is saved is what gateways can use. Secrets
//! never leave the admin: responses and audit rows carry [`REDACTED`], and sending it back
//! keeps the stored secret.

pub mod api_key;
pub mod introspection;
pub mod jwt;

pub use introspection::IntrospectionSettings;
pub(crate) use introspection::serialize_introspection;
pub(crate) use jwt::serialize_jwt;
pub use jwt::{JwtAlgorithm, JwtKey, JwtSettings};

use std::time::Duration;

use tollgate_gateway::auth::ssrf::UrlPolicy;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};

use crate::error::ApiError;
use crate::state::AppState;
use crate::validate::{Violations, array_schema, blank_or_control_class, is_blank_or_control, string_schema};

/// What responses and audit rows show instead of a secret; sent back, it keeps the secret.
pub const REDACTED: &str = "<redacted>";

/// A JWKS or introspection endpoint: an `http(s)` URL (the SSRF policy has the last word).
pub const URL_PATTERN: &str = "^https?://[^/?#@]+";
/// A scope: no white space or control characters.
pub const SCOPE_PATTERN: &str = concat!("^[^", blank_or_control_class!(), "]+$");

/// Longest URL, issuer, audience.
const MAX_TEXT: usize = 2000;
/// Longest claim name, scope, key id, client id.
const MAX_NAME: usize = 200;
/// Longest secret.
const MAX_SECRET: usize = 1024;
/// At most this many keys, issuers, audiences, claims, scopes.
const MAX_ITEMS: usize = 100;
/// How long the save-time URL check may take (DNS included).
const URL_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn scopes_schema() -> ArrayBuilder {
    array_schema(string_schema(SCOPE_PATTERN, MAX_NAME), MAX_ITEMS)
        .description(Some("Scopes that must all be granted."))
}

pub(super) fn nullable_string() -> SchemaType {
    SchemaType::from_iter([Type::String, Type::Null])
}

pub(super) fn url_schema(description: &str) -> ObjectBuilder {
    string_schema(URL_PATTERN, MAX_TEXT).description(Some(description))
}

pub(super) fn len_in(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count())
}

pub(super) fn valid_scope(s: &str) -> bool {
    len_in(s, MAX_NAME) && !s.chars().any(is_blank_or_control)
}

pub(super) fn valid_url(u: &str) -> bool {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
    u.chars().count() <= MAX_TEXT && rest.is_some_and(|r| r.chars().next().is_some_and(|c| !"/?#@".contains(c)))
}

/// Every item of `items` satisfies `ok`, and there are at most [`MAX_ITEMS`].
pub(super) fn list(v: &mut Violations, field: &str, items: &[String], ok: impl Fn(&str) -> bool, detail: &str) {
    v.check(items.len() <= MAX_ITEMS, field, "must have at most 100 items");
    for (i, item) in items.iter().enumerate() {
        v.check(ok(item), &format!("{field}/{i}"), detail);
    }
}

/// 422 on `field` unless `url` passes the SSRF policy the admin was started with (its host
/// is resolved: every address must be allowed).
pub(crate) async fn check_url(state: &AppState, field: &str, url: &str) -> Result<(), ApiError> {
    let policy = UrlPolicy { allow_private: state.config().allow_private_auth_urls };
    match tokio::time::timeout(URL_CHECK_TIMEOUT, policy.check(url)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ApiError::invalid_field(field, format!("refused: {e}"))),
        Err(_) => Err(ApiError::invalid_field(field, "refused: the host did not resolve in time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::agree;

    #[test]
    fn patterns_state_the_rules() {
        let long = "A".repeat(43);
        let samples = [
            "",
            "<redacted>",
            "abc",
            &long,
            "https://idp.example.com/jwks",
            "http://10.0.0.1:8080/x",
            "https://",
            "https:///x",
            "https://@x",
            "ftp://x",
            "read:orders",
            "a b",
            "a\u{3000}",
            "\u{85}",
        ];
        agree(SCOPE_PATTERN, valid_scope, &samples);
        agree(URL_PATTERN, valid_url, &samples);
    }
}
