//! `tollgate config export | diff | apply` as an operator runs them: the configuration of
//! one database exported to a file, applied to a fresh database, where a gateway then
//! serves the same API to the same key; `diff` says what `apply` would do (exit 2) and then
//! that nothing is left to do (exit 0); a malformed file is refused with its line.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tollgate_admin::testkit::test_database;

use crate::support::ScratchDir;
use crate::support::admin::Admin;
use crate::support::gateway::Gateway;
use crate::support::upstream::Upstream;

/// Runs `tollgate config ARGS` against `database_url`: (exit code, stdout, stderr).
async fn config(database_url: &str, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("config")
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("TOLLGATE_SECRETS_KEY")
        .output()
        .await
        .context("running tollgate config")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok((out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr)))
}

#[tokio::test]
async fn an_exported_configuration_applied_elsewhere_serves_the_same_keys() -> anyhow::Result<()> {
    let (source_db, target_db) = (test_database().await, test_database().await);
    let source = Admin::start(&source_db.url).await?;
    let upstream = Upstream::start_echo("gitops").await?;
    let api = source.create_api_with(json!({"name": "orders", "auth_methods": ["key_auth"]})).await?;
    source.add_target(&api, upstream.addr).await?;
    source.add_route(&api, "orders", &["/orders"]).await?;
    let plan = source.create_plan(&api, json!({"name": "gold", "rate_limit_per_minute": 600})).await?;
    let consumer = source.create_consumer(json!({"name": "acme"})).await?;
    let (_, key) = source.create_key(&consumer).await?;
    source.subscribe(&consumer, &plan).await?;

    let scratch = ScratchDir::new()?;
    let file = scratch.path().join("tollgate.yaml");
    let path = file.to_str().context("a UTF-8 path")?;
    let (code, _, err) = config(&source_db.url, &["export", "--output", path]).await?;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file)?;
    assert!(text.contains("key_hash") && !text.contains(&key), "keys travel hashed:\n{text}");

    // A fresh database: migrated by the admin, then the file applied.
    let target = Admin::start(&target_db.url).await?;
    let (code, out, err) = config(&target_db.url, &["diff", path]).await?;
    assert_eq!(code, 2, "changes to make: {out}{err}");
    assert!(out.contains("+ api orders") && out.contains("+ api_key acme/"), "{out}");
    let (code, out, err) = config(&target_db.url, &["apply", path]).await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("in one transaction"), "{out}");
    let (code, out, _) = config(&target_db.url, &["diff", path]).await?;
    assert_eq!((code, out.trim()), (0, "No changes."), "applying again would change nothing");

    // A gateway on the new database serves the API to the same key.
    let gateway = Gateway::start(&target_db.url, &scratch.path().join("node")).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = gateway.request("/orders", &[("x-api-key", key.as_str())]).await?;
        if reply.status == 200 {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no 200 for the key: {}", reply.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.request("/orders", &[("x-api-key", "tg_wrong")]).await?.status, 401);

    // A malformed file changes nothing and says where.
    std::fs::write(&file, "apis:\n  - name: orders\n    colour: red\n")?;
    let (code, _, err) = config(&target_db.url, &["apply", "--prune", path]).await?;
    assert_ne!(code, 0);
    assert!(err.contains("line 3 column"), "{err}");
    assert_eq!(target.get("/apis?name=orders").await?["data"].as_array().map(Vec::len), Some(1));
    Ok(())
}
