//! JWT validation: an explicit algorithm allow-list, keys bound to their algorithm class,
//! static keys or a JWKS URL, and `exp`/`nbf`/`iss`/`aud`/scope/claim checks.
//!
//! Order of checks, cheapest and most attacker-controlled first: token shape and strict
//! base64url → header policy (`alg: none`, allow-list, forbidden `jku`/`x5u`/`jwk`/`x5c`/
//! `crit`) → key selection by `kid` and class → signature → registered claims (through
//! `jsonwebtoken::decode` with every `Validation` field set) → required claims and scopes.
//! Header-referenced keys are never fetched: tokens carrying `jku`, `x5u`, `jwk` or `x5c` are
//! rejected outright rather than having the header ignored, so a token can never look as if
//! it told us where its key is.

mod claims;
mod error;
mod jwks;
mod keys;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

pub use self::claims::Claims;
pub use self::error::{ConfigError, JwtError};
use self::jwks::JwksCache;
pub use self::jwks::MIN_REFETCH;
pub use self::keys::{KeyMaterial, StaticKey};
use self::keys::{KeyStore, VerifyKey};
use crate::auth::ssrf::UrlPolicy;

/// Where verification keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Keys from configuration.
    Static(Vec<StaticKey>),
    /// A JWK set fetched from `url` (which must pass `policy`), refreshed every `refresh`
    /// and on an unknown `kid` (at most once per [`MIN_REFETCH`]).
    Jwks { url: String, refresh: Duration, policy: UrlPolicy },
}

/// What a route accepts, as configured.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Accepted `alg` values; must not be empty.
    pub algorithms: Vec<Algorithm>,
    pub keys: KeySource,
    /// Accepted `iss` values; empty = `iss` not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (any one suffices); empty = `aud` not checked.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf` (whole seconds).
    pub leeway: Duration,
    /// Claims that must be present and not null.
    pub required_claims: Vec<String>,
    /// Scopes (`scope` string or `scp` array) that must all be granted.
    pub required_scopes: Vec<String>,
}

/// A compiled [`JwtConfig`]: cheap to share, validates tokens concurrently.
#[derive(Debug)]
pub struct JwtValidator {
    algorithms: Vec<Algorithm>,
    keys: Keys,
    /// One `jsonwebtoken` validation per allowed algorithm, built once.
    validations: Vec<(Algorithm, Validation)>,
    required_claims: Vec<String>,
    required_scopes: Vec<String>,
}

#[derive(Debug)]
enum Keys {
    Static(KeyStore),
    Jwks(JwksCache),
}

/// A token whose signature verified, before any claim check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJws {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The decoded payload (not necessarily JSON).
    pub payload: Vec<u8>,
}

/// The parts of a compact JWS after the header policy passed.
struct Parsed<'t> {
    alg: Algorithm,
    kid: Option<String>,
    signing_input: &'t str,
    payload_b64: &'t str,
    signature_b64: &'t str,
}

impl JwtValidator {
    /// Compiles the configuration; fails on an empty allow-list or an unusable key.
    pub fn new(cfg: JwtConfig) -> Result<Self, ConfigError> {
        if cfg.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        let validations = cfg.algorithms.iter().map(|&alg| (alg, validation_for(alg, &cfg))).collect();
        let keys = match cfg.keys {
            KeySource::Static(list) => Keys::Static(load_static_keys(&list)?),
            KeySource::Jwks { url, refresh, policy } => {
                policy.parse(&url).map_err(ConfigError::JwksUrl)?;
                if refresh.is_zero() {
                    return Err(ConfigError::ZeroRefresh);
                }
                Keys::Jwks(JwksCache::new(url, refresh, policy))
            }
        };
        Ok(Self {
            algorithms: cfg.algorithms,
            keys,
            validations,
            required_claims: cfg.required_claims,
            required_scopes: cfg.required_scopes,
        })
    }

    /// Validates a bearer token: signature, registered claims, required claims and scopes.
    pub async fn validate(&self, token: &str) -> Result<Claims, JwtError> {
        let parsed = self.parse(token)?;
        let validation = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == parsed.alg)
            .map(|(_, v)| v)
            .ok_or(JwtError::AlgorithmNotAllowed)?;
        let map = self
            .with_keys(&parsed, |key| {
                jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
                    .map(|data| data.claims)
                    .map_err(|e| JwtError::from_decode(&e))
            })
            .await?;
        let claims = Claims::from_map(map)?;
        claims.require(&self.required_claims, &self.required_scopes)?;
        Ok(claims)
    }

    /// Verifies only the header policy and the signature of a compact JWS, whatever its
    /// payload: the signature-level core of [`validate`](Self::validate), used by the
    /// Wycheproof vectors whose payloads are not JWT claims.
    pub async fn verify_signature(&self, token: &str) -> Result<VerifiedJws, JwtError> {
        let parsed = self.parse(token)?;
        let payload = URL_SAFE_NO_PAD.decode(parsed.payload_b64).map_err(|_| JwtError::Malformed)?;
        let message = parsed.signing_input.as_bytes();
        self.with_keys(&parsed, |key| {
            match jsonwebtoken::crypto::verify(parsed.signature_b64, message, &key.key, parsed.alg) {
                Ok(true) => Ok(()),
                Ok(false) => Err(JwtError::BadSignature),
                Err(e) => Err(JwtError::from_decode(&e)),
            }
        })
        .await?;
        Ok(VerifiedJws { alg: parsed.alg, kid: parsed.kid, payload })
    }

    /// Runs `check` with each candidate key until one is not a bad signature; with a JWKS,
    /// an unknown `kid` triggers one (rate-limited) refetch before giving up.
    async fn with_keys<T>(
        &self,
        parsed: &Parsed<'_>,
        check: impl Fn(&VerifyKey) -> Result<T, JwtError>,
    ) -> Result<T, JwtError> {
        let kid = parsed.kid.as_deref();
        match &self.keys {
            Keys::Static(store) => try_keys(&store.select(kid, parsed.alg)?, &check),
            Keys::Jwks(cache) => {
                let loaded = cache.keys().await?;
                match loaded.store.select(kid, parsed.alg) {
                    Ok(keys) => try_keys(&keys, &check),
                    Err(JwtError::UnknownKid) => {
                        let newer = cache.refetch(Some(&loaded)).await?;
                        try_keys(&newer.store.select(kid, parsed.alg)?, &check)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Splits the token and applies the header policy.
    fn parse<'t>(&self, token: &'t str) -> Result<Parsed<'t>, JwtError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| JwtError::Malformed)?;
        // The header first: an unsigned `alg: none` token is named as such.
        let (alg, kid) = self.header_policy(&header)?;
        if signature_b64.is_empty() {
            return Err(JwtError::Malformed);
        }
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        Ok(Parsed { alg, kid, signing_input, payload_b64, signature_b64 })
    }

    /// Checks the decoded header: a JSON object with a string `alg` that is not `none`,
    /// supported and allowed, an optional string `kid`, and no key-reference parameters.
    fn header_policy(&self, header: &[u8]) -> Result<(Algorithm, Option<String>), JwtError> {
        const FORBIDDEN: [&str; 5] = ["jku", "x5u", "jwk", "x5c", "crit"];
        let header: Map<String, Value> = serde_json::from_slice(header).map_err(|_| JwtError::Malformed)?;
        let Some(Value::String(alg)) = header.get("alg") else {
            return Err(JwtError::Malformed);
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(JwtError::AlgNone);
        }
        if FORBIDDEN.iter().any(|p| header.contains_key(*p)) {
            return Err(JwtError::ForbiddenHeader);
        }
        let alg: Algorithm = alg.parse().map_err(|_| JwtError::UnsupportedAlgorithm)?;
        if !self.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JwtError::Malformed),
        };
        Ok((alg, kid))
    }
}

/// The first result that is not a bad signature; a bad signature if every key says so.
fn try_keys<T>(keys: &[&VerifyKey], check: &impl Fn(&VerifyKey) -> Result<T, JwtError>) -> Result<T, JwtError> {
    for key in keys {
        match check(key) {
            Err(JwtError::BadSignature) => continue,
            other => return other,
        }
    }
    Err(JwtError::BadSignature)
}

fn load_static_keys(list: &[StaticKey]) -> Result<KeyStore, ConfigError> {
    if list.is_empty() {
        return Err(ConfigError::NoKeys);
    }
    let keys = list
        .iter()
        .enumerate()
        .map(|(index, k)| keys::load_static(k).map_err(|reason| ConfigError::InvalidKey { index, reason }))
        .collect::<Result<_, _>>()?;
    Ok(KeyStore { keys })
}

/// Every field set on purpose: `jsonwebtoken`'s defaults (no `nbf` check, `exp` only
/// required) are not relied on, and a new field in the crate fails to compile here.
fn validation_for(alg: Algorithm, cfg: &JwtConfig) -> Validation {
    let set = |v: &[String]| (!v.is_empty()).then(|| v.iter().cloned().collect::<HashSet<_>>());
    let mut required: HashSet<String> = HashSet::from(["exp".to_owned()]);
    if !cfg.issuers.is_empty() {
        required.insert("iss".to_owned());
    }
    if !cfg.audiences.is_empty() {
        required.insert("aud".to_owned());
    }
    Validation {
        required_spec_claims: required,
        leeway: cfg.leeway.as_secs(),
        reject_tokens_expiring_in_less_than: 0,
        validate_exp: true,
        validate_nbf: true,
        validate_aud: !cfg.audiences.is_empty(),
        aud: set(&cfg.audiences),
        iss: set(&cfg.issuers),
        sub: None,
        algorithms: vec![alg],
    }
}

#[cfg(test)]
mod tests;
