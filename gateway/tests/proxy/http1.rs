//! The gateway's own HTTP/1.1 server side, on the wire: keep-alive and pipelining,
//! `Expect: 100-continue`, HTTP/1.0 clients, `HEAD`, `Host` rules, request bodies left
//! unread, and the `Date` of the gateway's own answers.

use std::time::Duration;

use serde_json::json;

use crate::helpers::raw::Closed;
use crate::helpers::{Gateway, Raw, Upstream, WAIT, api, config, paths};

async fn echo_gateway() -> (Gateway, Upstream) {
    let up = Upstream::echo("echo").await;
    let gw = Gateway::start(config(vec![api("echo", &[&up], json!([paths("all", &["/e/*"])]), json!({}))])).await;
    (gw, up)
}

/// A new connection that has sent `bytes`.
async fn sent(gw: &Gateway, bytes: &[u8]) -> Raw {
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(bytes).await;
    raw
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (gw, up) = echo_gateway().await;
    let mut raw = Raw::connect(gw.addr).await;
    // Three requests in one write, the middle one with a body.
    raw.send(
        b"GET /e/1 HTTP/1.1\r\nhost: x\r\n\r\n\
          POST /e/2 HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello\
          GET /e/3 HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    for (path, body_len) in [("/e/1", 0), ("/e/2", 5), ("/e/3", 0)] {
        let r = raw.response().await;
        let doc = r.json();
        assert_eq!((r.status, doc["path"].as_str(), doc["body_len"].as_u64()), (200, Some(path), Some(body_len)));
        assert_eq!(r.header("connection"), None, "kept alive");
    }
    // And the connection still takes a request.
    raw.send(b"GET /e/4 HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(raw.response().await.json()["path"], "/e/4");
    assert_eq!(up.requests(), 4);
}

/// A head longer than the listener's first read of a connection (4 KiB), sent with the
/// connection, is read on to its end: here 12 KiB of fields and a body in one write.
#[tokio::test]
async fn a_first_head_longer_than_the_first_read_is_read_whole() {
    let (gw, up) = echo_gateway().await;
    let filler: String = (0..12).map(|i| format!("x-fill-{i:02}: {}\r\n", "f".repeat(1000))).collect();
    let raw = format!("PUT /e/long HTTP/1.1\r\nhost: x\r\n{filler}content-length: 5\r\n\r\nhello");
    let mut conn = sent(&gw, raw.as_bytes()).await;
    let r = conn.response().await;
    let doc = r.json();
    assert_eq!((r.status, doc["path"].as_str(), doc["body_len"].as_u64()), (200, Some("/e/long"), Some(5)));
    assert_eq!(doc["headers"]["x-fill-11"][0].as_str().map(str::len), Some(1000), "the last field arrived whole");
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (gw, _up) = echo_gateway().await;
    let mut raw = sent(&gw, b"PUT /e/c HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n").await;
    let interim = raw.response().await;
    assert_eq!(interim.status, 100, "{interim:?}");
    raw.send(b"data").await;
    let r = raw.response().await;
    assert_eq!((r.status, r.json()["body_len"].as_u64()), (200, Some(4)));
}

#[tokio::test]
async fn requests_without_exactly_one_host_are_refused() {
    let (gw, up) = echo_gateway().await;
    for head in ["GET /e/h HTTP/1.1\r\n\r\n", "GET /e/h HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"] {
        let mut raw = sent(&gw, head.as_bytes()).await;
        let r = raw.response().await;
        assert_eq!(r.status, 400, "{head:?}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(matches!(raw.closed_within(WAIT).await, Closed::Yes(_)));
    }
    // HTTP/1.0 has no Host requirement.
    let mut raw = sent(&gw, b"GET /e/old HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw.response().await.status, 200);
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn http_1_0_clients_get_keep_alive_only_when_they_ask() {
    let (gw, _up) = echo_gateway().await;
    let mut raw = sent(&gw, b"GET /e/a HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").await;
    let r = raw.response().await;
    assert_eq!((r.status, r.header("connection")), (200, Some("keep-alive")));
    raw.send(b"GET /e/b HTTP/1.0\r\n\r\n").await;
    let r = raw.response().await;
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert!(matches!(raw.closed_within(WAIT).await, Closed::Yes(ref rest) if rest.is_empty()));
}

#[tokio::test]
async fn head_answers_keep_their_length_and_carry_no_body() {
    let (gw, _up) = echo_gateway().await;
    let mut raw = sent(&gw, b"HEAD /e/len HTTP/1.1\r\nhost: x\r\n\r\nGET /e/next HTTP/1.1\r\nhost: x\r\n\r\n").await;
    // The HEAD answer's head only: whatever follows must be the next response.
    // (The echo upstream answers HEAD with the length its GET answer would have.)
    let head = raw.response_head().await;
    let length = head.header("content-length").and_then(|l| l.parse::<u64>().ok());
    assert_eq!(head.status, 200);
    assert!(length.is_some_and(|l| l > 100), "the upstream's length is passed on: {head:?}");
    let next = raw.response().await;
    assert_eq!(next.json()["path"], "/e/next");
}

#[tokio::test]
async fn a_short_unread_request_body_is_thrown_away_and_the_connection_kept() {
    let (gw, up) = echo_gateway().await;
    let mut raw = Raw::connect(gw.addr).await;
    // No route: the gateway answers 404 without using the body. The body looks like a
    // request; it is read as body and thrown away, never forwarded. (A short body is read
    // before the answer, a longer one after it: see the next test.)
    let smuggled = "GET /e/smuggled HTTP/1.1\r\nhost: x\r\n\r\n";
    let head = format!("POST /none HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", smuggled.len());
    raw.send(head.as_bytes()).await;
    assert!(!raw.anything_within(Duration::from_millis(200)).await, "waits for the short body");
    raw.send(smuggled.as_bytes()).await;
    let r = raw.response().await;
    assert_eq!((r.status, r.header("connection")), (404, None), "kept alive");
    // A chunked one, and the next real request behind it in the same write.
    raw.send(
        b"POST /none HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
          GET /e/next HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert_eq!(raw.response().await.status, 404);
    let next = raw.response().await;
    assert_eq!((next.status, next.json()["path"].as_str()), (200, Some("/e/next")));
    assert_eq!(up.requests(), 1, "only the real request went upstream");
}

/// A remainder longer than the gateway throws away, or one the client holds back until
/// `100 Continue` (never sent for a refused request), closes the connection instead.
#[tokio::test]
async fn a_long_or_held_back_unread_request_body_closes_the_connection_after_the_answer() {
    let (gw, up) = echo_gateway().await;
    let long = format!("content-length: {}", tollgate_gateway::wire::server::DISCARD_MAX + 1);
    for fields in [long.as_str(), "expect: 100-continue\r\ncontent-length: 4"] {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(format!("POST /none HTTP/1.1\r\nhost: x\r\n{fields}\r\n\r\n").as_bytes()).await;
        let r = raw.response().await;
        assert_eq!((r.status, r.header("connection")), (404, Some("close")), "{fields}");
        assert!(matches!(raw.closed_within(WAIT).await, Closed::Yes(ref rest) if rest.is_empty()), "{fields}");
    }
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn the_gateways_own_answers_carry_a_date() {
    let (gw, _up) = echo_gateway().await;
    let mut raw = sent(&gw, b"GET /none HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let r = raw.response().await;
    assert_eq!(r.status, 404);
    let date = r.header("date").unwrap_or_default();
    let parsed = httpdate::parse_http_date(date).expect("an IMF-fixdate");
    let skew = parsed
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .abs_diff(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs());
    assert!(skew < 5, "{date}");
    // An idle keep-alive connection stays open for a while.
    assert!(!raw.anything_within(Duration::from_millis(200)).await);
}
