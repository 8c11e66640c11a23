//! APIs (Kong's "services"): an upstream definition, auth requirements, an optional OpenAPI
//! document and portal visibility. Targets, routes and plans hang off an API.

use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::edge_auth::api_key::{key_header_schema, key_query_param_schema, valid_key_header, valid_key_query_param};
use crate::edge_auth::{self, IntrospectionSettings, JwtSettings};
use crate::error::ApiError;
use crate::ops::resource_handlers;
use crate::resource::{ColumnWriter, Columns, Filter, Resource, Write, eq};
use crate::upstream::{CircuitBreaker, HealthCheck, PassiveHealth, valid_hash_on};
use crate::validate::{Validate, Violations, array_schema};
use tollgate_gateway::seal::{self, Keyring};

/// Upstream statuses a request may be retried on.
const RETRYABLE: [i32; 6] = [408, 429, 500, 502, 503, 504];

fn auth_methods_schema() -> utoipa::openapi::schema::ArrayBuilder {
    let method = utoipa::openapi::Ref::from_schema_name("AuthMethod");
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(method)
        .unique_items(true)
        .description(Some("Accepted credentials; any one suffices. `anonymous` lets unauthenticated calls through."))
}

fn retry_statuses_schema() -> utoipa::openapi::schema::ArrayBuilder {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    array_schema(ObjectBuilder::new().schema_type(Type::Integer).enum_values(Some(RETRYABLE)), 100)
        .description(Some("Upstream statuses that make an idempotent request retry."))
}

/// How requests are spread over an API's targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type, Default)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum LbPolicy {
    /// Weighted round-robin.
    #[default]
    RoundRobin,
    /// Least outstanding requests (power of two choices).
    LeastRequests,
    /// Consistent hashing (sticky sessions).
    ConsistentHash,
}

/// Scheme used to reach the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type, Default)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Http,
    Https,
}

/// A way a client may authenticate to an API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    KeyAuth,
    Jwt,
    Introspection,
    /// A client certificate on the gateway's HTTPS listener (see `mtls`).
    Mtls,
    Anonymous,
}

impl AuthMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthMethod::KeyAuth => "key_auth",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Introspection => "introspection",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Anonymous => "anonymous",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        [AuthMethod::KeyAuth, AuthMethod::Jwt, AuthMethod::Introspection, AuthMethod::Mtls, AuthMethod::Anonymous]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

fn default_auth() -> Vec<AuthMethod> {
    vec![AuthMethod::KeyAuth]
}
fn default_connect_timeout() -> i32 {
    5_000
}
fn default_read_timeout() -> i32 {
    60_000
}
fn default_true() -> bool {
    true
}
fn default_key_header() -> String {
    "x-api-key".to_owned()
}

/// The writable fields of an API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "orders", "description": "Order management", "upstream_protocol": "http",
    "lb_policy": "round_robin", "auth_methods": ["key_auth"]}))]
pub struct ApiInput {
    /// Unique slug: a-z, 0-9, `.`, `_`, `-`; at most 63 characters.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$", max_length = 63)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    #[serde(default)]
    pub upstream_protocol: UpstreamProtocol,
    #[serde(default)]
    pub lb_policy: LbPolicy,
    /// Milliseconds to establish an upstream connection.
    #[serde(default = "default_connect_timeout")]
    #[schema(minimum = 1, maximum = 600000)]
    pub connect_timeout_ms: i32,
    /// Milliseconds to wait for the upstream's response.
    #[serde(default = "default_read_timeout")]
    #[schema(minimum = 1, maximum = 3600000)]
    pub read_timeout_ms: i32,
    /// Retries of failed idempotent requests.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10)]
    pub retries: i32,
    /// Accepted credentials; any one suffices. `anonymous` lets unauthenticated calls through.
    #[serde(default = "default_auth")]
    #[schema(schema_with = auth_methods_schema)]
    pub auth_methods: Vec<AuthMethod>,
    /// The API's OpenAPI document (a JSON object), published in the developer portal.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub openapi_spec: Option<serde_json::Value>,
    /// Listed in the developer portal's catalog.
    #[serde(default)]
    pub portal_visible: bool,
    /// Catalog tags: up to 20, each 1-30 lowercase letters, digits or `-`.
    #[serde(default)]
    #[schema(max_items = 20, value_type = Vec<String>)]
    pub tags: Vec<String>,
    /// Disabled APIs are not served by gateways.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Milliseconds for the whole exchange including retries; 0 means no overall limit.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3600000)]
    pub total_timeout_ms: i32,
    /// For `consistent_hash` (and required by it): `ip`, `header:<name>` or `cookie:<name>`.
    #[serde(default)]
    #[schema(pattern = "^(?:ip|header:[A-Za-z0-9-]{1,128}|cookie:[A-Za-z0-9_.-]{1,128})$")]
    pub hash_on: Option<String>,
    /// Upstream statuses that make an idempotent request retry (from 408, 429, 500, 502, 503, 504).
    #[serde(default = "default_retry_statuses")]
    #[schema(schema_with = retry_statuses_schema)]
    pub retry_on_statuses: Vec<i32>,
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub passive_health: Option<PassiveHealth>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Percent of requests sent to the `canary` target pool.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub canary_weight: i32,
    /// A request header that forces the pool: value `canary` or `stable`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9-]{1,128}$")]
    pub canary_header: Option<String>,
    /// Header carrying the API key, matched case-insensitively; not a framing, hop-by-hop or identity header.
    #[serde(default = "default_key_header")]
    #[schema(schema_with = key_header_schema)]
    pub key_header: String,
    /// Query parameter also accepted for the API key; null: the header only.
    #[serde(default)]
    #[schema(schema_with = key_query_param_schema)]
    pub key_query_param: Option<String>,
    /// Remove the credential (key header or parameter, `Authorization`) before proxying.
    #[serde(default = "default_true")]
    pub hide_credentials: bool,
    /// JWT validation; required when `auth_methods` (of the API or of a route) lists `jwt`.
    #[serde(default)]
    pub jwt: Option<JwtSettings>,
    /// Token introspection; required when `auth_methods` (of the API or of a route) lists `introspection`.
    #[serde(default)]
    pub introspection: Option<IntrospectionSettings>,
    /// A plan of this API limiting anonymous calls (per client IP); null: not limited.
    #[serde(default)]
    pub anonymous_plan_id: Option<Uuid>,
    /// TLS to the upstreams (with `upstream_protocol: https`); null: the public roots and
    /// the target's host.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTlsSettings>,
    /// Client-certificate authentication; required when `auth_methods` (of the API or of a
    /// route) lists `mtls`.
    #[serde(default)]
    pub mtls: Option<MtlsSettings>,
}

/// Client-certificate authentication (mTLS) on the gateways' HTTPS listener: a client
/// certificate whose chain ends at one of these CAs, valid now and meant for client
/// authentication, identifies the consumer a certificate binding names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MtlsSettings {
    /// PEM CA certificates (roots or intermediates) that issue the clients' certificates
    /// (at most 256 KiB and 200 certificates).
    #[schema(min_length = 1, max_length = 262144)]
    pub ca_bundle: String,
}

impl MtlsSettings {
    /// The gateway's own check ([`tollgate_gateway::pki::MtlsSettings::from_value`]).
    fn validate(&self, v: &mut Violations) {
        let checked = serde_json::to_value(self)
            .map_err(|e| e.to_string())
            .and_then(|j| tollgate_gateway::pki::MtlsSettings::from_value(&j).map(|_| ()));
        if let Err(why) = checked {
            let (field, detail) = why.split_once(": ").unwrap_or(("mtls", why.as_str()));
            v.check(false, field, detail);
        }
    }
}

/// TLS to an API's upstreams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSettings {
    /// PEM CA certificates trusted for the upstreams instead of the public roots (at most
    /// 256 KiB and 200 certificates).
    #[serde(default)]
    #[schema(max_length = 262144)]
    pub ca_bundle: Option<String>,
    /// Verify the upstream's certificate chain and name. `false` is honoured only by
    /// gateways started with `--allow-insecure-upstream-tls`; others verify regardless.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// The name sent as SNI and verified instead of the target's host (a DNS name or IP
    /// address).
    #[serde(default)]
    #[schema(max_length = 253)]
    pub server_name: Option<String>,
    /// A certificate of `usage: client` presented to upstreams that ask for one (mTLS to
    /// the upstream); it cannot be deleted while an API names it.
    #[serde(default)]
    pub client_certificate_id: Option<Uuid>,
}

impl UpstreamTlsSettings {
    /// The gateway's own check ([`tollgate_gateway::upstream::tls::UpstreamTls::from_value`]).
    fn validate(&self, v: &mut Violations) {
        let checked = serde_json::to_value(self)
            .map_err(|e| e.to_string())
            .and_then(|j| tollgate_gateway::upstream::tls::UpstreamTls::from_value(&j).map_err(|e| e.to_string()));
        if let Err(why) = checked {
            let field = why.split_once(": ").map_or("upstream_tls", |(f, _)| f).to_owned();
            let detail = why.split_once(": ").map_or(why.as_str(), |(_, d)| d).to_owned();
            v.check(false, &field, &detail);
        }
    }
}

fn default_retry_statuses() -> Vec<i32> {
    vec![502, 503, 504]
}

impl Validate for ApiInput {
    fn validate(&self, v: &mut Violations) {
        v.slug("name", &self.name)
            .max_len("description", &self.description, 2000)
            .check((1..=600_000).contains(&self.connect_timeout_ms), "connect_timeout_ms", "must be 1 to 600000")
            .check((1..=3_600_000).contains(&self.read_timeout_ms), "read_timeout_ms", "must be 1 to 3600000")
            .check((0..=10).contains(&self.retries), "retries", "must be 0 to 10")
            .check(self.openapi_spec.as_ref().is_none_or(|s| s.is_object()), "openapi_spec", "must be a JSON object");
        v.check((0..=3_600_000).contains(&self.total_timeout_ms), "total_timeout_ms", "must be 0 to 3600000")
            .check(
                self.hash_on.as_deref().is_none_or(valid_hash_on),
                "hash_on",
                "must be 'ip', 'header:<name>' or 'cookie:<name>'",
            )
            .check(
                self.lb_policy != LbPolicy::ConsistentHash || self.hash_on.is_some(),
                "hash_on",
                "is required by consistent_hash",
            )
            .check(
                self.retry_on_statuses.iter().all(|s| RETRYABLE.contains(s)),
                "retry_on_statuses",
                "must be among 408, 429, 500, 502, 503, 504",
            )
            .check(self.retry_on_statuses.len() <= 100, "retry_on_statuses", "must be at most 100 statuses")
            .check((0..=100).contains(&self.canary_weight), "canary_weight", "must be 0 to 100")
            .check(
                self.canary_header.as_deref().is_none_or(|h| {
                    (1..=128).contains(&h.len()) && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }),
                "canary_header",
                "must be a header name",
            );
        if let Some(h) = &self.health_check {
            h.validate(v);
        }
        if let Some(p) = &self.passive_health {
            p.validate(v);
        }
        if let Some(b) = &self.circuit_breaker {
            b.validate(v);
        }
        let tag_ok = |t: &String| {
            (1..=30).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        v.check(
            self.tags.len() <= 20 && self.tags.iter().all(tag_ok),
            "tags",
            "up to 20 tags of 1-30 lowercase letters, digits or -",
        );
        let methods = &self.auth_methods;
        let unique = methods.iter().enumerate().all(|(i, m)| !methods[..i].contains(m));
        v.check(unique, "auth_methods", "must not repeat a method");
        self.validate_auth(v);
        v.check(
            self.upstream_tls.is_none() || self.upstream_protocol == UpstreamProtocol::Https,
            "upstream_tls",
            "applies to upstream_protocol https only",
        );
        if let Some(tls) = &self.upstream_tls {
            tls.validate(v);
        }
    }
}

impl ApiInput {
    fn validate_auth(&self, v: &mut Violations) {
        v.check(
            valid_key_header(&self.key_header),
            "key_header",
            "must be a header name, not a framing, hop-by-hop or identity header",
        )
        .check(
            self.key_query_param.as_deref().is_none_or(valid_key_query_param),
            "key_query_param",
            "must be 1-128 of A-Z, a-z, 0-9, '_', '.', '-'",
        )
        .check(
            !self.auth_methods.contains(&AuthMethod::Jwt) || self.jwt.is_some(),
            "jwt",
            "is required when auth_methods lists jwt",
        )
        .check(
            !self.auth_methods.contains(&AuthMethod::Introspection) || self.introspection.is_some(),
            "introspection",
            "is required when auth_methods lists introspection",
        )
        .check(
            !self.auth_methods.contains(&AuthMethod::Mtls) || self.mtls.is_some(),
            "mtls",
            "is required when auth_methods lists mtls",
        );
        if let Some(mtls) = &self.mtls {
            mtls.validate(v);
        }
        if let Some(jwt) = &self.jwt {
            jwt.validate(v);
        }
        if let Some(introspection) = &self.introspection {
            introspection.validate(v);
        }
    }
}

impl Columns for ApiInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        let auth: Vec<&str> = self.auth_methods.iter().map(|m| m.as_str()).collect();
        w.col("name", &self.name)
            .col("description", &self.description)
            .col("upstream_protocol", self.upstream_protocol)
            .col("lb_policy", self.lb_policy)
            .col("connect_timeout_ms", self.connect_timeout_ms)
            .col("read_timeout_ms", self.read_timeout_ms)
            .col("retries", self.retries)
            .col("auth_methods", auth)
            .col("openapi_spec", self.openapi_spec.as_ref().map(sqlx::types::Json))
            .col("portal_visible", self.portal_visible)
            .col("tags", &self.tags)
            .col("enabled", self.enabled)
            .col("total_timeout_ms", self.total_timeout_ms)
            .col("hash_on", self.hash_on.as_deref())
            .col("retry_on_statuses", &self.retry_on_statuses)
            .col("health_check", self.health_check.as_ref().map(sqlx::types::Json))
            .col("passive_health", self.passive_health.as_ref().map(sqlx::types::Json))
            .col("circuit_breaker", self.circuit_breaker.as_ref().map(sqlx::types::Json))
            .col("canary_weight", self.canary_weight)
            .col("canary_header", self.canary_header.as_deref())
            .col("key_header", &self.key_header)
            .col("key_query_param", self.key_query_param.as_deref())
            .col("hide_credentials", self.hide_credentials)
            .col("jwt", self.jwt.as_ref().map(sqlx::types::Json))
            .col("introspection", self.introspection.as_ref().map(sqlx::types::Json))
            .col("anonymous_plan_id", self.anonymous_plan_id)
            .col("upstream_tls", self.upstream_tls.as_ref().map(sqlx::types::Json))
            .col("mtls", self.mtls.as_ref().map(sqlx::types::Json));
    }
}

/// An API as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Api {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub upstream_protocol: UpstreamProtocol,
    pub lb_policy: LbPolicy,
    pub connect_timeout_ms: i32,
    pub read_timeout_ms: i32,
    pub retries: i32,
    #[sqlx(try_from = "Vec<String>")]
    #[schema(value_type = Vec<AuthMethod>)]
    pub auth_methods: AuthMethods,
    pub openapi_spec: Option<serde_json::Value>,
    pub portal_visible: bool,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub total_timeout_ms: i32,
    pub hash_on: Option<String>,
    pub retry_on_statuses: Vec<i32>,
    #[schema(value_type = Option<HealthCheck>)]
    pub health_check: Option<sqlx::types::Json<HealthCheck>>,
    #[schema(value_type = Option<PassiveHealth>)]
    pub passive_health: Option<sqlx::types::Json<PassiveHealth>>,
    #[schema(value_type = Option<CircuitBreaker>)]
    pub circuit_breaker: Option<sqlx::types::Json<CircuitBreaker>>,
    pub canary_weight: i32,
    pub canary_header: Option<String>,
    pub key_header: String,
    pub key_query_param: Option<String>,
    pub hide_credentials: bool,
    /// Secrets read as `"<redacted>"`.
    #[serde(serialize_with = "edge_auth::serialize_jwt")]
    #[schema(value_type = Option<JwtSettings>)]
    pub jwt: Option<sqlx::types::Json<JwtSettings>>,
    /// The client secret reads as `"<redacted>"`.
    #[serde(serialize_with = "edge_auth::serialize_introspection")]
    #[schema(value_type = Option<IntrospectionSettings>)]
    pub introspection: Option<sqlx::types::Json<IntrospectionSettings>>,
    pub anonymous_plan_id: Option<Uuid>,
    #[schema(value_type = Option<UpstreamTlsSettings>)]
    pub upstream_tls: Option<sqlx::types::Json<UpstreamTlsSettings>>,
    #[schema(value_type = Option<MtlsSettings>)]
    pub mtls: Option<sqlx::types::Json<MtlsSettings>>,
    /// Incremented by every change; sent as the `ETag`.
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Auth methods as read from the database's text array.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct AuthMethods(pub Vec<AuthMethod>);

impl TryFrom<Vec<String>> for AuthMethods {
    type Error = String;
    fn try_from(v: Vec<String>) -> Result<Self, Self::Error> {
        v.iter()
            .map(|s| AuthMethod::parse(s).ok_or_else(|| format!("unknown auth method {s}")))
            .collect::<Result<_, _>>()
            .map(AuthMethods)
    }
}

impl Resource for Api {
    const KIND: &'static str = "api";
    const TABLE: &'static str = "apis";
    type Input = ApiInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> ApiInput {
        ApiInput {
            name: self.name.clone(),
            description: self.description.clone(),
            upstream_protocol: self.upstream_protocol,
            lb_policy: self.lb_policy,
            connect_timeout_ms: self.connect_timeout_ms,
            read_timeout_ms: self.read_timeout_ms,
            retries: self.retries,
            auth_methods: self.auth_methods.0.clone(),
            openapi_spec: self.openapi_spec.clone(),
            portal_visible: self.portal_visible,
            tags: self.tags.clone(),
            enabled: self.enabled,
            total_timeout_ms: self.total_timeout_ms,
            hash_on: self.hash_on.clone(),
            retry_on_statuses: self.retry_on_statuses.clone(),
            health_check: self.health_check.as_ref().map(|j| j.0.clone()),
            passive_health: self.passive_health.as_ref().map(|j| j.0.clone()),
            circuit_breaker: self.circuit_breaker.as_ref().map(|j| j.0.clone()),
            canary_weight: self.canary_weight,
            canary_header: self.canary_header.clone(),
            key_header: self.key_header.clone(),
            key_query_param: self.key_query_param.clone(),
            hide_credentials: self.hide_credentials,
            jwt: self.jwt.as_ref().map(|j| j.0.clone()),
            introspection: self.introspection.as_ref().map(|j| j.0.clone()),
            anonymous_plan_id: self.anonymous_plan_id,
            upstream_tls: self.upstream_tls.as_ref().map(|j| j.0.clone()),
            mtls: self.mtls.as_ref().map(|j| j.0.clone()),
        }
    }

    fn open_secrets(&mut self, state: &crate::state::AppState) -> Result<(), ApiError> {
        open_secrets(self, state.config().secrets.as_deref())
    }

    /// Seals the JWT HMAC secrets and the introspection client secret under the secrets
    /// key (in clear when the admin has none, as before keys existed: see operations.md).
    fn seal_secrets(input: &mut ApiInput, id: Uuid, state: &crate::state::AppState) -> Result<(), ApiError> {
        match state.config().secrets.as_deref() {
            Some(ring) => seal_secrets(input, id, ring),
            None => Ok(()),
        }
    }

    fn carry_over(input: &mut ApiInput, current: Option<&Api>) -> Result<(), ApiError> {
        let fail = |e| ApiError::validation(vec![e]);
        if let Some(jwt) = &mut input.jwt {
            jwt.carry_over(current.and_then(|c| c.jwt.as_ref()).map(|j| &j.0)).map_err(fail)?;
        }
        if let Some(introspection) = &mut input.introspection {
            let stored = current.and_then(|c| c.introspection.as_ref()).map(|j| &j.0);
            introspection.carry_over(stored).map_err(fail)?;
        }
        Ok(())
    }

    async fn check<'a>(w: Write<'a, Self>, input: &'a ApiInput) -> Result<(), ApiError> {
        let stored_jwks = w.current.and_then(|c| c.jwt.as_ref()).and_then(|j| j.0.jwks_url.as_deref());
        if let Some(url) = input.jwt.as_ref().and_then(|j| j.jwks_url.as_deref()).filter(|u| Some(*u) != stored_jwks) {
            edge_auth::check_url(w.state, "jwt/jwks_url", url).await?;
        }
        let stored_url = w.current.and_then(|c| c.introspection.as_ref()).map(|j| j.0.url.as_str());
        if let Some(url) = input.introspection.as_ref().map(|i| i.url.as_str()).filter(|u| Some(*u) != stored_url) {
            edge_auth::check_url(w.state, "introspection/url", url).await?;
        }
        match w.current {
            Some(current) => routes_keep_their_settings(w.conn, current.id, input).await,
            None => Ok(()),
        }
    }
}

/// The secrets of a stored API, opened in place (clear ones stay as they are).
fn open_secrets(api: &mut Api, keyring: Option<&Keyring>) -> Result<(), ApiError> {
    let id = api.id;
    let open = |place: &str, value: &mut String| -> Result<(), ApiError> {
        if !seal::is_sealed(value) {
            return Ok(());
        }
        let ring = keyring.ok_or_else(|| {
            ApiError::conflict(
                "this API's secrets are sealed and this admin has no secrets key (--secrets-key / \
                 TOLLGATE_SECRETS_KEY) to open them",
            )
        })?;
        let plain = ring
            .open(value, &seal::api_secret_aad(id, place))
            .map_err(|e| ApiError::conflict(format!("this API's {place} cannot be opened: {e}")))?;
        *value = String::from_utf8(plain).map_err(ApiError::internal)?;
        Ok(())
    };
    if let Some(jwt) = &mut api.jwt {
        for secret in jwt.0.keys.iter_mut().filter_map(|k| k.secret.as_mut()) {
            open(seal::JWT_SECRET, secret)?;
        }
    }
    if let Some(introspection) = &mut api.introspection {
        open(seal::INTROSPECTION_SECRET, &mut introspection.0.client_secret)?;
    }
    Ok(())
}

/// Seals every secret of `input` (all in clear at this point) for API `id`.
fn seal_secrets(input: &mut ApiInput, id: Uuid, ring: &Keyring) -> Result<(), ApiError> {
    let seal = |place: &str, value: &mut String| -> Result<(), ApiError> {
        *value = ring.seal(value.as_bytes(), &seal::api_secret_aad(id, place)).map_err(ApiError::internal)?;
        Ok(())
    };
    if let Some(jwt) = &mut input.jwt {
        for secret in jwt.keys.iter_mut().filter_map(|k| k.secret.as_mut()) {
            seal(seal::JWT_SECRET, secret)?;
        }
    }
    if let Some(introspection) = &mut input.introspection {
        seal(seal::INTROSPECTION_SECRET, &mut introspection.client_secret)?;
    }
    Ok(())
}

/// Seals, with the current key, every API secret stored in clear or under an older key
/// (`tollgate secrets rotate`): one audited change per API, so gateways follow. Returns how
/// many APIs changed.
pub async fn reseal_secrets(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ring: &Keyring,
    who: &crate::change::Actor,
) -> anyhow::Result<usize> {
    let ids: Vec<(Uuid,)> =
        sqlx::query_as("SELECT id FROM apis WHERE jwt IS NOT NULL OR introspection IS NOT NULL ORDER BY id FOR UPDATE")
            .fetch_all(&mut **tx)
            .await?;
    let mut changed = 0;
    for (id,) in ids {
        let before: Api =
            crate::resource::fetch::<Api>(tx, id, None).await?.ok_or_else(|| anyhow::anyhow!("API {id} vanished"))?;
        let mut stale = false;
        let mut api = before.clone();
        let jwt_secrets = api.jwt.iter().flat_map(|j| j.0.keys.iter().filter_map(|k| k.secret.as_deref()));
        for secret in jwt_secrets.chain(api.introspection.iter().map(|i| i.0.client_secret.as_str())) {
            stale |= !ring.is_current(secret);
        }
        if !stale {
            continue;
        }
        open_secrets(&mut api, Some(ring)).map_err(|e| anyhow::anyhow!("API {id}: {e:?}"))?;
        let mut input = api.to_input();
        seal_secrets(&mut input, id, ring).map_err(|e| anyhow::anyhow!("API {id}: {e:?}"))?;
        let after: Api = sqlx::query_as(
            "UPDATE apis SET jwt = $2, introspection = $3, version = version + 1, updated_at = now() \
             WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(input.jwt.as_ref().map(sqlx::types::Json))
        .bind(input.introspection.as_ref().map(sqlx::types::Json))
        .fetch_one(&mut **tx)
        .await?;
        let change =
            crate::change::Change::update(Api::KIND, id, serde_json::to_value(&before)?, serde_json::to_value(&after)?);
        crate::change::record(tx, who, change).await.map_err(|e| anyhow::anyhow!("API {id}: {e:?}"))?;
        changed += 1;
    }
    Ok(changed)
}

/// 422 when the update drops `jwt` or `introspection` settings a route of the API still
/// lists in its `auth_methods`.
async fn routes_keep_their_settings(
    conn: &mut sqlx::PgConnection,
    api: Uuid,
    input: &ApiInput,
) -> Result<(), ApiError> {
    let settings = [
        ("jwt", input.jwt.is_none()),
        ("introspection", input.introspection.is_none()),
        ("mtls", input.mtls.is_none()),
    ];
    for (method, dropped) in settings {
        if !dropped {
            continue;
        }
        let route: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM routes WHERE api_id = $1 AND $2 = ANY(auth_methods) ORDER BY name LIMIT 1",
        )
        .bind(api)
        .bind(method)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((name,)) = route {
            return Err(ApiError::invalid_field(method, format!("is required: route {name:?} lists {method}")));
        }
    }
    Ok(())
}

/// Filters of `GET /apis`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiFilter {
    /// Exact name.
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub portal_visible: Option<bool>,
}

impl Filter for ApiFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "name", self.name.as_deref());
        eq(qb, "enabled", self.enabled);
        eq(qb, "portal_visible", self.portal_visible);
    }
}

resource_handlers! {
    Api, input: ApiInput, filter: ApiFilter, tag: "apis", parent: None,
    collection: "/apis" [], item: "/apis/{id}" [("id" = Uuid, Path, description = "API id"),],
    ops: { list: list_apis, get: get_api, create: create_api, patch: patch_api, delete: delete_api }
}
