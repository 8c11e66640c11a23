//! Authentication, roles, brute-force throttling and personal access tokens.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Admin, assert_problem, client_from};

/// Statuses of login attempts, counted: (401s = passwords checked, 429s = refused unchecked).
fn tally(statuses: &[u16]) -> (usize, usize) {
    let count = |s| statuses.iter().filter(|&&x| x == s).count();
    assert_eq!(count(401) + count(429), statuses.len(), "only 401 and 429: {statuses:?}");
    (count(401), count(429))
}

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
async fn a_parallel_burst_is_cut_at_the_account_limit() {
    let admin = Admin::spawn().await;
    let client = client_from([127, 0, 0, 1]);
    let email = admin.app.owner_email.clone();
    let mut burst: FuturesUnordered<_> =
        (0..40).map(|_| admin.login_via(&client, &email, "not the password")).collect();
    // Once the first refusal arrives the limit is reached, while wrong passwords of the burst
    // may still be in their check: the right one sent now must be refused too.
    let mut statuses = Vec::new();
    while !statuses.contains(&429) {
        let next = tokio::time::timeout(Duration::from_secs(30), burst.next()).await.expect("burst answers in time");
        statuses.push(next.expect("a refusal before the burst ends").status);
    }
    let right = admin.owner_login_via(&client).await;
    assert_problem(&right, 429, "too-many-attempts");
    statuses.extend(burst.map(|r| r.status).collect::<Vec<_>>().await);
    assert_eq!(tally(&statuses), (5, 35), "only the account's 5 allowed attempts were checked");
}

#[tokio::test]
async fn a_parallel_burst_is_cut_at_the_address_limit() {
    // 2 failures per account and address, so 2 × 4 = 8 per address (fewer slow hashes).
    let admin = Admin::spawn_with(|c| c.login_max_failures = 2).await;
    let client = client_from([127, 0, 0, 1]);
    let attempts = (0..40).map(|i| {
        let email = format!("nobody-{i}@example.com");
        let client = &client;
        let admin = &admin;
        async move { admin.login_via(client, &email, "not the password").await.status }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(tally(&statuses), (8, 32), "only the address's 8 allowed attempts were checked");
    assert_problem(&admin.owner_login_via(&client).await, 429, "too-many-attempts");
    assert_eq!(admin.owner_login_via(&client_from([127, 0, 0, 2])).await.status, 200, "other addresses log in");
}

#[tokio::test]
async fn failures_from_one_address_do_not_lock_the_owner_out_elsewhere() {
    let admin = Admin::spawn().await;
    let attacker = client_from([127, 0, 0, 3]);
    for _ in 0..5 {
        assert_eq!(admin.login_via(&attacker, &admin.app.owner_email, "not the password").await.status, 401);
    }
    assert_problem(&admin.owner_login_via(&attacker).await, 429, "too-many-attempts");
    let owner = client_from([127, 0, 0, 4]);
    let login = admin.owner_login_via(&owner).await;
    assert_eq!(login.status, 200, "{}", login.body);
    // The owner's success does not unlock the account for the attacker's address.
    assert_problem(&admin.owner_login_via(&attacker).await, 429, "too-many-attempts");
}

#[tokio::test]
async fn a_password_reset_revokes_login_and_access_tokens() {
    let admin = Admin::spawn().await;
    let token = admin.user_token("ops@example.com", "editor").await;
    let pat = admin.send_as(Some(&token), Method::POST, "/tokens", Some(json!({"name": "ci"})), None).await;
    assert_eq!(pat.status, 201, "{}", pat.body);
    let pat = pat.body["secret"].as_str().unwrap_or_default().to_owned();
    let id = admin.send_as(Some(&token), Method::GET, "/me", None, None).await.id();
    for t in [&token, &pat] {
        assert_eq!(admin.send_as(Some(t), Method::GET, "/me", None, None).await.status, 200);
    }

    let reset = admin.post(&format!("/users/{id}/password"), json!({"password": "a brand new passphrase"})).await;
    assert_eq!(reset.status, 204, "{}", reset.body);
    for t in [&token, &pat] {
        assert_problem(&admin.send_as(Some(t), Method::GET, "/me", None, None).await, 401, "unauthorized");
    }
    let fresh = admin.login_via(&admin.http, "ops@example.com", "a brand new passphrase").await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let fresh = fresh.body["token"].as_str().unwrap_or_default().to_owned();
    assert_eq!(admin.send_as(Some(&fresh), Method::GET, "/me", None, None).await.body["id"], id.as_str());
}

#[tokio::test]
async fn disabling_and_enabling_a_user_revokes_their_tokens() {
    let admin = Admin::spawn().await;
    let token = admin.user_token("ops@example.com", "editor").await;
    let pat = admin.send_as(Some(&token), Method::POST, "/tokens", Some(json!({"name": "ci"})), None).await;
    let pat = pat.body["secret"].as_str().unwrap_or_default().to_owned();
    let id = admin.send_as(Some(&pat), Method::GET, "/me", None, None).await.id();
    assert!(!id.is_empty(), "the access token works before");

    for disabled in [true, false] {
        let r = admin.patch(&format!("/users/{id}"), json!({"disabled": disabled}), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for t in [&token, &pat] {
        assert_problem(&admin.send_as(Some(t), Method::GET, "/me", None, None).await, 401, "unauthorized");
    }
    assert_eq!(admin.count("admin_tokens").await, 0, "the access token is gone");
    let again = admin.login_via(&admin.http, "ops@example.com", "a-sufficiently-long-passphrase").await;
    assert_eq!(again.status, 200, "{}", again.body);
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
