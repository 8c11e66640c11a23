//! Graceful shutdown: in-flight requests finish, new connections are refused, idle ones are
//! closed, and the drain is bounded.

use std::time::Duration;

use serde_json::json;
use tokio::net::TcpStream;
use tollgate_gateway::ListenerOptions;

use crate::helpers::client::{h2_connection, h2_get};
use crate::helpers::raw::Closed;
use crate::helpers::upstream::text;
use crate::helpers::{Gate, Gateway, Options, Raw, Upstream, WAIT, api, config, eventually, paths, within};

async fn held_upstream(release: Gate) -> Upstream {
    Upstream::start("held", move |req| {
        let release = release.clone();
        async move {
            if req.uri().path() == "/slow" {
                release.wait().await;
            }
            text(200, "done")
        }
    })
    .await
}

async fn gateway(up: &Upstream, drain: Duration) -> Gateway {
    let opts = Options {
        listener: ListenerOptions { drain_timeout: drain, ..ListenerOptions::default() },
        ..Options::default()
    };
    Gateway::start_with(config(vec![api("held", &[up], json!([paths("all", &["/*"])]), json!({}))]), opts).await
}

#[tokio::test]
async fn an_in_flight_request_completes_after_shutdown_while_new_connections_are_refused() {
    let release = Gate::default();
    let up = held_upstream(release.clone()).await;
    let mut gw = gateway(&up, WAIT).await;
    let mut idle = Raw::connect(gw.addr).await;
    idle.send(b"GET /quick HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(idle.response().await.status, 200);
    let mut slow = Raw::connect(gw.addr).await;
    slow.send(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await;
    eventually(WAIT, "the slow request to reach the upstream", || async { up.requests() == 2 }).await;

    gw.begin_shutdown();
    let addr = gw.addr;
    eventually(WAIT, "new connections to be refused", || async move { TcpStream::connect(addr).await.is_err() }).await;
    assert!(
        matches!(idle.closed_within(WAIT).await, Closed::Yes(ref b) if b.is_empty()),
        "idle connections are closed"
    );
    release.open();
    let r = slow.response().await;
    assert_eq!((r.status, r.text().as_str()), (200, "done"), "the in-flight request completed");
    assert!(matches!(slow.closed_within(WAIT).await, Closed::Yes(_)), "and its connection closed after it");
    gw.stopped().await.expect("serve returns once drained");
}

#[tokio::test]
async fn the_drain_is_bounded_by_the_drain_timeout() {
    let never = Gate::default();
    let up = held_upstream(never.clone()).await;
    let mut gw = gateway(&up, Duration::from_millis(500)).await;
    let mut stuck = Raw::connect(gw.addr).await;
    stuck.send(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await;
    eventually(WAIT, "the request to reach the upstream", || async { up.requests() == 1 }).await;
    let started = tokio::time::Instant::now();
    gw.begin_shutdown();
    within(WAIT, "serve to return", gw.stopped()).await.expect("serve");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450), "it waited for the drain timeout: {took:?}");
    never.open();
}

/// HTTP/2: a stream in flight at shutdown completes, the connection then ends (GOAWAY), an
/// idle HTTP/2 connection ends at once, and serve returns.
#[tokio::test]
async fn http2_connections_finish_their_streams_and_end_on_shutdown() {
    use http_body_util::BodyExt;

    let release = Gate::default();
    let up = held_upstream(release.clone()).await;
    let mut gw = gateway(&up, WAIT).await;
    let (_idle_sender, idle_driver) = h2_connection(gw.addr).await;
    let (mut sender, busy_driver) = h2_connection(gw.addr).await;
    let slow = tokio::spawn(sender.send_request(h2_get(gw.addr, "/slow")));
    eventually(WAIT, "the slow request to reach the upstream", || async { up.requests() == 1 }).await;

    gw.begin_shutdown();
    let idle_ended = within(WAIT, "the idle HTTP/2 connection to end", idle_driver).await;
    assert!(idle_ended.expect("task").is_ok(), "ended by GOAWAY");
    assert!(!busy_driver.is_finished(), "the busy connection waits for its stream");
    release.open();
    let res = within(WAIT, "the in-flight stream", slow).await.expect("task").expect("a response");
    assert_eq!(res.status(), 200);
    let body = within(WAIT, "its body", res.into_body().collect()).await.expect("body").to_bytes();
    assert_eq!(&body[..], b"done", "the in-flight stream completed");
    let busy_ended = within(WAIT, "the busy HTTP/2 connection to end", busy_driver).await;
    assert!(busy_ended.expect("task").is_ok(), "ended by GOAWAY after its stream");
    within(WAIT, "serve to return", gw.stopped()).await.expect("serve returns once drained");
}
