//! Developer-portal page latency at scale: 10,000 developers (each with an organisation),
//! 50,000 apps with a key and a subscription each, 20 published APIs, and 30 days of usage
//! (daily rows for every app, hourly and per-minute rows for 2,000 of them). Signs in as
//! developers whose apps have usage and times each main page.
//!
//!   cargo run --release -p tollgate-bench --bin portal -- postgres://postgres@127.0.0.1/postgres [requests-per-page]
//!
//! Sizes: DEVELOPERS, APPS_PER_DEVELOPER (environment). Loopback only.

use std::time::Duration;

use tollgate_bench::{Shape, Sizes, env_or, fill, fresh_database, sign_in, time_pages};
use tollgate_portal::PortalConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let server = args.next().unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let per_page: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let sizes = Sizes {
        developers: env_or("DEVELOPERS", 10_000),
        apps_per_developer: env_or("APPS_PER_DEVELOPER", 5),
        apis: 20,
        routes_per_api: 1,
    };
    let pool = fresh_database(&server, "tollgate_bench_portal").await?;
    fill(&pool, sizes).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let portal = format!("http://{}", listener.local_addr()?);
    let config = PortalConfig::new(portal.clone(), "http://127.0.0.1:8000");
    let server_pool = pool.clone();
    tokio::spawn(async move { tollgate_portal::serve(listener, server_pool, config, std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let emails: Vec<String> = (1..=20).map(|d| format!("dev{d}@example.com")).collect();
    let clients = futures_util::future::try_join_all(
        emails.iter().map(|e| sign_in(&portal, "/login", e, "bench passphrase 1", "/apps")),
    )
    .await?;
    // The first app of each signed-in developer (developer d uses client d - 1).
    let app_ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT c.id FROM generate_series(1, 20) AS d JOIN consumers c ON c.organisation_id = md5('org' || d)::uuid
         AND c.name = 'app 1' ORDER BY d",
    )
    .fetch_all(&pool)
    .await?;
    anyhow::ensure!(app_ids.len() == clients.len(), "apps of the signed-in developers not found");
    let app = move |i: usize| app_ids[i % app_ids.len()].to_string();
    let usage = Some(" successful</title>");
    let shapes: Vec<(&str, Shape, Option<&str>)> = vec![
        ("apps", Box::new(|_| "/apps".to_owned()), None),
        (
            "app (keys, subscriptions)",
            Box::new({
                let app = app.clone();
                move |i| format!("/apps/{}", app(i))
            }),
            None,
        ),
        (
            "usage, last hour (minutes)",
            Box::new({
                let app = app.clone();
                move |i| format!("/apps/{}/usage?range=hour", app(i))
            }),
            usage,
        ),
        (
            "usage, last day (hours)",
            Box::new({
                let app = app.clone();
                move |i| format!("/apps/{}/usage?range=day", app(i))
            }),
            usage,
        ),
        ("usage, 30 days (days)", Box::new(move |i| format!("/apps/{}/usage?range=month", app(i))), usage),
        ("catalog", Box::new(|_| "/apis".to_owned()), None),
        ("catalog search", Box::new(|_| "/apis?q=number+1".to_owned()), None),
        ("API page", Box::new(|i| format!("/apis/api-{}", i % 20 + 1)), None),
        ("team", Box::new(|_| "/team".to_owned()), None),
    ];
    time_pages("portal", &portal, &clients, "/login", per_page, shapes).await?;
    pool.close().await;
    Ok(())
}
