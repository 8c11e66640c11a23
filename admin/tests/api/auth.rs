//! Authentication, roles, brute-force throttling and personal access tokens.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Admin, assert_problem};

#[tokio::test]
async fn requests_without_valid_tokens_are_401() {
    let admin = Admin::spawn().await;
    let none = admin.send_as(Some(""), Method::GET, "/apis", None, None).await;
    assert_problem(&none, 401, "unauthorized");
    assert!(none.headers.get("www-authenticate").is_some());
    assert_problem(&admin.send_as(Some("garbage"), Method::GET, "/apis", None, None).await, 401, "unauthorized");
    assert_problem(&admin.send_as(Some("tgpat_unknown"), Method::GET, "/apis", None, None).await, 401, "unauthorized");
    let wrong = admin
        .send_as(
            Some(""),
            Method::POST,
            "/auth/login",
            Some(json!({"email": admin.app.owner_email, "password": "wrong password!"})),
            None,
        )
        .await;
    assert_problem(&wrong, 401, "unauthorized");
    let me = admin.get("/me").await;
    assert_eq!(me.body["role"], "owner");
}

#[tokio::test]
async fn roles_are_enforced_on_every_write() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("orders").await;
    let viewer = admin.user_token("viewer@example.com", "viewer").await;
    let editor = admin.user_token("editor@example.com", "editor").await;

    assert_eq!(admin.send_as(Some(&viewer), Method::GET, "/apis", None, None).await.status, 200);
    let denied = admin.send_as(Some(&viewer), Method::POST, "/apis", Some(json!({"name": "x"})), None).await;
    assert_problem(&denied, 403, "forbidden");
    assert_problem(
        &admin.send_as(Some(&viewer), Method::DELETE, &format!("/apis/{api}"), None, None).await,
        403,
        "forbidden",
    );
    assert_eq!(admin.send_as(Some(&editor), Method::POST, "/apis", Some(json!({"name": "x"})), None).await.status, 201);
    assert_problem(&admin.send_as(Some(&editor), Method::GET, "/users", None, None).await, 403, "forbidden");
    assert_eq!(admin.count("apis").await, 2);
}

#[tokio::test]
async fn demoted_or_disabled_users_lose_access_at_once() {
    let admin = Admin::spawn().await;
    let editor = admin.user_token("editor@example.com", "editor").await;
    let users = admin.get("/users?role=editor").await;
    let id = users.body["data"][0]["id"].as_str().unwrap_or_default().to_owned();

    assert_eq!(admin.patch(&format!("/users/{id}"), json!({"role": "viewer"}), None).await.status, 200);
    assert_problem(
        &admin.send_as(Some(&editor), Method::POST, "/apis", Some(json!({"name": "x"})), None).await,
        403,
        "forbidden",
    );
    assert_eq!(admin.patch(&format!("/users/{id}"), json!({"disabled": true}), None).await.status, 200);
    assert_problem(&admin.send_as(Some(&editor), Method::GET, "/apis", None, None).await, 401, "unauthorized");
}

#[tokio::test]
async fn the_last_owner_cannot_be_removed() {
    let admin = Admin::spawn().await;
    let me = admin.get("/me").await.id();
    assert_problem(&admin.patch(&format!("/users/{me}"), json!({"role": "editor"}), None).await, 409, "conflict");
    assert_problem(&admin.patch(&format!("/users/{me}"), json!({"disabled": true}), None).await, 409, "conflict");
    assert_problem(&admin.delete(&format!("/users/{me}"), None).await, 409, "conflict");
    assert_eq!(admin.get("/me").await.body["role"], "owner");
    // With a second owner, the first may step down.
    admin.user_token("second@example.com", "owner").await;
    assert_eq!(admin.patch(&format!("/users/{me}"), json!({"role": "editor"}), None).await.status, 200);
}

#[tokio::test]
async fn repeated_login_failures_are_throttled() {
    let admin = Admin::spawn().await;
    let attempt = |password: &'static str| {
        let body = json!({"email": admin.app.owner_email.clone(), "password": password});
        admin.send_as(Some(""), Method::POST, "/auth/login", Some(body), None)
    };
    for _ in 0..5 {
        assert_eq!(attempt("not the password").await.status, 401);
    }
    let locked = attempt("not the password").await;
    assert_problem(&locked, 429, "too-many-attempts");
    let retry: u64 =
        locked.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(retry > 0 && retry <= 15 * 60, "Retry-After {retry}");
    // Even the right password waits out the lockout.
    let body = json!({"email": admin.app.owner_email, "password": admin.app.owner_password});
    assert_eq!(admin.send_as(Some(""), Method::POST, "/auth/login", Some(body), None).await.status, 429);
}

#[tokio::test]
async fn personal_access_tokens_are_shown_once_and_stored_hashed() {
    let admin = Admin::spawn().await;
    let created = admin.post("/tokens", json!({"name": "ci"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = created.body["secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("tgpat_") && secret.len() > 40);
    assert_eq!(admin.send_as(Some(&secret), Method::GET, "/me", None, None).await.body["role"], "owner");

    let listed = admin.get("/tokens").await;
    assert!(listed.body["data"][0].get("secret").is_none());
    let (stored,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM admin_tokens WHERE token_hash = sha256($1::text::bytea)")
            .bind(&secret)
            .fetch_one(&admin.app.pool)
            .await
            .expect("query");
    assert_eq!(stored, 1, "only the SHA-256 of the token is stored");
    let leaked: (i64,) = sqlx::query_as("SELECT count(*) FROM audit_log WHERE after::text LIKE '%' || $1 || '%'")
        .bind(&secret)
        .fetch_one(&admin.app.pool)
        .await
        .expect("query");
    assert_eq!(leaked.0, 0, "secrets never reach the audit log");

    assert_eq!(admin.delete(&format!("/tokens/{}", created.id()), None).await.status, 204);
    assert_problem(&admin.send_as(Some(&secret), Method::GET, "/me", None, None).await, 401, "unauthorized");
}
