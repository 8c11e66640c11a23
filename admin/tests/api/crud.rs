//! Create/read/list/patch/delete of every entity, optimistic concurrency, and bad input
//! that must be refused without changing anything.

use serde_json::json;

use crate::helpers::{Admin, assert_problem};

#[tokio::test]
async fn api_lifecycle_with_etags() {
    let admin = Admin::spawn().await;
    let created = admin.post("/apis", json!({"name": "orders", "description": "Orders", "retries": 2})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    assert_eq!(created.body["lb_policy"], "round_robin");
    assert_eq!(created.body["auth_methods"], json!(["key_auth"]));
    let id = created.id();

    let read = admin.get(&format!("/apis/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["retries"], 2);

    let patched = admin
        .patch(&format!("/apis/{id}"), json!({"description": "Order management", "retries": null}), Some("\"1\""))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.etag.as_deref(), Some("\"2\""));
    assert_eq!(patched.body["description"], "Order management");
    assert_eq!(patched.body["retries"], 0, "null resets a field to its default");
    assert_eq!(patched.body["name"], "orders", "untouched fields are kept");

    let stale = admin.patch(&format!("/apis/{id}"), json!({"description": "lost update"}), Some("\"1\"")).await;
    assert_problem(&stale, 412, "stale-version");
    assert_eq!(admin.get(&format!("/apis/{id}")).await.body["description"], "Order management");

    let stale_delete = admin.delete(&format!("/apis/{id}"), Some("\"1\"")).await;
    assert_problem(&stale_delete, 412, "stale-version");
    let deleted = admin.delete(&format!("/apis/{id}"), Some("\"2\"")).await;
    assert_eq!(deleted.status, 204);
    assert_problem(&admin.get(&format!("/apis/{id}")).await, 404, "not-found");
}

#[tokio::test]
async fn lists_paginate_with_cursors_and_filter() {
    let admin = Admin::spawn().await;
    for i in 0..5 {
        admin.create_api(&format!("api-{i}")).await;
    }
    let first = admin.get("/apis?limit=2").await;
    assert_eq!(first.body["data"].as_array().map(Vec::len), Some(2));
    let cursor = first.body["next_cursor"].as_str().unwrap_or_default().to_owned();
    let second = admin.get(&format!("/apis?limit=2&cursor={cursor}")).await;
    assert_eq!(second.body["data"][0]["name"], "api-2");
    let last =
        admin.get(&format!("/apis?limit=2&cursor={}", second.body["next_cursor"].as_str().unwrap_or_default())).await;
    assert_eq!(last.body["data"].as_array().map(Vec::len), Some(1));
    assert!(last.body["next_cursor"].is_null());

    let filtered = admin.get("/apis?name=api-3").await;
    assert_eq!(filtered.body["data"].as_array().map(Vec::len), Some(1));
    assert_problem(&admin.get("/apis?cursor=not-a-cursor").await, 400, "bad-request");
    assert_problem(&admin.get("/apis?limit=abc").await, 400, "bad-request");
    assert_problem(&admin.get("/apis?limit=0").await, 400, "bad-request");
    assert_problem(&admin.get("/apis?limit=501").await, 400, "bad-request");
    assert_problem(&admin.get("/audit-log?limit=501").await, 400, "bad-request");
}

#[tokio::test]
async fn integral_numbers_are_integers() {
    // JSON Schema counts 8080.0 as an integer, so clients that only write floats work too.
    let admin = Admin::spawn().await;
    let api = admin.create_api("floats").await;
    let target = admin.post(&format!("/apis/{api}/targets"), json!({"host": "10.0.0.1", "port": 8080.0})).await;
    assert_eq!(target.status, 201, "{:?}", target.body);
    assert_eq!(target.body["port"], 8080);
    let half = admin.post(&format!("/apis/{api}/targets"), json!({"host": "10.0.0.2", "port": 80.5})).await;
    assert_problem(&half, 422, "validation");
}

#[tokio::test]
async fn nested_entities_live_under_their_api() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("billing").await;
    let other = admin.create_api("other").await;

    let target =
        admin.post(&format!("/apis/{api}/targets"), json!({"host": "10.0.0.1", "port": 8080, "weight": 50})).await;
    assert_eq!(target.status, 201, "{}", target.body);
    assert_eq!(target.body["api_id"], api);
    let route = admin
        .post(&format!("/apis/{api}/routes"), json!({"name": "all", "paths": ["/billing/*"], "methods": ["GET", "POST"], "headers": {"x-version": ["2"]}}))
        .await;
    assert_eq!(route.status, 201, "{}", route.body);
    let plan = admin
        .post(
            &format!("/apis/{api}/plans"),
            json!({"name": "gold", "rate_limit_per_minute": 600, "quota_per_month": 100000}),
        )
        .await;
    assert_eq!(plan.status, 201, "{}", plan.body);

    // An entity is only reachable under its own API.
    assert_problem(&admin.get(&format!("/apis/{other}/targets/{}", target.id())).await, 404, "not-found");
    assert_problem(&admin.get(&format!("/apis/{}/routes", uuid::Uuid::now_v7())).await, 404, "not-found");
    assert_eq!(admin.get(&format!("/apis/{api}/routes")).await.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(admin.get(&format!("/apis/{other}/routes")).await.body["data"].as_array().map(Vec::len), Some(0));

    // Targets and routes go with their API; plans (which carry subscriptions) block it.
    assert_problem(&admin.delete(&format!("/apis/{api}"), None).await, 409, "conflict");
    assert_eq!(admin.delete(&format!("/apis/{api}/plans/{}", plan.id()), None).await.status, 204);
    assert_eq!(admin.delete(&format!("/apis/{api}"), None).await.status, 204);
    assert_eq!(admin.count("targets").await + admin.count("routes").await, 0);
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("orders").await;
    let audit_before = admin.count("audit_log").await;
    let events_before = admin.count("config_events").await;

    let cases = [
        ("/apis", json!({"name": "Bad Name!"}), 422, "validation"),
        ("/apis", json!({"name": "ok", "retries": "three"}), 422, "validation"),
        ("/apis", json!({"name": "ok", "unknown_field": 1}), 422, "validation"),
        ("/apis", json!({"name": "ok", "retries": 11}), 422, "validation"),
        ("/apis", json!({"name": "ok", "auth_methods": ["magic"]}), 422, "validation"),
        ("/apis", json!({"name": "orders"}), 409, "conflict"),
        ("/apis", json!(["not", "an", "object"]), 422, "validation"),
        (&format!("/apis/{api}/targets") as &str, json!({"host": "bad host", "port": 80}), 422, "validation"),
        (&format!("/apis/{api}/targets"), json!({"host": "ok", "port": 70000}), 422, "validation"),
        (&format!("/apis/{api}/routes"), json!({"name": "r", "paths": ["/a/../admin"]}), 422, "validation"),
        (&format!("/apis/{api}/routes"), json!({"name": "r"}), 422, "validation"),
        (&format!("/apis/{api}/routes"), json!({"name": "r", "paths": ["/x"], "methods": ["get"]}), 422, "validation"),
        (&format!("/apis/{api}/plans"), json!({"name": "p", "rate_limit_per_second": 0}), 422, "validation"),
        (&format!("/apis/{}/plans", uuid::Uuid::now_v7()), json!({"name": "p"}), 404, "not-found"),
        ("/consumers", json!({"name": "app", "developer_id": uuid::Uuid::now_v7()}), 422, "validation"),
        ("/developers", json!({"email": "not-an-email", "name": "x"}), 422, "validation"),
        (
            "/subscriptions",
            json!({"consumer_id": uuid::Uuid::now_v7(), "plan_id": uuid::Uuid::now_v7()}),
            422,
            "validation",
        ),
    ];
    for (path, body, status, slug) in cases {
        let r = admin.post(path, body.clone()).await;
        assert_problem(&r, status, slug);
        if status == 422 {
            assert!(r.body["errors"].as_array().is_some_and(|e| !e.is_empty()), "{body} → {}", r.body);
        }
    }
    let dangling = admin.post("/consumers", json!({"name": "app", "developer_id": uuid::Uuid::now_v7()})).await;
    assert_eq!(dangling.body["errors"][0]["pointer"], "/developer_id");

    // Malformed JSON, wrong content type, oversize body.
    let raw = admin
        .http
        .post(admin.url("/apis"))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await;
    assert_problem(&crate::helpers::read(raw.expect("sent")).await, 400, "bad-request");
    let text = admin
        .http
        .post(admin.url("/apis"))
        .bearer_auth(&admin.token)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await;
    assert_problem(&crate::helpers::read(text.expect("sent")).await, 415, "unsupported-media-type");
    let huge = json!({"name": "big", "description": "x".repeat(5 * 1024 * 1024)});
    assert_problem(&admin.post("/apis", huge).await, 413, "payload-too-large");
    // A patch that makes the entity invalid, and a bad If-Match.
    assert_problem(
        &admin.patch(&format!("/apis/{api}"), json!({"connect_timeout_ms": -1}), None).await,
        422,
        "validation",
    );
    assert_problem(&admin.patch(&format!("/apis/{api}"), json!({"name": 5}), None).await, 422, "validation");
    assert_problem(&admin.patch(&format!("/apis/{api}"), json!({}), Some("\"1")).await, 400, "bad-request");
    // A path segment that is not an id names nothing.
    assert_problem(&admin.get("/apis/not-a-uuid").await, 404, "not-found");
    // A reset of a field APIs do not have, and text PostgreSQL cannot store.
    let unknown = admin.patch(&format!("/apis/{api}"), json!({"colour": null}), None).await;
    assert_problem(&unknown, 422, "validation");
    assert_eq!(unknown.body["errors"][0]["pointer"], "/colour");
    let nul = admin.post("/apis", json!({"name": "nul", "description": "a\u{0}b"})).await;
    assert_problem(&nul, 422, "validation");
    assert_eq!(nul.body["errors"][0]["pointer"], "/description");
    assert_problem(&admin.get("/apis?name=a%00b").await, 400, "bad-request");

    assert_eq!(admin.count("apis").await, 1);
    assert_eq!(admin.count("targets").await + admin.count("routes").await + admin.count("plans").await, 0);
    assert_eq!(
        admin.count("consumers").await + admin.count("developers").await + admin.count("subscriptions").await,
        0
    );
    assert_eq!(admin.count("audit_log").await, audit_before, "refused requests write no audit rows");
    assert_eq!(admin.count("config_events").await, events_before);
}

#[tokio::test]
async fn developers_and_consumers() {
    let admin = Admin::spawn().await;
    let dev = admin.post("/developers", json!({"email": "Ada@Example.com", "name": "Ada"})).await;
    assert_eq!(dev.status, 201, "{}", dev.body);
    assert!(dev.body.get("password_hash").is_none());
    assert_problem(
        &admin.post("/developers", json!({"email": "ada@example.com", "name": "Ada 2"})).await,
        409,
        "conflict",
    );
    let found = admin.get("/developers?email=ADA@example.com").await;
    assert_eq!(found.body["data"].as_array().map(Vec::len), Some(1));

    let app = admin.post("/consumers", json!({"name": "mobile", "developer_id": dev.id()})).await;
    assert_eq!(app.status, 201, "{}", app.body);
    // Names are unique per developer, not globally.
    assert_problem(
        &admin.post("/consumers", json!({"name": "Mobile", "developer_id": dev.id()})).await,
        409,
        "conflict",
    );
    assert_eq!(admin.post("/consumers", json!({"name": "mobile"})).await.status, 201);
    let mine = admin.get(&format!("/consumers?developer_id={}", dev.id())).await;
    assert_eq!(mine.body["data"].as_array().map(Vec::len), Some(1));
    // Deleting the developer deletes their apps.
    assert_eq!(admin.delete(&format!("/developers/{}", dev.id()), None).await.status, 204);
    assert_eq!(admin.count("consumers").await, 1);
}
