//! Honest propagation across a fleet of real `tollgate gateway` processes: a node keeps its
//! id across restarts (one row in `/nodes`, its id in PostgreSQL's `application_name`); a node
//! cut off from PostgreSQL (its database role disabled, its connections killed) is reported
//! behind — pending, then unreachable — on every later event until it catches up, and with
//! `--max-config-staleness` it refuses a revoked key (503) and says why in its readiness
//! answer instead of trusting its old configuration.

use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sqlx::PgPool;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tollgate_admin::testkit::test_database;

use crate::support::admin::Admin;
use crate::support::gateway::{Gateway, Reply};
use crate::support::postgres::PrivatePostgres;
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// How long a committed change may take to be enforced by a connected node.
const PROPAGATION: Duration = Duration::from_secs(5);
/// The admin's live window in the partition test: above the 5 s heartbeat, small enough
/// for the test to see a node turn unreachable quickly.
const LIVE_WINDOW: Duration = Duration::from_secs(8);
/// The partitioned node's `--max-config-staleness`.
const STALENESS: Duration = Duration::from_secs(2);
/// How long a node may take to reconnect once its role may log in again (backoff ≤ 5 s).
const RECOVERY: Duration = Duration::from_secs(20);
/// The partitioned node's own database role (also spelt out in the role statements).
const CUT_ROLE: &str = "gw_cut";

#[tokio::test]
async fn a_restarted_gateway_keeps_its_id_and_is_listed_once() -> anyhow::Result<()> {
    let OneNode { db, admin, upstream, dir, gateway: first, _scratch } = OneNode::start("restart", "/r").await?;
    let id = first.node_id.clone();
    let before = the_only_node(&admin, &id, |_| true).await?;
    first.wait_routed("/r", &upstream.body_for("/r"), PROPAGATION).await?;
    let status = first.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    let counted = flushed_requests(&admin.pool, &id).await?;
    assert!(counted >= 1, "the first process wrote its usage at shutdown");

    let second = Gateway::start(&db.url, &dir).await?;
    assert_eq!(second.node_id, id, "the id is kept in the state directory");
    let started_before = rfc3339(&before["started_at"])?;
    let listen = second.addr.to_string();
    let after = the_only_node(&admin, &id, |n| {
        n["listen"] == listen.as_str() && rfc3339(&n["started_at"]).is_ok_and(|t| t > started_before)
    })
    .await?;
    assert_eq!(after["live"], true, "{after}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("node-id"))?.permissions());
    assert_eq!(mode & 0o777, 0o600, "the id file is the node's own");

    let name = format!("tollgate-gateway {id}");
    eventually(&format!("a connection named {name:?}"), PROPAGATION, || async {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&name)
            .fetch_one(&admin.pool)
            .await
            .map_err(|e| e.to_string())?;
        if n > 0 { Ok(()) } else { Err("none".to_owned()) }
    })
    .await?;
    // Same id, new process: its usage batches are new ones, not retries of the old ones.
    for _ in 0..3 {
        assert_eq!(second.get("/r").await?.0, 200);
    }
    let status = second.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    assert_eq!(flushed_requests(&admin.pool, &id).await?, counted + 3, "the restarted node's usage counts");
    Ok(())
}

/// Two processes on one state directory would be one node to the control plane (one row,
/// usage batches numbered alike): the second refuses to start and says why, and the first
/// serves on.
#[tokio::test]
async fn a_second_gateway_on_the_same_state_directory_refuses_to_start() -> anyhow::Result<()> {
    let OneNode { db, admin: _admin, upstream, dir, gateway: first, _scratch } = OneNode::start("shared", "/s").await?;
    first.wait_routed("/s", &upstream.body_for("/s"), PROPAGATION).await?;

    let mut second = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"));
    second.args(["gateway", "--listen", "127.0.0.1:0", "--database-url", &db.url]).arg("--state-dir").arg(&dir);
    second.env_remove("TOLLGATE_GATEWAY_CONFIG").env_remove("DATABASE_URL").kill_on_drop(true);
    let out =
        tokio::time::timeout(Duration::from_secs(30), second.output()).await.context("the second gateway ran on")??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "the second gateway started: {stderr}");
    let pid = first.pid()?;
    ensure!(
        stderr.contains(&format!("is in use by gateway process {pid}")) && stderr.contains("--state-dir"),
        "{stderr}"
    );
    assert_eq!(first.get("/s").await?.0, 200, "the first gateway serves on");
    let status = first.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    Ok(())
}

/// A database, its admin, an upstream published as API `name` on `path`, and one gateway
/// process with its own state directory `dir`. Bind every field where it is taken apart: one
/// left to `..` is dropped at once, and the scratch directory (the state directory) with it.
struct OneNode {
    db: tollgate_admin::testkit::TestDatabase,
    admin: Admin,
    upstream: Upstream,
    dir: std::path::PathBuf,
    gateway: Gateway,
    _scratch: ScratchDir,
}

impl OneNode {
    async fn start(name: &str, path: &str) -> anyhow::Result<Self> {
        let db = test_database().await;
        let admin = Admin::start(&db.url).await?;
        let scratch = ScratchDir::new()?;
        let upstream = Upstream::start(name).await?;
        admin.publish(name, upstream.addr, &[path]).await?;
        let dir = scratch.path().join("node");
        let gateway = Gateway::start(&db.url, &dir).await?;
        Ok(Self { db, admin, upstream, dir, gateway, _scratch: scratch })
    }
}

/// Requests in the usage batches node `id` has written.
async fn flushed_requests(pool: &PgPool, id: &str) -> anyhow::Result<i64> {
    let (n,): (Option<i64>,) =
        sqlx::query_as("SELECT sum(requests)::bigint FROM usage_flushes WHERE node_id = $1::uuid")
            .bind(id)
            .fetch_one(pool)
            .await?;
    Ok(n.unwrap_or(0))
}

/// Waits until `/nodes` lists exactly one node, `id`, in a state `ready` accepts; returns it.
async fn the_only_node(admin: &Admin, id: &str, ready: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    eventually(&format!("/nodes to list {id} alone"), PROPAGATION, || async {
        let listed = admin.get("/nodes").await.map_err(|e| format!("{e:#}"))?;
        match listed["data"].as_array().map(Vec::as_slice) {
            Some([node]) if node["id"] == id && ready(node) => Ok(node.clone()),
            _ => Err(listed.to_string()),
        }
    })
    .await
}

fn rfc3339(v: &Value) -> anyhow::Result<OffsetDateTime> {
    Ok(OffsetDateTime::parse(v.as_str().context("not a string")?, &Rfc3339)?)
}

/// The acceptance scenario of issue 16: a partitioned node is reported behind on every later
/// event until it catches up, and past its staleness bound it refuses the revoked key.
#[tokio::test]
async fn a_partitioned_node_is_reported_behind_and_refuses_credentials_once_stale() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let pg = PrivatePostgres::start(&scratch.path().join("pg")).await?;
    let admin = Admin::start_with(pg.url(), |c| c.nodes.live = LIVE_WINDOW).await?;
    let upstream = Upstream::start("fleet").await?;
    let superuser = PgPool::connect(pg.url()).await?;
    let cut_url = node_role(&superuser, pg.url()).await?;

    let api = admin.create_api_with(json!({"name": "keyed", "auth_methods": ["key_auth"]})).await?;
    admin.add_target(&api, upstream.addr).await?;
    admin.add_route(&api, "keyed-route", &["/keyed"]).await?;
    admin.publish("open", upstream.addr, &["/open"]).await?;
    let plan = admin.create_plan(&api, json!({"name": "free"})).await?;
    let consumer = admin.create_consumer(json!({"name": "acme"})).await?;
    let (key_id, key) = admin.create_key(&consumer).await?;
    admin.subscribe(&consumer, &plan).await?;

    let healthy = Gateway::start(pg.url(), &scratch.path().join("healthy")).await?;
    let cut = Gateway::start_with(&cut_url, &scratch.path().join("cut"), |cmd| {
        cmd.args(["--max-config-staleness", &format!("{}s", STALENESS.as_secs())]);
        cmd.args(["--metrics-listen", "127.0.0.1:0"]);
    })
    .await?;
    let with_key = [("x-api-key", key.as_str())];
    for node in [&healthy, &cut] {
        answers(node, "/keyed", &with_key, 200, PROPAGATION).await?;
    }

    eventually("both nodes to report", PROPAGATION, || async {
        let listed = admin.get("/nodes").await.map_err(|e| format!("{e:#}"))?;
        let n = listed["data"].as_array().map_or(0, Vec::len);
        if n == 2 { Ok(()) } else { Err(format!("{listed}; the cut node's log:\n{}", cut.stderr())) }
    })
    .await?;

    // The partition: the node's role may no longer log in, and its sessions are ended.
    sqlx::query("ALTER ROLE gw_cut NOLOGIN").execute(&superuser).await?;
    let cut_at = std::time::Instant::now();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
        .bind(CUT_ROLE)
        .execute(&superuser)
        .await?;
    admin.revoke_key(&consumer, &key_id).await?;
    let revoked = admin.last_event_id().await?;
    answers(&healthy, "/keyed", &with_key, 401, PROPAGATION).await?;

    // Behind, and first still counted as live: pending, never complete.
    let report = wait_report(&admin, revoked, |p| p["applied"] == 1).await?;
    check_behind(&report, &cut.node_id, "pending", 2)?;

    // Past the staleness bound it refuses credentials and says why; anonymous calls go on.
    let refused = answers(&cut, "/keyed", &with_key, 503, STALENESS + PROPAGATION).await?;
    // Not before the bound: the node confirms every quarter of it, so at the earliest 3/4 of
    // the bound after the cut.
    let waited = cut_at.elapsed();
    eprintln!("the cut node refused credentials {waited:?} after the partition (bound {STALENESS:?})");
    assert!(waited >= STALENESS * 3 / 4, "refused after {waited:?}, before the bound");
    ensure!(refused.problem_type().as_deref() == Some("urn:tollgate:problem:config-stale"), "{refused:?}");
    assert_eq!(cut.get("/open").await?, (200, upstream.body_for("/open")), "anonymous routes keep working");
    let ready = cut.request(tollgate_gateway::READY_PATH, &[]).await?;
    assert_eq!(ready.status, 503, "{ready:?}");
    let ready: Value = serde_json::from_str(&ready.body)?;
    assert_eq!(ready["status"], "stale", "{ready}");
    let reason = ready["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("PostgreSQL") && reason.contains("max-config-staleness"), "{reason}");
    assert_eq!(healthy.request(tollgate_gateway::READY_PATH, &[]).await?.status, 200);
    // The same on the metrics port's probes, where no API route can shadow them.
    let (status, ready) = cut.ops("/health/ready").await?;
    assert_eq!((status, &ready["status"]), (503, &json!("stale")), "{ready}");
    assert_eq!(cut.ops("/health/live").await?, (200, json!({"status": "live"})), "live while stale");

    // Silent past the live window: unreachable, on this event and every later one.
    let report = wait_report(&admin, revoked, |p| p["behind"][0]["state"] == "unreachable").await?;
    check_behind(&report, &cut.node_id, "unreachable", 2)?;
    admin.add_route(&api, "later-route", &["/later"]).await?;
    let later = admin.last_event_id().await?;
    let report = wait_report(&admin, later, |p| p["applied"] == 1).await?;
    check_behind(&report, &cut.node_id, "unreachable", 2)?;
    let live = tollgate_admin::nodes::Live::of_event(&admin.pool, &admin_windows(), later).await?;
    assert!(!live.done, "{live:?}");
    assert!(
        live.text.starts_with("Live on 1 of 2 gateways; ") && live.text.contains(" unreachable since "),
        "{live:?}"
    );

    // Healed: it catches up, accepts calls again (and refuses the revoked key as such).
    sqlx::query("ALTER ROLE gw_cut LOGIN").execute(&superuser).await?;
    let report = wait_report(&admin, later, |p| p["complete"] == true).await?;
    assert_eq!((report["applied"].as_u64(), report["nodes"].as_u64()), (Some(2), Some(2)), "{report}");
    assert_eq!(report["behind"], json!([]));
    answers(&cut, tollgate_gateway::READY_PATH, &[], 200, RECOVERY).await?;
    let (status, ready) = cut.ops("/health/ready").await?;
    assert_eq!((status, &ready["status"]), (200, &json!("ready")), "{ready}");
    assert_eq!(cut.request("/keyed", &with_key).await?.status, 401, "the revocation reached it");

    superuser.close().await;
    for node in [healthy, cut] {
        let status = node.stop("TERM").await?;
        assert!(status.success(), "exit {status:?}");
    }
    Ok(())
}

/// Waits until `node` answers `GET path` with `headers` by `status`; returns the reply.
async fn answers(
    node: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
    within: Duration,
) -> anyhow::Result<Reply> {
    eventually(&format!("GET {path} on {} to answer {status}", node.addr), within, || async {
        let r = node.request(path, headers).await.map_err(|e| format!("{e:#}"))?;
        if r.status == status { Ok(r) } else { Err(format!("{r:?}")) }
    })
    .await
}

/// The admin's node windows in this test.
fn admin_windows() -> tollgate_admin::nodes::NodeWindows {
    tollgate_admin::nodes::NodeWindows { live: LIVE_WINDOW, ..Default::default() }
}

/// Creates the partitioned node's own login role (reads and writes what a gateway does) and
/// returns the database URL for it.
async fn node_role(superuser: &PgPool, url: &str) -> anyhow::Result<String> {
    sqlx::query("CREATE ROLE gw_cut LOGIN IN ROLE pg_read_all_data, pg_write_all_data").execute(superuser).await?;
    let (scheme, rest) = url.split_once("://").context("no scheme")?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    Ok(format!("{scheme}://{CUT_ROLE}@{host}"))
}

/// Waits until the propagation report of `event` satisfies `done`; returns it.
async fn wait_report(admin: &Admin, event: i64, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let path = format!("/config-events/{event}/propagation");
    eventually(&format!("the report of event {event}"), LIVE_WINDOW + RECOVERY, || async {
        let p = admin.get(&path).await.map_err(|e| format!("{e:#}"))?;
        if done(&p) { Ok(p) } else { Err(p.to_string()) }
    })
    .await
}

/// The report counts `nodes` nodes, is not complete, and names `node` alone as behind in `state`.
fn check_behind(report: &Value, node: &str, state: &str, nodes: u64) -> anyhow::Result<()> {
    ensure!(report["complete"] == false, "complete while a node is behind: {report}");
    ensure!(report["nodes"] == nodes && report["live"] == nodes, "{nodes} nodes counted: {report}");
    ensure!(report["applied"] == nodes - 1, "{report}");
    ensure!(report["pending_nodes"] == json!([node]), "{report}");
    let behind = &report["behind"][0];
    ensure!(behind["id"] == node && behind["state"] == state, "{node} {state}: {report}");
    ensure!(behind["applied_event_id"].as_i64().is_some_and(|e| e < report["event_id"].as_i64().unwrap_or(0)));
    rfc3339(&behind["last_seen_at"])?;
    Ok(())
}
