//! Graceful shutdown of a gateway node: on SIGTERM it stops accepting, finishes the requests
//! in flight and exits 0 — a rolling restart behind a load balancer loses no request.

use std::time::{Duration, Instant};

use tollgate_admin::testkit::test_database;

use crate::support::admin::Admin;
use crate::support::gateway::Gateway;
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// How long the upstream holds the in-flight request.
const SLOW_MS: u64 = 3_000;

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_and_exits_zero() -> anyhow::Result<()> {
    let db = test_database().await;
    let admin = Admin::start(&db.url).await?;
    let scratch = ScratchDir::new()?;
    let upstream = Upstream::start("slow").await?;
    let mut gw = Gateway::start(&db.url, scratch.path()).await?;
    admin.publish("slow", upstream.addr, &["/slow"]).await?;
    gw.wait_routed("/slow", &upstream.body_for("/slow"), Duration::from_secs(5)).await?;

    let before = upstream.requests_seen();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build()?;
    let request = client.get(gw.url(&format!("/slow?ms={SLOW_MS}"))).send();
    let in_flight = tokio::spawn(async move {
        let res = request.await?;
        anyhow::Ok((res.status().as_u16(), res.text().await?))
    });
    eventually("the slow request to reach the upstream", Duration::from_secs(5), || async {
        let seen = upstream.requests_seen();
        if seen > before { Ok(()) } else { Err(format!("{seen} requests")) }
    })
    .await?;

    let signalled = Instant::now();
    gw.signal("TERM").await?;
    // It stops accepting at once, while the request is still being served.
    let fresh = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build()?;
    let health = gw.url(tollgate_gateway::HEALTH_PATH);
    eventually("new connections to be refused", Duration::from_millis(SLOW_MS / 2), || async {
        match fresh.get(&health).timeout(Duration::from_millis(500)).send().await {
            Err(e) if e.is_connect() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;

    let (status, body) = in_flight.await??;
    assert_eq!((status, body), (200, upstream.body_for("/slow")), "the request in flight completed");
    let exit = gw.wait_exit().await?;
    assert!(exit.success(), "exit {exit:?}; stderr:\n{}", gw.stderr());
    // Done when drained, not at the drain deadline (20 s for these nodes).
    assert!(signalled.elapsed() < Duration::from_secs(15), "exited {:?} after SIGTERM", signalled.elapsed());
    gw.wait_logged("connections drained", 1, Duration::from_secs(5)).await?;
    Ok(())
}
