//! Usage analytics across a fleet: three `tollgate gateway` processes record every answered
//! request (proxied, refused with 401 or 429, failed upstream) and write it to PostgreSQL;
//! the admin's usage API then returns exactly what the clients saw, split by consumer, key,
//! route and status class — also when PostgreSQL was down for 30 s under load, and when a
//! node is stopped with SIGTERM under load.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;
use tollgate_admin::testkit::test_database;
use tollgate_admin::usage::Retention;
use tollgate_admin::usage::rollup::roll_up;

use crate::support::admin::Admin;
use crate::support::gateway::Gateway;
use crate::support::postgres::PrivatePostgres;
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// How long written usage may take to show (flushes every second here).
const FLUSHED: Duration = Duration::from_secs(30);
/// How long a node may take to write what it kept through an outage.
const RECOVERY: Duration = Duration::from_secs(60);
const PROPAGATION: Duration = Duration::from_secs(5);
const KEY_HEADER: &str = "x-api-key";
/// Upstream delay of the slow calls, in milliseconds.
const SLOW_MS: u64 = 80;

async fn node(db: &str, dir: &std::path::Path) -> anyhow::Result<Gateway> {
    Gateway::start_with(db, dir, |cmd| {
        cmd.args(["--usage-flush-interval-secs", "1"]);
        for var in ["TOLLGATE_USAGE", "TOLLGATE_USAGE_MAX_SERIES", "TOLLGATE_USAGE_MAX_PENDING_SERIES"] {
            cmd.env_remove(var);
        }
    })
    .await
}

async fn synced(admin: &Admin, nodes: &[Gateway]) -> anyhow::Result<()> {
    let last = admin.last_event_id().await?;
    for n in nodes {
        eventually(&format!("{} to apply event {last}", n.addr), PROPAGATION, || async {
            match n.config_event_id().await {
                Ok(id) if id >= last => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await?;
    }
    Ok(())
}

/// What the clients saw: (consumer, key, route, class) → requests.
type Seen = BTreeMap<(String, String, String, String), u64>;

/// The status class of a reply: a 5xx in a problem document is the gateway's own.
fn class_of(reply: &crate::support::gateway::Reply) -> &'static str {
    match reply.status {
        401 => "401",
        403 => "403",
        429 => "429",
        200..=299 => "2xx",
        500..=599 if reply.problem_type().is_some() => "5xx_gateway",
        500..=599 => "5xx_upstream",
        _ => "4xx",
    }
}

/// The usage API's series over the last hour, grouped like [`Seen`].
async fn reported(admin: &Admin, api: &str) -> anyhow::Result<Seen> {
    let now = time::OffsetDateTime::now_utc();
    let f = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339);
    let (from, to) = (f(now - time::Duration::HOUR)?, f(now + time::Duration::MINUTE)?);
    let path =
        format!("/usage?from={from}&to={to}&granularity=minute&api_id={api}&group_by=consumer,key,route,status_class");
    let body = admin.get(&path).await?;
    let mut out = Seen::new();
    for s in body["series"].as_array().context("series")? {
        let g = &s["group"];
        let text = |k: &str| g[k].as_str().unwrap_or_default().to_owned();
        let key = (text("consumer_id"), text("key_id"), text("route_id"), text("status_class"));
        *out.entry(key).or_default() += s["total"]["requests"].as_u64().unwrap_or(0);
    }
    Ok(out)
}

const NIL: &str = "00000000-0000-0000-0000-000000000000";

#[tokio::test]
async fn three_nodes_report_exactly_what_clients_saw() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let db = test_database().await;
    let admin = Admin::start(&db.url).await?;
    let upstream = Upstream::start("usage").await?;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(node(&db.url, &scratch.path().join(format!("node{i}"))).await?);
    }
    let api = admin.create_api_with(json!({"name": "usage", "auth_methods": ["key_auth"]})).await?;
    admin.add_target(&api, upstream.addr).await?;
    let route_a = admin.add_route(&api, "a", &["/u/a", "/u/a/*"]).await?;
    let route_b = admin.add_route(&api, "b", &["/u/b/*"]).await?;
    let open = admin.create_plan(&api, json!({"name": "open"})).await?;
    let tight = admin.create_plan(&api, json!({"name": "tight", "rate_limit_per_minute": 5})).await?;
    let alice = admin.create_consumer(json!({"name": "alice"})).await?;
    let bob = admin.create_consumer(json!({"name": "bob"})).await?;
    let (alice_k1, alice_key1) = admin.create_key(&alice).await?;
    let (alice_k2, alice_key2) = admin.create_key(&alice).await?;
    let (bob_k, bob_key) = admin.create_key(&bob).await?;
    admin.subscribe(&alice, &open).await?;
    admin.subscribe(&bob, &tight).await?;
    synced(&admin, &nodes).await?;

    let mut seen = Seen::new();
    let mut slow_latencies = Vec::new();
    let mut sent = 0u64;
    // (consumer, key id, key, path, route, calls). The upstream's failures come last: they
    // may open the circuit breaker, whose 503s are then the gateway's own.
    let plan: Vec<(&str, &str, &str, String, &str, usize)> = vec![
        (&alice, &alice_k1, &alice_key1, "/u/a".to_owned(), &route_a, 60),
        (&alice, &alice_k2, &alice_key2, "/u/b/fast".to_owned(), &route_b, 90),
        (&alice, &alice_k2, &alice_key2, format!("/u/b/slow?ms={SLOW_MS}"), &route_b, 10),
        (&bob, &bob_k, &bob_key, "/u/a".to_owned(), &route_a, 30),
        (NIL, NIL, "", "/u/a".to_owned(), &route_a, 10),
        (NIL, NIL, "tg_not_a_key", "/u/b/x".to_owned(), &route_b, 5),
        (&alice, &alice_k1, &alice_key1, "/u/a/fail".to_owned(), &route_a, 20),
    ];
    for (consumer, key_id, key, path, route, calls) in &plan {
        for i in 0..*calls {
            let node = &nodes[(sent as usize + i) % nodes.len()];
            let headers: Vec<(&str, &str)> = if key.is_empty() { vec![] } else { vec![(KEY_HEADER, key)] };
            let at = Instant::now();
            let reply = node.request(path, &headers).await?;
            if path.contains("slow") {
                slow_latencies.push(at.elapsed());
            }
            *seen
                .entry((consumer.to_string(), key_id.to_string(), route.to_string(), class_of(&reply).to_owned()))
                .or_default() += 1;
        }
        sent += *calls as u64;
    }
    ensure!(seen.keys().any(|k| k.3 == "429"), "the tight plan refused some: {seen:?}");
    ensure!(seen.keys().any(|k| k.3 == "5xx_upstream"), "{seen:?}");
    ensure!(seen.keys().any(|k| k.3 == "401"), "{seen:?}");
    let fast_ok = seen.get(&(alice.clone(), alice_k2.clone(), route_b.clone(), "2xx".to_owned()));
    ensure!(fast_ok == Some(&100), "alice's second key: 100 answered by the upstream: {seen:?}");

    let got = eventually("the usage API to count every request", FLUSHED, || async {
        let got = reported(&admin, &api).await.map_err(|e| format!("{e:#}"))?;
        let total: u64 = got.values().sum();
        if total == sent { Ok(got) } else { Err(format!("{total} of {sent} reported")) }
    })
    .await?;
    let differ: Vec<_> = got
        .keys()
        .chain(seen.keys())
        .filter(|k| got.get(*k) != seen.get(*k))
        .map(|k| format!("{k:?}: reported {:?}, seen {:?}", got.get(k), seen.get(k)))
        .collect();
    ensure!(differ.is_empty(), "split as sent; differences:\n{}", differ.join("\n"));

    // p95 of alice's second key (90 fast calls, 10 slow): one of the slow ones, within a
    // histogram bucket (1/16) of what it took — at least the upstream's delay, at most what
    // the client measured.
    let now = time::OffsetDateTime::now_utc();
    let f = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339);
    let body = admin
        .get(&format!(
            "/usage?from={}&to={}&granularity=minute&key_id={alice_k2}",
            f(now - time::Duration::HOUR)?,
            f(now + time::Duration::MINUTE)?
        ))
        .await?;
    let p95 = body["series"][0]["total"]["p95_ms"].as_f64().context("p95")?;
    let client_max = slow_latencies.iter().max().copied().unwrap_or_default().as_secs_f64() * 1000.0;
    let slack = client_max / 16.0;
    ensure!(
        p95 >= SLOW_MS as f64 * (1.0 - 1.0 / 16.0) && p95 <= client_max + slack,
        "p95 {p95} ms, slow calls took ≤ {client_max} ms"
    );

    // Roll-ups agree and stay put when run again.
    let rolled = |admin: &Admin| {
        let pool = admin.pool.clone();
        async move {
            eventually("a roll-up run", FLUSHED, || async {
                match roll_up(&pool, &Retention::default()).await {
                    Ok(r) if r.ran => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await
        }
    };
    rolled(&admin).await?;
    let hours: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(requests), 0)::bigint FROM usage_hours").fetch_one(&admin.pool).await?;
    ensure!(hours == sent as i64, "hours hold {hours} of {sent}");
    sqlx::query("INSERT INTO usage_rollup_pending (tier, bucket) SELECT DISTINCT 'hour', bucket FROM usage_hours")
        .execute(&admin.pool)
        .await?;
    rolled(&admin).await?;
    let again: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(requests), 0)::bigint FROM usage_days").fetch_one(&admin.pool).await?;
    ensure!(again == sent as i64, "days hold {again} of {sent} after a second roll-up");

    // Keys' last use came with the flushes.
    let key = admin.get(&format!("/consumers/{alice}/keys/{alice_k1}")).await?;
    ensure!(key["last_used_at"].is_string(), "last_used_at set: {key}");
    for n in nodes {
        let status = n.stop("TERM").await?;
        ensure!(status.success(), "exit {status:?}");
    }
    Ok(())
}

/// Paced calls to `nodes` (round robin) until `stop`; returns the number answered.
async fn load(
    nodes: Vec<(std::net::SocketAddr, String)>,
    key: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let mut answered = 0u64;
    let mut i = 0usize;
    // 40 calls a second: enough to count, light enough not to starve the other end-to-end
    // tests running beside this one on a 2-core machine.
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    while !*stop.borrow() {
        tick.tick().await;
        let (addr, path) = &nodes[i % nodes.len()];
        i += 1;
        if let Ok(res) = http.get(format!("http://{addr}{path}")).header(KEY_HEADER, &key).send().await
            && res.bytes().await.is_ok()
        {
            answered += 1;
        }
    }
    answered
}

async fn reported_total(admin: &Admin, api: &str) -> anyhow::Result<u64> {
    Ok(reported(admin, api).await?.values().sum())
}

#[tokio::test]
async fn a_postgres_outage_and_a_sigterm_under_load_lose_nothing() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let mut pg = PrivatePostgres::start(&scratch.path().join("pg")).await?;
    let admin = Admin::start(pg.url()).await?;
    let upstream = Upstream::start("outage-usage").await?;
    let mut nodes =
        vec![node(pg.url(), &scratch.path().join("n0")).await?, node(pg.url(), &scratch.path().join("n1")).await?];
    let api = admin.create_api_with(json!({"name": "steady", "auth_methods": ["key_auth"]})).await?;
    admin.add_target(&api, upstream.addr).await?;
    admin.add_route(&api, "all", &["/s/*"]).await?;
    let plan = admin.create_plan(&api, json!({"name": "open"})).await?;
    let app = admin.create_consumer(json!({"name": "steady-app"})).await?;
    let (_, key) = admin.create_key(&app).await?;
    admin.subscribe(&app, &plan).await?;
    synced(&admin, &nodes).await?;

    let targets: Vec<_> = nodes.iter().map(|n| (n.addr, "/s/x".to_owned())).collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let client = tokio::spawn(load(targets, key.clone(), stop_rx));
    tokio::time::sleep(Duration::from_secs(3)).await;
    pg.stop().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    pg.restart().await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    let answered = client.await?;
    ensure!(answered > 500, "only {answered} calls answered");
    eventually("the kept usage to be written", RECOVERY, || async {
        match reported_total(&admin, &api).await {
            Ok(n) if n == answered => Ok(()),
            other => Err(format!("{other:?} of {answered}")),
        }
    })
    .await?;

    // SIGTERM on a node under load: what it answered is written before it exits.
    let target = vec![(nodes[0].addr, "/s/y".to_owned())];
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let client = tokio::spawn(load(target, key, stop_rx));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopping = nodes.remove(0);
    stopping.signal("TERM").await?;
    let mut stopping = stopping;
    let status = stopping.wait_exit().await?;
    ensure!(status.success(), "exit {status:?}");
    let _ = stop_tx.send(true);
    let more = client.await?;
    ensure!(more > 20, "only {more} calls answered before the stop");
    let expected = answered + more;
    // Nothing is left to write once the node has exited: the total is final at once.
    let total = reported_total(&admin, &api).await?;
    ensure!(total == expected, "{total} reported, {expected} answered");
    Ok(())
}
