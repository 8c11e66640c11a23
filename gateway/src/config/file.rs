//! DB-less mode: the configuration from a declarative YAML file (format in
//! `docs/declarative-config.md`), checked for changes every second and reloaded when it
//! changes. An invalid file is reported and ignored: the node keeps the last good one.
//! Entity ids are derived from names (UUIDv5), so they are stable across reloads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::model::{ApiDef, ConfigData, ConsumerDef, KeyDef, KeyHash, PlanDef, RouteDef, SubscriptionDef, TargetDef};
use super::pg::Changed;
use super::source::Sink;

mod edge;
use edge::{add_certificate_binding, add_token_binding, check_api_auth, check_route, route_costs};

const POLL: Duration = Duration::from_secs(1);
/// Namespace of name-derived ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x7467_6174_655f_636f_6e66_6967_5f76_3100);

/// The file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub apis: Vec<FileApi>,
    #[serde(default)]
    pub consumers: Vec<FileConsumer>,
    /// TLS certificates of the HTTPS listener (`--tls-listen`).
    #[serde(default)]
    pub certificates: Vec<FileCertificate>,
}

/// A TLS certificate: the chain and its key as PEM (YAML block scalars, `|`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificate {
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileApi {
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
    #[serde(default)]
    pub hash_on: Option<String>,
    #[serde(default)]
    pub health_check: Option<serde_json::Value>,
    #[serde(default)]
    pub passive_health: Option<serde_json::Value>,
    #[serde(default)]
    pub circuit_breaker: Option<serde_json::Value>,
    #[serde(default)]
    pub canary_weight: i32,
    #[serde(default)]
    pub canary_header: Option<String>,
    /// Header carrying the API key.
    #[serde(default = "default_key_header")]
    pub key_header: String,
    /// Query parameter also accepted for the API key.
    #[serde(default)]
    pub key_query_param: Option<String>,
    /// Remove credentials before proxying.
    #[serde(default = "default_true")]
    pub hide_credentials: bool,
    /// JWT settings (`docs/auth.md`); required when `auth_methods` lists `jwt`.
    #[serde(default)]
    pub jwt: Option<serde_json::Value>,
    /// Token introspection settings; required when `auth_methods` lists `introspection`.
    #[serde(default)]
    pub introspection: Option<serde_json::Value>,
    /// Name of the plan (of this API) limiting anonymous callers.
    #[serde(default)]
    pub anonymous_plan: Option<String>,
    /// TLS to the upstreams: `ca_bundle` (PEM), `verify`, `server_name`.
    #[serde(default)]
    pub upstream_tls: Option<serde_json::Value>,
    /// Client-certificate authentication: `ca_bundle` (PEM); required when `auth_methods`
    /// lists `mtls`.
    #[serde(default)]
    pub mtls: Option<serde_json::Value>,
    #[serde(default)]
    pub targets: Vec<FileTarget>,
    #[serde(default)]
    pub routes: Vec<FileRoute>,
    #[serde(default)]
    pub plans: Vec<FilePlan>,
}

/// An upstream target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTarget {
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub query: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub strip_path: bool,
    #[serde(default)]
    pub rewrite_path: Option<String>,
    #[serde(default)]
    pub priority: i32,
    /// Units a request costs against limits and quotas.
    #[serde(default = "default_cost")]
    pub cost: i32,
    /// Overrides the API's `auth_methods`.
    #[serde(default)]
    pub auth_methods: Option<Vec<String>>,
}

/// A plan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePlan {
    pub name: String,
    pub rate_limit_per_second: Option<i32>,
    pub rate_limit_per_minute: Option<i32>,
    pub rate_limit_per_hour: Option<i32>,
    #[serde(default)]
    pub burst: i32,
    pub quota_per_day: Option<i64>,
    pub quota_per_month: Option<i64>,
    #[serde(default = "default_limit_mode")]
    pub limit_mode: String,
    #[serde(default = "default_failure_policy")]
    pub redis_failure_policy: String,
    /// Route name (of this API) → cost, overriding the route's own.
    #[serde(default)]
    pub route_costs: BTreeMap<String, i32>,
}

fn default_limit_mode() -> String {
    "local".into()
}
fn default_failure_policy() -> String {
    "fail_open".into()
}

/// A consumer with its keys and subscriptions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConsumer {
    pub name: String,
    #[serde(default)]
    pub custom_id: Option<String>,
    /// Plain keys (hashed on load) or their SHA-256 (`key_hash`, hex).
    #[serde(default)]
    pub keys: Vec<FileKey>,
    #[serde(default)]
    pub subscriptions: Vec<FileSubscription>,
    /// Tokens (issuer + subject) that identify this consumer.
    #[serde(default)]
    pub token_bindings: Vec<FileTokenBinding>,
    /// Client certificates (fingerprint or subject name) that identify this consumer.
    #[serde(default)]
    pub certificate_bindings: Vec<FileCertificateBinding>,
}

/// A client certificate identifying a consumer: exactly one of the leaf's SHA-256
/// `fingerprint` (hex, `:` separators allowed) and a `subject` name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertificateBinding {
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

/// A token issuer and subject identifying a consumer (JWT or introspection).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokenBinding {
    pub issuer: String,
    pub subject: String,
}

/// An API key, in clear or as its SHA-256.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKey {
    pub key: Option<String>,
    pub key_hash: Option<KeyHash>,
}

/// A subscription by API and plan name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSubscription {
    pub api: String,
    pub plan: String,
}

fn id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{0}").as_bytes())
}

/// Parses and converts a declarative file; errors name what is wrong.
pub fn parse(text: &str) -> anyhow::Result<ConfigData> {
    let file: FileConfig = serde_norway::from_str(text)?;
    let mut data = ConfigData::default();
    // (Certificates first: an API's upstream TLS may name a client certificate.)
    for c in &file.certificates {
        let cid = id(&["certificate", &c.name]);
        anyhow::ensure!(!data.certificates.contains_key(&cid), "certificate {:?} is defined twice", c.name);
        anyhow::ensure!(
            !(c.client && c.default),
            "certificate {:?}: a client certificate cannot be the default",
            c.name
        );
        let def = super::certs::from_pem(cid, &c.cert, &c.key, c.default, c.client)
            .map_err(|why| anyhow::anyhow!("certificate {:?}: {why}", c.name))?;
        data.certificates.insert(cid, def);
    }
    for api in &file.apis {
        add_api(&mut data, api)?;
    }
    for c in &file.consumers {
        add_consumer(&mut data, c)?;
    }
    Ok(data)
}

/// An API's `upstream_tls` of the file as stored: the client certificate named by
/// `client_certificate` (a client certificate of the file) becomes its id; then checked.
fn file_upstream_tls(data: &ConfigData, tls: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let mut tls = tls.clone();
    if let Some(obj) = tls.as_object_mut()
        && let Some(name) = obj.remove("client_certificate")
    {
        let name = name.as_str().ok_or_else(|| anyhow::anyhow!("upstream_tls/client_certificate: must be a name"))?;
        let cid = id(&["certificate", name]);
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

fn add_api(data: &mut ConfigData, a: &FileApi) -> anyhow::Result<()> {
    let api_id = id(&["api", &a.name]);
    anyhow::ensure!(!data.apis.contains_key(&api_id), "API {:?} is defined twice", a.name);
    check_api_auth(a).map_err(|e| anyhow::anyhow!("API {:?}: {e}", a.name))?;
    let upstream_tls = match &a.upstream_tls {
        Some(tls) => Some(file_upstream_tls(data, tls).map_err(|e| anyhow::anyhow!("API {:?}: {e}", a.name))?),
        None => None,
    };
    let anonymous_plan_id = match &a.anonymous_plan {
        Some(plan) => {
            anyhow::ensure!(
                a.plans.iter().any(|p| &p.name == plan),
                "API {:?}: anonymous_plan {plan:?} is not one of its plans",
                a.name
            );
            Some(id(&["plan", &a.name, plan]))
        }
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
        let tid = id(&["target", &a.name, &t.host, &t.port.to_string()]);
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
        let rid = id(&["route", &a.name, &r.name]);
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
        let pid = id(&["plan", &a.name, &p.name]);
        let costs = route_costs(a, p).map_err(|e| anyhow::anyhow!("plan {:?} of API {:?}: {e}", p.name, a.name))?;
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

fn add_consumer(data: &mut ConfigData, c: &FileConsumer) -> anyhow::Result<()> {
    let cid = id(&["consumer", &c.name]);
    data.consumers.insert(
        cid,
        ConsumerDef {
            id: cid,
            name: c.name.clone(),
            developer_id: None,
            custom_id: c.custom_id.clone(),
            enabled: true,
        },
    );
    for (i, k) in c.keys.iter().enumerate() {
        let hash = match (&k.key, k.key_hash) {
            (Some(plain), None) => KeyHash(Sha256::digest(plain.as_bytes()).into()),
            (None, Some(h)) => h,
            _ => anyhow::bail!("key {i} of consumer {:?} needs exactly one of key and key_hash", c.name),
        };
        let kid = id(&["key", &c.name, &i.to_string()]);
        data.keys.insert(&KeyDef { id: kid, consumer_id: cid, key_hash: hash, expires_at: None, revoked: false });
    }
    for s in &c.subscriptions {
        let api_id = id(&["api", &s.api]);
        let plan_id = id(&["plan", &s.api, &s.plan]);
        anyhow::ensure!(
            data.plans.contains_key(&plan_id),
            "consumer {:?} subscribes to unknown plan {}/{}",
            c.name,
            s.api,
            s.plan
        );
        let sid = id(&["subscription", &c.name, &s.api]);
        let def = SubscriptionDef { id: sid, consumer_id: cid, plan_id, api_id, status: "active".into() };
        data.subscriptions.insert(sid, def);
    }
    for b in &c.token_bindings {
        add_token_binding(data, cid, &c.name, b)?;
    }
    for b in &c.certificate_bindings {
        add_certificate_binding(data, cid, &c.name, b)?;
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
