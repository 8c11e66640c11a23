//! Loading configuration from PostgreSQL: a full, consistent snapshot, and incremental
//! catch-up from the `config_events` change log. Event ids follow commit order (the admin
//! hands them out under a lock held to commit), so "apply every event after N" never skips
//! a change, whatever notifications were lost.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use super::keys::{Builder, KeyIndex};

use super::model::{
    ApiDef, CertificateBindingDef, CertificateDef, ConfigData, ConsumerDef, DeveloperDef, KeyDef, PlanDef, RouteDef,
    SubscriptionDef, TargetDef, TokenBindingDef,
};

/// At most this many events are applied incrementally; further behind, a full reload is cheaper.
const MAX_BATCH: i64 = 20_000;

const APIS: &str = "SELECT id, name, upstream_protocol, lb_policy, connect_timeout_ms, read_timeout_ms, retries, \
    auth_methods, enabled, total_timeout_ms, hash_on, retry_on_statuses, health_check, passive_health, \
    circuit_breaker, canary_weight, canary_header, key_header, key_query_param, hide_credentials, jwt, \
    introspection, anonymous_plan_id, upstream_tls, mtls FROM apis";
const TARGETS: &str = "SELECT id, api_id, host, port, weight, backup, pool FROM targets";
const ROUTES: &str = "SELECT id, api_id, name, hosts, paths, methods, headers, query, strip_path, rewrite_path, \
    priority, cost, auth_methods FROM routes";
const PLANS: &str = "SELECT id, api_id, name, rate_limit_per_second, rate_limit_per_minute, rate_limit_per_hour, burst, \
    quota_per_day, quota_per_month, limit_mode, redis_failure_policy, route_costs FROM plans";
const DEVELOPERS: &str = "SELECT id, status FROM developers";
const CONSUMERS: &str = "SELECT id, name, developer_id, custom_id, enabled FROM consumers";
const KEYS: &str = "SELECT id, consumer_id, key_hash, \
    extract(epoch FROM expires_at)::bigint AS expires_at, revoked_at IS NOT NULL AS revoked FROM api_keys";
const SUBSCRIPTIONS: &str = "SELECT id, consumer_id, plan_id, api_id, status FROM subscriptions";
const TOKEN_BINDINGS: &str = "SELECT id, consumer_id, issuer, subject FROM token_bindings";
const CERTIFICATE_BINDINGS: &str = "SELECT id, consumer_id, fingerprint, subject FROM certificate_bindings";
const CERTIFICATES: &str = "SELECT id, cert_pem, key_sealed, names, \
    extract(epoch FROM not_after)::bigint AS not_after, is_default, usage = 'client' AS client FROM certificates";

/// Which parts of the configuration an update touched, so only those are recompiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    pub routes: bool,
    pub upstreams: bool,
    pub credentials: bool,
    pub plans: bool,
    /// Consumers, developers, subscriptions, plans or token bindings changed: the identity
    /// and subscription tables of the snapshot are recompiled.
    pub identities: bool,
    /// Unless `everything`: consumers, developers, subscriptions and token bindings added,
    /// modified or removed (also by cascade), whose identity entries are refiled.
    pub identity_ids: Vec<Uuid>,
    /// TLS certificates changed: the listener's certificate index is rebuilt.
    pub certificates: bool,
    /// A full load: rebuild everything.
    pub everything: bool,
    /// Unless `everything`: the routes added, modified or removed (also by deleting their
    /// API), so the router recompiles only those.
    pub route_ids: Vec<Uuid>,
}

impl Changed {
    /// Everything changed (a full load).
    pub fn all() -> Self {
        Self {
            routes: true,
            upstreams: true,
            credentials: true,
            plans: true,
            identities: true,
            identity_ids: Vec::new(),
            certificates: true,
            everything: true,
            route_ids: Vec::new(),
        }
    }
}

async fn fetch<T>(conn: &mut PgConnection, base: &str, ids: Option<&[Uuid]>) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    match ids {
        None => sqlx::query_as(sqlx::AssertSqlSafe(base.to_owned())).fetch_all(conn).await,
        Some(ids) => {
            let sql = format!("{base} WHERE id = ANY($1)");
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(conn).await
        }
    }
}

/// Every key, streamed into the index (1M rows never sit in a vector beside it).
async fn fetch_keys(conn: &mut PgConnection) -> Result<KeyIndex, sqlx::Error> {
    use futures_util::TryStreamExt;
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM api_keys").fetch_one(&mut *conn).await?;
    let mut keys = Builder::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut rows = sqlx::query_as::<_, KeyDef>(KEYS).fetch(conn);
    while let Some(k) = rows.try_next().await? {
        keys.push(&k);
    }
    Ok(keys.finish())
}

fn by_id<T>(rows: Vec<T>, id: impl Fn(&T) -> Uuid) -> BTreeMap<Uuid, T> {
    rows.into_iter().map(|r| (id(&r), r)).collect()
}

async fn snapshot_tx(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    Ok(tx)
}

/// Loads everything in one consistent snapshot, with the id of the last event it reflects.
pub async fn load_full(pool: &PgPool) -> Result<ConfigData, sqlx::Error> {
    let mut tx = snapshot_tx(pool).await?;
    let (event_id,): (i64,) =
        sqlx::query_as("SELECT coalesce(max(id), 0) FROM config_events").fetch_one(&mut *tx).await?;
    let data = ConfigData {
        event_id,
        apis: by_id(fetch::<ApiDef>(&mut tx, APIS, None).await?, |r| r.id),
        targets: by_id(fetch::<TargetDef>(&mut tx, TARGETS, None).await?, |r| r.id),
        routes: by_id(fetch::<RouteDef>(&mut tx, ROUTES, None).await?, |r| r.id),
        plans: by_id(fetch::<PlanDef>(&mut tx, PLANS, None).await?, |r| r.id),
        developers: by_id(fetch::<DeveloperDef>(&mut tx, DEVELOPERS, None).await?, |r| r.id),
        consumers: by_id(fetch::<ConsumerDef>(&mut tx, CONSUMERS, None).await?, |r| r.id),
        keys: fetch_keys(&mut tx).await?,
        subscriptions: by_id(fetch::<SubscriptionDef>(&mut tx, SUBSCRIPTIONS, None).await?, |r| r.id),
        token_bindings: by_id(fetch::<TokenBindingDef>(&mut tx, TOKEN_BINDINGS, None).await?, |r| r.id),
        certificates: by_id(fetch::<CertificateDef>(&mut tx, CERTIFICATES, None).await?, |r| r.id),
        certificate_bindings: by_id(fetch::<CertificateBindingDef>(&mut tx, CERTIFICATE_BINDINGS, None).await?, |r| {
            r.id
        }),
    };
    tx.commit().await?;
    Ok(data)
}

#[derive(sqlx::FromRow)]
struct Event {
    id: i64,
    entity_kind: String,
    entity_id: Uuid,
}

/// What [`catch_up`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// Nothing new.
    Current,
    /// Events were applied in place.
    Applied { events: usize, changed: Changed },
    /// Too far behind, or events were pruned: the caller must [`load_full`].
    ReloadNeeded,
}

/// Whether the change log holds an event after `event_id` (a cheap look before copying a
/// configuration that a disk save still shares).
pub async fn has_events_after(pool: &PgPool, event_id: i64) -> Result<bool, sqlx::Error> {
    let (any,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM config_events WHERE id > $1)")
        .bind(event_id)
        .fetch_one(pool)
        .await?;
    Ok(any)
}

/// Applies every event after `data.event_id`: changed entities are re-read (their state as
/// of the same snapshot), deleted ones removed with what cascades from them.
pub async fn catch_up(pool: &PgPool, data: &mut ConfigData) -> Result<CatchUp, sqlx::Error> {
    let mut tx = snapshot_tx(pool).await?;
    let (min_id,): (Option<i64>,) = sqlx::query_as("SELECT min(id) FROM config_events").fetch_one(&mut *tx).await?;
    // Pruned past our position (id sequences may have gaps from rolled-back writes, so this
    // can reload needlessly, never miss a change). Position 0 is no exception: a node that
    // saw an empty log and was then left behind must reload too.
    if min_id.is_some_and(|m| m > data.event_id + 1) {
        return Ok(CatchUp::ReloadNeeded);
    }
    let events: Vec<Event> =
        sqlx::query_as("SELECT id, entity_kind, entity_id FROM config_events WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(data.event_id)
            .bind(MAX_BATCH + 1)
            .fetch_all(&mut *tx)
            .await?;
    if events.len() as i64 > MAX_BATCH {
        return Ok(CatchUp::ReloadNeeded);
    }
    let Some(last) = events.last().map(|e| e.id) else { return Ok(CatchUp::Current) };
    let mut touched: BTreeMap<&str, BTreeSet<Uuid>> = BTreeMap::new();
    for e in &events {
        touched.entry(e.entity_kind.as_str()).or_default().insert(e.entity_id);
    }
    let mut changed = Changed::default();
    for (kind, ids) in touched {
        let ids: Vec<Uuid> = ids.into_iter().collect();
        refresh(&mut tx, data, kind, &ids, &mut changed).await?;
    }
    tx.commit().await?;
    data.event_id = last;
    Ok(CatchUp::Applied { events: events.len(), changed })
}

/// Replaces the entities `ids` of `kind` with their current rows (absent rows: deleted).
async fn refresh(
    conn: &mut PgConnection,
    data: &mut ConfigData,
    kind: &str,
    ids: &[Uuid],
    changed: &mut Changed,
) -> Result<(), sqlx::Error> {
    match kind {
        "api" => {
            let rows = fetch::<ApiDef>(conn, APIS, Some(ids)).await?;
            replace(&mut data.apis, ids, rows, |r| r.id);
            changed.route_ids.extend(cascade_apis(data, ids));
            (changed.routes, changed.upstreams, changed.plans, changed.identities) = (true, true, true, true);
        }
        "target" => {
            replace(&mut data.targets, ids, fetch::<TargetDef>(conn, TARGETS, Some(ids)).await?, |r| r.id);
            changed.upstreams = true;
        }
        "route" => {
            replace(&mut data.routes, ids, fetch::<RouteDef>(conn, ROUTES, Some(ids)).await?, |r| r.id);
            changed.routes = true;
            changed.route_ids.extend_from_slice(ids);
            changed.plans |= cascade_routes(data, ids);
        }
        "plan" => {
            replace(&mut data.plans, ids, fetch::<PlanDef>(conn, PLANS, Some(ids)).await?, |r| r.id);
            changed.upstreams |= cascade_plans(data, ids);
            (changed.plans, changed.identities) = (true, true);
        }
        "developer" => {
            replace(&mut data.developers, ids, fetch::<DeveloperDef>(conn, DEVELOPERS, Some(ids)).await?, |r| r.id);
            changed.identity_ids.extend_from_slice(ids);
            cascade_developers(data, ids, &mut changed.identity_ids);
            (changed.credentials, changed.identities) = (true, true);
        }
        "consumer" => {
            replace(&mut data.consumers, ids, fetch::<ConsumerDef>(conn, CONSUMERS, Some(ids)).await?, |r| r.id);
            changed.identity_ids.extend_from_slice(ids);
            cascade_consumers(data, ids, &mut changed.identity_ids);
            (changed.credentials, changed.identities) = (true, true);
        }
        "api_key" => {
            let rows = fetch::<KeyDef>(conn, KEYS, Some(ids)).await?;
            // A row that is gone was deleted; the others replace their entry by hash (a key's
            // hash never changes).
            let gone: BTreeSet<Uuid> = ids.iter().filter(|id| !rows.iter().any(|r| r.id == **id)).copied().collect();
            if !gone.is_empty() {
                data.keys.remove_where(|k| gone.contains(&k.key_id));
            }
            rows.iter().for_each(|k| data.keys.insert(k));
            changed.credentials = true;
        }
        "subscription" => {
            let rows = fetch::<SubscriptionDef>(conn, SUBSCRIPTIONS, Some(ids)).await?;
            replace(&mut data.subscriptions, ids, rows, |r| r.id);
            changed.identity_ids.extend_from_slice(ids);
            (changed.credentials, changed.identities) = (true, true);
        }
        "token_binding" => {
            let rows = fetch::<TokenBindingDef>(conn, TOKEN_BINDINGS, Some(ids)).await?;
            replace(&mut data.token_bindings, ids, rows, |r| r.id);
            changed.identity_ids.extend_from_slice(ids);
            changed.identities = true;
        }
        "certificate_binding" => {
            let rows = fetch::<CertificateBindingDef>(conn, CERTIFICATE_BINDINGS, Some(ids)).await?;
            replace(&mut data.certificate_bindings, ids, rows, |r| r.id);
            changed.identity_ids.extend_from_slice(ids);
            changed.identities = true;
        }
        "certificate" => {
            let rows = fetch::<CertificateDef>(conn, CERTIFICATES, Some(ids)).await?;
            replace(&mut data.certificates, ids, rows, |r| r.id);
            changed.certificates = true;
        }
        other => tracing::debug!(kind = other, "config event of a kind gateways ignore"),
    }
    Ok(())
}

fn replace<T>(map: &mut BTreeMap<Uuid, T>, ids: &[Uuid], rows: Vec<T>, id: impl Fn(&T) -> Uuid) {
    for gone in ids {
        map.remove(gone);
    }
    map.extend(rows.into_iter().map(|r| (id(&r), r)));
}

/// Deleting an API removes its targets and routes (the database cascades; no events).
/// Returns the ids of the routes removed.
fn cascade_apis(data: &mut ConfigData, ids: &[Uuid]) -> Vec<Uuid> {
    let gone: BTreeSet<Uuid> = ids.iter().filter(|id| !data.apis.contains_key(id)).copied().collect();
    data.targets.retain(|_, t| !gone.contains(&t.api_id));
    let routes: Vec<Uuid> = data.routes.values().filter(|r| gone.contains(&r.api_id)).map(|r| r.id).collect();
    for id in &routes {
        data.routes.remove(id);
    }
    data.plans.retain(|_, p| !gone.contains(&p.api_id));
    routes
}

/// Deleting a route drops its cost overrides from the plans of its API (a database
/// trigger does it, without events). Returns whether a plan changed.
fn cascade_routes(data: &mut ConfigData, ids: &[Uuid]) -> bool {
    let gone: Vec<&Uuid> = ids.iter().filter(|id| !data.routes.contains_key(id)).collect();
    let mut pruned = false;
    for plan in data.plans.values_mut() {
        for id in &gone {
            pruned |= plan.route_costs.remove(id).is_some();
        }
    }
    pruned
}

/// Deleting a plan clears it as the anonymous plan of its API (`ON DELETE SET NULL`, no
/// event). Returns whether an API changed.
fn cascade_plans(data: &mut ConfigData, ids: &[Uuid]) -> bool {
    let gone: BTreeSet<Uuid> = ids.iter().filter(|id| !data.plans.contains_key(id)).copied().collect();
    let mut cleared = false;
    for api in data.apis.values_mut() {
        if api.anonymous_plan_id.is_some_and(|p| gone.contains(&p)) {
            api.anonymous_plan_id = None;
            cleared = true;
        }
    }
    cleared
}

/// Removes the entries matching `gone`, noting their ids.
fn remove_noting<T>(map: &mut BTreeMap<Uuid, T>, gone: impl Fn(&T) -> bool, removed: &mut Vec<Uuid>) {
    map.retain(|id, v| {
        let keep = !gone(v);
        if !keep {
            removed.push(*id);
        }
        keep
    });
}

/// Deleting a developer removes their consumers, and so their keys and subscriptions.
fn cascade_developers(data: &mut ConfigData, ids: &[Uuid], identity_ids: &mut Vec<Uuid>) {
    let gone: BTreeSet<Uuid> = ids.iter().filter(|id| !data.developers.contains_key(id)).copied().collect();
    let consumers: Vec<Uuid> =
        data.consumers.values().filter(|c| c.developer_id.is_some_and(|d| gone.contains(&d))).map(|c| c.id).collect();
    for id in &consumers {
        data.consumers.remove(id);
    }
    identity_ids.extend_from_slice(&consumers);
    cascade_consumers(data, &consumers, identity_ids)
}

/// Deleting a consumer removes its keys, subscriptions and token and certificate bindings.
fn cascade_consumers(data: &mut ConfigData, ids: &[Uuid], identity_ids: &mut Vec<Uuid>) {
    let gone: BTreeSet<Uuid> = ids.iter().filter(|id| !data.consumers.contains_key(id)).copied().collect();
    if gone.is_empty() {
        return;
    }
    data.keys.remove_where(|k| gone.contains(&k.consumer_id));
    remove_noting(&mut data.subscriptions, |s| gone.contains(&s.consumer_id), identity_ids);
    remove_noting(&mut data.token_bindings, |b| gone.contains(&b.consumer_id), identity_ids);
    remove_noting(&mut data.certificate_bindings, |b| gone.contains(&b.consumer_id), identity_ids);
}
