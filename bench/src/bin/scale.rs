//! Scale benchmark of the gateway's configuration path: with N routes and M API keys in
//! PostgreSQL, how long a cold load (fetch + compile) takes, how long one change takes to
//! apply (catch-up + recompile of the touched part), and the resident memory afterwards.
//!
//! Usage: `scale <database-url> <routes> <keys> [consumers]` (default 1,000 consumers, each
//! with one subscription; `bench/run` gives it a fresh database and drops it afterwards).
//!
//! With `TOLLGATE_BIN=<path to tollgate>` (or `"old=<path> new=<path>"`) it then measures the real gateway process on that
//! data: started from PostgreSQL, then from its last-known-good copy with PostgreSQL
//! refusing (a closed port) and with PostgreSQL silent (a listener that never answers) —
//! time from spawn to the first routed 200, RSS then and 10 s later, the peak RSS, the
//! copy's size, and the peak RSS while a change is applied and the copy rewritten.

use std::sync::Arc;
use std::time::Instant;

use std::path::Path;
use std::time::Duration;

use sqlx::PgPool;
use tollgate_bench::process::{self, Gateway};
use tollgate_gateway::config::pg::{self, CatchUp};
use tollgate_gateway::config::source::Sink;
use tollgate_gateway::snapshot::ConfigStore;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn fill(pool: &PgPool, routes: i64, keys: i64, consumers: i64) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO apis (id, name) SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'api-' || i FROM generate_series(1, 100) i")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO targets (id, api_id, host, port) SELECT gen_random_uuid(), a.id, '127.0.0.1', 9000 + (row_number() OVER ())::int FROM apis a",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO routes (id, api_id, name, hosts, paths, methods)
         SELECT gen_random_uuid(), ('00000000-0000-7000-8000-' || lpad(to_hex(1 + i % 100), 12, '0'))::uuid, 'r-' || i,
                CASE WHEN i % 10 = 0 THEN ARRAY['h' || i || '.example.com'] ELSE '{}' END,
                CASE WHEN i % 3 = 0 THEN ARRAY['/svc' || i || '/*'] WHEN i % 3 = 1 THEN ARRAY['/svc' || i || '/items/{id}'] ELSE ARRAY['/svc' || i || '/health'] END,
                CASE WHEN i % 4 = 0 THEN ARRAY['GET'] ELSE '{}' END
         FROM generate_series(1, $1) i",
    )
    .bind(routes)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO consumers (id, name) SELECT gen_random_uuid(), 'c-' || i FROM generate_series(1, $1) i")
        .bind(consumers)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "WITH c AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM consumers)
         INSERT INTO api_keys (id, consumer_id, prefix, key_hash)
         SELECT gen_random_uuid(), c.id, 'tg_x', sha256(('key-' || i)::bytea)
         FROM generate_series(1, $1) i JOIN c ON c.n = i % $2",
    )
    .bind(keys)
    .bind(consumers)
    .execute(&mut *tx)
    .await?;
    // One plan per API; every consumer subscribed to the plan of one API.
    sqlx::query(
        "INSERT INTO plans (id, api_id, name, rate_limit_per_minute) SELECT gen_random_uuid(), id, 'p', 600 FROM apis",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "WITH c AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM consumers)
         INSERT INTO subscriptions (id, consumer_id, plan_id, api_id, status)
         SELECT gen_random_uuid(), c.id, p.id, p.api_id, 'active' FROM c
         JOIN plans p ON p.api_id = ('00000000-0000-7000-8000-' || lpad(to_hex(1 + c.n % 100), 12, '0'))::uuid",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // What autovacuum does shortly after a bulk load; without statistics the first catch-up
    // plans a sequential scan of the fresh tables.
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

async fn one_change(pool: &PgPool, sql: &str, kind: &str) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let (id,): (uuid::Uuid,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO audit_log (actor_kind, action, entity_kind, entity_id) VALUES ('system', 'update', $1, $2)",
    )
    .bind(kind)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO config_events (entity_kind, entity_id, op, audit_id) VALUES ($1, $2, 'update', currval('audit_log_id_seq'))")
        .bind(kind)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, routes, keys, consumers) = match args.as_slice() {
        [_, url, r, k] => (url.clone(), r.parse::<i64>()?, k.parse::<i64>()?, 1000),
        [_, url, r, k, c] => (url.clone(), r.parse::<i64>()?, k.parse::<i64>()?, c.parse::<i64>()?.max(1)),
        _ => anyhow::bail!("usage: scale <database-url> <routes> <keys> [consumers]"),
    };
    let pool = PgPool::connect(&url).await?;
    let t = Instant::now();
    fill(&pool, routes, keys, consumers).await?;
    println!(
        "filled {routes} routes, {keys} keys, {consumers} consumers with a subscription each in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let rss_before = rss_mib();

    let store = Arc::new(ConfigStore::default());
    let t = Instant::now();
    let mut data = pg::load_full(&pool).await?;
    let fetched = t.elapsed();
    store.publish(&data, pg::Changed::all());
    let cold = t.elapsed();
    println!(
        "cold load: fetch {:.0} ms, fetch+compile {:.0} ms",
        fetched.as_secs_f64() * 1e3,
        cold.as_secs_f64() * 1e3
    );
    println!(
        "RSS after load: {:.0} MiB (before: {:.0} MiB); {} keys indexed",
        rss_mib(),
        rss_before,
        store.load().keys.len()
    );

    for (label, sql, kind) in [
        (
            "one key revoked",
            "UPDATE api_keys SET revoked_at = now() WHERE id = (SELECT id FROM api_keys LIMIT 1) RETURNING id",
            "api_key",
        ),
        (
            "one route changed",
            "UPDATE routes SET priority = 7 WHERE id = (SELECT id FROM routes LIMIT 1) RETURNING id",
            "route",
        ),
        (
            "one target changed",
            "UPDATE targets SET weight = 50 WHERE id = (SELECT id FROM targets LIMIT 1) RETURNING id",
            "target",
        ),
        (
            "one subscription suspended",
            "UPDATE subscriptions SET status = 'suspended' WHERE id = (SELECT id FROM subscriptions LIMIT 1) RETURNING id",
            "subscription",
        ),
        (
            "one consumer disabled",
            "UPDATE consumers SET enabled = false WHERE id = (SELECT id FROM consumers LIMIT 1) RETURNING id",
            "consumer",
        ),
    ] {
        one_change(&pool, sql, kind).await?;
        let t = Instant::now();
        let outcome = pg::catch_up(&pool, &mut data).await?;
        let applied = t.elapsed();
        if let CatchUp::Applied { changed, .. } = outcome {
            store.publish(&data, changed);
        }
        println!(
            "{label}: catch-up {:.2} ms, catch-up+publish {:.2} ms",
            applied.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    println!("RSS at end: {:.0} MiB", rss_mib());
    drop((store, data));
    // `TOLLGATE_BIN="path"` or several builds: `TOLLGATE_BIN="old=/path/a new=/path/b"`.
    for build in std::env::var("TOLLGATE_BIN").unwrap_or_default().split_whitespace() {
        let (label, bin) = build.split_once('=').unwrap_or(("", build));
        println!("== the gateway process {label} ({bin}) ==");
        gateway_process(Path::new(bin), &url, &pool).await?;
    }
    Ok(())
}

/// Longest wait for a start or a save at this scale.
const SLOW: Duration = Duration::from_secs(60);
/// The copy the gateway keeps in its state directory.
const COPY: &str = "gateway-config.json";

/// The real process: from PostgreSQL, then from the copy with PostgreSQL refusing and silent.
async fn gateway_process(bin: &Path, url: &str, pool: &PgPool) -> anyhow::Result<()> {
    let upstream = process::tiny_upstream().await?;
    // Route `/svc3/*` (route r-3) goes to the tiny upstream, anonymously.
    sqlx::query("UPDATE targets SET port = $1 WHERE api_id = (SELECT api_id FROM routes WHERE name = 'r-3')")
        .bind(i32::from(upstream))
        .execute(pool)
        .await?;
    sqlx::query(
        "UPDATE apis SET auth_methods = '{anonymous}' WHERE id = (SELECT api_id FROM routes WHERE name = 'r-3')",
    )
    .execute(pool)
    .await?;
    let dir = std::env::temp_dir().join(format!("tollgate-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    println!("| start | first routed 200 | RSS then | RSS +10 s | peak RSS |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let gw = measured_start(bin, url, &dir, "from PostgreSQL").await?;
    let copy = dir.join(COPY);
    wait_for(|| copy.exists(), "the first save").await?;
    let (peak, took) = save_peak(&gw, pool, &copy).await?;
    gw.stop().await?;
    let size = std::fs::metadata(&copy)?.len() as f64 / 1e6;
    let refusing = "postgres://postgres@127.0.0.1:1/postgres".to_owned();
    measured_start(bin, &refusing, &dir, "from the copy, PostgreSQL refusing").await?.stop().await?;
    let silent = format!("postgres://postgres@127.0.0.1:{}/postgres", process::silent_listener().await?);
    measured_start(bin, &silent, &dir, "from the copy, PostgreSQL silent").await?.stop().await?;
    println!(
        "copy: {size:.1} MB; one change applied and the copy rewritten in {took:.1} s, peak RSS meanwhile {peak:.0} MiB"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Starts the gateway, prints its row, and returns it running.
async fn measured_start(bin: &Path, url: &str, dir: &Path, label: &str) -> anyhow::Result<Gateway> {
    let gw = Gateway::spawn(bin, url, dir).await?;
    let first = gw.first_routed("/svc3/x", SLOW).await?;
    let rss = process::status_mib(gw.pid, "VmRSS");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (later, peak) = (process::status_mib(gw.pid, "VmRSS"), process::status_mib(gw.pid, "VmHWM"));
    println!("| {label} | {:.2} s | {rss:.0} MiB | {later:.0} MiB | {peak:.0} MiB |", first.as_secs_f64());
    Ok(gw)
}

/// Peak RSS while the gateway applies one change and rewrites its copy (the follower's
/// 5 s safety tick or the notification picks the change up; the save follows).
async fn save_peak(gw: &Gateway, pool: &PgPool, copy: &Path) -> anyhow::Result<(f64, f64)> {
    let before = std::fs::metadata(copy)?.modified()?;
    process::reset_peak(gw.pid)?;
    let t = Instant::now();
    one_change(pool, "UPDATE routes SET priority = 9 WHERE name = 'r-5' RETURNING id", "route").await?;
    sqlx::query("SELECT pg_notify('tollgate_config', '0')").execute(pool).await?;
    wait_for(|| std::fs::metadata(copy).and_then(|m| m.modified()).is_ok_and(|m| m > before), "the save").await?;
    Ok((process::status_mib(gw.pid, "VmHWM"), t.elapsed().as_secs_f64()))
}

async fn wait_for(done: impl Fn() -> bool, what: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    while !done() {
        anyhow::ensure!(t.elapsed() < SLOW, "{what} did not happen within {SLOW:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
