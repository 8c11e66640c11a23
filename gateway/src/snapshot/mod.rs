//! The compiled, immutable configuration the request path reads: the router and one
//! runtime per API (upstream pools with their health state, timeouts). Published through
//! an `ArcSwap`: one lock-free `load()` per request. A change rebuilds only what it
//! touched — an unchanged API keeps its `Arc<ApiRuntime>` (and its health and breaker
//! state), a changed one carries its targets' state over by target id.

pub mod identities;
pub mod sharded;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderName;
use serde::Deserialize;
use uuid::Uuid;

use self::identities::Identities;
use crate::auth::settings::ApiAuth;
use crate::auth::ssrf::UrlPolicy;
use crate::config::keys::KeyIndex;
use crate::config::model::{ApiDef, CertificateDef, ConfigData, TargetDef};
use crate::config::pg::Changed;
use crate::config::source::Sink;
use crate::limits::Limiter;
use crate::metrics::{Registry, RequestMetrics};
use crate::router::Router;
use crate::tls::CertStore;
use crate::upstream::tls::{Invalid, UpstreamTls};
use crate::upstream::{
    ActiveHealthConfig, BreakerConfig, FallbackResponse, HashOn, LbPolicy, PassiveHealthConfig, RetryConfig,
    TargetConfig, Upstream, UpstreamConfig,
};
use crate::wire::client::UpstreamClient;

/// What the gateway enforces right now.
pub struct Snapshot {
    /// Id of the last config event reflected.
    pub event_id: i64,
    pub router: Arc<Router>,
    pub apis: HashMap<Uuid, Arc<ApiRuntime>>,
    /// API keys by SHA-256.
    pub keys: KeyIndex,
    /// Consumers, subscriptions, plans and token bindings.
    pub identities: Arc<Identities>,
}

/// Everything needed to proxy to one API.
pub struct ApiRuntime {
    pub id: Uuid,
    pub name: Arc<str>,
    pub enabled: bool,
    pub https: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Overall limit including retries, if any.
    pub total_timeout: Option<Duration>,
    /// Pooled client (shared by APIs with the same connect timeout).
    pub client: crate::wire::client::UpstreamClient,
    pub stable: Arc<Upstream>,
    /// Canary pool and the percentage of traffic it gets.
    pub canary: Option<(Arc<Upstream>, u8)>,
    /// Header forcing the pool (`canary` / `stable`).
    pub canary_header: Option<HeaderName>,
    /// This API's request metrics (kept across config changes).
    pub metrics: Arc<RequestMetrics>,
    /// Accepted credentials and their validators.
    pub auth: Arc<ApiAuth>,
    /// The `upstream_tls` settings the client was built with, and its client certificate.
    upstream_tls: Option<(serde_json::Value, Option<CertificateDef>)>,
    config: (UpstreamConfig, Option<UpstreamConfig>),
}

impl Snapshot {
    /// An empty configuration: every request is answered 404 (or 503 before the first load).
    pub fn empty() -> Self {
        Self {
            event_id: 0,
            router: Arc::new(Router::build([]).0),
            apis: HashMap::new(),
            keys: KeyIndex::default(),
            identities: Arc::default(),
        }
    }
}

/// Holds the current snapshot; the config source publishes into it.
pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    loaded: AtomicBool,
    /// Turns true with the first configuration (what requests arriving before it wait for).
    first_load: tokio::sync::watch::Sender<bool>,
    /// When the store was made (the node's start).
    born: tokio::time::Instant,
    /// The node's metrics; per-API series are attached to each compiled API.
    pub metrics: Arc<Registry>,
    /// The node's rate-limit and quota counters.
    pub limiter: Arc<Limiter>,
    /// Which addresses JWKS and introspection URLs may reach.
    url_policy: UrlPolicy,
    /// Whether an API's `upstream_tls.verify: false` is honoured.
    insecure_upstream_tls: bool,
    /// The TLS listener's certificates.
    pub certs: Arc<CertStore>,
}

impl Default for ConfigStore {
    /// A store with local-only counting and the strict URL policy.
    fn default() -> Self {
        Self::new(Arc::new(Limiter::local()), UrlPolicy::default())
    }
}

impl ConfigStore {
    /// An empty store (answering 503 until the first publish).
    pub fn new(limiter: Arc<Limiter>, url_policy: UrlPolicy) -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot::empty()),
            loaded: AtomicBool::new(false),
            first_load: tokio::sync::watch::Sender::new(false),
            born: tokio::time::Instant::now(),
            metrics: Arc::default(),
            limiter,
            url_policy,
            insecure_upstream_tls: false,
            certs: Arc::new(CertStore::new(None)),
        }
    }

    /// This store, honouring `upstream_tls.verify: false` (`--allow-insecure-upstream-tls`).
    pub fn allowing_insecure_upstream_tls(self, allow: bool) -> Self {
        Self { insecure_upstream_tls: allow, ..self }
    }

    /// This store, indexing TLS certificates into `certs`.
    pub fn with_certs(self, certs: Arc<CertStore>) -> Self {
        Self { certs, ..self }
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned reference, for a request that awaits while using it.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Whether a configuration has been loaded since start.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Waits for the first configuration while the node is younger than `hold`: a request
    /// that reaches a node restarted a moment ago (its load balancer saw the port open) is
    /// served once the configuration is in, instead of a 503. `false` when the node is older
    /// than `hold` and still has none (PostgreSQL down and no copy on disk): answered 503 at
    /// once, as its health endpoint says.
    pub async fn wait_first_load(&self, hold: Duration) -> bool {
        let mut loaded = self.first_load.subscribe();
        let waited = tokio::time::timeout_at(self.born + hold, loaded.wait_for(|l| *l)).await;
        matches!(waited, Ok(Ok(_))) || self.is_loaded()
    }
}

/// The node's local quota counters, for the usage flush (what the admin's quota answer sums).
impl crate::usage::flush::LocalQuotas for ConfigStore {
    fn local_quotas(&self, plan: Uuid, consumer: Uuid) -> Vec<crate::usage::flush::LocalQuota> {
        let snapshot = self.load();
        let Some(p) = snapshot.identities.plan(&plan) else { return Vec::new() };
        let key = crate::limits::LimitKey::consumer(plan, consumer);
        let utc = time::OffsetDateTime::now_utc();
        self.limiter
            .local_quota_used(&key, &p.limits, utc)
            .into_iter()
            .map(|(period, window_start, used)| crate::usage::flush::LocalQuota {
                plan,
                consumer,
                period: match period {
                    crate::limits::QuotaPeriod::Day => "day",
                    crate::limits::QuotaPeriod::Month => "month",
                },
                window_start,
                used,
            })
            .collect()
    }
}

impl Sink for ConfigStore {
    fn publish(&self, data: &ConfigData, changed: Changed) {
        let started = std::time::Instant::now();
        let prev = self.current.load_full();
        let router = if changed.routes || changed.everything {
            Arc::new(compile_router(&prev.router, data, &changed))
        } else {
            prev.router.clone()
        };
        // (Certificates too: an API's client certificate may have been renewed.)
        let apis = if changed.upstreams || changed.certificates || changed.everything {
            let rules = Rules { url_policy: self.url_policy, insecure_upstream_tls: self.insecure_upstream_tls };
            build_apis(data, &prev.apis, &self.metrics, rules, &self.certs)
        } else {
            prev.apis.clone()
        };
        // The configuration's own index: shared, not copied.
        let keys = data.keys.clone();
        let identities = if changed.everything {
            Arc::new(Identities::build(data))
        } else if changed.identities {
            Arc::new(prev.identities.update(data, &changed.identity_ids, changed.plans))
        } else {
            prev.identities.clone()
        };
        if changed.certificates || changed.everything {
            self.certs.rebuild(data);
        }
        if changed.upstreams || changed.everything {
            self.certs.ask_client_certificates(data.apis.values().any(|a| a.mtls.is_some()));
        }
        let old = self.current.swap(Arc::new(Snapshot { event_id: data.event_id, router, apis, keys, identities }));
        retire(old);
        self.loaded.store(true, Ordering::Release);
        self.first_load.send_replace(true);
        tracing::debug!(
            event_id = data.event_id,
            micros = started.elapsed().as_micros() as u64,
            "configuration published"
        );
    }

    fn live_nodes(&self, nodes: u32) {
        let before = self.limiter.set_node_share(nodes);
        if before != nodes.max(1) {
            tracing::info!(nodes, before, "live gateway nodes changed: local limits split {nodes} ways");
        }
    }
}

/// Frees a replaced snapshot off the request path: freeing a large router takes long enough
/// (0.2 s at 100,000 routes) that the last request holding it must not be the one paying.
/// Requests still using it keep it alive; after a grace period a blocking thread lets go.
fn retire(old: Arc<Snapshot>) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move {
                tokio::time::sleep(RETIRE_AFTER).await;
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
            });
        }
        Err(_) => drop(old),
    }
}

/// How long a replaced snapshot is kept for requests still using it.
const RETIRE_AFTER: Duration = Duration::from_secs(2);

/// The router for `data`: built whole on a full load, else derived from `prev` by
/// recompiling only the changed routes (the rest is shared with `prev`). The router logs
/// the invalid routes it leaves out.
fn compile_router(prev: &Router, data: &ConfigData, changed: &Changed) -> Router {
    if changed.everything {
        Router::build(data.routes.values()).0
    } else {
        prev.update(&data.routes, &changed.route_ids).0
    }
}

fn build_apis(
    data: &ConfigData,
    prev: &HashMap<Uuid, Arc<ApiRuntime>>,
    metrics: &Registry,
    rules: Rules,
    certs: &CertStore,
) -> HashMap<Uuid, Arc<ApiRuntime>> {
    let mut targets: HashMap<Uuid, Vec<&TargetDef>> = HashMap::new();
    for t in data.targets.values() {
        targets.entry(t.api_id).or_default().push(t);
    }
    data.apis
        .values()
        .map(|api| {
            let ts = targets.get(&api.id).map(Vec::as_slice).unwrap_or_default();
            let client_cert = client_certificate(api, data);
            let upstream = UpstreamTlsInput { client_cert, certs };
            (api.id, api_runtime(api, ts, prev.get(&api.id), metrics, rules, upstream))
        })
        .collect()
}

fn api_runtime(
    api: &ApiDef,
    targets: &[&TargetDef],
    prev: Option<&Arc<ApiRuntime>>,
    metrics: &Registry,
    rules: Rules,
    upstream: UpstreamTlsInput<'_>,
) -> Arc<ApiRuntime> {
    let name: Arc<str> = Arc::from(api.name.as_str());
    let stable_cfg = upstream_config(api, targets.iter().filter(|t| t.pool != "canary"));
    let canary_cfg = (api.canary_weight > 0 || api.canary_header.is_some())
        .then(|| upstream_config(api, targets.iter().filter(|t| t.pool == "canary")))
        .filter(|c| !c.targets.is_empty());
    let pool = |cfg: &UpstreamConfig, old: Option<&Arc<Upstream>>| -> Arc<Upstream> {
        match old {
            Some(o) if o.config() == cfg => o.clone(),
            Some(o) => start(o.rebuild(cfg.clone())),
            None => start(Upstream::new(cfg.clone())),
        }
    };
    let runtime = ApiRuntime {
        id: api.id,
        metrics: metrics.api(api.id, &name),
        name,
        enabled: api.enabled,
        https: api.upstream_protocol == "https",
        connect_timeout: millis(api.connect_timeout_ms),
        read_timeout: millis(api.read_timeout_ms),
        total_timeout: (api.total_timeout_ms > 0).then(|| millis(api.total_timeout_ms)),
        client: upstream_client(api, prev, rules, &upstream),
        upstream_tls: api.upstream_tls.clone().map(|v| (v, upstream.client_cert.cloned())),
        stable: pool(&stable_cfg, prev.map(|p| &p.stable)),
        canary: canary_cfg
            .as_ref()
            .map(|c| (pool(c, prev.and_then(|p| p.canary.as_ref().map(|(u, _)| u))), percent(api.canary_weight))),
        canary_header: api.canary_header.as_deref().and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        auth: ApiAuth::compile(api, prev.map(|p| &p.auth), rules.url_policy, upstream.certs.keyring()),
        config: (stable_cfg, canary_cfg),
    };
    match prev {
        Some(p) if p.config == runtime.config && p.same_settings(&runtime) && Arc::ptr_eq(&p.auth, &runtime.auth) => {
            p.clone()
        }
        _ => Arc::new(runtime),
    }
}

impl ApiRuntime {
    fn same_settings(&self, o: &ApiRuntime) -> bool {
        (
            self.enabled,
            self.https,
            self.connect_timeout,
            self.read_timeout,
            self.total_timeout,
            &self.canary_header,
            &self.name,
            &self.upstream_tls,
        ) == (
            o.enabled,
            o.https,
            o.connect_timeout,
            o.read_timeout,
            o.total_timeout,
            &o.canary_header,
            &o.name,
            &o.upstream_tls,
        ) && self.canary.as_ref().map(|c| c.1) == o.canary.as_ref().map(|c| c.1)
    }
}

/// What an API's upstream client is built from, besides its `upstream_tls`.
struct UpstreamTlsInput<'a> {
    /// The client certificate its settings name, when it exists and is one.
    client_cert: Option<&'a CertificateDef>,
    certs: &'a CertStore,
}

/// The client certificate an API's `upstream_tls` names, if it exists and is of client use.
fn client_certificate<'a>(api: &ApiDef, data: &'a ConfigData) -> Option<&'a CertificateDef> {
    let id = api.upstream_tls.as_ref()?.get("client_certificate_id")?.as_str()?.parse::<Uuid>().ok()?;
    data.certificates.get(&id).filter(|c| c.client)
}

/// What compiling APIs may allow, from the node's flags.
#[derive(Debug, Clone, Copy)]
struct Rules {
    url_policy: UrlPolicy,
    insecure_upstream_tls: bool,
}

/// The API's upstream client: the shared one, or one of its own for `upstream_tls` (kept
/// from `prev`, with its pooled connections, while the settings and timeout stay the same).
/// Settings that cannot be used (stored by an older admin) give a client that trusts
/// nothing: requests fail with 502 rather than go out less protected than configured.
fn upstream_client(
    api: &ApiDef,
    prev: Option<&Arc<ApiRuntime>>,
    rules: Rules,
    upstream: &UpstreamTlsInput<'_>,
) -> UpstreamClient {
    let timeout = millis(api.connect_timeout_ms);
    let Some(settings) = &api.upstream_tls else { return crate::wire::client::client_for(timeout) };
    let unchanged = |p: &&Arc<ApiRuntime>| {
        p.connect_timeout == timeout
            && p.upstream_tls.as_ref().is_some_and(|(v, c)| v == settings && c.as_ref() == upstream.client_cert)
    };
    if let Some(p) = prev.filter(unchanged) {
        return p.client.clone();
    }
    let tls = UpstreamTls::from_value(settings).and_then(|t| {
        let client = match (t.client_certificate_id, upstream.client_cert) {
            (None, _) => None,
            (Some(_), Some(def)) => Some(upstream.certs.client_key(def).map_err(|why| Invalid {
                field: "client_certificate_id",
                why: format!("the client certificate cannot be used: {why}"),
            })?),
            (Some(id), None) => {
                return Err(Invalid { field: "client_certificate_id", why: format!("no client certificate {id}") });
            }
        };
        t.settings(&api.name, rules.insecure_upstream_tls, client)
    });
    match tls {
        Ok(tls) => crate::wire::client::client_with_tls(timeout, tls),
        Err(e) => {
            tracing::error!(api = %api.name, error = %e, "unusable upstream TLS settings: this API's TLS upstreams will be refused");
            match UpstreamTls::trusting_nothing() {
                Some(nothing) => crate::wire::client::client_with_tls(timeout, nothing),
                None => crate::wire::client::client_for(timeout),
            }
        }
    }
}

fn start(u: Upstream) -> Arc<Upstream> {
    let u = Arc::new(u);
    // The task holds only a Weak reference and ends when the upstream is replaced.
    drop(u.spawn_active_checks());
    u
}

fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn percent(p: i32) -> u8 {
    u8::try_from(p.clamp(0, 100)).unwrap_or(0)
}

fn upstream_config<'a>(api: &ApiDef, targets: impl Iterator<Item = &'a &'a TargetDef>) -> UpstreamConfig {
    let mut targets: Vec<TargetConfig> = targets
        .map(|t| TargetConfig {
            id: t.id,
            host: t.host.clone(),
            port: u16::try_from(t.port).unwrap_or(0),
            weight: u32::try_from(t.weight).unwrap_or(0),
            backup: t.backup,
        })
        .collect();
    targets.sort_by_key(|t| t.id);
    UpstreamConfig {
        policy: lb_policy(api),
        targets,
        passive: api.passive_health.as_ref().and_then(parse::<PassiveJson>).map(Into::into).unwrap_or_default(),
        active: api.health_check.as_ref().and_then(parse::<ActiveJson>).map(Into::into),
        breaker: api.circuit_breaker.as_ref().and_then(parse::<BreakerJson>).map(Into::into),
        retry: RetryConfig {
            retries: u32::try_from(api.retries).unwrap_or(0),
            retry_on_statuses: api.retry_on_statuses.iter().filter_map(|s| u16::try_from(*s).ok()).collect(),
            ..RetryConfig::default()
        },
    }
}

fn lb_policy(api: &ApiDef) -> LbPolicy {
    match (api.lb_policy.as_str(), api.hash_on.as_deref()) {
        ("least_requests", _) => LbPolicy::LeastRequests,
        ("consistent_hash", Some("ip")) => LbPolicy::ConsistentHash(HashOn::ClientIp),
        ("consistent_hash", Some(on)) => match (on.strip_prefix("header:"), on.strip_prefix("cookie:")) {
            (Some(h), _) => HeaderName::from_bytes(h.as_bytes())
                .map(|h| LbPolicy::ConsistentHash(HashOn::Header(h)))
                .unwrap_or_default(),
            (_, Some(c)) => LbPolicy::ConsistentHash(HashOn::Cookie(c.to_owned())),
            _ => LbPolicy::RoundRobin,
        },
        _ => LbPolicy::RoundRobin,
    }
}

fn parse<T: for<'de> Deserialize<'de>>(v: &serde_json::Value) -> Option<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| tracing::warn!(error = %e, "ignoring malformed upstream setting"))
        .ok()
}

/// The admin's JSON shapes for the upstream settings (see `admin/src/upstream.rs`).
#[derive(Deserialize)]
struct PassiveJson {
    consecutive_failures: u32,
    base_ejection_ms: u64,
    max_ejection_ms: u64,
}

impl From<PassiveJson> for PassiveHealthConfig {
    fn from(p: PassiveJson) -> Self {
        Self {
            consecutive_failures: p.consecutive_failures,
            base_ejection: Duration::from_millis(p.base_ejection_ms),
            max_ejection: Duration::from_millis(p.max_ejection_ms),
        }
    }
}

#[derive(Deserialize)]
struct ActiveJson {
    path: String,
    interval_ms: u64,
    timeout_ms: u64,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl From<ActiveJson> for ActiveHealthConfig {
    fn from(a: ActiveJson) -> Self {
        Self {
            path: a.path,
            interval: Duration::from_millis(a.interval_ms),
            timeout: Duration::from_millis(a.timeout_ms),
            healthy_threshold: a.healthy_threshold,
            unhealthy_threshold: a.unhealthy_threshold,
            ..ActiveHealthConfig::default()
        }
    }
}

#[derive(Deserialize)]
struct BreakerJson {
    consecutive_failures: u32,
    failure_rate_percent: u8,
    min_requests: u32,
    window_ms: u64,
    open_ms: u64,
    half_open_requests: u32,
    fallback: Option<FallbackJson>,
}

#[derive(Deserialize)]
struct FallbackJson {
    status: u16,
    content_type: String,
    body: String,
}

impl From<BreakerJson> for BreakerConfig {
    fn from(b: BreakerJson) -> Self {
        Self {
            consecutive_failures: b.consecutive_failures,
            failure_rate_percent: b.failure_rate_percent,
            min_requests: b.min_requests,
            window: Duration::from_millis(b.window_ms),
            open_for: Duration::from_millis(b.open_ms),
            half_open_requests: b.half_open_requests,
            fallback: b.fallback.map(|f| FallbackResponse {
                status: f.status,
                content_type: f.content_type,
                body: Bytes::from(f.body),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{KeyDef, KeyHash};

    fn key(byte: u8) -> KeyDef {
        KeyDef {
            id: Uuid::new_v4(),
            consumer_id: Uuid::new_v4(),
            key_hash: KeyHash([byte; 32]),
            expires_at: None,
            revoked: false,
        }
    }

    /// A DB-less configuration whose API `orders` presents client certificate `gw` (made
    /// fresh by each call) to its TLS upstream.
    fn with_client_certificate() -> ConfigData {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name.push(rcgen::DnType::CommonName, "gateway");
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        let doc = serde_json::json!({
            "apis": [{
                "name": "orders", "auth_methods": ["anonymous"], "upstream_protocol": "https",
                "targets": [{"host": "127.0.0.1", "port": 1}],
                "upstream_tls": {"server_name": "orders.internal", "client_certificate": "gw"},
            }],
            "certificates": [{"name": "gw", "cert": cert.pem(), "key": key.serialize_pem(), "client": true}],
        });
        crate::config::file::parse(&doc.to_string()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_renewed_client_certificate_rebuilds_the_apis_presenting_it() {
        let store = ConfigStore::default();
        let data = with_client_certificate();
        store.publish(&data, Changed::all());
        let api = |store: &ConfigStore| store.load().apis.values().next().cloned().unwrap_or_else(|| panic!("no API"));
        let first = api(&store);
        assert!(first.upstream_tls.as_ref().is_some_and(|(_, cert)| cert.is_some()), "the certificate was found");
        // The same configuration again: the API (and its pooled client) is kept.
        store.publish(&data, Changed { certificates: true, ..Changed::default() });
        assert!(Arc::ptr_eq(&first, &api(&store)));
        // The certificate renewed under the same name: only a certificate change is announced,
        // and the API's client is rebuilt with the new one.
        let renewed = with_client_certificate();
        assert_eq!(renewed.certificates.keys().collect::<Vec<_>>(), data.certificates.keys().collect::<Vec<_>>());
        store.publish(&renewed, Changed { certificates: true, ..Changed::default() });
        let after = api(&store);
        assert!(!Arc::ptr_eq(&first, &after), "a renewed client certificate must reach the API");
        assert_eq!(
            after.upstream_tls.as_ref().and_then(|(_, c)| c.clone()),
            renewed.certificates.values().next().cloned()
        );
    }

    #[test]
    fn key_changes_reach_the_index_without_a_rebuild() {
        let store = ConfigStore::default();
        let (a, b) = (key(1), key(2));
        let mut data = ConfigData::default();
        data.keys.insert(&a);
        data.keys.insert(&b);
        store.publish(&data, Changed::all());
        let before = store.load();
        assert_eq!(before.keys.len(), 2);

        // Key a revoked, key b deleted, key c added.
        let mut revoked = a.clone();
        revoked.revoked = true;
        data.keys.insert(&revoked);
        data.keys.remove_where(|e| e.key_id == b.id);
        let c = key(3);
        data.keys.insert(&c);
        store.publish(&data, Changed { credentials: true, ..Changed::default() });
        let snap = store.load();
        assert_eq!(snap.keys.len(), 2);
        assert!(snap.keys.get(&b.key_hash).is_none());
        assert_eq!(snap.keys.get(&a.key_hash).map(|e| e.revoked), Some(true));
        assert_eq!(snap.keys.get(&c.key_hash).map(|e| e.key_id), Some(c.id));
        assert_eq!(before.keys.get(&a.key_hash).map(|e| e.revoked), Some(false), "the old snapshot is unchanged");
    }

    #[tokio::test]
    async fn requests_of_a_young_node_wait_for_its_first_configuration() {
        let store = Arc::new(ConfigStore::default());
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.wait_first_load(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "held until a configuration arrives");
        store.publish(&ConfigData::default(), Changed::all());
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), waiting).await.ok().and_then(Result::ok), Some(true));
        // Loaded: no wait at all, whatever the node's age.
        assert!(store.wait_first_load(Duration::ZERO).await);
        // A node past the hold with nothing loaded answers at once.
        let old = ConfigStore::default();
        let started = std::time::Instant::now();
        assert!(!old.wait_first_load(Duration::ZERO).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
