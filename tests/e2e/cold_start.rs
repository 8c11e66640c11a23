//! A node started while PostgreSQL is unreachable: it serves its last-known-good copy at
//! once, whether PostgreSQL refuses (nothing listens) or never answers (a listener that
//! accepts and stays silent), instead of first waiting out a connect timeout; a damaged copy
//! is refused and the node waits for PostgreSQL, answering 503, rather than serve garbage.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::support::admin::Admin;
use crate::support::gateway::Gateway;
use crate::support::postgres::PrivatePostgres;
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// How long a connected node may take to enforce a committed change, or to save it.
const PROPAGATION: Duration = Duration::from_secs(30);
/// Well below the 5 s a node waits for a PostgreSQL connection before giving up on it: a
/// node serving within this waited for neither a refusal's retry nor a silent server.
const AT_ONCE: Duration = Duration::from_millis(2500);
const STATE_FILE: &str = "gateway-config.json";

/// A node of `pg` with one published route `/cold`, stopped once its copy holds the route.
async fn node_with_a_copy(scratch: &ScratchDir, upstream: &Upstream) -> anyhow::Result<(PrivatePostgres, Admin)> {
    let pg = PrivatePostgres::start(&scratch.path().join("pg")).await?;
    let admin = Admin::start(pg.url()).await?;
    let gw = Gateway::start(pg.url(), &scratch.path().join("node")).await?;
    admin.publish("cold", upstream.addr, &["/cold"]).await?;
    gw.wait_routed("/cold", &upstream.body_for("/cold"), PROPAGATION).await?;
    gw.wait_saved(admin.last_event_id().await?, PROPAGATION).await?;
    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    Ok((pg, admin))
}

/// Starts a node on `database_url` and times it from spawn to its first routed answer.
async fn first_routed(
    database_url: &str,
    scratch: &ScratchDir,
    upstream: &Upstream,
) -> anyhow::Result<(Gateway, Duration)> {
    let started = Instant::now();
    let gw = Gateway::launch(database_url, &scratch.path().join("node"), |_| {}).await?;
    gw.wait_routed("/cold", &upstream.body_for("/cold"), PROPAGATION).await?;
    Ok((gw, started.elapsed()))
}

#[tokio::test]
async fn a_node_serves_its_copy_at_once_when_postgres_refuses_or_stays_silent() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let upstream = Upstream::start("cold").await?;
    let (mut pg, _admin) = node_with_a_copy(&scratch, &upstream).await?;
    pg.stop().await;

    // Refusing: a port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
    let (gw, took) =
        first_routed(&format!("postgres://postgres@127.0.0.1:{closed}/postgres"), &scratch, &upstream).await?;
    assert!(took < AT_ONCE, "first routed answer {took:?} after start:\n{}", gw.stderr());
    gw.wait_logged("configuration from disk", 1, PROPAGATION).await?;
    assert!(gw.stderr().contains("PostgreSQL unavailable at start"), "{}", gw.stderr());
    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");

    // Silent: accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await?;
    let port = silent.local_addr()?.port();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let (gw, took) =
        first_routed(&format!("postgres://postgres@127.0.0.1:{port}/postgres"), &scratch, &upstream).await?;
    assert!(took < AT_ONCE, "first routed answer {took:?} after start:\n{}", gw.stderr());
    assert!(gw.stderr().contains("PostgreSQL did not answer in time"), "{}", gw.stderr());
    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    held.abort();
    Ok(())
}

#[tokio::test]
async fn a_damaged_copy_is_refused_and_the_node_waits_for_postgres() -> anyhow::Result<()> {
    let scratch = ScratchDir::new()?;
    let upstream = Upstream::start("cold").await?;
    let (mut pg, admin) = node_with_a_copy(&scratch, &upstream).await?;
    let path = scratch.path().join("node").join(STATE_FILE);
    let mut bytes = std::fs::read(&path)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&path, &bytes)?;
    let event = admin.last_event_id().await?;
    pg.stop().await;

    let gw = Gateway::launch(pg.url(), &scratch.path().join("node"), |_| {}).await?;
    gw.wait_logged("cannot be used", 1, PROPAGATION).await?;
    // (Where the flipped byte lands decides which check sees it first: the checksum, or a
    // row that no longer decodes. Either way the copy is refused whole.)
    let log = gw.stderr();
    let why = ["checksum mismatch", "a record ", "is truncated", "does not end where its tables do", "over the limit"];
    assert!(why.iter().any(|w| log.contains(w)), "{log}");
    let health = gw.get(tollgate_gateway::HEALTH_PATH).await?;
    assert_eq!(health.0, 503, "{health:?}");
    assert!(health.1.contains("loading"), "{health:?}");
    assert_eq!(gw.get("/cold").await?.0, 503, "nothing served from a damaged copy");

    pg.restart().await?;
    gw.wait_routed("/cold", &upstream.body_for("/cold"), PROPAGATION).await?;
    eventually("the node to report the current event", PROPAGATION, || async {
        match gw.config_event_id().await {
            Ok(id) if id == event => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    // Its next save replaces the damaged copy with a sound one.
    gw.wait_saved(event, PROPAGATION).await?;
    let status = gw.stop("TERM").await?;
    assert!(status.success(), "exit {status:?}");
    pg.stop().await;
    Ok(())
}
