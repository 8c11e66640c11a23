//! The gateway's view of the configuration: plain data, as loaded from PostgreSQL, read from
//! a declarative file, or restored from the last-known-good copy on disk. Compiled into a
//! [`crate::snapshot::Snapshot`] for the request path. Field names follow the schema
//! (`migrations/`), the contract with the control plane.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::KeyIndex;

/// Everything a gateway enforces, keyed by entity id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigData {
    /// Id of the last `config_events` row reflected here (0 for file-based config).
    pub event_id: i64,
    pub apis: BTreeMap<Uuid, ApiDef>,
    pub targets: BTreeMap<Uuid, TargetDef>,
    pub routes: BTreeMap<Uuid, RouteDef>,
    pub plans: BTreeMap<Uuid, PlanDef>,
    pub developers: BTreeMap<Uuid, DeveloperDef>,
    pub consumers: BTreeMap<Uuid, ConsumerDef>,
    /// Held once, by hash, and shared with every snapshot (see [`KeyIndex`]).
    pub keys: KeyIndex,
    pub subscriptions: BTreeMap<Uuid, SubscriptionDef>,
    /// Token issuer + subject → consumer, for JWT and introspection.
    #[serde(default)]
    pub token_bindings: BTreeMap<Uuid, TokenBindingDef>,
    /// TLS certificates, with their private keys sealed.
    #[serde(default)]
    pub certificates: BTreeMap<Uuid, CertificateDef>,
    /// Client certificate (fingerprint or subject name) → consumer, for mTLS.
    #[serde(default)]
    pub certificate_bindings: BTreeMap<Uuid, CertificateBindingDef>,
}

/// An API and its upstream settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ApiDef {
    pub id: Uuid,
    pub name: String,
    /// `http` or `https`.
    pub upstream_protocol: String,
    /// `round_robin`, `least_requests` or `consistent_hash`.
    pub lb_policy: String,
    pub connect_timeout_ms: i32,
    pub read_timeout_ms: i32,
    pub retries: i32,
    /// `key_auth`, `jwt`, `introspection`, `anonymous`.
    pub auth_methods: Vec<String>,
    pub enabled: bool,
    /// 0 = no overall limit.
    pub total_timeout_ms: i32,
    /// `ip`, `header:<name>` or `cookie:<name>`.
    pub hash_on: Option<String>,
    pub retry_on_statuses: Vec<i32>,
    /// Active health check settings (JSON object, see the admin API).
    pub health_check: Option<serde_json::Value>,
    pub passive_health: Option<serde_json::Value>,
    pub circuit_breaker: Option<serde_json::Value>,
    /// Percent of traffic for the `canary` pool.
    pub canary_weight: i32,
    /// Header forcing the pool (`canary` / `stable`).
    pub canary_header: Option<String>,
    /// Header carrying the API key (case-insensitive).
    pub key_header: String,
    /// Query parameter also accepted for the API key; `None`: header only.
    pub key_query_param: Option<String>,
    /// Remove the credential (key header/parameter, `Authorization`) before proxying.
    pub hide_credentials: bool,
    /// JWT settings (JSON object, see `docs/auth.md`); needed when `auth_methods` has `jwt`.
    pub jwt: Option<serde_json::Value>,
    /// Token introspection settings (JSON object, see `docs/auth.md`).
    pub introspection: Option<serde_json::Value>,
    /// Plan limiting anonymous callers (by client IP); `None`: anonymous calls unlimited.
    pub anonymous_plan_id: Option<Uuid>,
    /// TLS to the upstreams (JSON object, see [`crate::upstream::tls::UpstreamTls`]).
    #[serde(default)]
    pub upstream_tls: Option<serde_json::Value>,
    /// Client-certificate authentication (JSON object, see [`crate::auth::mtls::MtlsSettings`]).
    #[serde(default)]
    pub mtls: Option<serde_json::Value>,
}

/// An upstream target of an API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TargetDef {
    pub id: Uuid,
    pub api_id: Uuid,
    pub host: String,
    pub port: i32,
    pub weight: i32,
    pub backup: bool,
    /// `stable` or `canary`.
    pub pool: String,
}

/// A route of an API. Paths: `/exact`, `/prefix/*`, `/users/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RouteDef {
    pub id: Uuid,
    pub api_id: Uuid,
    pub name: String,
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    #[sqlx(json)]
    pub headers: BTreeMap<String, Vec<String>>,
    #[sqlx(json)]
    pub query: BTreeMap<String, Vec<String>>,
    pub strip_path: bool,
    pub rewrite_path: Option<String>,
    pub priority: i32,
    /// Units one request costs against rate limits and quotas (plans may override).
    pub cost: i32,
    /// Overrides the API's `auth_methods` for this route; `None`: the API's.
    pub auth_methods: Option<Vec<String>>,
}

/// A plan: limits and quotas for subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PlanDef {
    pub id: Uuid,
    pub api_id: Uuid,
    pub name: String,
    pub rate_limit_per_second: Option<i32>,
    pub rate_limit_per_minute: Option<i32>,
    pub rate_limit_per_hour: Option<i32>,
    pub burst: i32,
    pub quota_per_day: Option<i64>,
    pub quota_per_month: Option<i64>,
    pub limit_mode: String,
    pub redis_failure_policy: String,
    /// Per-route cost overrides: route id → cost.
    #[sqlx(json)]
    pub route_costs: BTreeMap<Uuid, i32>,
}

/// A developer account; only its status matters to gateways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct DeveloperDef {
    pub id: Uuid,
    /// `pending`, `active` or `disabled`.
    pub status: String,
}

/// A consumer (app).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ConsumerDef {
    pub id: Uuid,
    pub name: String,
    pub developer_id: Option<Uuid>,
    pub custom_id: Option<String>,
    pub enabled: bool,
}

/// An API key: its SHA-256, never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct KeyDef {
    pub id: Uuid,
    pub consumer_id: Uuid,
    /// SHA-256 of the key.
    #[sqlx(try_from = "Vec<u8>")]
    pub key_hash: KeyHash,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

/// The SHA-256 of an API key; hex in files.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", hex(&self.0[..4]))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TryFrom<Vec<u8>> for KeyHash {
    type Error = String;
    fn try_from(v: Vec<u8>) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(v.as_slice()).map(KeyHash).map_err(|_| format!("a key hash has 32 bytes, not {}", v.len()))
    }
}

impl std::str::FromStr for KeyHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || !s.is_ascii() {
            return Err("a key hash is 64 hex digits".to_owned());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| "a key hash is 64 hex digits".to_owned())?;
        }
        Ok(KeyHash(out))
    }
}

impl Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex(&self.0))
    }
}

impl<'de> Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A subscription of a consumer to a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SubscriptionDef {
    pub id: Uuid,
    pub consumer_id: Uuid,
    pub plan_id: Uuid,
    pub api_id: Uuid,
    /// `pending`, `active` or `suspended`.
    pub status: String,
}

/// Binds a token's issuer and subject (JWT `iss` + subject claim, or an introspection
/// answer's) to a consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TokenBindingDef {
    pub id: Uuid,
    pub consumer_id: Uuid,
    pub issuer: String,
    pub subject: String,
}

/// Binds a client certificate to a consumer: by the leaf's SHA-256 fingerprint (lower-case
/// hex) or by a subject name (a SAN DNS name, e-mail address or URI, or the subject CN).
/// Exactly one of the two is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CertificateBindingDef {
    pub id: Uuid,
    pub consumer_id: Uuid,
    pub fingerprint: Option<String>,
    pub subject: Option<String>,
}

/// A TLS certificate chain and its sealed private key (see [`crate::seal`]).
#[derive(Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CertificateDef {
    pub id: Uuid,
    /// The chain, leaf first, as PEM.
    pub cert_pem: String,
    /// The private key: sealed (from PostgreSQL, column `key_sealed`) or, in DB-less mode,
    /// the PEM from the operator's file.
    #[sqlx(rename = "key_sealed", try_from = "String")]
    pub key: CertKey,
    /// The leaf's names (`api.example.com`, `*.example.com`), lower case.
    pub names: Vec<String>,
    /// When the leaf expires (Unix seconds).
    pub not_after: i64,
    /// Served to clients that ask for no name or a name no certificate has.
    pub is_default: bool,
    /// A client certificate, presented to upstreams that ask for one (`upstream_tls`);
    /// never served by the HTTPS listener.
    #[serde(default)]
    #[sqlx(default)]
    pub client: bool,
}

impl std::fmt::Debug for CertificateDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateDef").field("id", &self.id).field("names", &self.names).finish_non_exhaustive()
    }
}

/// Where a certificate's private key comes from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKey {
    /// Sealed under the secrets key ([`crate::seal`]): what the database holds, and what the
    /// last-known-good copy keeps.
    Sealed(String),
    /// In clear, as the declarative file gives it (DB-less mode keeps no copy on disk).
    Pem(String),
}

impl From<String> for CertKey {
    fn from(sealed: String) -> Self {
        CertKey::Sealed(sealed)
    }
}
