//! Admin UI page latency at scale: 1,000 APIs with 10 routes and a plan each (10,000
//! routes), 10,000 developers with 5 apps each (50,000 apps, each with a key and a
//! subscription), 30 days of usage (daily rows for every app, hourly and per-minute rows
//! for 2,000 of them). Logs in as the owner and times each main page.
//!
//!   cargo run --release -p tollgate-bench --bin admin_ui -- postgres://postgres@127.0.0.1/postgres [requests-per-page]
//!
//! Sizes: DEVELOPERS, APPS_PER_DEVELOPER, APIS, ROUTES_PER_API (environment). Loopback only.

use std::time::Duration;

use tollgate_admin::AdminConfig;
use tollgate_bench::{Shape, Sizes, env_or, fill, fresh_database, sign_in, time_pages};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let per_page: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let sizes = Sizes {
        developers: env_or("DEVELOPERS", 10_000),
        apps_per_developer: env_or("APPS_PER_DEVELOPER", 5),
        apis: env_or("APIS", 1_000),
        routes_per_api: env_or("ROUTES_PER_API", 10),
    };
    let pool = fresh_database(&server, "tollgate_bench_admin_ui").await?;
    fill(&pool, sizes).await?;
    let owner = tollgate_admin::seed::ensure_first_owner(&pool, "owner@example.com")
        .await?
        .ok_or_else(|| anyhow::anyhow!("an owner existed already"))?;
    // A few pending requests, so the queue page has rows to show.
    sqlx::query("UPDATE subscriptions SET status = 'pending' WHERE consumer_id IN (SELECT id FROM consumers ORDER BY id LIMIT 50)")
        .execute(&pool)
        .await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let secret = tollgate_admin::auth::random_token("", 32);
    let mut config = AdminConfig::new(listener.local_addr()?, secret.into());
    config.usage_rollup_every = None;
    let server_pool = pool.clone();
    tokio::spawn(async move { tollgate_admin::serve(listener, server_pool, config, std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = sign_in(&base, "/ui/login", "owner@example.com", owner.password.expose(), "/ui").await?;
    let clients = vec![client];

    let api_ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM apis ORDER BY name LIMIT 50").fetch_all(&pool).await?;
    let plan_ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM plans ORDER BY id LIMIT 50").fetch_all(&pool).await?;
    let app_ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT consumer_id FROM usage_hours GROUP BY consumer_id ORDER BY consumer_id LIMIT 50")
            .fetch_all(&pool)
            .await?;
    anyhow::ensure!(!api_ids.is_empty() && !plan_ids.is_empty() && !app_ids.is_empty(), "the fill made nothing");
    let pick = |ids: Vec<uuid::Uuid>| move |i: usize| ids[i % ids.len()];
    let (api, plan, app) = (pick(api_ids), pick(plan_ids), pick(app_ids));
    let charts = Some(" successful</title>");
    let shapes: Vec<(&str, Shape, Option<&str>)> = vec![
        ("dashboard, last hour", Box::new(|_| "/ui?range=hour".to_owned()), charts),
        ("dashboard, last day", Box::new(|_| "/ui?range=day".to_owned()), charts),
        ("dashboard, 30 days", Box::new(|_| "/ui?range=month".to_owned()), charts),
        (
            "dashboard, one API, 30 days",
            Box::new({
                let api = api.clone();
                move |i| format!("/ui?range=month&api={}", api(i))
            }),
            charts,
        ),
        (
            "dashboard, one app, day",
            Box::new({
                let app = app.clone();
                move |i| format!("/ui?range=day&consumer={}", app(i))
            }),
            charts,
        ),
        ("APIs", Box::new(|_| "/ui/apis".to_owned()), None),
        ("APIs search", Box::new(|_| "/ui/apis?q=number+77".to_owned()), None),
        ("API page (10 routes)", Box::new(move |i| format!("/ui/apis/{}", api(i))), Some("Save settings")),
        ("plans (1,000)", Box::new(|_| "/ui/plans".to_owned()), None),
        ("plan editor", Box::new(move |i| format!("/ui/plans/{}", plan(i))), Some("Developers read")),
        ("approval queue", Box::new(|_| "/ui/approvals".to_owned()), None),
        ("search by e-mail", Box::new(|i| format!("/ui/developers?q=dev{}%40", 1000 + i)), None),
        ("search by key prefix", Box::new(|_| "/ui/developers?q=tg_a1".to_owned()), None),
        ("app page", Box::new(move |i| format!("/ui/consumers/{}", app(i))), None),
        ("audit log", Box::new(|_| "/ui/audit".to_owned()), None),
        ("users", Box::new(|_| "/ui/users".to_owned()), None),
    ];
    time_pages("admin-ui", &base, &clients, "/ui/login", per_page, shapes).await?;
    // The dashboard's first view of each range: its numbers are reused for 10 s, so each
    // sample waits that out.
    for range in ["hour", "day", "month"] {
        let mut ms = Vec::new();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(10_500)).await;
            let t = std::time::Instant::now();
            let res = clients[0].get(format!("{base}/ui?range={range}")).send().await?;
            anyhow::ensure!(res.status().is_success(), "cold dashboard: {}", res.status());
            res.text().await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        println!("admin-ui: dashboard cold, {range:<6}              median {:6.1} ms  max {:6.1} ms", ms[1], ms[2]);
    }
    pool.close().await;
    Ok(())
}
