//! Scale benchmark of the gateway's configuration path: with N routes and M API keys in
//! PostgreSQL, how long a cold load (fetch + compile) takes, how long one change takes to
//! apply (catch-up + recompile of the touched part), and the resident memory afterwards.
//!
//! Usage: `scale <database-url> <routes> <keys>` (the database is filled, then emptied).

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

async fn fill(pool: &PgPool, routes: i64, keys: i64) -> anyhow::Result<()> {
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
    sqlx::query("INSERT INTO consumers (id, name) SELECT gen_random_uuid(), 'c-' || i FROM generate_series(1, 1000) i")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "WITH c AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM consumers)
         INSERT INTO api_keys (id, consumer_id, prefix, key_hash)
         SELECT gen_random_uuid(), c.id, 'tg_x', sha256(('key-' || i)::bytea)
         FROM generate_series(1, $1) i JOIN c ON c.n = i % 1000",
    )
    .bind(keys)
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
    let (url, routes, keys) = match args.as_slice() {
        [_, url, r, k] => (url.clone(), r.parse::<i64>()?, k.parse::<i64>()?),
        _ => anyhow::bail!("usage: scale <database-url> <routes> <keys>"),
    };
    let pool = PgPool::connect(&url).await?;
    let t = Instant::now();
    fill(&pool, routes, keys).await?;
    println!("filled {routes} routes and {keys} keys in {:.1} s", t.elapsed().as_secs_f64());
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
