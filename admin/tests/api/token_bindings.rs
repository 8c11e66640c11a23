//! Token bindings: CRUD like every resource, one consumer per (issuer, subject), config
//! events for gateways, deleted with their consumer.

use serde_json::json;

use crate::helpers::{Admin, assert_problem};

#[tokio::test]
async fn token_bindings_lifecycle() {
    let admin = Admin::spawn().await;
    let acme = admin.post("/consumers", json!({"name": "acme"})).await.id();
    let other = admin.post("/consumers", json!({"name": "other"})).await.id();
    let iss = "https://idp.example.com/";

    let created = admin.post("/token-bindings", json!({"consumer_id": acme, "issuer": iss, "subject": "svc-1"})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    let id = created.id();
    assert_eq!(admin.get(&format!("/token-bindings/{id}")).await.body["subject"], "svc-1");
    assert_eq!(
        admin.post("/token-bindings", json!({"consumer_id": acme, "issuer": iss, "subject": "svc-2"})).await.status,
        201
    );
    admin.post("/token-bindings", json!({"consumer_id": other, "issuer": "https://other/", "subject": "svc-1"})).await;

    // One consumer per (issuer, subject).
    let taken = admin.post("/token-bindings", json!({"consumer_id": other, "issuer": iss, "subject": "svc-1"})).await;
    assert_problem(&taken, 409, "conflict");
    assert_eq!(taken.body["errors"][0]["pointer"], "/subject");
    for (body, pointer) in [
        (json!({"consumer_id": uuid::Uuid::now_v7(), "issuer": iss, "subject": "x"}), "/consumer_id"),
        (json!({"consumer_id": acme, "issuer": "", "subject": "x"}), "/issuer"),
        (json!({"consumer_id": acme, "issuer": iss, "subject": "s".repeat(2001)}), "/subject"),
        (json!({"consumer_id": acme, "issuer": iss}), ""),
    ] {
        let r = admin.post("/token-bindings", body.clone()).await;
        assert_problem(&r, 422, "validation");
        assert_eq!(r.body["errors"][0]["pointer"], pointer, "{body} → {}", r.body);
    }

    let mine = admin.get(&format!("/token-bindings?consumer_id={acme}")).await;
    assert_eq!(mine.body["data"].as_array().map(Vec::len), Some(2));
    let by_subject = admin.get("/token-bindings?subject=svc-1").await;
    assert_eq!(by_subject.body["data"].as_array().map(Vec::len), Some(2));

    let moved = admin.patch(&format!("/token-bindings/{id}"), json!({"consumer_id": other}), Some("\"1\"")).await;
    assert_eq!((moved.status, moved.etag.as_deref()), (200, Some("\"2\"")), "{}", moved.body);
    assert_eq!(moved.body["consumer_id"], other);
    assert_eq!(admin.delete(&format!("/token-bindings/{id}"), Some("\"2\"")).await.status, 204);
    assert_problem(&admin.get(&format!("/token-bindings/{id}")).await, 404, "not-found");

    // Every write reached the change log under the kind gateways follow.
    let events = admin.get(&format!("/config-events?entity_kind=token_binding&entity_id={id}")).await;
    let ops: Vec<&str> =
        events.body["data"].as_array().into_iter().flatten().filter_map(|e| e["op"].as_str()).collect();
    assert_eq!(ops, ["create", "update", "delete"]);
    // Bindings go with their consumer.
    assert_eq!(admin.delete(&format!("/consumers/{acme}"), None).await.status, 204);
    assert_eq!(admin.count("token_bindings").await, 1);
}
