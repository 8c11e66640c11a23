//! Token introspection settings of an API (RFC 7662): the endpoint, the gateway's client
//! credentials there, and how long answers are reused.

use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ObjectBuilder, Type};

use super::{
    MAX_NAME, MAX_SECRET, MAX_TEXT, REDACTED, len_in, list, scopes_schema, url_schema, valid_scope, valid_url,
};
use crate::error::FieldError;
use crate::validate::Violations;

fn default_timeout_ms() -> u32 {
    2000
}
fn default_cache_ttl() -> u32 {
    60
}
fn default_negative_cache_ttl() -> u32 {
    10
}
fn default_introspection_subject() -> String {
    "client_id".to_owned()
}
fn introspection_url_schema() -> ObjectBuilder {
    url_schema("The RFC 7662 endpoint. Checked against the SSRF policy when set.")
}
fn client_secret_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(MAX_SECRET)).description(Some(
        "The gateway's client secret at the endpoint. Read back as \"<redacted>\"; sending that keeps the stored one.",
    ))
}

/// How gateways check opaque bearer tokens at an RFC 7662 introspection endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://idp.example.com/oauth2/introspect", "client_id": "gateway",
    "client_secret": "s3cr3t"}))]
pub struct IntrospectionSettings {
    /// The RFC 7662 endpoint. Checked against the SSRF policy when set.
    #[schema(schema_with = introspection_url_schema)]
    pub url: String,
    /// The gateway's client id at the endpoint (HTTP Basic).
    #[schema(min_length = 1, max_length = 200)]
    pub client_id: String,
    #[schema(schema_with = client_secret_schema)]
    pub client_secret: String,
    /// Milliseconds for one call to the endpoint.
    #[serde(default = "default_timeout_ms")]
    #[schema(minimum = 1, maximum = 30000)]
    pub timeout_ms: u32,
    /// Seconds an active answer is reused (never past the token's `exp`); 0: not cached.
    #[serde(default = "default_cache_ttl")]
    #[schema(minimum = 0, maximum = 3600)]
    pub cache_ttl_secs: u32,
    /// Seconds an inactive answer is reused; 0: not cached.
    #[serde(default = "default_negative_cache_ttl")]
    #[schema(minimum = 0, maximum = 600)]
    pub negative_cache_ttl_secs: u32,
    /// Scopes the answer's `scope` must all contain.
    #[serde(default)]
    #[schema(schema_with = scopes_schema)]
    pub required_scopes: Vec<String>,
    /// The answer member naming the subject, looked up in token bindings.
    #[serde(default = "default_introspection_subject")]
    #[schema(min_length = 1, max_length = 200)]
    pub subject_claim: String,
    /// The issuer when the answer has no `iss` (else `url`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2000)]
    pub issuer: Option<String>,
}

impl IntrospectionSettings {
    pub(crate) fn validate(&self, v: &mut Violations) {
        let header_safe = |s: &str| !s.chars().any(|c| c.is_control());
        v.check(valid_url(&self.url), "introspection/url", "must be an http(s) URL")
            .check(len_in(&self.client_id, MAX_NAME), "introspection/client_id", "must be 1-200 characters")
            .check(header_safe(&self.client_id), "introspection/client_id", "must not hold control characters")
            .check(len_in(&self.client_secret, MAX_SECRET), "introspection/client_secret", "must be 1-1024 characters")
            .check(header_safe(&self.client_secret), "introspection/client_secret", "must not hold control characters")
            .check((1..=30_000).contains(&self.timeout_ms), "introspection/timeout_ms", "must be 1 to 30000")
            .check(self.cache_ttl_secs <= 3600, "introspection/cache_ttl_secs", "must be 0 to 3600")
            .check(self.negative_cache_ttl_secs <= 600, "introspection/negative_cache_ttl_secs", "must be 0 to 600")
            .check(len_in(&self.subject_claim, MAX_NAME), "introspection/subject_claim", "must be 1-200 characters")
            .check(
                self.issuer.as_deref().is_none_or(|s| len_in(s, MAX_TEXT)),
                "introspection/issuer",
                "must be 1-2000 characters",
            );
        let scope = "must be 1-200 characters without white space";
        list(v, "introspection/required_scopes", &self.required_scopes, valid_scope, scope);
    }

    /// A copy fit to show: the client secret replaced by [`REDACTED`].
    pub fn redacted(&self) -> Self {
        Self { client_secret: REDACTED.to_owned(), ..self.clone() }
    }

    /// A [`REDACTED`] client secret takes the stored one.
    pub(crate) fn carry_over(&mut self, stored: Option<&IntrospectionSettings>) -> Result<(), FieldError> {
        if self.client_secret != REDACTED {
            return Ok(());
        }
        let detail = "is \"<redacted>\" but there is no stored client secret to keep";
        self.client_secret = stored
            .map(|s| s.client_secret.clone())
            .ok_or_else(|| FieldError::new("introspection/client_secret", detail))?;
        Ok(())
    }
}

/// Serializes stored introspection settings without the client secret.
pub(crate) fn serialize_introspection<S: Serializer>(
    v: &Option<sqlx::types::Json<IntrospectionSettings>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    v.as_ref().map(|j| j.0.redacted()).serialize(s)
}
