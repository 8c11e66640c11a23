//! PostgreSQL outages, on a private cluster each test stops and starts at will: gateways keep
//! serving what they enforce, start from their last-known-good copy on disk, and when the
//! database returns they catch up from the change log — or reload everything when the log
//! no longer reaches back to where they stopped.

use std::time::Duration;

use crate::support::admin::Admin;
use crate::support::gateway::Gateway;
use crate::support::postgres::{PrivatePostgres, listen_backend};
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// How long a connected node may take to enforce a committed change.
const PROPAGATION: Duration = Duration::from_secs(5);
/// How long a node may take to notice an outage, save its state, or reconnect after one
/// (its reconnection backoff is at most 5 s, and so is its connection timeout).
const RECOVERY: Duration = Duration::from_secs(30);
/// The log line of every full load (from PostgreSQL or from disk).
const FULL_LOAD: &str = "configuration loaded";
/// A node's last-known-good configuration, inside its state directory.
const STATE_FILE: &str = "gateway-config.json";

#[tokio::test]
async fn gateways_serve_through_a_postgres_outage_and_apply_changes_after_it() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let mut pg = PrivatePostgres::start(&scratch.path().join("pg")).await?;
    let admin = Admin::start(pg.url()).await?;
    let upstream = Upstream::start("outage").await?;
    let (dir1, dir2) = (scratch.path().join("node1"), scratch.path().join("node2"));
    let (survivor, restarted) = (Gateway::start(pg.url(), &dir1).await?, Gateway::start(pg.url(), &dir2).await?);
    let (api, route) = admin.publish("outage", upstream.addr, &["/before"]).await?;
    let event = admin.last_event_id().await?;
    for gw in [&survivor, &restarted] {
        gw.wait_routed("/before", &upstream.body_for("/before"), PROPAGATION).await?;
    }

    pg.stop().await;
    survivor.wait_logged("lost PostgreSQL", 1, RECOVERY).await?;
    for _ in 0..10 {
        assert_eq!(survivor.get("/before").await?, (200, upstream.body_for("/before")), "served during the outage");
    }
    // What a node enforces reaches its disk, so a restart in the outage serves it too.
    restarted.wait_saved(event, RECOVERY).await?;
    let status = restarted.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    let restarted = Gateway::start(pg.url(), &dir2).await?;
    assert_eq!(restarted.config_event_id().await?, event);
    assert_eq!(restarted.get("/before").await?, (200, upstream.body_for("/before")), "started from disk");
    restarted.wait_logged("configuration from disk", 1, PROPAGATION).await?;

    pg.restart().await?;
    // The admin's pool may still hold connections from before the restart: retry the write.
    eventually("the admin to write again", RECOVERY, || async {
        admin.set_route_paths(&api, &route, &["/after"]).await.map_err(|e| format!("{e:#}"))
    })
    .await?;
    let last = admin.last_event_id().await?;
    for gw in [&survivor, &restarted] {
        gw.wait_routed("/after", &upstream.body_for("/after"), RECOVERY).await?;
        assert_eq!(gw.get("/before").await?.0, 404);
        assert_eq!(gw.config_event_id().await?, last);
    }

    // Back to normal: a dropped connection is re-established at once, not after the
    // outage's backoff, and changes flow again.
    let pool = sqlx::PgPool::connect(pg.url()).await?;
    let status = restarted.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    let killed = listen_backend(&pool, None, PROPAGATION).await?;
    sqlx::query("SELECT pg_terminate_backend($1)").bind(killed).execute(&pool).await?;
    listen_backend(&pool, Some(killed), Duration::from_secs(3)).await?;
    admin.set_route_paths(&api, &route, &["/again"]).await?;
    survivor.wait_routed("/again", &upstream.body_for("/again"), PROPAGATION).await?;

    pool.close().await;
    let status = survivor.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    pg.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_node_started_from_disk_catches_up_from_its_last_event() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let mut pg = PrivatePostgres::start(&scratch.path().join("pg")).await?;
    let admin = Admin::start(pg.url()).await?;
    let upstream = Upstream::start("resume").await?;
    let dir = scratch.path().join("node");
    let gw = Gateway::start(pg.url(), &dir).await?;
    let (api, route) = admin.publish("resume", upstream.addr, &["/one"]).await?;
    let applied = admin.last_event_id().await?;
    gw.wait_routed("/one", &upstream.body_for("/one"), PROPAGATION).await?;
    gw.wait_saved(applied, RECOVERY).await?;
    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    // A second copy of the stopped node's state, for a restart while PostgreSQL is down.
    let copy = scratch.path().join("copy");
    std::fs::create_dir(&copy)?;
    std::fs::copy(dir.join(STATE_FILE), copy.join(STATE_FILE))?;

    // Changes while the node is down.
    admin.set_route_paths(&api, &route, &["/two"]).await?;
    admin.add_route(&api, "three", &["/three"]).await?;
    let last = admin.last_event_id().await?;

    // With PostgreSQL up, a stale copy on disk never wins: the node loads the current state.
    let gw = Gateway::start(pg.url(), &dir).await?;
    assert_eq!(gw.config_event_id().await?, last);
    assert_eq!(gw.get("/two").await?, (200, upstream.body_for("/two")));
    assert_eq!(gw.get("/one").await?.0, 404);
    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");

    // With PostgreSQL down, it starts from the copy; when PostgreSQL returns, it applies the
    // events after the one it had applied.
    pg.stop().await;
    let gw = Gateway::start(pg.url(), &copy).await?;
    assert_eq!(gw.config_event_id().await?, applied);
    assert_eq!(gw.get("/one").await?, (200, upstream.body_for("/one")), "served from disk");
    assert_eq!(gw.get("/two").await?.0, 404);
    pg.restart().await?;
    gw.wait_routed("/two", &upstream.body_for("/two"), RECOVERY).await?;
    assert_eq!(gw.get("/three").await?, (200, upstream.body_for("/three")));
    assert_eq!(gw.get("/one").await?.0, 404);
    assert_eq!(gw.config_event_id().await?, last);
    gw.wait_logged("configuration from disk", 1, PROPAGATION).await?;
    let log = gw.stderr();
    assert_eq!(log.matches(FULL_LOAD).count(), 1, "one load (from disk), then the change log:\n{log}");

    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    pg.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_node_behind_a_pruned_change_log_reloads_everything() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let mut pg = PrivatePostgres::start(&scratch.path().join("pg")).await?;
    let admin = Admin::start(pg.url()).await?;
    let upstream = Upstream::start("pruned").await?;
    // `empty` saw no configuration at all (event 0); `behind` saw the first version.
    let (empty_dir, behind_dir) = (scratch.path().join("empty"), scratch.path().join("behind"));
    let empty = Gateway::start(pg.url(), &empty_dir).await?;
    empty.wait_saved(0, RECOVERY).await?;
    let status = empty.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    let behind = Gateway::start(pg.url(), &behind_dir).await?;
    let (api, route) = admin.publish("pruned", upstream.addr, &["/old"]).await?;
    let applied = admin.last_event_id().await?;
    behind.wait_routed("/old", &upstream.body_for("/old"), PROPAGATION).await?;
    behind.wait_saved(applied, RECOVERY).await?;
    let status = behind.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");

    admin.set_route_paths(&api, &route, &["/new"]).await?;
    admin.add_route(&api, "more", &["/more"]).await?;
    let last = admin.last_event_id().await?;
    // Pruning keeps only the newest event: neither node can catch up from the log.
    let pruned = sqlx::query("DELETE FROM config_events WHERE id < $1").bind(last).execute(&admin.pool).await?;
    assert!(pruned.rows_affected() >= 4, "pruned {} events", pruned.rows_affected());

    pg.stop().await;
    let empty = Gateway::start(pg.url(), &empty_dir).await?;
    let behind = Gateway::start(pg.url(), &behind_dir).await?;
    assert_eq!((empty.config_event_id().await?, behind.config_event_id().await?), (0, applied));
    assert_eq!(behind.get("/old").await?, (200, upstream.body_for("/old")), "served from disk");
    pg.restart().await?;
    for gw in [&empty, &behind] {
        gw.wait_routed("/new", &upstream.body_for("/new"), RECOVERY).await?;
        assert_eq!(gw.get("/more").await?, (200, upstream.body_for("/more")));
        assert_eq!(gw.get("/old").await?.0, 404);
        assert_eq!(gw.config_event_id().await?, last);
        // From disk, then reloaded from PostgreSQL.
        gw.wait_logged(FULL_LOAD, 2, PROPAGATION).await?;
        let log = gw.stderr();
        assert_eq!(log.matches(FULL_LOAD).count(), 2, "no other load:\n{log}");
    }

    for gw in [empty, behind] {
        let status = gw.stop("TERM").await?;
        assert!(status.success(), "exit {status:?}");
    }
    pg.stop().await;
    Ok(())
}
