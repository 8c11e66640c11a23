//! `tollgate config export`: the configuration gateways enforce, as the declarative YAML
//! DB-less gateways read (`docs/declarative-config.md`), with every entity's id, so that
//! `config apply` on another database recreates the same entities (and the secrets sealed
//! to them still open). Secrets are never written in clear: API secrets and certificate
//! keys appear sealed (`tg1:…`, the database's own ciphertext; API secrets stored in clear
//! are sealed with the secrets key on the way out), API keys as their SHA-256.
//!
//! Left out: what developers own through the portal (their consumers — apps — with their
//! keys, subscriptions and bindings), revoked keys, and the admin's presentation of APIs
//! and plans (descriptions, documents, portal visibility).

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::json;
use tollgate_gateway::config::file::{
    FileApi, FileCertificate, FileCertificateBinding, FileConfig, FileConsumer, FileKey, FilePlan, FileRoute,
    FileSubscription, FileTarget, FileTokenBinding,
};
use tollgate_gateway::config::model::{ApiDef, CertKey, ConfigData};
use tollgate_gateway::seal::{self, Keyring};
use uuid::Uuid;

/// Reads the whole configuration from `pool` and turns it into the file's shape.
pub async fn export(pool: &sqlx::PgPool, keyring: Option<&Keyring>) -> anyhow::Result<FileConfig> {
    let data = tollgate_gateway::config::pg::load_full(pool).await.context("reading the configuration")?;
    let mut file = to_file(&data, keyring)?;
    let labels: Vec<(Uuid, String, String)> =
        sqlx::query_as("SELECT id, name, prefix FROM api_keys").fetch_all(pool).await.context("reading key labels")?;
    let labels: BTreeMap<Uuid, (String, String)> = labels.into_iter().map(|(id, n, p)| (id, (n, p))).collect();
    for key in file.consumers.iter_mut().flat_map(|c| c.keys.iter_mut()) {
        if let Some((name, prefix)) = key.id.and_then(|id| labels.get(&id)) {
            key.name = (!name.is_empty()).then(|| name.clone());
            key.prefix = Some(prefix.clone());
        }
    }
    Ok(file)
}

/// The file's YAML text, headed by a comment saying what it is.
pub fn to_yaml(file: &FileConfig) -> anyhow::Result<String> {
    let body = serde_norway::to_string(file).context("writing YAML")?;
    Ok(format!(
        "# Tollgate configuration (tollgate config export). Secrets are sealed or hashed.\n\
         # Apply with `tollgate config apply FILE`; DB-less gateways read it as is.\n{body}"
    ))
}

/// The file's shape of `data` (see the module's documentation for what is left out).
pub fn to_file(data: &ConfigData, keyring: Option<&Keyring>) -> anyhow::Result<FileConfig> {
    let certificate_names = certificate_names(data);
    let mut file = FileConfig { apis: Vec::new(), consumers: Vec::new(), certificates: Vec::new() };
    for def in data.certificates.values() {
        let key = match &def.key {
            CertKey::Sealed(sealed) => sealed.clone(),
            CertKey::Pem(_) => anyhow::bail!("certificate {} has its key in clear", def.id),
        };
        file.certificates.push(FileCertificate {
            id: Some(def.id),
            name: certificate_names[&def.id].clone(),
            cert: def.cert_pem.clone(),
            key,
            default: def.is_default,
            client: def.client,
        });
    }
    for api in data.apis.values() {
        file.apis.push(api_file(data, api, &certificate_names, keyring)?);
    }
    let api_names: BTreeMap<Uuid, &str> = data.apis.values().map(|a| (a.id, a.name.as_str())).collect();
    let plan_names: BTreeMap<Uuid, &str> = data.plans.values().map(|p| (p.id, p.name.as_str())).collect();
    // Operators' consumers, then what hangs off them filed under each in one pass per table
    // (developers' apps are not in the map, so theirs is left out).
    let mut consumers: BTreeMap<Uuid, FileConsumer> = data
        .consumers
        .values()
        .filter(|c| c.developer_id.is_none())
        .map(|c| {
            let consumer = FileConsumer {
                id: Some(c.id),
                name: c.name.clone(),
                custom_id: c.custom_id.clone(),
                keys: Vec::new(),
                subscriptions: Vec::new(),
                token_bindings: Vec::new(),
                certificate_bindings: Vec::new(),
                enabled: c.enabled,
            };
            (c.id, consumer)
        })
        .collect();
    for k in data.keys.values().filter(|k| !k.revoked) {
        if let Some(c) = consumers.get_mut(&k.consumer_id) {
            let expires_at = k.expires_at.and_then(rfc3339);
            let key =
                FileKey { id: Some(k.id), key: None, key_hash: Some(k.key_hash), expires_at, name: None, prefix: None };
            c.keys.push(key);
        }
    }
    for s in data.subscriptions.values() {
        let Some(c) = consumers.get_mut(&s.consumer_id) else { continue };
        let (Some(api), Some(plan)) = (api_names.get(&s.api_id), plan_names.get(&s.plan_id)) else {
            anyhow::bail!("subscription {} names an API or plan that does not exist", s.id)
        };
        let (api, plan, status) = ((*api).to_owned(), (*plan).to_owned(), s.status.clone());
        c.subscriptions.push(FileSubscription { id: Some(s.id), api, plan, status });
    }
    for b in data.token_bindings.values() {
        if let Some(c) = consumers.get_mut(&b.consumer_id) {
            c.token_bindings.push(FileTokenBinding {
                id: Some(b.id),
                issuer: b.issuer.clone(),
                subject: b.subject.clone(),
            });
        }
    }
    for b in data.certificate_bindings.values() {
        if let Some(c) = consumers.get_mut(&b.consumer_id) {
            let (fingerprint, subject) = (b.fingerprint.clone(), b.subject.clone());
            c.certificate_bindings.push(FileCertificateBinding { id: Some(b.id), fingerprint, subject });
        }
    }
    for mut c in consumers.into_values() {
        c.keys.sort_by_key(|k| k.id);
        file.consumers.push(c);
    }
    Ok(file)
}

/// A name per certificate for the file (where APIs name their client certificate): the
/// leaf's first name, else `client`, made unique with the start of the id.
fn certificate_names(data: &ConfigData) -> BTreeMap<Uuid, String> {
    let mut taken = std::collections::BTreeSet::new();
    data.certificates
        .values()
        .map(|c| {
            let base = c.names.first().map_or("client", String::as_str).replace('*', "wildcard");
            let name = if taken.contains(&base) { format!("{base}-{}", &c.id.simple().to_string()[..8]) } else { base };
            taken.insert(name.clone());
            (c.id, name)
        })
        .collect()
}

fn rfc3339(unix: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    at.format(&time::format_description::well_known::Rfc3339).ok()
}

fn api_file(
    data: &ConfigData,
    api: &ApiDef,
    certificate_names: &BTreeMap<Uuid, String>,
    keyring: Option<&Keyring>,
) -> anyhow::Result<FileApi> {
    let (mut jwt, mut introspection) = (api.jwt.clone(), api.introspection.clone());
    seal::api_secrets(jwt.as_mut(), introspection.as_mut(), |place, value| {
        if seal::is_sealed(value) {
            return Ok(());
        }
        let ring = keyring.ok_or_else(|| {
            format!("API {:?} keeps {place} in clear: give --secrets-key so it is exported sealed", api.name)
        })?;
        *value = ring.seal(value.as_bytes(), &seal::api_secret_aad(api.id, place)).map_err(|e| e.to_string())?;
        Ok(())
    })
    .map_err(anyhow::Error::msg)?;
    let mut upstream_tls = api.upstream_tls.clone();
    if let Some(obj) = upstream_tls.as_mut().and_then(|t| t.as_object_mut())
        && let Some(id) = obj.remove("client_certificate_id")
    {
        let name = id.as_str().and_then(|i| i.parse::<Uuid>().ok()).and_then(|i| certificate_names.get(&i));
        if let Some(name) = name {
            obj.insert("client_certificate".into(), serde_json::Value::String(name.clone()));
        }
    }
    let routes: Vec<FileRoute> = data
        .routes
        .values()
        .filter(|r| r.api_id == api.id)
        .map(|r| as_file(r, json!({})))
        .collect::<anyhow::Result<_>>()?;
    let route_names: BTreeMap<Uuid, &str> =
        data.routes.values().filter(|r| r.api_id == api.id).map(|r| (r.id, r.name.as_str())).collect();
    let plans: Vec<FilePlan> = data
        .plans
        .values()
        .filter(|p| p.api_id == api.id)
        .map(|p| {
            // Route costs by route name, as the file names routes.
            let costs: BTreeMap<&str, i32> =
                p.route_costs.iter().filter_map(|(r, c)| Some((*route_names.get(r)?, *c))).collect();
            as_file(p, json!({"route_costs": costs}))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(FileApi {
        id: Some(api.id),
        name: api.name.clone(),
        upstream_protocol: api.upstream_protocol.clone(),
        lb_policy: api.lb_policy.clone(),
        connect_timeout_ms: api.connect_timeout_ms,
        read_timeout_ms: api.read_timeout_ms,
        total_timeout_ms: api.total_timeout_ms,
        retries: api.retries,
        retry_on_statuses: api.retry_on_statuses.clone(),
        auth_methods: api.auth_methods.clone(),
        enabled: api.enabled,
        hash_on: api.hash_on.clone(),
        health_check: api.health_check.clone(),
        passive_health: api.passive_health.clone(),
        circuit_breaker: api.circuit_breaker.clone(),
        canary_weight: api.canary_weight,
        canary_header: api.canary_header.clone(),
        key_header: api.key_header.clone(),
        key_query_param: api.key_query_param.clone(),
        hide_credentials: api.hide_credentials,
        jwt,
        introspection,
        anonymous_plan: api.anonymous_plan_id.and_then(|p| data.plans.get(&p)).map(|p| p.name.clone()),
        upstream_tls,
        mtls: api.mtls.clone(),
        targets: data
            .targets
            .values()
            .filter(|t| t.api_id == api.id)
            .map(|t| FileTarget {
                id: Some(t.id),
                host: t.host.clone(),
                port: t.port,
                weight: t.weight,
                backup: t.backup,
                pool: t.pool.clone(),
            })
            .collect(),
        routes,
        plans,
    })
}

/// An entity of the configuration as the file has it: the same fields by the same names,
/// less its API's id, with `replace`'s fields instead of its own.
fn as_file<T: serde::Serialize, F: serde::de::DeserializeOwned>(
    def: &T,
    replace: serde_json::Value,
) -> anyhow::Result<F> {
    let mut fields = serde_json::to_value(def)?;
    if let (Some(obj), Some(new)) = (fields.as_object_mut(), replace.as_object()) {
        obj.remove("api_id");
        obj.extend(new.clone());
    }
    Ok(serde_json::from_value(fields)?)
}
