//! API keys: secret shown once, hashed at rest, revocation is permanent and propagated.

use serde_json::json;

use crate::helpers::{Admin, assert_problem};

#[tokio::test]
async fn keys_are_shown_once_hashed_and_revocable() {
    let admin = Admin::spawn().await;
    let consumer = admin.post("/consumers", json!({"name": "acme"})).await.id();
    let created = admin.post(&format!("/consumers/{consumer}/keys"), json!({"name": "prod"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = created.body["secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("tg_"), "{secret}");
    assert_eq!(secret.len(), tollgate_gateway::key_format::KEY_LEN, "238 random bits and a checksum: {secret}");
    assert!(secret.starts_with(created.body["prefix"].as_str().unwrap_or("?")));

    let read = admin.get(&format!("/consumers/{consumer}/keys/{}", created.id())).await;
    assert!(read.body.get("secret").is_none(), "{}", read.body);
    let (hash,): (Vec<u8>,) =
        sqlx::query_as("SELECT key_hash FROM api_keys").fetch_one(&admin.app.pool).await.expect("query");
    let want: (Vec<u8>,) =
        sqlx::query_as("SELECT sha256($1::text::bytea)").bind(&secret).fetch_one(&admin.app.pool).await.expect("query");
    assert_eq!(hash, want.0);
    // Gateways replace a key's entry by its hash: the schema keeps the hash as written.
    let rewrite = sqlx::query("UPDATE api_keys SET key_hash = sha256('other'::bytea)").execute(&admin.app.pool).await;
    let error = rewrite.expect_err("a key's hash cannot be rewritten in place").to_string();
    assert!(error.contains("cannot change"), "{error}");

    let revoked = admin.post(&format!("/consumers/{consumer}/keys/{}/revoke", created.id()), json!({})).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(revoked.body["revoked_at"].is_string());
    let again = admin.post(&format!("/consumers/{consumer}/keys/{}/revoke", created.id()), json!({})).await;
    assert_eq!(again.body["revoked_at"], revoked.body["revoked_at"], "revoking twice keeps the first instant");
    let unrevoked = admin.get(&format!("/consumers/{consumer}/keys?revoked=false")).await;
    assert_eq!(unrevoked.body["data"].as_array().map(Vec::len), Some(0));

    let events = admin.get("/config-events?entity_kind=api_key").await;
    let ops: Vec<&str> =
        events.body["data"].as_array().map(|a| a.iter().filter_map(|e| e["op"].as_str()).collect()).unwrap_or_default();
    assert_eq!(ops, ["create", "update"], "the revocation reaches gateways as one update");
}

#[tokio::test]
async fn key_input_is_validated() {
    let admin = Admin::spawn().await;
    let consumer = admin.post("/consumers", json!({"name": "acme"})).await.id();
    let past = admin.post(&format!("/consumers/{consumer}/keys"), json!({"expires_at": "2001-01-01T00:00:00Z"})).await;
    assert_problem(&past, 422, "validation");
    let bad_date = admin.post(&format!("/consumers/{consumer}/keys"), json!({"expires_at": "tomorrow"})).await;
    assert_problem(&bad_date, 422, "validation");
    let secret_field = admin.post(&format!("/consumers/{consumer}/keys"), json!({"key_hash": "00"})).await;
    assert_problem(&secret_field, 422, "validation");
    assert_problem(
        &admin.post(&format!("/consumers/{}/keys", uuid::Uuid::now_v7()), json!({})).await,
        404,
        "not-found",
    );
    assert_eq!(admin.count("api_keys").await, 0);
}

#[tokio::test]
async fn rotation_issues_a_successor_and_keeps_the_old_key_for_the_overlap() {
    let admin = Admin::spawn().await;
    let consumer = admin.post("/consumers", json!({"name": "acme"})).await.id();
    let old = admin.post(&format!("/consumers/{consumer}/keys"), json!({"name": "prod"})).await;
    let path = format!("/consumers/{consumer}/keys/{}/rotate", old.id());
    let stale = admin.send(reqwest::Method::POST, &path, Some(json!({"overlap_seconds": 60})), Some("\"7\"")).await;
    assert_eq!(stale.status, 412, "a stale If-Match");
    let too_long = admin.post(&path, json!({"overlap_seconds": 2_592_001})).await;
    assert_problem(&too_long, 422, "validation");
    assert_eq!(admin.count("api_keys").await, 1, "a refused rotation changes nothing");
    let rotated = admin.post(&path, json!({"overlap_seconds": 3600})).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let new = &rotated.body["new"];
    assert!(new["secret"].as_str().is_some_and(|s| s.starts_with("tg_")));
    assert_eq!(new["name"], "prod", "the successor keeps the name");
    assert_eq!(rotated.body["old"]["replaced_by"], new["id"]);
    let until = rotated.body["old"]["expires_at"].as_str().unwrap_or_default();
    let until = time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339).expect("expiry");
    let left = (until - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((3590..=3600).contains(&left), "{left}");
    let twice = admin.post(&path, json!({"overlap_seconds": 0})).await;
    assert_problem(&twice, 409, "conflict");
    let (events,): (i64,) = sqlx::query_as("SELECT count(*) FROM config_events WHERE entity_kind = 'api_key'")
        .fetch_one(&admin.app.pool)
        .await
        .expect("query");
    assert_eq!(events, 3, "issue, then the successor and the old key's new expiry");
}
