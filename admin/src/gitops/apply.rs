//! `tollgate config diff` and `tollgate config apply`: make the database hold what a
//! declarative file says, through the admin's own operations (validation, audit rows and
//! config events as for API calls), all in one transaction — gateways see one change, and
//! a file that fails anywhere changes nothing. `diff` runs the same steps and rolls back.
//!
//! Entities are matched by id (as `config export` writes them), else by their natural key
//! (API name; target host and port; route and plan name within their API; consumer name;
//! a key's hash; a subscription's consumer and API; a binding's issuer and subject, or
//! fingerprint or subject; a certificate's chain). Unmatched entities of the file are
//! created (with the file's id, or the id a DB-less gateway would derive); matched ones are
//! updated in the fields the file manages — the admin's own fields (descriptions,
//! documents, portal visibility) are left as they are. With `prune`, entities the file does
//! not name are deleted; developers' apps (consumers with a developer) and their keys,
//! subscriptions and bindings are never touched, nor are revoked keys.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tollgate_gateway::config::file::FileConfig;
use tollgate_gateway::config::model::{ApiDef, CertKey, ConfigData};
use tollgate_gateway::seal::{self, Keyring};
use uuid::Uuid;

use crate::apis::Api;
use crate::certificate_bindings::CertificateBinding;
use crate::certificates::{Certificate, CertificateInput, CertificateUsage};
use crate::change::Actor;
use crate::consumers::Consumer;
use crate::error::ApiError;
use crate::keys::{ApiKey, KeyInput};
use crate::ops::{self, Parent};
use crate::plans::Plan;
use crate::resource::{self, Resource};
use crate::routes::Route;
use crate::state::AppState;
use crate::subscriptions::{NewSubscription, Subscription};
use crate::targets::Target;
use crate::token_bindings::TokenBinding;

/// Advisory lock taken by an apply, so two never interleave ("gitops" in ASCII).
const APPLY_LOCK: i64 = 0x6769_746f_7073;

/// What an apply did (or, for a diff, would do), in order.
#[derive(Debug, Default)]
pub struct Outcome {
    pub steps: Vec<Step>,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub op: Op,
    /// The entity kind (`api`, `route`, ...).
    pub kind: &'static str,
    /// Which one (`orders`, `orders/read`, ...).
    pub what: String,
    /// For updates: the fields that changed.
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = match self.op {
            Op::Create => '+',
            Op::Update => '~',
            Op::Delete => '-',
        };
        write!(f, "{sign} {} {}", self.kind, self.what)?;
        if !self.fields.is_empty() {
            write!(f, " ({})", self.fields.join(", "))?;
        }
        Ok(())
    }
}

/// Why a file was not applied (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The YAML or the shape of the file (with line and column), or a rule of the format.
    #[error("{0}")]
    File(String),
    /// An operation refused an entity.
    #[error("{what}: {error}")]
    Refused { what: String, error: Box<ApiError> },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Reads a file, as `apply` does: the YAML, then the gateways' own rules.
pub fn read(text: &str) -> Result<(FileConfig, ConfigData), ApplyError> {
    let file: FileConfig = serde_norway::from_str(text).map_err(|e| ApplyError::File(e.to_string()))?;
    let desired = tollgate_gateway::config::file::convert(&file).map_err(|e| ApplyError::File(format!("{e:#}")))?;
    Ok((file, desired))
}

/// Applies `text` (`commit`), or works out what applying it would do (rolled back).
pub async fn apply(
    state: &AppState,
    who: &Actor,
    text: &str,
    prune: bool,
    commit: bool,
) -> Result<Outcome, ApplyError> {
    let (_, mut desired) = read(text)?;
    let keyring = state.config().secrets.clone();
    open_secrets(&mut desired, keyring.as_deref())?;
    let mut tx = state.db().begin().await.map_err(anyhow::Error::from)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(APPLY_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
    let current = tollgate_gateway::config::pg::load_full(state.db()).await.map_err(anyhow::Error::from)?;
    let mut run = Run { tx, state, who, steps: Vec::new(), current: &current, desired: &desired, ids: Ids::default() };
    run.all(prune).await?;
    let Run { tx, steps, .. } = run;
    if commit {
        tx.commit().await.map_err(anyhow::Error::from)?;
    } else {
        tx.rollback().await.map_err(anyhow::Error::from)?;
    }
    Ok(Outcome { steps })
}

/// Opens what the file holds sealed (API secrets, certificate keys), bound to the file's
/// ids: the operations seal them again for the rows they write.
fn open_secrets(desired: &mut ConfigData, keyring: Option<&Keyring>) -> Result<(), ApplyError> {
    for api in desired.apis.values_mut() {
        seal::open_api_secrets(api.id, api.jwt.as_mut(), api.introspection.as_mut(), keyring)
            .map_err(|why| ApplyError::File(format!("API {:?}: {why}", api.name)))?;
    }
    for cert in desired.certificates.values_mut() {
        if let CertKey::Sealed(sealed) = &cert.key {
            let ring = keyring.ok_or_else(|| {
                ApplyError::File(format!("certificate {}: its key is sealed and no --secrets-key is given", cert.id))
            })?;
            let pem = ring
                .open(sealed, &seal::certificate_key_aad(cert.id))
                .map_err(|e| ApplyError::File(format!("certificate {}: {e}", cert.id)))?;
            let pem = String::from_utf8(pem)
                .map_err(|_| ApplyError::File(format!("certificate {}: key is not text", cert.id)))?;
            cert.key = CertKey::Pem(pem);
        }
    }
    Ok(())
}

/// The file's ids → the ids of the rows that stand for them.
#[derive(Default)]
struct Ids {
    map: BTreeMap<Uuid, Uuid>,
}

impl Ids {
    fn of(&self, file_id: Uuid) -> Uuid {
        self.map.get(&file_id).copied().unwrap_or(file_id)
    }
}

struct Run<'a> {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    state: &'a AppState,
    who: &'a Actor,
    steps: Vec<Step>,
    current: &'a ConfigData,
    desired: &'a ConfigData,
    ids: Ids,
}

fn api_parent(id: Uuid) -> Option<Parent> {
    Some(Parent { kind: "api", table: "apis", id })
}

fn refused(what: &str) -> impl FnOnce(ApiError) -> ApplyError + '_ {
    move |error| ApplyError::Refused { what: what.to_owned(), error: Box::new(error) }
}

impl Run<'_> {
    /// Creates (`current` none) or updates the entity `id` of kind `R` from `body`.
    async fn put<R: Resource>(
        &mut self,
        what: String,
        parent: Option<Parent>,
        id: Uuid,
        exists: bool,
        body: Value,
    ) -> Result<(), ApplyError> {
        if exists {
            let (_, fields) = ops::patch_in::<R>(&mut self.tx, self.state, self.who, parent, id, None, body)
                .await
                .map_err(refused(&what))?;
            if !fields.is_empty() {
                self.steps.push(Step { op: Op::Update, kind: R::KIND, what, fields });
            }
        } else {
            let input: R::Input =
                serde_json::from_value(body).map_err(|e| refused(&what)(ApiError::bad_request(e.to_string())))?;
            ops::create_in::<R>(&mut self.tx, self.state, self.who, parent, id, input).await.map_err(refused(&what))?;
            self.steps.push(Step { op: Op::Create, kind: R::KIND, what, fields: Vec::new() });
        }
        Ok(())
    }

    async fn delete<R: Resource>(&mut self, what: String, parent: Option<Parent>, id: Uuid) -> Result<(), ApplyError> {
        ops::delete_in::<R>(&mut self.tx, self.who, parent, id, None).await.map_err(refused(&what))?;
        self.steps.push(Step { op: Op::Delete, kind: R::KIND, what, fields: Vec::new() });
        Ok(())
    }

    async fn all(&mut self, prune: bool) -> Result<(), ApplyError> {
        self.certificates().await?;
        self.apis().await?;
        self.consumers().await?;
        if prune {
            self.prune().await?;
        }
        Ok(())
    }

    async fn certificates(&mut self) -> Result<(), ApplyError> {
        for want in self.desired.certificates.values() {
            let found = self
                .current
                .certificates
                .get(&want.id)
                .map(|c| c.id)
                .or_else(|| self.current.certificates.values().find(|c| c.cert_pem == want.cert_pem).map(|c| c.id));
            let id = found.unwrap_or(want.id);
            self.ids.map.insert(want.id, id);
            let CertKey::Pem(key) = &want.key else { continue };
            let usage = if want.client { CertificateUsage::Client } else { CertificateUsage::Server };
            let input =
                CertificateInput { cert: want.cert_pem.clone(), key: key.clone(), is_default: want.is_default, usage };
            let what = want.names.first().cloned().unwrap_or_else(|| id.to_string());
            let stored = match found {
                Some(id) => resource::fetch_for_update::<Certificate>(&mut self.tx, id, None)
                    .await
                    .map_err(anyhow::Error::from)?,
                None => None,
            };
            if let Some(stored) = &stored {
                let now = &self.current.certificates[&stored.id];
                let keyring = self.state.config().secrets.clone();
                let same_key = match &now.key {
                    CertKey::Sealed(s) => keyring
                        .as_deref()
                        .and_then(|r| r.open(s, &seal::certificate_key_aad(stored.id)).ok())
                        .is_some_and(|k| k == key.as_bytes()),
                    CertKey::Pem(p) => p == key,
                };
                if same_key
                    && now.cert_pem == want.cert_pem
                    && now.is_default == want.is_default
                    && now.client == want.client
                {
                    continue;
                }
            }
            crate::certificates::store_in(&mut self.tx, self.state, self.who, id, &input, stored.as_ref())
                .await
                .map_err(refused(&format!("certificate {what}")))?;
            let op = if stored.is_some() { Op::Update } else { Op::Create };
            self.steps.push(Step { op, kind: Certificate::KIND, what, fields: Vec::new() });
        }
        Ok(())
    }

    async fn apis(&mut self) -> Result<(), ApplyError> {
        for want in self.desired.apis.values() {
            let found = self
                .current
                .apis
                .get(&want.id)
                .map(|a| a.id)
                .or_else(|| self.current.apis.values().find(|a| a.name == want.name).map(|a| a.id));
            let id = found.unwrap_or(want.id);
            self.ids.map.insert(want.id, id);
            let body = self.api_body(want);
            self.put::<Api>(want.name.clone(), None, id, found.is_some(), body).await?;
            self.children(want, id).await?;
        }
        // Anonymous plans last: they name plans of the API made just now.
        for want in self.desired.apis.values() {
            let id = self.ids.of(want.id);
            let plan = want.anonymous_plan_id.map(|p| self.ids.of(p));
            self.put::<Api>(want.name.clone(), None, id, true, json!({"anonymous_plan_id": plan})).await?;
        }
        Ok(())
    }

    /// An API's fields as the file gives them (the anonymous plan apart).
    fn api_body(&self, a: &ApiDef) -> Value {
        let mut upstream_tls = a.upstream_tls.clone();
        let slot = upstream_tls.as_mut().and_then(|t| t.get_mut("client_certificate_id"));
        if let Some(cid) = slot
            && let Some(file_id) = cid.as_str().and_then(|s| s.parse::<Uuid>().ok())
        {
            *cid = json!(self.ids.of(file_id));
        }
        json!({
            "name": a.name, "upstream_protocol": a.upstream_protocol, "lb_policy": a.lb_policy,
            "connect_timeout_ms": a.connect_timeout_ms, "read_timeout_ms": a.read_timeout_ms, "retries": a.retries,
            "auth_methods": a.auth_methods, "enabled": a.enabled, "total_timeout_ms": a.total_timeout_ms,
            "hash_on": a.hash_on, "retry_on_statuses": a.retry_on_statuses, "health_check": a.health_check,
            "passive_health": a.passive_health, "circuit_breaker": a.circuit_breaker, "canary_weight": a.canary_weight,
            "canary_header": a.canary_header, "key_header": a.key_header, "key_query_param": a.key_query_param,
            "hide_credentials": a.hide_credentials, "jwt": a.jwt, "introspection": a.introspection,
            "upstream_tls": upstream_tls, "mtls": a.mtls,
        })
    }

    async fn children(&mut self, api: &ApiDef, api_id: Uuid) -> Result<(), ApplyError> {
        let (current, desired) = (self.current, self.desired);
        let parent = api_parent(api_id);
        for t in desired.targets.values().filter(|t| t.api_id == api.id) {
            let found = current.targets.get(&t.id).map(|c| c.id).or_else(|| {
                current
                    .targets
                    .values()
                    .find(|c| c.api_id == api_id && c.host == t.host && c.port == t.port)
                    .map(|c| c.id)
            });
            let id = found.unwrap_or(t.id);
            self.ids.map.insert(t.id, id);
            let body = json!({"host": t.host, "port": t.port, "weight": t.weight, "backup": t.backup, "pool": t.pool});
            let what = format!("{}/{}:{}", api.name, t.host, t.port);
            self.put::<Target>(what, parent, id, found.is_some(), body).await?;
        }
        for r in desired.routes.values().filter(|r| r.api_id == api.id) {
            let found = current
                .routes
                .get(&r.id)
                .map(|c| c.id)
                .or_else(|| current.routes.values().find(|c| c.api_id == api_id && c.name == r.name).map(|c| c.id));
            let id = found.unwrap_or(r.id);
            self.ids.map.insert(r.id, id);
            let body = json!({
                "name": r.name, "hosts": r.hosts, "paths": r.paths, "methods": r.methods, "headers": r.headers,
                "query": r.query, "strip_path": r.strip_path, "rewrite_path": r.rewrite_path,
                "priority": r.priority, "cost": r.cost, "auth_methods": r.auth_methods,
            });
            self.put::<Route>(format!("{}/{}", api.name, r.name), parent, id, found.is_some(), body).await?;
        }
        for p in desired.plans.values().filter(|p| p.api_id == api.id) {
            let found = current
                .plans
                .get(&p.id)
                .map(|c| c.id)
                .or_else(|| current.plans.values().find(|c| c.api_id == api_id && c.name == p.name).map(|c| c.id));
            let id = found.unwrap_or(p.id);
            self.ids.map.insert(p.id, id);
            let costs: BTreeMap<String, i32> =
                p.route_costs.iter().map(|(r, c)| (self.ids.of(*r).to_string(), *c)).collect();
            let body = json!({
                "name": p.name, "rate_limit_per_second": p.rate_limit_per_second,
                "rate_limit_per_minute": p.rate_limit_per_minute, "rate_limit_per_hour": p.rate_limit_per_hour,
                "burst": p.burst, "quota_per_day": p.quota_per_day, "quota_per_month": p.quota_per_month,
                "limit_mode": p.limit_mode, "redis_failure_policy": p.redis_failure_policy, "route_costs": costs,
            });
            self.put::<Plan>(format!("{}/{}", api.name, p.name), parent, id, found.is_some(), body).await?;
        }
        Ok(())
    }

    async fn consumers(&mut self) -> Result<(), ApplyError> {
        let (current, desired) = (self.current, self.desired);
        // Natural keys of what the database holds, looked up once each (there may be many).
        let operators_by_name: BTreeMap<String, Uuid> = current
            .consumers
            .values()
            .filter(|d| d.developer_id.is_none())
            .map(|d| (d.name.to_lowercase(), d.id))
            .collect();
        let subscriptions: BTreeMap<(Uuid, Uuid), Uuid> =
            current.subscriptions.values().map(|d| ((d.consumer_id, d.api_id), d.id)).collect();
        let token_bindings: BTreeMap<(&str, &str), Uuid> =
            current.token_bindings.values().map(|d| ((d.issuer.as_str(), d.subject.as_str()), d.id)).collect();
        let certificate_bindings: BTreeMap<(Option<&str>, Option<&str>), Uuid> = current
            .certificate_bindings
            .values()
            .map(|d| ((d.fingerprint.as_deref(), d.subject.as_deref()), d.id))
            .collect();
        for c in desired.consumers.values() {
            let found = current
                .consumers
                .get(&c.id)
                .filter(|d| d.developer_id.is_none())
                .map(|d| d.id)
                .or_else(|| operators_by_name.get(&c.name.to_lowercase()).copied());
            let id = found.unwrap_or(c.id);
            self.ids.map.insert(c.id, id);
            let body = json!({"name": c.name, "custom_id": c.custom_id, "enabled": c.enabled});
            self.put::<Consumer>(c.name.clone(), None, id, found.is_some(), body).await?;
        }
        self.keys().await?;
        for s in desired.subscriptions.values() {
            let (consumer, api, plan) = (self.ids.of(s.consumer_id), self.ids.of(s.api_id), self.ids.of(s.plan_id));
            let what = format!("{}/{}", name_of(desired, s.consumer_id), api_name(desired, s.api_id));
            match subscriptions.get(&(consumer, api)) {
                Some(&found) => {
                    let body = json!({"plan_id": plan, "status": s.status});
                    self.put::<Subscription>(what, None, found, true, body).await?;
                }
                None => {
                    let status = serde_json::from_value(json!(s.status)).map_err(anyhow::Error::from)?;
                    let new = NewSubscription {
                        consumer_id: consumer,
                        plan_id: plan,
                        status: Some(status),
                        comment: String::new(),
                    };
                    crate::subscriptions::subscribe(&mut self.tx, self.who, &new).await.map_err(refused(&what))?;
                    self.steps.push(Step { op: Op::Create, kind: Subscription::KIND, what, fields: Vec::new() });
                }
            }
        }
        for b in desired.token_bindings.values() {
            let found = current
                .token_bindings
                .get(&b.id)
                .map(|d| d.id)
                .or_else(|| token_bindings.get(&(b.issuer.as_str(), b.subject.as_str())).copied());
            let body = json!({"consumer_id": self.ids.of(b.consumer_id), "issuer": b.issuer, "subject": b.subject});
            let what = format!("{} {}", b.issuer, b.subject);
            self.put::<TokenBinding>(what, None, found.unwrap_or(b.id), found.is_some(), body).await?;
        }
        for b in desired.certificate_bindings.values() {
            let key = (b.fingerprint.as_deref(), b.subject.as_deref());
            let found = current
                .certificate_bindings
                .get(&b.id)
                .map(|d| d.id)
                .or_else(|| certificate_bindings.get(&key).copied());
            let body =
                json!({"consumer_id": self.ids.of(b.consumer_id), "fingerprint": b.fingerprint, "subject": b.subject});
            let what = b.fingerprint.clone().or_else(|| b.subject.clone()).unwrap_or_default();
            self.put::<CertificateBinding>(what, None, found.unwrap_or(b.id), found.is_some(), body).await?;
        }
        Ok(())
    }

    async fn keys(&mut self) -> Result<(), ApplyError> {
        let (current, desired) = (self.current, self.desired);
        for k in desired.keys.values() {
            let consumer = self.ids.of(k.consumer_id);
            let what = format!("{}/{}", name_of(desired, k.consumer_id), &hex::encode(k.key_hash.0)[..12]);
            let expires_at = k
                .expires_at
                .map(|t| time::OffsetDateTime::from_unix_timestamp(t).map_err(anyhow::Error::from))
                .transpose()?;
            let input = KeyInput { name: String::new(), expires_at };
            match current.keys.get(&k.key_hash) {
                Some(found) if found.consumer_id != consumer => {
                    return Err(ApplyError::File(format!("key {what} belongs to another consumer in the database")));
                }
                Some(found) => {
                    let body = json!({"expires_at": input.expires_at.map(rfc3339)});
                    let parent = Some(Parent { kind: "consumer", table: "consumers", id: consumer });
                    self.put::<ApiKey>(what, parent, found.key_id, true, body).await?;
                }
                None => {
                    crate::keys::import_in(&mut self.tx, self.who, consumer, k.id, k.key_hash.0, &input, "(imported)")
                        .await
                        .map_err(refused(&what))?;
                    self.steps.push(Step { op: Op::Create, kind: ApiKey::KIND, what, fields: Vec::new() });
                }
            }
        }
        Ok(())
    }

    /// Deletes what the file does not name (developers' apps and revoked keys excepted).
    async fn prune(&mut self) -> Result<(), ApplyError> {
        let (current, desired) = (self.current, self.desired);
        let kept: BTreeSet<Uuid> = self.ids.map.values().copied().collect();
        let operators: BTreeSet<Uuid> =
            current.consumers.values().filter(|c| c.developer_id.is_none()).map(|c| c.id).collect();
        let wanted_keys: BTreeSet<_> = desired.keys.values().map(|k| k.key_hash).collect();
        // What the file names, by natural key (the database's ids for subscriptions).
        let named_certificates: BTreeSet<(Option<&str>, Option<&str>)> =
            desired.certificate_bindings.values().map(|d| (d.fingerprint.as_deref(), d.subject.as_deref())).collect();
        let named_tokens: BTreeSet<(&str, &str)> =
            desired.token_bindings.values().map(|d| (d.issuer.as_str(), d.subject.as_str())).collect();
        let named_subscriptions: BTreeSet<(Uuid, Uuid)> =
            desired.subscriptions.values().map(|d| (self.ids.of(d.consumer_id), self.ids.of(d.api_id))).collect();
        for b in current.certificate_bindings.values().filter(|b| operators.contains(&b.consumer_id)) {
            let named = named_certificates.contains(&(b.fingerprint.as_deref(), b.subject.as_deref()));
            if !named && !kept.contains(&b.id) {
                let what = b.fingerprint.clone().or_else(|| b.subject.clone()).unwrap_or_default();
                self.delete::<CertificateBinding>(what, None, b.id).await?;
            }
        }
        for b in current.token_bindings.values().filter(|b| operators.contains(&b.consumer_id)) {
            if !named_tokens.contains(&(b.issuer.as_str(), b.subject.as_str())) && !kept.contains(&b.id) {
                self.delete::<TokenBinding>(format!("{} {}", b.issuer, b.subject), None, b.id).await?;
            }
        }
        for s in current.subscriptions.values().filter(|s| operators.contains(&s.consumer_id)) {
            if !named_subscriptions.contains(&(s.consumer_id, s.api_id)) {
                let what = format!("{}/{}", name_of(current, s.consumer_id), api_name(current, s.api_id));
                self.delete::<Subscription>(what, None, s.id).await?;
            }
        }
        for k in current.keys.values().filter(|k| operators.contains(&k.consumer_id) && !k.revoked) {
            if !wanted_keys.contains(&k.key_hash) {
                let what = format!("{}/{}", name_of(current, k.consumer_id), &hex::encode(k.key_hash.0)[..12]);
                let parent = Some(Parent { kind: "consumer", table: "consumers", id: k.consumer_id });
                self.delete::<ApiKey>(what, parent, k.id).await?;
            }
        }
        for c in current.consumers.values().filter(|c| operators.contains(&c.id) && !kept.contains(&c.id)) {
            self.delete::<Consumer>(c.name.clone(), None, c.id).await?;
        }
        let gone_apis: BTreeSet<Uuid> = current.apis.keys().filter(|id| !kept.contains(id)).copied().collect();
        for p in current.plans.values().filter(|p| !kept.contains(&p.id) && !gone_apis.contains(&p.api_id)) {
            self.delete::<Plan>(format!("{}/{}", api_name(current, p.api_id), p.name), api_parent(p.api_id), p.id)
                .await?;
        }
        for r in current.routes.values().filter(|r| !kept.contains(&r.id) && !gone_apis.contains(&r.api_id)) {
            self.delete::<Route>(format!("{}/{}", api_name(current, r.api_id), r.name), api_parent(r.api_id), r.id)
                .await?;
        }
        for t in current.targets.values().filter(|t| !kept.contains(&t.id) && !gone_apis.contains(&t.api_id)) {
            let what = format!("{}/{}:{}", api_name(current, t.api_id), t.host, t.port);
            self.delete::<Target>(what, api_parent(t.api_id), t.id).await?;
        }
        for id in &gone_apis {
            self.delete::<Api>(api_name(current, *id), None, *id).await?;
        }
        for c in current.certificates.values().filter(|c| !kept.contains(&c.id)) {
            let what = c.names.first().cloned().unwrap_or_else(|| c.id.to_string());
            self.delete::<Certificate>(what, None, c.id).await?;
        }
        Ok(())
    }
}

fn name_of(data: &ConfigData, consumer: Uuid) -> String {
    data.consumers.get(&consumer).map_or_else(|| consumer.to_string(), |c| c.name.clone())
}

fn api_name(data: &ConfigData, api: Uuid) -> String {
    data.apis.get(&api).map_or_else(|| api.to_string(), |a| a.name.clone())
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
