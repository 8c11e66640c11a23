//! Every mutation writes an audit row and a config event in the same transaction, and
//! event ids follow commit order (checked through the NOTIFY stream, which is delivered
//! in commit order).

use serde_json::json;
use sqlx::postgres::PgListener;

use crate::helpers::Admin;

#[tokio::test]
async fn every_mutation_is_audited_and_logged_for_gateways() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("orders").await;
    let patched = admin.patch(&format!("/apis/{api}"), json!({"description": "v2"}), None).await;
    assert_eq!(patched.status, 200);
    assert_eq!(admin.delete(&format!("/apis/{api}"), None).await.status, 204);

    let audit = admin.get(&format!("/audit-log?entity_id={api}")).await;
    let rows = audit.body["data"].as_array().cloned().unwrap_or_default();
    let actions: Vec<&str> = rows.iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(actions, ["create", "update", "delete"]);
    assert_eq!(rows[1]["before"]["description"], "");
    assert_eq!(rows[1]["after"]["description"], "v2");
    assert_eq!(rows[0]["actor_name"], admin.app.owner_email);

    let events = admin.get(&format!("/config-events?entity_id={api}")).await;
    let events = events.body["data"].as_array().cloned().unwrap_or_default();
    let ops: Vec<&str> = events.iter().filter_map(|e| e["op"].as_str()).collect();
    assert_eq!(ops, ["create", "update", "delete"]);
    for (event, row) in events.iter().zip(&rows) {
        assert_eq!(event["audit_id"], row["id"], "each event points at its audit row");
    }
    // A no-op patch changes nothing and records nothing.
    let other = admin.create_api("billing").await;
    let before = admin.count("config_events").await;
    assert_eq!(
        admin.patch(&format!("/apis/{other}"), json!({"name": "billing"}), None).await.etag.as_deref(),
        Some("\"1\"")
    );
    assert_eq!(admin.count("config_events").await, before);
}

#[tokio::test]
async fn event_ids_follow_commit_order_under_concurrency() {
    let admin = Admin::spawn().await;
    let mut listener = PgListener::connect_with(&admin.app.pool).await.expect("listener");
    listener.listen("tollgate_config").await.expect("listen");

    let writers = (0..24).map(|i| admin.post("/consumers", json!({"name": format!("app-{i}")})));
    let results = futures::future::join_all(writers).await;
    assert!(results.iter().all(|r| r.status == 201));

    let mut seen = Vec::new();
    while seen.len() < 24 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
            .await
            .expect("notification in time")
            .expect("recv");
        seen.push(n.payload().parse::<i64>().expect("payload is an event id"));
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "notifications (commit order) carry increasing ids: {seen:?}");
    let (max,): (i64,) =
        sqlx::query_as("SELECT max(id) FROM config_events").fetch_one(&admin.app.pool).await.expect("max");
    assert_eq!(seen.last().copied(), Some(max));
}

#[tokio::test]
async fn only_owners_read_audit_rows_about_admin_users_logins_and_tokens() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("orders").await;
    assert_eq!(admin.post("/tokens", json!({"name": "ci"})).await.status, 201);
    let viewer = admin.user_token("viewer@example.com", "viewer").await;
    let editor = admin.user_token("editor@example.com", "editor").await;
    let owner_id = admin.get("/me").await.id();
    let private = ["admin_user", "session", "admin_token"];

    let kinds = |token: Option<String>, query: String| {
        let admin = &admin;
        async move {
            let r =
                admin.send_as(token.as_deref(), reqwest::Method::GET, &format!("/audit-log{query}"), None, None).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let rows = r.body["data"].as_array().cloned().unwrap_or_default();
            rows.iter().map(|row| row["entity_kind"].as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>()
        }
    };
    // The owner sees every kind: the rows exist.
    let all = kinds(None, "?limit=500".into()).await;
    assert!(private.iter().all(|k| all.iter().any(|a| a == k)), "{all:?}");
    for token in [viewer, editor] {
        let seen = kinds(Some(token.clone()), "?limit=500".into()).await;
        assert!(seen.contains(&"api".to_owned()), "the rest stays visible: {seen:?}");
        assert!(!seen.iter().any(|k| private.contains(&k.as_str())), "{seen:?}");
        for kind in private {
            assert!(kinds(Some(token.clone()), format!("?entity_kind={kind}")).await.is_empty(), "{kind}");
        }
        assert!(kinds(Some(token.clone()), format!("?entity_id={owner_id}")).await.is_empty());
        assert_eq!(kinds(Some(token.clone()), format!("?entity_id={api}")).await, ["api"]);
    }
}
