//! Developer-portal page latency at scale: 10,000 developers (each with an organisation),
//! 50,000 apps with a key and a subscription each, 20 published APIs, and 30 days of usage
//! (daily rows for every app, hourly and per-minute rows for 2,000 of them). Signs in as
//! developers whose apps have usage and times each main page.
//!
//!   cargo run --release -p tollgate-bench --bin portal -- postgres://postgres@127.0.0.1/postgres [requests-per-page]
//!
//! Sizes: DEVELOPERS, APPS_PER_DEVELOPER (environment). Loopback only.

use std::time::{Duration, Instant};

use sqlx::Connection;
use tollgate_portal::PortalConfig;

fn env_or(name: &str, default: i32) -> i32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
}

/// Everything but usage, in set-based statements ($1 developers, $2 apps per developer).
const FILL: &[&str] = &[
    "INSERT INTO developers (id, email, name, password_hash, status, email_verified_at)
     SELECT md5('dev' || i)::uuid, 'dev' || i || '@example.com', 'Developer ' || i, $3, 'active', now()
     FROM generate_series(1, $1) AS i",
    "INSERT INTO organisations (id, name) SELECT md5('org' || i)::uuid, 'Team ' || i FROM generate_series(1, $1) AS i",
    "INSERT INTO organisation_members (organisation_id, developer_id, role)
     SELECT md5('org' || i)::uuid, md5('dev' || i)::uuid, 'admin' FROM generate_series(1, $1) AS i",
    "INSERT INTO apis (id, name, description, portal_visible, tags)
     SELECT md5('api' || a)::uuid, 'api-' || a, 'Benchmark API number ' || a, true, ARRAY['bench', 'group-' || (a % 4)]
     FROM generate_series(1, 20) AS a",
    "INSERT INTO routes (id, api_id, name, paths) SELECT md5('route' || a)::uuid, md5('api' || a)::uuid, 'all', ARRAY['/api-' || a || '/*']
     FROM generate_series(1, 20) AS a",
    "INSERT INTO plans (id, api_id, name, rate_limit_per_minute, burst, quota_per_month)
     SELECT md5('plan' || a)::uuid, md5('api' || a)::uuid, 'free', 600, 100, 100000 FROM generate_series(1, 20) AS a",
    "INSERT INTO consumers (id, name, organisation_id)
     SELECT md5('app' || d || '-' || k)::uuid, 'app ' || k, md5('org' || d)::uuid
     FROM generate_series(1, $1) AS d, generate_series(1, $2) AS k",
    "INSERT INTO api_keys (id, consumer_id, name, prefix, key_hash)
     SELECT md5('key' || d || '-' || k)::uuid, md5('app' || d || '-' || k)::uuid, 'main', 'tg_' || substr(md5(d || '-' || k), 1, 6),
            sha256(('key' || d || '-' || k)::bytea)
     FROM generate_series(1, $1) AS d, generate_series(1, $2) AS k",
    "INSERT INTO subscriptions (id, consumer_id, plan_id, api_id, status)
     SELECT md5('sub' || d || '-' || k)::uuid, md5('app' || d || '-' || k)::uuid, md5('plan' || (1 + (d + k) % 20))::uuid,
            md5('api' || (1 + (d + k) % 20))::uuid, 'active'
     FROM generate_series(1, $1) AS d, generate_series(1, $2) AS k",
];

/// Usage rows into `table` for developers 1..$1 (all their apps), buckets of `unit` going
/// back `$2` units.
fn usage(table: &str, unit: &str) -> String {
    format!(
        "INSERT INTO {table} (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class,
                              requests, request_bytes, response_bytes, latency_us_sum, hist)
         SELECT date_trunc('{unit}', now(), 'UTC') - b * interval '1 {unit}',
                md5('api' || (1 + (d + k) % 20))::uuid, md5('route' || (1 + (d + k) % 20))::uuid,
                md5('app' || d || '-' || k)::uuid, md5('key' || d || '-' || k)::uuid, md5('plan' || (1 + (d + k) % 20))::uuid,
                cls, 100 + (d * 7 + b) % 900, 10000, 50000, 2000000, ARRAY[300 + (d % 5), 40, 320, 50 + b % 40, 400, 9]::bigint[]
         FROM generate_series(0, $2) AS b, generate_series(1, $1) AS d, generate_series(1, $3) AS k,
              (VALUES (2::smallint), (429::smallint)) AS c (cls)"
    )
}

async fn fill(pool: &sqlx::PgPool, developers: i32, apps: i32) -> anyhow::Result<()> {
    let hash = tollgate_admin::auth::password::hash(tollgate_admin::Secret::new("bench passphrase 1")).await?;
    let t = Instant::now();
    for sql in FILL {
        sqlx::query(sqlx::AssertSqlSafe(*sql)).bind(developers).bind(apps).bind(&hash).execute(pool).await?;
    }
    let active = developers.min(400);
    let days = sqlx::query(sqlx::AssertSqlSafe(usage("usage_days", "day")))
        .bind(developers)
        .bind(30)
        .bind(apps)
        .execute(pool)
        .await?;
    let hours = sqlx::query(sqlx::AssertSqlSafe(usage("usage_hours", "hour")))
        .bind(active)
        .bind(30 * 24)
        .bind(apps)
        .execute(pool)
        .await?;
    let minutes = sqlx::query(sqlx::AssertSqlSafe(usage("usage_minutes", "minute")))
        .bind(active)
        .bind(120)
        .bind(apps)
        .execute(pool)
        .await?;
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    println!(
        "portal: {developers} developers, {} apps, usage rows: {} daily, {} hourly, {} per minute, filled in {:.0} s",
        developers * apps,
        days.rows_affected(),
        hours.rows_affected(),
        minutes.rows_affected(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A signed-in client of developer `d`.
async fn sign_in(base: &str, d: i32) -> anyhow::Result<reqwest::Client> {
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let page = http.get(format!("{base}/login")).send().await?.text().await?;
    let csrf =
        page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned();
    let email = format!("dev{d}@example.com");
    let form = [("csrf", csrf.as_str()), ("email", email.as_str()), ("password", "bench passphrase 1")];
    let res = http.post(format!("{base}/login")).form(&form).send().await?;
    anyhow::ensure!(res.url().path() == "/apps", "developer {d} not signed in: {}", res.url());
    Ok(http)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let per_page: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let (developers, apps) = (env_or("DEVELOPERS", 10_000), env_or("APPS_PER_DEVELOPER", 5));
    let mut conn = sqlx::PgConnection::connect(&server).await?;
    sqlx::raw_sql("DROP DATABASE IF EXISTS tollgate_bench_portal WITH (FORCE)").execute(&mut conn).await?;
    sqlx::raw_sql("CREATE DATABASE tollgate_bench_portal").execute(&mut conn).await?;
    conn.close().await?;
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    let pool = tollgate_admin::db::connect(&format!("{base}/tollgate_bench_portal")).await?;
    tollgate_admin::db::migrate(&pool).await?;
    fill(&pool, developers, apps).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let portal = format!("http://{}", listener.local_addr()?);
    let config = PortalConfig::new(portal.clone(), "http://127.0.0.1:8000");
    let server_pool = pool.clone();
    tokio::spawn(async move { tollgate_portal::serve(listener, server_pool, config, std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let clients = futures_util::future::try_join_all((1..=20).map(|d| sign_in(&portal, d))).await?;
    // The first app of each signed-in developer (developer d uses client d - 1).
    let app_ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT c.id FROM generate_series(1, 20) AS d JOIN consumers c ON c.organisation_id = md5('org' || d)::uuid
         AND c.name = 'app 1' ORDER BY d",
    )
    .fetch_all(&pool)
    .await?;
    anyhow::ensure!(app_ids.len() == clients.len(), "apps of the signed-in developers not found");
    let app = move |i: usize| app_ids[i % app_ids.len()].to_string();
    let shapes: Vec<(&str, Box<dyn Fn(usize) -> String>)> = vec![
        ("apps", Box::new(|_| "/apps".to_owned())),
        (
            "app (keys, subscriptions)",
            Box::new({
                let app = app.clone();
                move |i| format!("/apps/{}", app(i))
            }),
        ),
        (
            "usage, last hour (minutes)",
            Box::new({
                let app = app.clone();
                move |i| format!("/apps/{}/usage?range=hour", app(i))
            }),
        ),
        (
            "usage, last day (hours)",
            Box::new({
                let app = app.clone();
                move |i| format!("/apps/{}/usage?range=day", app(i))
            }),
        ),
        ("usage, 30 days (days)", Box::new(move |i| format!("/apps/{}/usage?range=month", app(i)))),
        ("catalog", Box::new(|_| "/apis".to_owned())),
        ("catalog search", Box::new(|_| "/apis?q=number+1".to_owned())),
        ("API page", Box::new(|i| format!("/apis/api-{}", i % 20 + 1))),
        ("team", Box::new(|_| "/team".to_owned())),
    ];
    println!("portal: {per_page} requests per page, one at a time, 20 signed-in developers in turn");
    for (name, path) in shapes {
        let mut ms = Vec::with_capacity(per_page);
        for i in 0..per_page {
            let t = Instant::now();
            let res = clients[i % clients.len()].get(format!("{portal}{}", path(i))).send().await?;
            anyhow::ensure!(
                res.status().is_success() && res.url().path() != "/login",
                "{name}: {} at {}",
                res.status(),
                res.url()
            );
            let body = res.text().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if i == 0 && name.starts_with("usage") {
                anyhow::ensure!(body.contains(" successful</title>"), "{name}: no usage drawn");
            }
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "portal: {name:<28} p50 {:6.1} ms  p95 {:6.1} ms  p99 {:6.1} ms",
            pct(&ms, 0.5),
            pct(&ms, 0.95),
            pct(&ms, 0.99)
        );
    }
    pool.close().await;
    Ok(())
}
