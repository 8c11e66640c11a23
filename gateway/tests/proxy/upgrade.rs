//! WebSocket-style upgrades: nothing reaches the client before the upstream's 101; after it,
//! bytes flow both ways through the gateway.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::upstream::{full, text};
use crate::helpers::{Gate, Gateway, Raw, Upstream, api, config, paths};

const UPGRADE: &str = "GET /ws HTTP/1.1\r\nhost: ws.example.com\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
    sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";

/// Upgrades once `release` opens (after opening `received`), then greets and echoes bytes
/// upper-cased. Refuses with 403 when `refuse` is set.
async fn ws_upstream(received: Gate, release: Gate, refuse: bool) -> Upstream {
    Upstream::start("ws", move |mut req| {
        let (received, release) = (received.clone(), release.clone());
        async move {
            received.open();
            release.wait().await;
            if refuse {
                return text(403, "no upgrade for you");
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else { return };
                let mut io = TokioIo::new(upgraded);
                let _ = io.write_all(b"hello;").await;
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = io.read(&mut buf).await {
                    if io.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                        break;
                    }
                }
            });
            let mut res = Response::new(full(""));
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = res.headers_mut();
            h.insert("connection", HeaderValue::from_static("Upgrade"));
            h.insert("upgrade", HeaderValue::from_static("websocket"));
            h.insert("sec-websocket-accept", HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
            res
        }
    })
    .await
}

#[tokio::test]
async fn an_upgrade_waits_for_the_upstreams_101_then_carries_bytes_both_ways() {
    let (received, release) = (Gate::default(), Gate::default());
    let up = ws_upstream(received.clone(), release.clone(), false).await;
    let gw = Gateway::start(config(vec![api("ws", &[&up], json!([paths("ws", &["/ws"])]), json!({}))])).await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(UPGRADE.as_bytes()).await;
    received.opened("the upstream to get the upgrade request").await;
    // Bounded check: while the upstream holds its answer, the client gets nothing.
    assert!(!raw.anything_within(Duration::from_millis(300)).await, "bytes reached the client before the 101");
    release.open();
    let r = raw.response().await;
    assert_eq!(r.status, 101, "{:?}", r.headers);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(r.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")), "{:?}", r.headers);
    assert_eq!(r.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_eq!(raw.read_exact(6).await, b"hello;", "upstream to client");
    raw.send(b"ping").await;
    assert_eq!(raw.read_exact(4).await, b"PING", "client to upstream and back");
    raw.send(b"and more").await;
    assert_eq!(raw.read_exact(8).await, b"AND MORE");

    let seen = up.seen();
    let h = &seen[0].headers;
    assert_eq!(h.get("upgrade").map(|v| v.as_bytes()), Some(&b"websocket"[..]));
    assert!(h.get("connection").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"upgrade")), "{h:?}");
    assert_eq!(h.get("sec-websocket-key").map(|v| v.as_bytes()), Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]));
}

#[tokio::test]
async fn an_upgrade_the_upstream_refuses_is_an_ordinary_response() {
    let (received, release) = (Gate::default(), Gate::default());
    release.open();
    let up = ws_upstream(received, release, true).await;
    let gw = Gateway::start(config(vec![api("ws", &[&up], json!([paths("ws", &["/ws"])]), json!({}))])).await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(UPGRADE.as_bytes()).await;
    let r = raw.response().await;
    assert_eq!((r.status, r.text().as_str()), (403, "no upgrade for you"));
    assert!(r.header("upgrade").is_none());
}
