//! `tollgate dev`: starts everything, serves, stops cleanly on a signal, and keeps its data.

use std::os::unix::fs::PermissionsExt;

use anyhow::Context;
use tollgate_admin::testkit::{install_crypto_provider, test_database};

use crate::support::{DevProcess, ScratchDir, wait_healthy};

/// The health endpoints of the three servers, from the banner.
fn health_urls(dev: &DevProcess) -> anyhow::Result<[String; 3]> {
    let admin = dev.field("admin API").context("no admin URL in the banner")?;
    let portal = dev.field("developer portal").context("no portal URL in the banner")?;
    let gateway = dev.field("gateway").context("no gateway URL in the banner")?;
    Ok([format!("{admin}/healthz"), format!("{portal}/healthz"), format!("{gateway}/__tollgate/health")])
}

async fn wait_all_healthy(dev: &DevProcess) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for url in health_urls(dev)? {
        wait_healthy(&client, &url).await?;
    }
    Ok(())
}

#[tokio::test]
async fn dev_with_database_url_serves_all_planes_and_exits_cleanly_on_sigterm() -> anyhow::Result<()> {
    install_crypto_provider();
    let db = test_database().await;
    let scratch = ScratchDir::new()?;
    let dev = DevProcess::start(|cmd| {
        cmd.arg("--database-url").arg(&db.url).arg("--owner-email").arg("owner@example.test");
        cmd.arg("--state-dir").arg(scratch.path().join("state"));
    })
    .await?;
    assert_eq!(dev.field("owner login").as_deref(), Some("owner@example.test"), "banner:\n{}", dev.banner());
    let password = dev.field("owner password").context("the new owner's password was not printed")?;
    assert!(password.len() >= 16 && !password.contains(' '), "odd password {password:?}");
    assert!(dev.field("database").is_some_and(|d| d.contains("DATABASE_URL") && !d.contains('@')));
    wait_all_healthy(&dev).await?;

    let client = reqwest::Client::new();
    let gateway = dev.field("gateway").context("no gateway URL")?;
    let res = client.get(format!("{gateway}/no/such/route")).send().await?;
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(res.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/problem+json"));
    let problem: serde_json::Value = res.json().await?;
    assert_eq!(problem["type"], "urn:tollgate:problem:no-route");
    let portal = dev.field("developer portal").context("no portal URL")?;
    let home = client.get(&portal).send().await?.text().await?;
    assert!(home.contains("Build with our APIs") && home.contains("href=\"/signup\""), "{home}");
    // A fresh installation publishes a sample API to try: listed, documented, routed.
    let catalog = client.get(format!("{portal}/apis")).send().await?.text().await?;
    assert!(catalog.contains("href=\"/apis/hello\""), "{catalog}");
    let reference = client.get(format!("{portal}/apis/hello/reference")).send().await?;
    assert_eq!(reference.status(), reqwest::StatusCode::OK);
    let keyless = deadline_get(&client, &format!("{gateway}/hello"), 401).await?;
    assert_eq!(keyless, 401, "the sample API's route is live and asks for a key");

    let (email,): (String,) = sqlx::query_as("SELECT email FROM admin_users").fetch_one(&db.pool).await?;
    assert_eq!(email, "owner@example.test");
    let stderr_so_far = dev.stderr();
    let status = dev.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr_so_far}");
    Ok(())
}

#[tokio::test]
async fn dev_without_database_url_runs_its_own_postgres_and_keeps_data() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let start = || {
        DevProcess::start(|cmd| {
            cmd.current_dir(scratch.path()).env_remove("DATABASE_URL");
        })
    };
    let state = scratch.path().join(".tollgate");

    let first = start().await?;
    let password = first.field("owner password").context("first start prints the password")?;
    // ...and keeps it for scripts (the README's walkthrough reads it), owner-only.
    assert_eq!(std::fs::read_to_string(state.join("admin-password"))?, password);
    assert_eq!(std::fs::metadata(state.join("admin-password"))?.permissions().mode() & 0o777, 0o600);
    assert!(first.field("database").is_some_and(|d| d.contains("private")), "banner:\n{}", first.banner());
    wait_all_healthy(&first).await?;
    let status = first.stop("INT").await?;
    assert!(status.success(), "first run exited with {status:?}");
    assert!(state.join("pgdata/PG_VERSION").is_file(), "cluster under .tollgate/pgdata");
    assert!(!state.join("pgdata/postmaster.pid").exists(), "PostgreSQL was shut down cleanly");
    let jwt_secret = std::fs::read_to_string(state.join("jwt-secret"))?;
    assert_eq!(std::fs::metadata(state.join("jwt-secret"))?.permissions().mode() & 0o777, 0o600);

    let second = start().await?;
    assert_eq!(second.field("owner password"), None, "no new password on restart:\n{}", second.banner());
    let login = second.field("owner login");
    assert!(login.is_some_and(|l| l.contains("admin-password")), "banner:\n{}", second.banner());
    wait_all_healthy(&second).await?;
    assert_eq!(std::fs::read_to_string(state.join("jwt-secret"))?, jwt_secret, "signing key survives restarts");
    let status = second.stop("TERM").await?;
    assert!(status.success(), "second run exited with {status:?}");
    Ok(())
}

/// GETs `url` until it answers `want` (the gateway applies new config within milliseconds,
/// but the test may ask first), for at most 10 s; returns the last status.
async fn deadline_get(client: &reqwest::Client, url: &str, want: u16) -> anyhow::Result<u16> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let status = client.get(url).send().await?.status().as_u16();
        if status == want || std::time::Instant::now() > deadline {
            return Ok(status);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
