//! DB-less mode: the configuration from a declarative YAML file (format in
//! `docs/declarative-config.md`), checked for changes every second and reloaded when it
//! changes. An invalid file is reported and ignored: the node keeps the last good one.
//! Entity ids are derived from names (UUIDv5), so they are stable across reloads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{
    ApiDef, CertKey, CertificateDef, ConfigData, ConsumerDef, KeyDef, KeyHash, PlanDef, RouteDef, SubscriptionDef,
    TargetDef,
};
use super::pg::Changed;
use super::source::Sink;

mod edge;
use edge::{add_certificate_binding, add_token_binding, check_api_auth, check_route, route_costs};

const POLL: Duration = Duration::from_secs(1);
/// Namespace of name-derived ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x7467_6174_655f_636f_6e66_6967_5f76_3100);

/// The file's top level.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default, skip_serializing_if = "is_empty")]
    pub apis: Vec<FileApi>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub consumers: Vec<FileConsumer>,
    /// TLS certificates of the HTTPS listener (`--tls-listen`).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub certificates: Vec<FileCertificate>,
}

/// A TLS certificate: the chain and its key as PEM (YAML block scalars, `|`).
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Names it in messages (and derives its id).
    pub name: String,
    /// The chain, leaf first.
    pub cert: String,
    /// The leaf's private key.
    pub key: String,
    /// Served when the client names no host, or one no certificate has.
    #[serde(default)]
    pub default: bool,
    /// A client certificate for upstreams (`upstream_tls.client_certificate`), never
    /// served by the HTTPS listener.
    #[serde(default)]
    pub client: bool,
}

impl std::fmt::Debug for FileCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCertificate").field("name", &self.name).finish_non_exhaustive()
    }
}

fn default_protocol() -> String {
    "http".into()
}
fn default_policy() -> String {
    "round_robin".into()
}
fn default_connect() -> i32 {
    5_000
}
fn default_read() -> i32 {
    60_000
}
fn default_true() -> bool {
    true
}
fn default_weight() -> i32 {
    100
}
fn default_pool() -> String {
    "stable".into()
}
fn default_auth() -> Vec<String> {
    vec!["key_auth".into()]
}
fn default_retry_statuses() -> Vec<i32> {
    vec![502, 503, 504]
}
fn default_key_header() -> String {
    "x-api-key".into()
}
fn default_cost() -> i32 {
    1
}

/// An API with its targets, routes and plans.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileApi {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub name: String,
    #[serde(default = "default_protocol")]
    pub upstream_protocol: String,
    #[serde(default = "default_policy")]
    pub lb_policy: String,
    #[serde(default = "default_connect")]
    pub connect_timeout_ms: i32,
    #[serde(default = "default_read")]
    pub read_timeout_ms: i32,
    #[serde(default)]
    pub total_timeout_ms: i32,
    #[serde(default)]
    pub retries: i32,
    #[serde(default = "default_retry_statuses")]
    pub retry_on_statuses: Vec<i32>,
    #[serde(default = "default_auth")]
    pub auth_methods: Vec<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_health: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<serde_json::Value>,
    #[serde(default)]
    pub canary_weight: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_header: Option<String>,
    /// Header carrying the API key.
    #[serde(default = "default_key_header")]
    pub key_header: String,
    /// Query parameter also accepted for the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_query_param: Option<String>,
    /// Remove credentials before proxying.
    #[serde(default = "default_true")]
    pub hide_credentials: bool,
    /// JWT settings (`docs/auth.md`); required when `auth_methods` lists `jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<serde_json::Value>,
    /// Token introspection settings; required when `auth_methods` lists `introspection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<serde_json::Value>,
    /// Name of the plan (of this API) limiting anonymous callers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_plan: Option<String>,
    /// TLS to the upstreams: `ca_bundle` (PEM), `verify`, `server_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<serde_json::Value>,
    /// Client-certificate authentication: `ca_bundle` (PEM); required when `auth_methods`
    /// lists `mtls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub targets: Vec<FileTarget>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub routes: Vec<FileRoute>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub plans: Vec<FilePlan>,
}

/// An upstream target.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileTarget {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub host: String,
    pub port: i32,
    #[serde(default = "default_weight")]
    pub weight: i32,
    #[serde(default)]
    pub backup: bool,
    #[serde(default = "default_pool")]
    pub pool: String,
}

/// A route.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub name: String,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub query: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub strip_path: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_path: Option<String>,
    #[serde(default)]
    pub priority: i32,
    /// Units a request costs against limits and quotas.
    #[serde(default = "default_cost")]
    pub cost: i32,
    /// Overrides the API's `auth_methods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_methods: Option<Vec<String>>,
}

/// A plan.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilePlan {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_minute: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_hour: Option<i32>,
    #[serde(default)]
    pub burst: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_per_day: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_per_month: Option<i64>,
    #[serde(default = "default_limit_mode")]
    pub limit_mode: String,
    #[serde(default = "default_failure_policy")]
    pub redis_failure_policy: String,
    /// Route name (of this API) → cost, overriding the route's own.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub route_costs: BTreeMap<String, i32>,
}

fn default_limit_mode() -> String {
    "local".into()
}
fn default_failure_policy() -> String {
    "fail_open".into()
}

/// A consumer with its keys and subscriptions.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConsumer {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_id: Option<String>,
    /// Plain keys (hashed on load) or their SHA-256 (`key_hash`, hex).
    #[serde(default, skip_serializing_if = "is_empty")]
    pub keys: Vec<FileKey>,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub subscriptions: Vec<FileSubscription>,
    /// Tokens (issuer + subject) that identify this consumer.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub token_bindings: Vec<FileTokenBinding>,
    /// Client certificates (fingerprint or subject name) that identify this consumer.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub certificate_bindings: Vec<FileCertificateBinding>,
    /// A disabled consumer is refused (403) whatever its credentials.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// A client certificate identifying a consumer: exactly one of the leaf's SHA-256
/// `fingerprint` (hex, `:` separators allowed) and a `subject` name.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificateBinding {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// A token issuer and subject identifying a consumer (JWT or introspection).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokenBinding {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub issuer: String,
    pub subject: String,
}

/// An API key, in clear or as its SHA-256.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileKey {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_hash: Option<KeyHash>,
    /// When the key stops working (RFC 3339); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The admin's label and displayed start of the key (gateways ignore both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// A subscription by API and plan name.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSubscription {
    /// The entity's id (as `config export` writes it); absent: derived from its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub api: String,
    pub plan: String,
    /// `active` (the default), `pending` or `suspended` (both refused, 403).
    #[serde(default = "default_status")]
    pub status: String,
}

fn default_status() -> String {
    "active".into()
}

/// Whether a collection is empty (fields left out of `config export`'s output).
fn is_empty<T>(c: &T) -> bool
where
    for<'a> &'a T: IntoIterator,
{
    c.into_iter().next().is_none()
}

fn id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{0}").as_bytes())
}

/// The ids of the file's named entities, which other entities refer to by name: given
/// (`id:`) or derived from the names.
#[derive(Default)]
pub(crate) struct Names {
    certificates: BTreeMap<String, Uuid>,
    apis: BTreeMap<String, Uuid>,
    /// By (API name, route name) ...
    routes: BTreeMap<(String, String), Uuid>,
    /// ... and (API name, plan name).
    plans: BTreeMap<(String, String), Uuid>,
}

impl Names {
    fn of(file: &FileConfig) -> anyhow::Result<Self> {
        let mut n = Names::default();
        let mut seen = std::collections::BTreeSet::new();
        for c in &file.certificates {
            let what = || format!("certificate {:?}", c.name);
            let derived = || id(&["certificate", &c.name]);
            claim(&mut n.certificates, &mut seen, c.name.clone(), c.id, derived, what)?;
        }
        for a in &file.apis {
            claim(
                &mut n.apis,
                &mut seen,
                a.name.clone(),
                a.id,
                || id(&["api", &a.name]),
                || format!("API {:?}", a.name),
            )?;
            for r in &a.routes {
                let what = || format!("route {:?} of API {:?}", r.name, a.name);
                let key = (a.name.clone(), r.name.clone());
                claim(&mut n.routes, &mut seen, key, r.id, || id(&["route", &a.name, &r.name]), what)?;
            }
            for p in &a.plans {
                let what = || format!("plan {:?} of API {:?}", p.name, a.name);
                let key = (a.name.clone(), p.name.clone());
                claim(&mut n.plans, &mut seen, key, p.id, || id(&["plan", &a.name, &p.name]), what)?;
            }
        }
        Ok(n)
    }

    pub(crate) fn route(&self, api: &str, route: &str) -> Option<Uuid> {
        self.routes.get(&(api.to_owned(), route.to_owned())).copied()
    }

    fn plan(&self, api: &str, plan: &str) -> Option<Uuid> {
        self.plans.get(&(api.to_owned(), plan.to_owned())).copied()
    }
}

/// Files `key` under its given id (else `derived`) in `map`: refused when the name is there
/// already or another entity has the id.
fn claim<K: Ord>(
    map: &mut BTreeMap<K, Uuid>,
    seen: &mut std::collections::BTreeSet<Uuid>,
    key: K,
    given: Option<Uuid>,
    derived: impl FnOnce() -> Uuid,
    what: impl Fn() -> String,
) -> anyhow::Result<()> {
    anyhow::ensure!(!map.contains_key(&key), "{} is defined twice", what());
    let id = given.unwrap_or_else(derived);
    anyhow::ensure!(seen.insert(id), "{} has an id another entity has ({id})", what());
    map.insert(key, id);
    Ok(())
}

/// Parses and converts a declarative file; errors name what is wrong (syntax errors with
/// their line and column).
pub fn parse(text: &str) -> anyhow::Result<ConfigData> {
    let file: FileConfig = serde_norway::from_str(text)?;
    convert(&file)
}

/// Converts a parsed declarative file, checking what the format alone cannot.
pub fn convert(file: &FileConfig) -> anyhow::Result<ConfigData> {
    let names = Names::of(file)?;
    let mut data = ConfigData::default();
    // (Certificates first: an API's upstream TLS may name a client certificate.)
    for c in &file.certificates {
        let cid = names.certificates[&c.name];
        anyhow::ensure!(
            !(c.client && c.default),
            "certificate {:?}: a client certificate cannot be the default",
            c.name
        );
        let def = match crate::seal::is_sealed(&c.key) {
            // Sealed (as `config export` writes it): opened, and checked, when indexed.
            true => super::certs::from_pem(cid, &c.cert, None, c.default, c.client)
                .map(|def| CertificateDef { key: CertKey::Sealed(c.key.clone()), ..def }),
            false => super::certs::from_pem(cid, &c.cert, Some(&c.key), c.default, c.client),
        }
        .map_err(|why| anyhow::anyhow!("certificate {:?}: {why}", c.name))?;
        data.certificates.insert(cid, def);
    }
    for api in &file.apis {
        add_api(&mut data, &names, api)?;
    }
    let mut taken = Taken::default();
    for c in &file.consumers {
        add_consumer(&mut data, &names, &mut taken, c)?;
    }
    Ok(data)
}

/// An API's `upstream_tls` of the file as stored: the client certificate named by
/// `client_certificate` (a client certificate of the file) becomes its id; then checked.
fn file_upstream_tls(data: &ConfigData, names: &Names, tls: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let mut tls = tls.clone();
    if let Some(obj) = tls.as_object_mut()
        && let Some(name) = obj.remove("client_certificate")
    {
        let name = name.as_str().ok_or_else(|| anyhow::anyhow!("upstream_tls/client_certificate: must be a name"))?;
        let cid = names.certificates.get(name).copied().unwrap_or_default();
        match data.certificates.get(&cid) {
            Some(c) if c.client => {}
            Some(_) => {
                anyhow::bail!("upstream_tls/client_certificate: {name:?} is not a client certificate (client: true)")
            }
            None => anyhow::bail!("upstream_tls/client_certificate: no certificate {name:?}"),
        }
        obj.insert("client_certificate_id".into(), serde_json::Value::String(cid.to_string()));
    }
    crate::upstream::tls::UpstreamTls::from_value(&tls)?;
    Ok(tls)
}

fn add_api(data: &mut ConfigData, names: &Names, a: &FileApi) -> anyhow::Result<()> {
    let api_id = names.apis[&a.name];
    check_api_auth(a).map_err(|e| anyhow::anyhow!("API {:?}: {e}", a.name))?;
    let upstream_tls = match &a.upstream_tls {
        Some(tls) => Some(file_upstream_tls(data, names, tls).map_err(|e| anyhow::anyhow!("API {:?}: {e}", a.name))?),
        None => None,
    };
    let anonymous_plan_id = match &a.anonymous_plan {
        Some(plan) => Some(
            names
                .plan(&a.name, plan)
                .ok_or_else(|| anyhow::anyhow!("API {:?}: anonymous_plan {plan:?} is not one of its plans", a.name))?,
        ),
        None => None,
    };
    let def = ApiDef {
        id: api_id,
        name: a.name.clone(),
        upstream_protocol: a.upstream_protocol.clone(),
        lb_policy: a.lb_policy.clone(),
        connect_timeout_ms: a.connect_timeout_ms,
        read_timeout_ms: a.read_timeout_ms,
        retries: a.retries,
        auth_methods: a.auth_methods.clone(),
        enabled: a.enabled,
        total_timeout_ms: a.total_timeout_ms,
        hash_on: a.hash_on.clone(),
        retry_on_statuses: a.retry_on_statuses.clone(),
        health_check: a.health_check.clone(),
        passive_health: a.passive_health.clone(),
        circuit_breaker: a.circuit_breaker.clone(),
        canary_weight: a.canary_weight,
        canary_header: a.canary_header.clone(),
        key_header: a.key_header.clone(),
        key_query_param: a.key_query_param.clone(),
        hide_credentials: a.hide_credentials,
        jwt: a.jwt.clone(),
        introspection: a.introspection.clone(),
        anonymous_plan_id,
        upstream_tls,
        mtls: a.mtls.clone(),
    };
    data.apis.insert(api_id, def);
    for t in &a.targets {
        let tid = t.id.unwrap_or_else(|| id(&["target", &a.name, &t.host, &t.port.to_string()]));
        anyhow::ensure!(
            !data.targets.contains_key(&tid),
            "target {}:{} of API {:?} is defined twice",
            t.host,
            t.port,
            a.name
        );
        let def = TargetDef {
            id: tid,
            api_id,
            host: t.host.clone(),
            port: t.port,
            weight: t.weight,
            backup: t.backup,
            pool: t.pool.clone(),
        };
        data.targets.insert(tid, def);
    }
    for r in &a.routes {
        let rid = names.routes[&(a.name.clone(), r.name.clone())];
        anyhow::ensure!(
            !r.hosts.is_empty() || !r.paths.is_empty(),
            "route {:?} of API {:?} needs a host or a path",
            r.name,
            a.name
        );
        check_route(a, r).map_err(|e| anyhow::anyhow!("route {:?} of API {:?}: {e}", r.name, a.name))?;
        data.routes.insert(rid, route_def(rid, api_id, r));
    }
    for p in &a.plans {
        let pid = names.plans[&(a.name.clone(), p.name.clone())];
        let costs =
            route_costs(names, a, p).map_err(|e| anyhow::anyhow!("plan {:?} of API {:?}: {e}", p.name, a.name))?;
        data.plans.insert(pid, plan_def(pid, api_id, p, costs));
    }
    Ok(())
}

fn route_def(id: Uuid, api_id: Uuid, r: &FileRoute) -> RouteDef {
    RouteDef {
        id,
        api_id,
        name: r.name.clone(),
        hosts: r.hosts.clone(),
        paths: r.paths.clone(),
        methods: r.methods.clone(),
        headers: r.headers.clone(),
        query: r.query.clone(),
        strip_path: r.strip_path,
        rewrite_path: r.rewrite_path.clone(),
        priority: r.priority,
        cost: r.cost,
        auth_methods: r.auth_methods.clone(),
    }
}

fn plan_def(id: Uuid, api_id: Uuid, p: &FilePlan, route_costs: BTreeMap<Uuid, i32>) -> PlanDef {
    PlanDef {
        id,
        api_id,
        name: p.name.clone(),
        rate_limit_per_second: p.rate_limit_per_second,
        rate_limit_per_minute: p.rate_limit_per_minute,
        rate_limit_per_hour: p.rate_limit_per_hour,
        burst: p.burst,
        quota_per_day: p.quota_per_day,
        quota_per_month: p.quota_per_month,
        limit_mode: p.limit_mode.clone(),
        redis_failure_policy: p.redis_failure_policy.clone(),
        route_costs,
    }
}

/// The natural keys the file's consumers have claimed so far, so that a repeat is found
/// without scanning what was read before (files hold many consumers).
#[derive(Default)]
struct Taken {
    /// Consumer names, lower case (unique regardless of case, as in the database).
    consumers: std::collections::BTreeSet<String>,
    /// (issuer, subject) of token bindings.
    token_bindings: std::collections::BTreeSet<(String, String)>,
    /// (fingerprint, subject) of certificate bindings.
    certificate_bindings: std::collections::BTreeSet<(Option<String>, Option<String>)>,
}

fn add_consumer(data: &mut ConfigData, names: &Names, taken: &mut Taken, c: &FileConsumer) -> anyhow::Result<()> {
    let cid = c.id.unwrap_or_else(|| id(&["consumer", &c.name]));
    let fresh = taken.consumers.insert(c.name.to_lowercase()) && !data.consumers.contains_key(&cid);
    anyhow::ensure!(fresh, "consumer {:?} is defined twice", c.name);
    data.consumers.insert(
        cid,
        ConsumerDef {
            id: cid,
            name: c.name.clone(),
            developer_id: None,
            custom_id: c.custom_id.clone(),
            enabled: c.enabled,
        },
    );
    for (i, k) in c.keys.iter().enumerate() {
        let hash = match (&k.key, k.key_hash) {
            (Some(plain), None) => KeyHash(Sha256::digest(plain.as_bytes()).into()),
            (None, Some(h)) => h,
            _ => anyhow::bail!("key {i} of consumer {:?} needs exactly one of key and key_hash", c.name),
        };
        let expires_at = match &k.expires_at {
            Some(at) => Some(
                time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| anyhow::anyhow!("key {i} of consumer {:?}: expires_at {at:?}: {e}", c.name))?
                    .unix_timestamp(),
            ),
            None => None,
        };
        let kid = k.id.unwrap_or_else(|| id(&["key", &c.name, &i.to_string()]));
        anyhow::ensure!(data.keys.get(&hash).is_none(), "key {i} of consumer {:?} is defined twice", c.name);
        data.keys.insert(&KeyDef { id: kid, consumer_id: cid, key_hash: hash, expires_at, revoked: false });
    }
    let mut subscribed = std::collections::BTreeSet::new();
    for s in &c.subscriptions {
        let api_id = names.apis.get(&s.api).copied();
        let plan_id = names.plan(&s.api, &s.plan);
        let (Some(api_id), Some(plan_id)) = (api_id, plan_id) else {
            anyhow::bail!("consumer {:?} subscribes to unknown plan {}/{}", c.name, s.api, s.plan)
        };
        anyhow::ensure!(
            ["active", "pending", "suspended"].contains(&s.status.as_str()),
            "consumer {:?}: the subscription to {} has status {:?} (active, pending or suspended)",
            c.name,
            s.api,
            s.status
        );
        let sid = s.id.unwrap_or_else(|| id(&["subscription", &c.name, &s.api]));
        anyhow::ensure!(subscribed.insert(api_id), "consumer {:?} subscribes to {} twice", c.name, s.api);
        let def = SubscriptionDef { id: sid, consumer_id: cid, plan_id, api_id, status: s.status.clone() };
        data.subscriptions.insert(sid, def);
    }
    for b in &c.token_bindings {
        add_token_binding(data, taken, cid, &c.name, b)?;
    }
    for b in &c.certificate_bindings {
        add_certificate_binding(data, taken, cid, &c.name, b)?;
    }
    Ok(())
}

/// How recent a modification time must be for a later write to possibly share it:
/// timestamps are coarse (a kernel tick, a whole second on some filesystems).
const RACY: Duration = Duration::from_secs(2);

/// What tells versions of the file apart without reading it — unless two writes share it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// The version of the file last read.
struct Loaded {
    stamp: Stamp,
    digest: [u8; 32],
    /// A later write could carry the same stamp, so the next poll compares the content.
    racy: bool,
}

async fn stamp(path: &Path) -> Stamp {
    let meta = tokio::fs::metadata(path).await.ok();
    Stamp { modified: meta.as_ref().and_then(|m| m.modified().ok()), len: meta.map_or(0, |m| m.len()) }
}

async fn load(path: &Path) -> anyhow::Result<(Loaded, String)> {
    let started = SystemTime::now();
    let stamp = stamp(path).await;
    let text = tokio::fs::read_to_string(path).await?;
    let racy = stamp.modified.is_none_or(|m| m + RACY >= started);
    Ok((Loaded { stamp, digest: Sha256::digest(text.as_bytes()).into(), racy }, text))
}

/// Loads `path` (failing if it is invalid at start), publishes it, and reloads it whenever
/// its content changes, until `stop` turns true (or its sender is gone). A change is noticed
/// by its modification time and size; while those are recent enough to be shared by another
/// write, by the content itself.
pub async fn watch(
    path: PathBuf,
    sink: Arc<dyn Sink>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let context = |e: anyhow::Error| anyhow::anyhow!("{}: {e:#}", path.display());
    let (mut seen, text) = load(&path).await.map_err(context)?;
    sink.publish(&parse(&text).map_err(context)?, Changed::all());
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = stamp(&path).await;
            if now == seen.stamp && !seen.racy {
                continue;
            }
            let (loaded, text) = match load(&path).await {
                Ok(read) => read,
                Err(e) => {
                    // Reported once per change of the file, like an invalid one.
                    seen = Loaded { stamp: now, digest: seen.digest, racy: false };
                    tracing::error!(path = %path.display(), error = %e, "cannot read the configuration file; keeping the previous one");
                    continue;
                }
            };
            let changed = loaded.digest != seen.digest;
            seen = loaded;
            if !changed {
                continue;
            }
            match parse(&text) {
                Ok(data) => {
                    sink.publish(&data, Changed::all());
                    tracing::info!(path = %path.display(), "configuration file reloaded");
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "invalid configuration file; keeping the previous one")
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
apis:
  - name: orders
    targets: [{host: 127.0.0.1, port: 9001}]
    routes: [{name: all, paths: ["/orders/*"]}]
    plans: [{name: free, rate_limit_per_minute: 60}]
consumers:
  - name: acme
    keys: [{key: tg_example}]
    subscriptions: [{api: orders, plan: free}]
"#;

    #[test]
    fn parses_and_derives_stable_ids() -> anyhow::Result<()> {
        let a = parse(SAMPLE)?;
        let b = parse(SAMPLE)?;
        assert_eq!(a, b, "ids derive from names");
        assert_eq!((a.apis.len(), a.targets.len(), a.routes.len(), a.plans.len()), (1, 1, 1, 1));
        let key = a.keys.values().next().map(|k| k.key_hash);
        assert_eq!(key, Some(KeyHash(Sha256::digest(b"tg_example").into())));
        Ok(())
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        assert!(parse("apis: [{name: a, unknown: 1}]").is_err());
        assert!(parse("apis: [{name: a, routes: [{name: r}]}]").is_err());
        let dangling = "consumers: [{name: c, subscriptions: [{api: x, plan: y}]}]";
        assert!(parse(dangling).err().is_some_and(|e| e.to_string().contains("unknown plan")));
    }
}
