//! Usage analytics benchmark, two parts:
//!
//! 1. **Recorder memory and cost**: records `SERIES` distinct series (default 100,000) into a
//!    gateway usage recorder and reports the resident memory they take, then the time of one
//!    `record` into an existing series (the steady state of the request path).
//! 2. **Usage API latency**: fills a fresh database with 31 days of daily usage of
//!    `CONSUMERS` consumers (default 10,000; 2 routes × 2 status classes each), starts the
//!    admin on it and times `GET /admin/v1/usage` for one consumer over 30 days (random
//!    consumers), the top 10 consumers over 30 days, and one API's 30 days grouped by
//!    status class (from the per-API tier, filled from the same rows).
//!
//! Usage: `usage <postgres-admin-url> [queries]` — the URL of a server where the benchmark may
//! create and drop the database `tollgate_bench_usage`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;
use tollgate_gateway::usage::{Attribution, Recorder, StatusClass};
use uuid::Uuid;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn recorder_part() {
    let series = env_or("SERIES", 100_000);
    let before = rss_kib();
    let recorder = Recorder::new(series);
    let started = Instant::now();
    let api = Uuid::from_u128(1);
    for i in 0..series as u128 {
        let who = Attribution {
            api,
            route: Uuid::from_u128(2 + i % 50),
            consumer: Uuid::from_u128(1_000_000 + i),
            credential: Uuid::from_u128(2_000_000 + i),
            plan: Uuid::from_u128(3),
        };
        // Four latencies each, spread over neighbouring buckets (a typical series).
        for us in [180, 240, 900, 2_500] {
            recorder.record(&who, StatusClass(2), started, Duration::from_micros(us), 100, 1_000);
        }
    }
    let after = rss_kib();
    let per = (after.saturating_sub(before) * 1024) as f64 / series as f64;
    println!(
        "recorder: {series} series, RSS +{:.1} MiB ({per:.0} bytes per series; folded: {})",
        after.saturating_sub(before) as f64 / 1024.0,
        recorder.stats.folded_requests.load(std::sync::atomic::Ordering::Relaxed)
    );
    let who = Attribution {
        api,
        route: Uuid::from_u128(2),
        consumer: Uuid::from_u128(1_000_000),
        credential: Uuid::from_u128(2_000_000),
        plan: Uuid::from_u128(3),
    };
    let n = 5_000_000u32;
    let t = Instant::now();
    for i in 0..n {
        recorder.record(&who, StatusClass(2), started, Duration::from_micros(200 + u64::from(i % 64)), 100, 1_000);
    }
    println!("recorder: {:.1} ns per record into an existing series", t.elapsed().as_nanos() as f64 / f64::from(n));
}

/// The request path of the i-th query of a shape.
type PathOf = Box<dyn Fn(usize) -> String>;

const FILL: &str = "
INSERT INTO usage_days (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class,
                        requests, request_bytes, response_bytes, latency_us_sum, hist)
SELECT date_trunc('day', now(), 'UTC') - d * interval '1 day',
       '00000000-0000-0000-0000-0000000000a1'::uuid,
       md5('route' || r)::uuid,
       md5('consumer' || c)::uuid,
       md5('key' || c)::uuid,
       '00000000-0000-0000-0000-0000000000b1'::uuid,
       cls,
       100 + (c * 7 + d) % 900, 10000, 50000, 2000000,
       ARRAY[300 + (c % 5), 40, 320, 50 + d, 400, 9]::bigint[]
FROM generate_series(0, 30) AS d, generate_series(1, $1) AS c, generate_series(1, 2) AS r,
     (VALUES (2::smallint), (429::smallint)) AS k (cls)";

/// The per-API tier of the same data, as the roll-up would write it.
const FILL_API: &str = "
INSERT INTO usage_api_days (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class,
                            requests, request_bytes, response_bytes, latency_us_sum, hist)
SELECT d.bucket, d.api_id, uuid_nil, uuid_nil, uuid_nil, uuid_nil, d.status_class,
       sum(d.requests), sum(d.request_bytes), sum(d.response_bytes), sum(d.latency_us_sum),
       (SELECT coalesce(array_agg(e.v ORDER BY s.i, e.k), '{}')
        FROM (SELECT p.i, sum(p.n)::bigint AS n
              FROM usage_days AS d2, usage_hist_pairs(d2.hist) AS p
              WHERE d2.bucket = d.bucket AND d2.api_id = d.api_id AND d2.status_class = d.status_class
              GROUP BY p.i) AS s,
             LATERAL (VALUES (0, s.i), (1, s.n)) AS e (k, v))
FROM usage_days AS d, (SELECT '00000000-0000-0000-0000-000000000000'::uuid AS uuid_nil) AS z
GROUP BY d.bucket, d.api_id, d.status_class, z.uuid_nil";

async fn api_part(server: &str, queries: usize) -> anyhow::Result<()> {
    let consumers = env_or("CONSUMERS", 10_000);
    let mut conn = sqlx::PgConnection::connect(server).await?;
    sqlx::raw_sql("DROP DATABASE IF EXISTS tollgate_bench_usage WITH (FORCE)").execute(&mut conn).await?;
    sqlx::raw_sql("CREATE DATABASE tollgate_bench_usage").execute(&mut conn).await?;
    conn.close().await?;
    let base = server.rsplit_once('/').map_or(server, |(b, _)| b);
    let url = format!("{base}/tollgate_bench_usage");
    let pool = tollgate_admin::db::connect(&url).await?;
    tollgate_admin::db::migrate(&pool).await?;
    let t = Instant::now();
    let rows = sqlx::query(FILL).bind(consumers as i32).execute(&pool).await?.rows_affected();
    sqlx::query(FILL_API).execute(&pool).await?;
    sqlx::raw_sql("ANALYZE usage_days; ANALYZE usage_api_days").execute(&pool).await?;
    println!("usage API: {rows} day rows of {consumers} consumers generated in {:.1} s", t.elapsed().as_secs_f64());
    let owner = tollgate_admin::seed::ensure_first_owner(&pool, "bench@example.com")
        .await?
        .ok_or_else(|| anyhow::anyhow!("the bench database had admin users"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = tollgate_admin::AdminConfig::new(addr, tollgate_admin::Secret::new("x".repeat(40)));
    config.usage_rollup_every = None;
    let server_pool = pool.clone();
    tokio::spawn(async move { tollgate_admin::serve(listener, server_pool, config, std::future::pending()).await });
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/admin/v1");
    let mut token = String::new();
    for _ in 0..100 {
        if let Ok(res) = http
            .post(format!("{base}/auth/login"))
            .json(&json!({"email": "bench@example.com", "password": owner.password.expose()}))
            .send()
            .await
        {
            let body: Value = res.json().await?;
            token = body["token"].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(!token.is_empty(), "no admin login");
    let (from, to): (String, String) = sqlx::query_as(
        "SELECT to_char(date_trunc('day', now(), 'UTC') - interval '30 days', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                to_char(date_trunc('day', now(), 'UTC') + interval '1 day', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    )
    .fetch_one(&pool)
    .await?;
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT DISTINCT consumer_id FROM usage_days LIMIT 1000").fetch_all(&pool).await?;
    anyhow::ensure!(!ids.is_empty(), "no generated consumers");
    let (to_owned_from, to_owned_to) = (from.clone(), to.clone());
    let shapes: Vec<(&str, PathOf)> = vec![
        (
            "one consumer, 30 days, by day",
            Box::new(move |i| {
                let c = ids[(i * 7_919) % ids.len()];
                format!("/usage?from={to_owned_from}&to={to_owned_to}&consumer_id={c}")
            }),
        ),
        (
            "top 10 consumers, 30 days",
            Box::new({
                let (f, t) = (from.clone(), to.clone());
                move |_| format!("/usage/top?by=consumer&from={f}&to={t}")
            }),
        ),
        (
            "one API, 30 days, by status class",
            Box::new({
                let (f, t) = (from.clone(), to.clone());
                move |_| {
                    format!("/usage?from={f}&to={t}&api_id=00000000-0000-0000-0000-0000000000a1&group_by=status_class")
                }
            }),
        ),
    ];
    for (name, path) in shapes {
        let mut ms = Vec::with_capacity(queries);
        for i in 0..queries {
            let t = Instant::now();
            let res = http.get(format!("{base}{}", path(i))).bearer_auth(&token).send().await?;
            anyhow::ensure!(res.status().is_success(), "{name}: {}", res.status());
            let body: Value = res.json().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if i == 0 {
                let points = body["series"][0]["points"].as_array().map_or(0, Vec::len);
                let top = body["data"].as_array().map_or(0, Vec::len);
                anyhow::ensure!(points > 0 || top > 0, "{name}: empty answer {body}");
            }
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "usage API: {name:<36} {queries} queries  p50 {:6.1} ms  p95 {:6.1} ms  p99 {:6.1} ms",
            pct(&ms, 0.5),
            pct(&ms, 0.95),
            pct(&ms, 0.99)
        );
    }
    pool.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let server = args.first().ok_or_else(|| anyhow::anyhow!("usage: usage <postgres-url> [queries]"))?;
    let queries = args.get(1).and_then(|q| q.parse().ok()).unwrap_or(200);
    recorder_part();
    api_part(server, queries).await
}
