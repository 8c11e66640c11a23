//! Scale benchmark of the gateway's configuration path: with N routes and M API keys in
//! PostgreSQL, how long a cold load (fetch + compile) takes, how long one change takes to
//! apply (catch-up + recompile of the touched part), and the resident memory afterwards.
//!
//! Usage: `scale <database-url> <routes> <keys> [consumers]` (default 1,000 consumers, each
//! with one subscription; `bench/run` gives it a fresh database and drops it afterwards).

use std::sync::Arc;
use std::time::Instant;

use sqlx::PgPool;
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
    Ok(())
}
