//! JWT settings of an API: the algorithm allow-list, static keys (checked with the
//! gateway's key loader) or a JWKS URL, and the claim checks.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize, Serializer};
use tollgate_gateway::auth::jwt::{ConfigError, JwtConfig, JwtValidator, KeyMaterial, KeySource, StaticKey};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};

use super::{
    MAX_ITEMS, MAX_NAME, MAX_SECRET, MAX_TEXT, REDACTED, len_in, list, nullable_string, scopes_schema, url_schema,
    valid_scope, valid_url,
};
use crate::error::FieldError;
use crate::validate::{Violations, array_schema, string_schema};

/// A base64url secret (no padding) of at least 32 bytes, or [`REDACTED`].
pub const SECRET_PATTERN: &str = "^(?:[A-Za-z0-9_-]{43,}|<redacted>)$";
/// Longest PEM document.
const MAX_PEM: usize = 16_384;

/// A JWS algorithm gateways verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl JwtAlgorithm {
    fn to_jws(self) -> Algorithm {
        use JwtAlgorithm as J;
        match self {
            J::HS256 => Algorithm::HS256,
            J::HS384 => Algorithm::HS384,
            J::HS512 => Algorithm::HS512,
            J::RS256 => Algorithm::RS256,
            J::RS384 => Algorithm::RS384,
            J::RS512 => Algorithm::RS512,
            J::PS256 => Algorithm::PS256,
            J::PS384 => Algorithm::PS384,
            J::PS512 => Algorithm::PS512,
            J::ES256 => Algorithm::ES256,
            J::ES384 => Algorithm::ES384,
            J::EdDSA => Algorithm::EdDSA,
        }
    }

    fn is_hmac(self) -> bool {
        matches!(self, JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512)
    }
}

fn algorithms_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(utoipa::openapi::Ref::from_schema_name("JwtAlgorithm"))
        .min_items(Some(1))
        .unique_items(true)
        .description(Some("Accepted `alg` values."))
}

fn texts_schema(description: &str) -> ArrayBuilder {
    let text = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(MAX_TEXT));
    array_schema(text, MAX_ITEMS).description(Some(description))
}

fn claims_schema() -> ArrayBuilder {
    let name = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(MAX_NAME));
    array_schema(name, MAX_ITEMS).description(Some("Claims that must be present and not null."))
}

fn secret_schema() -> ObjectBuilder {
    string_schema(SECRET_PATTERN, MAX_SECRET).schema_type(nullable_string()).description(Some(
        "HMAC secret (HS* keys): base64url without padding, at least as long as the hash output. \
         Read back as \"<redacted>\"; sending that keeps the stored secret.",
    ))
}

fn nullable_url_schema() -> ObjectBuilder {
    url_schema("JWK set URL; exactly one of `keys` and `jwks_url`. Checked against the SSRF policy when set.")
        .schema_type(nullable_string())
}

/// A static verification key: an HMAC `secret` (HS*) or a public key `pem` (others).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    /// Matches the token's `kid`; a key without one is tried for any `kid`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub alg: JwtAlgorithm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = secret_schema)]
    pub secret: Option<String>,
    /// A PEM public key (`BEGIN PUBLIC KEY`) for RS*, PS*, ES* or EdDSA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 16384)]
    pub pem: Option<String>,
}

fn default_jwks_refresh() -> u32 {
    300
}
fn default_leeway() -> u32 {
    30
}
fn default_subject_claim() -> String {
    "sub".to_owned()
}

/// How gateways validate `Authorization: Bearer` JWTs for an API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"algorithms": ["RS256"], "jwks_url": "https://idp.example.com/.well-known/jwks.json",
    "issuers": ["https://idp.example.com/"], "audiences": ["orders"]}))]
pub struct JwtSettings {
    /// Accepted `alg` values.
    #[schema(schema_with = algorithms_schema)]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Static keys; exactly one of `keys` (non-empty) and `jwks_url`.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub keys: Vec<JwtKey>,
    /// JWK set URL; exactly one of `keys` and `jwks_url`. Checked against the SSRF policy when set.
    #[serde(default)]
    #[schema(schema_with = nullable_url_schema)]
    pub jwks_url: Option<String>,
    /// Seconds between JWK set refreshes.
    #[serde(default = "default_jwks_refresh")]
    #[schema(minimum = 10)]
    pub jwks_refresh_secs: u32,
    /// Accepted `iss` values; empty: not checked.
    #[serde(default)]
    #[schema(schema_with = issuers_schema)]
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one suffices); empty: not checked.
    #[serde(default)]
    #[schema(schema_with = audiences_schema)]
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    #[schema(minimum = 0, maximum = 300)]
    pub leeway_secs: u32,
    /// Claims that must be present and not null.
    #[serde(default)]
    #[schema(schema_with = claims_schema)]
    pub required_claims: Vec<String>,
    /// Scopes (`scope` or `scp`) that must all be granted.
    #[serde(default)]
    #[schema(schema_with = scopes_schema)]
    pub required_scopes: Vec<String>,
    /// The claim naming the subject, looked up with `iss` in token bindings.
    #[serde(default = "default_subject_claim")]
    #[schema(min_length = 1, max_length = 200)]
    pub subject_claim: String,
}

fn issuers_schema() -> ArrayBuilder {
    texts_schema("Accepted `iss` values; empty: not checked.")
}
fn audiences_schema() -> ArrayBuilder {
    texts_schema("Accepted `aud` values (any one suffices); empty: not checked.")
}

impl JwtSettings {
    pub(crate) fn validate(&self, v: &mut Violations) {
        let algs = &self.algorithms;
        v.check(!algs.is_empty(), "jwt/algorithms", "must list at least one algorithm")
            .check(algs.iter().enumerate().all(|(i, a)| !algs[..i].contains(a)), "jwt/algorithms", "must not repeat")
            .check(self.jwks_refresh_secs >= 10, "jwt/jwks_refresh_secs", "must be at least 10")
            .check(self.leeway_secs <= 300, "jwt/leeway_secs", "must be 0 to 300")
            .check(len_in(&self.subject_claim, MAX_NAME), "jwt/subject_claim", "must be 1-200 characters");
        match (&self.jwks_url, self.keys.is_empty()) {
            (Some(_), false) => v.check(false, "jwt/jwks_url", "exactly one of keys and jwks_url may be set"),
            (None, true) => v.check(false, "jwt/keys", "exactly one of keys and jwks_url must be set"),
            (Some(url), true) => v.check(valid_url(url), "jwt/jwks_url", "must be an http(s) URL"),
            (None, false) => v.check(self.keys.len() <= MAX_ITEMS, "jwt/keys", "must have at most 100 keys"),
        };
        for (i, key) in self.keys.iter().enumerate() {
            key.validate(v, i, algs);
        }
        let kids: Vec<&str> = self.keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        let unique = kids.iter().enumerate().all(|(i, k)| !kids[..i].contains(k));
        v.check(unique, "jwt/keys", "key ids (kid) must be unique");
        let text = "must be 1-2000 characters";
        list(v, "jwt/issuers", &self.issuers, |s| len_in(s, MAX_TEXT), text);
        list(v, "jwt/audiences", &self.audiences, |s| len_in(s, MAX_TEXT), text);
        list(v, "jwt/required_claims", &self.required_claims, |s| len_in(s, MAX_NAME), "must be 1-200 characters");
        let scope = "must be 1-200 characters without white space";
        list(v, "jwt/required_scopes", &self.required_scopes, valid_scope, scope);
    }

    /// A copy fit to show: every secret replaced by [`REDACTED`].
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        for key in &mut copy.keys {
            if key.secret.is_some() {
                key.secret = Some(REDACTED.to_owned());
            }
        }
        copy
    }

    /// Replaces each [`REDACTED`] secret by the stored secret of the same key: the key with
    /// the same `kid`, or for a key without one, the key at the same position.
    pub(crate) fn carry_over(&mut self, stored: Option<&JwtSettings>) -> Result<(), FieldError> {
        for (i, key) in self.keys.iter_mut().enumerate() {
            if key.secret.as_deref() != Some(REDACTED) {
                continue;
            }
            let same = stored.and_then(|s| match &key.kid {
                Some(kid) => s.keys.iter().find(|k| k.kid.as_ref() == Some(kid)),
                None => s.keys.get(i).filter(|k| k.kid.is_none()),
            });
            let detail = "is \"<redacted>\" but no stored key with this kid (or position) has a secret to keep";
            let kept = same.and_then(|k| k.secret.clone());
            key.secret = Some(kept.ok_or_else(|| FieldError::new(&format!("jwt/keys/{i}/secret"), detail))?);
        }
        Ok(())
    }
}

impl JwtKey {
    fn validate(&self, v: &mut Violations, i: usize, algorithms: &[JwtAlgorithm]) {
        let at = |field: &str| format!("jwt/keys/{i}/{field}");
        let kid_ok = self.kid.as_deref().is_none_or(|k| len_in(k, MAX_NAME));
        v.check(kid_ok, &at("kid"), "must be 1-200 characters").check(
            algorithms.contains(&self.alg),
            &at("alg"),
            "must be one of the accepted algorithms",
        );
        let field = match (&self.secret, &self.pem, self.alg.is_hmac()) {
            (Some(_), None, true) => "secret",
            (None, Some(_), false) => "pem",
            (_, _, true) => {
                v.check(false, &at("secret"), "HS* keys need a secret (and no pem)");
                return;
            }
            (_, _, false) => {
                v.check(false, &at("pem"), "this algorithm needs a pem (and no secret)");
                return;
            }
        };
        if let Err(reason) = self.loads() {
            v.check(false, &at(field), reason);
        }
    }

    /// Whether the gateway's key loader accepts this key (lengths, PEM parsing, family).
    fn loads(&self) -> Result<(), &'static str> {
        let material = match (&self.secret, &self.pem) {
            (Some(secret), _) if secret.len() > MAX_SECRET => return Err("must be at most 1024 characters"),
            (Some(secret), _) => {
                KeyMaterial::Secret(URL_SAFE_NO_PAD.decode(secret).map_err(|_| "must be base64url without padding")?)
            }
            (None, Some(pem)) if pem.len() > MAX_PEM => return Err("must be at most 16384 characters"),
            (None, Some(pem)) => KeyMaterial::Pem(pem.clone()),
            (None, None) => return Err("a key needs a secret or a pem"),
        };
        let alg = self.alg.to_jws();
        let config = JwtConfig {
            algorithms: vec![alg],
            keys: KeySource::Static(vec![StaticKey { kid: self.kid.clone(), alg, material }]),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: Duration::ZERO,
            required_claims: Vec::new(),
            required_scopes: Vec::new(),
        };
        match JwtValidator::new(config) {
            Ok(_) => Ok(()),
            Err(ConfigError::InvalidKey { reason, .. }) => Err(reason),
            Err(_) => Err("is not a usable key"),
        }
    }
}

/// Serializes stored JWT settings without their secrets.
pub(crate) fn serialize_jwt<S: Serializer>(
    v: &Option<sqlx::types::Json<JwtSettings>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    v.as_ref().map(|j| j.0.redacted()).serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_pattern_states_the_shape() {
        let long = "A".repeat(43);
        let samples = ["", "<redacted>", "abc", &long, "A=", "a b", &format!("{long}=")];
        // The shape only; the decoder and the length rule decide the rest.
        let shape = |s: &str| {
            s == REDACTED || (s.len() >= 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b)))
        };
        crate::validate::tests::agree(SECRET_PATTERN, shape, &samples);
    }

    fn hs256(secret: &str) -> JwtKey {
        JwtKey { kid: Some("k1".into()), alg: JwtAlgorithm::HS256, secret: Some(secret.into()), pem: None }
    }

    #[test]
    fn keys_are_checked_by_the_gateway_loader() {
        let good = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(hs256(&good).loads(), Ok(()));
        assert!(hs256(&URL_SAFE_NO_PAD.encode([7u8; 31])).loads().is_err(), "too short");
        assert!(hs256(&format!("{good}=")).loads().is_err(), "padding");
        let pem = JwtKey {
            kid: None,
            alg: JwtAlgorithm::RS256,
            secret: None,
            pem: Some("-----BEGIN PUBLIC KEY-----".into()),
        };
        assert!(pem.loads().is_err());
    }

    #[test]
    fn redacted_secrets_are_carried_over_by_kid() -> Result<(), FieldError> {
        let stored = JwtSettings {
            algorithms: vec![JwtAlgorithm::HS256],
            keys: vec![hs256("stored-secret")],
            jwks_url: None,
            jwks_refresh_secs: 300,
            issuers: vec![],
            audiences: vec![],
            leeway_secs: 30,
            required_claims: vec![],
            required_scopes: vec![],
            subject_claim: "sub".into(),
        };
        let mut sent = stored.redacted();
        assert_eq!(sent.keys[0].secret.as_deref(), Some(REDACTED));
        sent.carry_over(Some(&stored))?;
        assert_eq!(sent, stored);
        let mut renamed = stored.redacted();
        renamed.keys[0].kid = Some("k2".into());
        assert!(renamed.carry_over(Some(&stored)).is_err());
        assert!(stored.redacted().carry_over(None).is_err());
        Ok(())
    }
}
