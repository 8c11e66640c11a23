//! The `introspection` settings of an API (`docs/auth.md`): parsed with their defaults, then
//! range-checked by [`IntrospectionConfig::validate`].

use std::fmt;
use std::ops::RangeInclusive;

use serde::Deserialize;

use crate::auth::ssrf::SsrfError;

/// Accepted `timeout_ms`: a zero timeout would fail every call, and a slow endpoint must not
/// hold requests longer than a client would wait.
pub const TIMEOUT_MS: RangeInclusive<u64> = 1..=30_000;
/// Accepted `cache_ttl_secs`: an hour at most, so a revoked token stops working within it.
pub const CACHE_TTL_SECS: RangeInclusive<u64> = 0..=3_600;
/// Accepted `negative_cache_ttl_secs`.
pub const NEGATIVE_CACHE_TTL_SECS: RangeInclusive<u64> = 0..=600;

/// An API's token introspection settings, exactly the JSON object of `docs/auth.md`.
/// `Debug` redacts `client_secret`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The RFC 7662 endpoint; checked against the SSRF policy before every new connection.
    pub url: String,
    /// The gateway's client credentials at the endpoint (HTTP Basic, RFC 6749 §2.3.1).
    pub client_id: String,
    pub client_secret: String,
    /// Total time for one call: address check, connect, TLS, answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long an active answer is reused (never past the token's `exp`); 0 = not cached.
    #[serde(default = "default_cache_ttl_secs")]
    pub cache_ttl_secs: u64,
    /// How long an inactive answer is reused; 0 = not cached.
    #[serde(default = "default_negative_cache_ttl_secs")]
    pub negative_cache_ttl_secs: u64,
    /// Scopes the answer's `scope` must all contain.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// The answer member that names the subject (looked up in token bindings).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The issuer when the answer has no `iss` (else `url` is used).
    #[serde(default)]
    pub issuer: Option<String>,
}

fn default_timeout_ms() -> u64 {
    2_000
}

fn default_cache_ttl_secs() -> u64 {
    60
}

fn default_negative_cache_ttl_secs() -> u64 {
    10
}

fn default_subject_claim() -> String {
    "client_id".to_owned()
}

/// Why introspection settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not the JSON shape of `docs/auth.md` (unknown or missing field, wrong type).
    #[error("introspection settings: {0}")]
    Json(String),
    /// A number outside its documented range.
    #[error("{field} must be in {min}..={max}, got {value}")]
    OutOfRange { field: &'static str, value: u64, min: u64, max: u64 },
    /// A required string is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A required scope that no space-separated `scope` value could contain.
    #[error("required_scopes: {0:?} is not a single scope")]
    BadScope(String),
    /// The URL is refused by the SSRF policy's syntactic check.
    #[error("url: {0}")]
    Url(SsrfError),
    /// The client credentials cannot be carried in an `Authorization` header.
    #[error("client credentials cannot be encoded")]
    Credentials,
}

impl IntrospectionConfig {
    /// Parses an API's `introspection` JSON object and validates it.
    pub fn from_json(value: serde_json::Value) -> Result<Self, ConfigError> {
        let cfg: Self = serde_json::from_value(value).map_err(|e| ConfigError::Json(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the documented ranges and that required strings are set. The URL's SSRF check
    /// needs the operator's policy and happens in [`super::Introspector::new`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("timeout_ms", self.timeout_ms, TIMEOUT_MS)?;
        in_range("cache_ttl_secs", self.cache_ttl_secs, CACHE_TTL_SECS)?;
        in_range("negative_cache_ttl_secs", self.negative_cache_ttl_secs, NEGATIVE_CACHE_TTL_SECS)?;
        let required = [("url", &self.url), ("client_id", &self.client_id), ("subject_claim", &self.subject_claim)];
        if let Some((field, _)) = required.iter().find(|(_, value)| value.is_empty()) {
            return Err(ConfigError::Empty(field));
        }
        if let Some(bad) = self.required_scopes.iter().find(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(ConfigError::BadScope(bad.clone()));
        }
        Ok(())
    }
}

fn in_range(field: &'static str, value: u64, range: RangeInclusive<u64>) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(ConfigError::OutOfRange { field, value, min: *range.start(), max: *range.end() })
}

impl fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("negative_cache_ttl_secs", &self.negative_cache_ttl_secs)
            .field("required_scopes", &self.required_scopes)
            .field("subject_claim", &self.subject_claim)
            .field("issuer", &self.issuer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> serde_json::Value {
        json!({"url": "https://idp.example.com/oauth2/introspect", "client_id": "gateway", "client_secret": "s3"})
    }

    #[test]
    fn documented_example_parses_and_matches_the_defaults() {
        // The object of docs/auth.md, verbatim.
        let doc = json!({
          "url": "https://idp.example.com/oauth2/introspect",
          "client_id": "gateway",
          "client_secret": "...",
          "timeout_ms": 2000,
          "cache_ttl_secs": 60,
          "negative_cache_ttl_secs": 10,
          "required_scopes": [],
          "subject_claim": "client_id",
          "issuer": null
        });
        let documented = IntrospectionConfig {
            url: "https://idp.example.com/oauth2/introspect".into(),
            client_id: "gateway".into(),
            client_secret: "...".into(),
            timeout_ms: 2000,
            cache_ttl_secs: 60,
            negative_cache_ttl_secs: 10,
            required_scopes: vec![],
            subject_claim: "client_id".into(),
            issuer: None,
        };
        assert_eq!(IntrospectionConfig::from_json(doc).unwrap(), documented);
        let defaulted = IntrospectionConfig::from_json(minimal()).unwrap();
        assert_eq!(defaulted, IntrospectionConfig { client_secret: "s3".into(), ..documented });
    }

    #[test]
    fn shape_and_ranges_are_enforced() {
        let with = |key: &str, value: serde_json::Value| {
            let mut v = minimal();
            v[key] = value;
            IntrospectionConfig::from_json(v)
        };
        assert!(matches!(with("extra", json!(1)), Err(ConfigError::Json(_))));
        assert!(matches!(IntrospectionConfig::from_json(json!({"url": "https://x/"})), Err(ConfigError::Json(_))));
        assert!(matches!(with("timeout_ms", json!(-1)), Err(ConfigError::Json(_))));
        let out = |field, value, (min, max)| Err(ConfigError::OutOfRange { field, value, min, max });
        assert_eq!(with("timeout_ms", json!(0)), out("timeout_ms", 0, (1, 30_000)));
        assert_eq!(with("timeout_ms", json!(30_001)), out("timeout_ms", 30_001, (1, 30_000)));
        assert_eq!(with("cache_ttl_secs", json!(3_601)), out("cache_ttl_secs", 3_601, (0, 3_600)));
        assert_eq!(with("negative_cache_ttl_secs", json!(601)), out("negative_cache_ttl_secs", 601, (0, 600)));
        assert!(with("timeout_ms", json!(30_000)).is_ok() && with("cache_ttl_secs", json!(0)).is_ok());
        assert_eq!(with("client_id", json!("")), Err(ConfigError::Empty("client_id")));
        assert_eq!(with("subject_claim", json!("")), Err(ConfigError::Empty("subject_claim")));
        assert_eq!(with("required_scopes", json!(["a b"])), Err(ConfigError::BadScope("a b".into())));
    }

    #[test]
    fn debug_redacts_the_secret() {
        let cfg = IntrospectionConfig::from_json(minimal()).unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3") && shown.contains("redacted"), "{shown}");
    }
}
