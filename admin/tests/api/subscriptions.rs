//! Subscriptions: approval flow, one plan per API per consumer, plan changes within an API.

use serde_json::json;

use crate::helpers::{Admin, assert_problem};

#[tokio::test]
async fn approval_flow_and_plan_changes() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("orders").await;
    let other_api = admin.create_api("billing").await;
    let free = admin.post(&format!("/apis/{api}/plans"), json!({"name": "free"})).await.id();
    let gold = admin.post(&format!("/apis/{api}/plans"), json!({"name": "gold", "approval_required": true})).await.id();
    let foreign = admin.post(&format!("/apis/{other_api}/plans"), json!({"name": "free"})).await.id();
    let consumer = admin.post("/consumers", json!({"name": "acme"})).await.id();

    let pending = admin.post("/subscriptions", json!({"consumer_id": consumer, "plan_id": gold})).await;
    assert_eq!(pending.status, 201, "{}", pending.body);
    assert_eq!(pending.body["status"], "pending");
    assert_eq!(pending.body["api_id"], api);
    // One subscription per API per consumer.
    assert_problem(
        &admin.post("/subscriptions", json!({"consumer_id": consumer, "plan_id": free})).await,
        409,
        "conflict",
    );

    let sub = pending.id();
    let approved = admin.patch(&format!("/subscriptions/{sub}"), json!({"status": "active"}), Some("\"1\"")).await;
    assert_eq!(approved.body["status"], "active", "{}", approved.body);
    let downgraded = admin.patch(&format!("/subscriptions/{sub}"), json!({"plan_id": free}), None).await;
    assert_eq!(downgraded.body["plan_id"], free, "{}", downgraded.body);
    let cross = admin.patch(&format!("/subscriptions/{sub}"), json!({"plan_id": foreign}), None).await;
    assert_problem(&cross, 422, "validation");
    assert_problem(
        &admin.patch(&format!("/subscriptions/{sub}"), json!({"status": "paused"}), None).await,
        422,
        "validation",
    );

    // A plan with subscriptions cannot be deleted; a free-standing one can.
    assert_problem(&admin.delete(&format!("/apis/{api}/plans/{free}"), None).await, 409, "conflict");
    assert_eq!(admin.delete(&format!("/apis/{api}/plans/{gold}"), None).await.status, 204);
    let listed = admin.get(&format!("/subscriptions?consumer_id={consumer}&status=active")).await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(1));
    // Deleting the consumer ends its subscriptions.
    assert_eq!(admin.delete(&format!("/consumers/{consumer}"), None).await.status, 204);
    assert_eq!(admin.count("subscriptions").await, 0);
}
