//! Gateway nodes through the admin API: the propagation report counts every node seen within
//! the retention window and names the ones behind; `DELETE /nodes/{id}` removes a dead node
//! (editors and owners, audited); nodes older than the retention are dropped and pruned.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Admin, assert_problem};

/// Reports a node as a gateway would: seen `seconds_ago`, having applied `applied`.
async fn report(admin: &Admin, hostname: &str, applied: i64, seconds_ago: f64) -> Uuid {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO gateway_nodes (id, hostname, applied_event_id, last_seen_at)
         VALUES ($1, $2, $3, now() - make_interval(secs => $4))",
    )
    .bind(id)
    .bind(hostname)
    .bind(applied)
    .bind(seconds_ago)
    .execute(&admin.app.pool)
    .await
    .expect("node row");
    id
}

#[tokio::test]
async fn propagation_names_pending_and_unreachable_nodes_until_they_are_removed() {
    let admin = Admin::spawn().await;
    admin.create_api("orders").await;
    let event = admin.get("/config-events").await.body["data"][0]["id"].as_i64().expect("an event");
    report(&admin, "gw-1", event, 1.0).await;
    let pending = report(&admin, "gw-2", event - 1, 2.0).await;
    let unreachable = report(&admin, "gw-3", event - 1, 3600.0).await;
    report(&admin, "gw-gone", event - 1, 25.0 * 3600.0).await;

    let p = admin.get(&format!("/config-events/{event}/propagation")).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(
        (&p.body["applied"], &p.body["nodes"], &p.body["live"]),
        (&json!(1), &json!(3), &json!(3)),
        "{}",
        p.body
    );
    assert_eq!(p.body["complete"], false);
    assert_eq!(p.body["pending_nodes"], json!([pending, unreachable]));
    let states: Vec<(&str, &str)> = p.body["behind"]
        .as_array()
        .expect("behind")
        .iter()
        .map(|b| (b["hostname"].as_str().unwrap_or(""), b["state"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(states, [("gw-2", "pending"), ("gw-3", "unreachable")]);
    assert_eq!(p.body["behind"][1]["applied_event_id"], event - 1);
    let listed = admin.get("/nodes").await.body["data"].as_array().map(Vec::len);
    assert_eq!(listed, Some(3), "the node silent for a day is not listed");

    for gone in [pending, unreachable] {
        assert_eq!(admin.delete(&format!("/nodes/{gone}"), None).await.status, 204);
    }
    let p = admin.get(&format!("/config-events/{event}/propagation")).await;
    assert_eq!((&p.body["applied"], &p.body["nodes"], &p.body["complete"]), (&json!(1), &json!(1), &json!(true)));
    assert_eq!(p.body["behind"], json!([]));

    let pruned = tollgate_admin::nodes::prune_nodes(&admin.app.pool, std::time::Duration::from_secs(24 * 3600))
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    assert_eq!(admin.count("gateway_nodes").await, 1);
}

#[tokio::test]
async fn removing_a_node_needs_an_editor_and_is_audited() {
    let admin = Admin::spawn().await;
    let node = report(&admin, "gw-dead", 0, 7200.0).await;
    let viewer = admin.user_token("viewer@example.com", "viewer").await;
    let editor = admin.user_token("editor@example.com", "editor").await;
    let path = format!("/nodes/{node}");

    let denied = admin.send_as(Some(&viewer), Method::DELETE, &path, None, None).await;
    assert_problem(&denied, 403, "forbidden");
    assert_eq!(admin.count("gateway_nodes").await, 1, "a refused delete changes nothing");
    assert_eq!(admin.send_as(Some(&editor), Method::DELETE, &path, None, None).await.status, 204);
    assert_eq!(admin.count("gateway_nodes").await, 0);
    assert_problem(&admin.delete(&path, None).await, 404, "not-found");
    assert_problem(&admin.delete("/nodes/not-a-uuid", None).await, 404, "not-found");

    let audit = admin.get(&format!("/audit-log?entity_id={node}")).await;
    let rows = audit.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 1, "{}", audit.body);
    assert_eq!((rows[0]["action"].as_str(), rows[0]["entity_kind"].as_str()), (Some("delete"), Some("gateway_node")));
    assert_eq!(rows[0]["actor_name"], "editor@example.com");
    assert_eq!(rows[0]["before"]["hostname"], "gw-dead");
    let events = admin.get(&format!("/config-events?entity_id={node}")).await;
    assert_eq!(events.body["data"], json!([]), "gateways have nothing to apply");
}
