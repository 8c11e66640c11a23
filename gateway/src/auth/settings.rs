//! An API's authentication settings, compiled: accepted methods, where the key is read, the
//! JWT validator and the introspection client (kept across configuration changes that do
//! not touch them, so JWKS and introspection caches survive).

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::jwt::{JwtConfig, JwtValidator, KeyMaterial, KeySource, StaticKey};
use crate::auth::mtls::MtlsAuth;
use crate::auth::ssrf::UrlPolicy;
use crate::config::model::ApiDef;

pub use crate::config::rules::{valid_key_header, valid_key_query_param};
pub use crate::router::Methods;

/// The settings an [`ApiAuth`] was compiled from, to tell whether a change touches it.
#[derive(Debug, Clone, PartialEq)]
struct Source {
    methods: Vec<String>,
    key_header: String,
    key_query_param: Option<String>,
    hide_credentials: bool,
    jwt: Option<serde_json::Value>,
    introspection: Option<serde_json::Value>,
    mtls: Option<serde_json::Value>,
    anonymous_plan_id: Option<Uuid>,
}

impl Source {
    fn of(api: &ApiDef) -> Self {
        Source {
            methods: api.auth_methods.clone(),
            key_header: api.key_header.clone(),
            key_query_param: api.key_query_param.clone(),
            hide_credentials: api.hide_credentials,
            jwt: api.jwt.clone(),
            introspection: api.introspection.clone(),
            mtls: api.mtls.clone(),
            anonymous_plan_id: api.anonymous_plan_id,
        }
    }
}

/// JWT validation for an API, and which claim names the subject.
#[derive(Debug)]
pub struct JwtAuth {
    pub validator: JwtValidator,
    pub subject_claim: String,
}

/// The compiled authentication settings of an API.
#[derive(Debug)]
pub struct ApiAuth {
    pub methods: Methods,
    pub key_header: HeaderName,
    pub key_query_param: Option<Box<str>>,
    pub hide_credentials: bool,
    /// `Err` holds why the settings are unusable: requests needing them fail with 500.
    pub jwt: Option<Result<JwtAuth, String>>,
    pub introspection: Option<Result<crate::auth::introspect::Introspector, String>>,
    pub mtls: Option<Result<MtlsAuth, String>>,
    pub anonymous_plan: Option<Uuid>,
    source: Source,
}

impl ApiAuth {
    /// Compiles `api`'s settings, reusing `prev` when they did not change.
    /// Secrets sealed at rest are opened with `keyring`; settings whose secrets do not open
    /// are unusable (requests needing them fail), never used half-read.
    pub fn compile(
        api: &ApiDef,
        prev: Option<&Arc<ApiAuth>>,
        policy: UrlPolicy,
        keyring: Option<&crate::seal::Keyring>,
    ) -> Arc<ApiAuth> {
        let source = Source::of(api);
        if let Some(p) = prev.filter(|p| p.source == source) {
            return p.clone();
        }
        let methods = Methods::parse(&api.auth_methods);
        let key_header = HeaderName::from_bytes(api.key_header.to_ascii_lowercase().as_bytes())
            .unwrap_or(HeaderName::from_static("x-api-key"));
        let (mut jwt_settings, mut introspection_settings) = (api.jwt.clone(), api.introspection.clone());
        let opened =
            crate::seal::open_api_secrets(api.id, jwt_settings.as_mut(), introspection_settings.as_mut(), keyring);
        // Compiled when the API lists the method or has its settings (a route may list a
        // method its API does not).
        let wants_jwt = methods.has(Methods::JWT) || api.jwt.is_some();
        let wants_introspection = methods.has(Methods::INTROSPECTION) || api.introspection.is_some();
        let (jwt, introspection) = match opened {
            Ok(()) => (
                wants_jwt.then(|| jwt_auth(jwt_settings.as_ref(), policy)),
                wants_introspection.then(|| introspector(introspection_settings.as_ref(), policy)),
            ),
            Err(why) => (wants_jwt.then(|| Err(why.clone())), wants_introspection.then(|| Err(why))),
        };
        let mtls = (methods.has(Methods::MTLS) || api.mtls.is_some()).then(|| match &api.mtls {
            Some(settings) => MtlsAuth::new(settings),
            None => Err("mtls is accepted but not configured".to_owned()),
        });
        for (what, failed) in [
            ("jwt", jwt.as_ref().and_then(|r| r.as_ref().err())),
            ("introspection", introspection.as_ref().and_then(|r| r.as_ref().err())),
            ("mtls", mtls.as_ref().and_then(|r| r.as_ref().err())),
        ] {
            if let Some(error) = failed {
                tracing::error!(api = %api.name, setting = what, %error, "unusable authentication settings");
            }
        }
        Arc::new(ApiAuth {
            methods,
            key_header,
            key_query_param: api.key_query_param.as_deref().map(Box::from),
            hide_credentials: api.hide_credentials,
            jwt,
            introspection,
            mtls,
            anonymous_plan: api.anonymous_plan_id,
            source,
        })
    }
}

fn introspector(
    settings: Option<&serde_json::Value>,
    policy: UrlPolicy,
) -> Result<crate::auth::introspect::Introspector, String> {
    let value = settings.ok_or("introspection is accepted but not configured")?;
    let config = crate::auth::introspect::IntrospectionConfig::from_json(value.clone()).map_err(|e| e.to_string())?;
    crate::auth::introspect::Introspector::new(config, policy).map_err(|e| e.to_string())
}

/// The JSON shape of an API's `jwt` setting (see `docs/auth.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub keys: Vec<JwtKeySetting>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_refresh")]
    pub jwks_refresh_secs: u64,
    #[serde(default)]
    pub issuers: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
}

/// One static key of [`JwtSettings`]: an HMAC `secret` (base64url) or a public `pem`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeySetting {
    #[serde(default)]
    pub kid: Option<String>,
    pub alg: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub pem: Option<String>,
}

fn default_refresh() -> u64 {
    300
}
fn default_leeway() -> u64 {
    30
}
fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    name.parse::<Algorithm>().map_err(|_| format!("unknown algorithm {name:?}"))
}

impl JwtSettings {
    /// The validator configuration these settings describe.
    pub fn to_config(&self, policy: UrlPolicy) -> Result<JwtConfig, String> {
        let algorithms = self.algorithms.iter().map(|a| algorithm(a)).collect::<Result<Vec<_>, _>>()?;
        let keys = match (&self.jwks_url, self.keys.is_empty()) {
            (Some(url), true) => {
                KeySource::Jwks { url: url.clone(), refresh: Duration::from_secs(self.jwks_refresh_secs), policy }
            }
            (None, false) => KeySource::Static(self.keys.iter().map(static_key).collect::<Result<_, _>>()?),
            _ => return Err("exactly one of keys and jwks_url must be given".to_owned()),
        };
        Ok(JwtConfig {
            algorithms,
            keys,
            issuers: self.issuers.clone(),
            audiences: self.audiences.clone(),
            leeway: Duration::from_secs(self.leeway_secs),
            required_claims: self.required_claims.clone(),
            required_scopes: self.required_scopes.clone(),
        })
    }
}

fn static_key(k: &JwtKeySetting) -> Result<StaticKey, String> {
    use base64::Engine;
    let material = match (&k.secret, &k.pem) {
        (Some(secret), None) => KeyMaterial::Secret(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(secret.trim_end_matches('='))
                .map_err(|_| "a key secret is base64url".to_owned())?,
        ),
        (None, Some(pem)) => KeyMaterial::Pem(pem.clone()),
        _ => return Err("a key has exactly one of secret and pem".to_owned()),
    };
    Ok(StaticKey { kid: k.kid.clone(), alg: algorithm(&k.alg)?, material })
}

fn jwt_auth(settings: Option<&serde_json::Value>, policy: UrlPolicy) -> Result<JwtAuth, String> {
    let value = settings.ok_or("jwt is accepted but not configured")?;
    let settings: JwtSettings = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let validator = JwtValidator::new(settings.to_config(policy)?).map_err(|e| e.to_string())?;
    Ok(JwtAuth { validator, subject_claim: settings.subject_claim })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_are_opened_with_the_nodes_key_and_only_then() -> Result<(), String> {
        use crate::seal::{JWT_SECRET, Keyring, api_secret_aad};
        let ring = Keyring::new(&Keyring::generate_key(), &[]).map_err(|e| e.to_string())?;
        let id = Uuid::from_u128(7);
        let secret = ring
            .seal(b"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I", &api_secret_aad(id, JWT_SECRET))
            .map_err(|e| e.to_string())?;
        let api: ApiDef = serde_json::from_value(serde_json::json!({
            "id": id, "name": "orders", "upstream_protocol": "http", "lb_policy": "round_robin",
            "connect_timeout_ms": 1000, "read_timeout_ms": 1000, "retries": 0, "auth_methods": ["jwt"],
            "enabled": true, "total_timeout_ms": 0, "hash_on": null, "retry_on_statuses": [],
            "health_check": null, "passive_health": null, "circuit_breaker": null, "canary_weight": 0,
            "canary_header": null, "key_header": "x-api-key", "key_query_param": null, "hide_credentials": true,
            "jwt": {"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": secret}]},
            "introspection": null, "anonymous_plan_id": null, "mtls": null,
        }))
        .map_err(|e| e.to_string())?;
        let policy = UrlPolicy::default();
        let with = ApiAuth::compile(&api, None, policy, Some(&ring));
        assert!(
            matches!(with.jwt, Some(Ok(_))),
            "opened with the key: {:?}",
            with.jwt.as_ref().map(|r| r.as_ref().err())
        );
        let without = ApiAuth::compile(&api, None, policy, None);
        let why = without.jwt.as_ref().and_then(|r| r.as_ref().err()).cloned().unwrap_or_default();
        assert!(why.contains("no secrets key"), "{why}");
        let other = Keyring::new(&Keyring::generate_key(), &[]).map_err(|e| e.to_string())?;
        assert!(matches!(ApiAuth::compile(&api, None, policy, Some(&other)).jwt, Some(Err(_))), "another key");
        Ok(())
    }

    #[test]
    fn methods_parse_and_default_to_anonymous() {
        let m = Methods::parse(&["key_auth".to_owned(), "jwt".to_owned()]);
        assert!(m.has(Methods::KEY_AUTH) && m.has(Methods::JWT));
        assert!(!m.has(Methods::ANONYMOUS) && !m.has(Methods::INTROSPECTION));
        assert_eq!(Methods::parse(&[]), Methods::ANONYMOUS);
    }

    #[test]
    fn jwt_settings_need_exactly_one_key_source() {
        let both: JwtSettings = serde_json::from_value(serde_json::json!({
            "algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": "c2VjcmV0"}], "jwks_url": "https://x/"
        }))
        .unwrap();
        assert!(both.to_config(UrlPolicy::default()).is_err());
        let bad_alg: JwtSettings = serde_json::from_value(serde_json::json!({
            "algorithms": ["none"], "keys": [{"alg": "HS256", "secret": "c2VjcmV0"}]
        }))
        .unwrap();
        assert!(bad_alg.to_config(UrlPolicy::default()).unwrap_err().contains("unknown algorithm"));
    }
}
