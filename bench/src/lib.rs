//! What the page-latency benchmarks share: a database filled at scale in set-based SQL
//! (developers with organisations, apps with keys and subscriptions, APIs with routes and
//! plans, 30 days of usage), signing in through the login form, and timing pages.

use std::time::Instant;

pub mod process;

/// An integer from the environment, or `default`.
pub fn env_or(name: &str, default: i32) -> i32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `p` quantile of sorted samples.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0)
}

/// How much to fill.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub developers: i32,
    pub apps_per_developer: i32,
    pub apis: i32,
    pub routes_per_api: i32,
}

/// Everything but usage; `{D}` developers, `{K}` apps each, `{A}` APIs, `{R}` routes each.
const FILL: &[&str] = &[
    "INSERT INTO developers (id, email, name, password_hash, status, email_verified_at)
     SELECT md5('dev' || i)::uuid, 'dev' || i || '@example.com', 'Developer ' || i, $1, 'active', now()
     FROM generate_series(1, {D}) AS i",
    "INSERT INTO organisations (id, name) SELECT md5('org' || i)::uuid, 'Team ' || i FROM generate_series(1, {D}) AS i",
    "INSERT INTO organisation_members (organisation_id, developer_id, role)
     SELECT md5('org' || i)::uuid, md5('dev' || i)::uuid, 'admin' FROM generate_series(1, {D}) AS i",
    "INSERT INTO apis (id, name, description, portal_visible, tags)
     SELECT md5('api' || a)::uuid, 'api-' || a, 'Benchmark API number ' || a, true, ARRAY['bench', 'group-' || (a % 4)]
     FROM generate_series(1, {A}) AS a",
    "INSERT INTO routes (id, api_id, name, paths)
     SELECT md5('route' || a || '-' || r)::uuid, md5('api' || a)::uuid, 'r' || r, ARRAY['/api-' || a || '/r' || r || '/*']
     FROM generate_series(1, {A}) AS a, generate_series(1, {R}) AS r",
    "INSERT INTO plans (id, api_id, name, rate_limit_per_minute, burst, quota_per_month)
     SELECT md5('plan' || a)::uuid, md5('api' || a)::uuid, 'free', 600, 100, 100000 FROM generate_series(1, {A}) AS a",
    "INSERT INTO consumers (id, name, organisation_id)
     SELECT md5('app' || d || '-' || k)::uuid, 'app ' || k, md5('org' || d)::uuid
     FROM generate_series(1, {D}) AS d, generate_series(1, {K}) AS k",
    "INSERT INTO api_keys (id, consumer_id, name, prefix, key_hash)
     SELECT md5('key' || d || '-' || k)::uuid, md5('app' || d || '-' || k)::uuid, 'main', 'tg_' || substr(md5(d || '-' || k), 1, 6),
            sha256(('key' || d || '-' || k)::bytea)
     FROM generate_series(1, {D}) AS d, generate_series(1, {K}) AS k",
    "INSERT INTO subscriptions (id, consumer_id, plan_id, api_id, status)
     SELECT md5('sub' || d || '-' || k)::uuid, md5('app' || d || '-' || k)::uuid, md5('plan' || (1 + (d + k) % {A}))::uuid,
            md5('api' || (1 + (d + k) % {A}))::uuid, 'active'
     FROM generate_series(1, {D}) AS d, generate_series(1, {K}) AS k",
];

fn sized(sql: &str, s: &Sizes, developers: i32) -> String {
    sql.replace("{D}", &developers.to_string())
        .replace("{K}", &s.apps_per_developer.to_string())
        .replace("{A}", &s.apis.to_string())
        .replace("{R}", &s.routes_per_api.to_string())
}

/// Usage rows into `table` (and its per-API twin) for developers 1..{D} (all their apps),
/// buckets of `unit` going back `back` units.
fn usage(table: &str, unit: &str, back: i32) -> String {
    format!(
        "INSERT INTO {table} (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class,
                              requests, request_bytes, response_bytes, latency_us_sum, hist)
         SELECT date_trunc('{unit}', now(), 'UTC') - b * interval '1 {unit}',
                md5('api' || (1 + (d + k) % {{A}}))::uuid, md5('route' || (1 + (d + k) % {{A}}) || '-1')::uuid,
                md5('app' || d || '-' || k)::uuid, md5('key' || d || '-' || k)::uuid, md5('plan' || (1 + (d + k) % {{A}}))::uuid,
                cls, 100 + (d * 7 + b) % 900, 10000, 50000, 2000000, ARRAY[300 + (d % 5), 40, 320, 50 + b % 40, 400, 9]::bigint[]
         FROM generate_series(0, {back}) AS b, generate_series(1, {{D}}) AS d, generate_series(1, {{K}}) AS k,
              (VALUES (2::smallint), (429::smallint)) AS c (cls)"
    )
}

/// The per-API tier `api_table` summed from `table` (what the gateways' flush writes too).
fn per_api(table: &str, api_table: &str) -> String {
    format!(
        "INSERT INTO {api_table} (bucket, api_id, route_id, consumer_id, credential_id, plan_id, status_class,
                                  requests, request_bytes, response_bytes, latency_us_sum, hist)
         SELECT bucket, api_id, '00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000',
                '00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000', status_class,
                -- One row's histogram stands for the sum: page latency, not percentiles, is measured here.
                sum(requests), sum(request_bytes), sum(response_bytes), sum(latency_us_sum), min(hist)
         FROM {table} GROUP BY bucket, api_id, status_class"
    )
}

/// Fills a migrated database: daily usage for every app over 30 days, hourly for the apps
/// of the first 400 developers, per-minute for 2 hours of them; per-API tiers to match.
pub async fn fill(pool: &sqlx::PgPool, s: Sizes) -> anyhow::Result<()> {
    let hash = tollgate_admin::auth::password::hash(tollgate_admin::Secret::new("bench passphrase 1")).await?;
    let t = Instant::now();
    for sql in FILL {
        let q = sized(sql, &s, s.developers);
        if q.contains("$1") {
            sqlx::query(sqlx::AssertSqlSafe(q)).bind(&hash).execute(pool).await?;
        } else {
            sqlx::query(sqlx::AssertSqlSafe(q)).execute(pool).await?;
        }
    }
    let active = s.developers.min(400);
    let mut rows = Vec::new();
    for (table, api_table, unit, back, devs) in [
        ("usage_days", "usage_api_days", "day", 30, s.developers),
        ("usage_hours", "usage_api_hours", "hour", 30 * 24, active),
        ("usage_minutes", "usage_api_minutes", "minute", 120, active),
    ] {
        let done = sqlx::query(sqlx::AssertSqlSafe(sized(&usage(table, unit, back), &s, devs))).execute(pool).await?;
        sqlx::query(sqlx::AssertSqlSafe(per_api(table, api_table))).execute(pool).await?;
        rows.push(done.rows_affected());
    }
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    println!(
        "fill: {} developers, {} apps, {} APIs, {} routes; usage rows: {} daily, {} hourly, {} per minute; {:.0} s",
        s.developers,
        s.developers * s.apps_per_developer,
        s.apis,
        s.apis * s.routes_per_api,
        rows[0],
        rows[1],
        rows[2],
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A fresh, migrated database `name` on the server of `server_url`.
pub async fn fresh_database(server_url: &str, name: &str) -> anyhow::Result<sqlx::PgPool> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(server_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
    conn.close().await?;
    let base = server_url.rsplit_once('/').map_or(server_url, |(b, _)| b);
    let pool = tollgate_admin::db::connect(&format!("{base}/{name}")).await?;
    tollgate_admin::db::migrate(&pool).await?;
    Ok(pool)
}

/// Signs in through a login form at `{base}{login}` (CSRF token from the page); the client
/// keeps the session cookie. Fails unless the sign-in lands on a path starting with `lands`.
pub async fn sign_in(
    base: &str,
    login: &str,
    email: &str,
    password: &str,
    lands: &str,
) -> anyhow::Result<reqwest::Client> {
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let page = http.get(format!("{base}{login}")).send().await?.text().await?;
    let csrf =
        page.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned();
    let form = [("csrf", csrf.as_str()), ("email", email), ("password", password), ("next", "")];
    let res = http.post(format!("{base}{login}")).form(&form).send().await?;
    anyhow::ensure!(res.url().path().starts_with(lands), "{email} not signed in: {}", res.url());
    Ok(http)
}

/// A page of a benchmark: its path for the i-th sample.
pub type Shape = Box<dyn Fn(usize) -> String>;

/// Times `per_page` requests of each shape, one at a time, clients taking turns; checks
/// each answer is a page (not a redirect to `login`) and, for the first, that `check` holds.
pub async fn time_pages(
    label: &str,
    base: &str,
    clients: &[reqwest::Client],
    login: &str,
    per_page: usize,
    shapes: Vec<(&str, Shape, Option<&str>)>,
) -> anyhow::Result<()> {
    println!("{label}: {per_page} requests per page, one at a time, {} signed-in clients in turn", clients.len());
    for (name, path, check) in shapes {
        let mut ms = Vec::with_capacity(per_page);
        for i in 0..per_page {
            let t = Instant::now();
            let res = clients[i % clients.len()].get(format!("{base}{}", path(i))).send().await?;
            anyhow::ensure!(
                res.status().is_success() && !res.url().path().starts_with(login),
                "{name}: {} at {}",
                res.status(),
                res.url()
            );
            let body = res.text().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if let (0, Some(want)) = (i, check) {
                anyhow::ensure!(body.contains(want), "{name}: the page lacks {want:?}");
            }
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{label}: {name:<30} p50 {:6.1} ms  p95 {:6.1} ms  p99 {:6.1} ms",
            pct(&ms, 0.5),
            pct(&ms, 0.95),
            pct(&ms, 0.99)
        );
    }
    Ok(())
}
