//! Live configuration across the planes: a change made through the admin REST API is
//! enforced by real gateway processes, its propagation is observable ("reached 3 of 3"),
//! and a killed notification connection loses no change.
//!
//! Deadlines are generous on purpose: they catch a change that never arrives, not a slow
//! one. Propagation latency is measured in the benchmark (`bench/`), not asserted here.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use tollgate_admin::testkit::test_database;

use crate::support::admin::Admin;
use crate::support::gateway::Gateway;
use crate::support::postgres::listen_backend;
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// How long a committed change may take to be enforced by a connected node.
const PROPAGATION: Duration = Duration::from_secs(5);
/// How long a node may take to listen again after its connection was dropped (a first
/// retry comes after 100 ms).
const RECONNECT: Duration = Duration::from_secs(3);

#[tokio::test]
async fn admin_changes_are_enforced_by_the_gateway() -> anyhow::Result<()> {
    let db = test_database().await;
    let admin = Admin::start(&db.url).await?;
    let scratch = ScratchDir::new()?;
    let (first, second) = (Upstream::start("first").await?, Upstream::start("second").await?);
    let gw = Gateway::start(&db.url, scratch.path()).await?;
    assert_eq!(gw.get("/orders/42").await?.0, 404, "nothing is configured yet");

    let api = admin.create_api("shop").await?;
    let target = admin.add_target(&api, first.addr).await?;
    let route = admin.add_route(&api, "orders", &["/orders/*"]).await?;
    gw.wait_routed("/orders/42", &first.body_for("/orders/42"), PROPAGATION).await?;

    admin.set_route_paths(&api, &route, &["/purchases/*"]).await?;
    gw.wait_routed("/purchases/42", &first.body_for("/purchases/42"), PROPAGATION).await?;
    assert_eq!(gw.get("/orders/42").await?.0, 404, "the old path is gone with the same change");

    admin.move_target(&api, &target, second.addr).await?;
    gw.wait_routed("/purchases/7", &second.body_for("/purchases/7"), PROPAGATION).await?;

    admin.delete_route(&api, &route).await?;
    gw.wait_status("/purchases/7", 404, PROPAGATION).await?;
    let (_, problem) = gw.get("/purchases/7").await?;
    assert!(problem.contains("urn:tollgate:problem:no-route"), "the gateway's own 404: {problem}");
    assert_eq!(gw.config_event_id().await?, admin.last_event_id().await?);

    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    Ok(())
}

#[tokio::test]
async fn three_nodes_report_that_a_change_reached_all_of_them() -> anyhow::Result<()> {
    let db = test_database().await;
    let admin = Admin::start(&db.url).await?;
    let scratch = ScratchDir::new()?;
    let upstream = Upstream::start("fleet").await?;
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(Gateway::start(&db.url, &scratch.path().join(format!("node{i}"))).await?);
    }

    admin.publish("fleet", upstream.addr, &["/fleet"]).await?;
    let event = admin.last_event_id().await?;
    let path = format!("/config-events/{event}/propagation");
    let reached = eventually(&format!("event {event} to reach 3 of 3 live nodes"), PROPAGATION, || async {
        let p = admin.get(&path).await.map_err(|e| e.to_string())?;
        if p["applied"] == 3 && p["live"] == 3 { Ok(p) } else { Err(p.to_string()) }
    })
    .await?;
    assert_eq!(reached["pending_nodes"], serde_json::json!([]), "{reached}");
    // A node reports an event only once it enforces it: no polling from here on.
    for node in &nodes {
        assert_eq!(node.get("/fleet").await?, (200, upstream.body_for("/fleet")), "node {}", node.addr);
    }

    let listed = admin.get("/nodes").await?;
    let listed = listed["data"].as_array().context("no node list")?;
    let ids: BTreeSet<&str> = listed.iter().filter_map(|n| n["id"].as_str()).collect();
    let expected: BTreeSet<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, expected, "{listed:?}");
    for n in listed {
        assert_eq!((n["live"].as_bool(), n["applied_event_id"].as_i64()), (Some(true), Some(event)), "{n}");
        assert_eq!(n["config_source"], "postgres");
        let node = nodes.iter().find(|g| Some(g.node_id.as_str()) == n["id"].as_str()).context("unknown node")?;
        assert_eq!(n["listen"], node.addr.to_string());
    }

    for node in nodes {
        let status = node.stop("TERM").await?;
        assert!(status.success(), "exit {status:?}");
    }
    Ok(())
}

#[tokio::test]
async fn killed_notification_connection_loses_no_change() -> anyhow::Result<()> {
    let db = test_database().await;
    let admin = Admin::start(&db.url).await?;
    let scratch = ScratchDir::new()?;
    let upstream = Upstream::start("notify").await?;
    let gw = Gateway::start(&db.url, scratch.path()).await?;
    let (api, route) = admin.publish("notify", upstream.addr, &["/v0"]).await?;
    gw.wait_routed("/v0", &upstream.body_for("/v0"), PROPAGATION).await?;

    let killed = listen_backend(&db.pool, None, RECONNECT).await?;
    let (terminated,): (bool,) =
        sqlx::query_as("SELECT pg_terminate_backend($1)").bind(killed).fetch_one(&db.pool).await?;
    assert!(terminated, "backend {killed} was not terminated");
    // Right away, while the node reconnects: these notifications reach no one.
    for v in 1..=5 {
        admin.set_route_paths(&api, &route, &[&format!("/v{v}")]).await?;
    }
    admin.add_route(&api, "extra", &["/extra"]).await?;

    gw.wait_routed("/v5", &upstream.body_for("/v5"), PROPAGATION).await?;
    gw.wait_routed("/extra", &upstream.body_for("/extra"), PROPAGATION).await?;
    for v in 0..5 {
        assert_eq!(gw.get(&format!("/v{v}")).await?.0, 404, "/v{v} was replaced");
    }
    assert_eq!(gw.config_event_id().await?, admin.last_event_id().await?);
    gw.wait_logged("lost PostgreSQL", 1, PROPAGATION).await?;

    // It listens again, on a new connection, and later changes arrive as before.
    let mut listening = listen_backend(&db.pool, Some(killed), RECONNECT).await?;
    admin.set_route_paths(&api, &route, &["/v6"]).await?;
    gw.wait_routed("/v6", &upstream.body_for("/v6"), PROPAGATION).await?;

    // Every drop is retried at once: the reconnection backoff starts over once connected.
    for drop in 1..=8 {
        sqlx::query("SELECT pg_terminate_backend($1)").bind(listening).execute(&db.pool).await?;
        listening = listen_backend(&db.pool, Some(listening), RECONNECT)
            .await
            .with_context(|| format!("after drop {drop}; log:\n{}", gw.stderr()))?;
    }
    admin.set_route_paths(&api, &route, &["/v7"]).await?;
    gw.wait_routed("/v7", &upstream.body_for("/v7"), PROPAGATION).await?;

    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    Ok(())
}
