//! The wire layer tried as an attacker would (issue 12's reproductions, each through real
//! sockets): trailer floods, h2c and unasked upgrades, desync after a broken chunk line,
//! framing leniencies nginx refuses, replays of non-idempotent requests, and peers that
//! stall each way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::raw::Closed;
use crate::helpers::upstream::{Seen, Stats};
use crate::helpers::{Gateway, Options, Raw, Upstream, WAIT, api, config, paths};
use crate::reuse::read_head;

const KEY: &str = "tg_hardening_key_0123456789abcdef";

/// `/public/*` open to anyone, `/private/*` behind a key, both on `up`.
async fn gateway_with(up: &Upstream, opts: Options) -> Gateway {
    let public = api("public", &[up], json!([paths("p", &["/public/*"])]), json!({ "read_timeout_ms": 1500 }));
    let private = api(
        "private",
        &[up],
        json!([paths("q", &["/private/*"])]),
        json!({ "auth_methods": ["key_auth"], "plans": [{"name": "free", "rate_limit_per_minute": 1000}] }),
    );
    let mut doc = config(vec![public, private]);
    doc["consumers"] = json!([{
        "name": "acme",
        "keys": [{"key": KEY}],
        "subscriptions": [{"api": "private", "plan": "free"}],
    }]);
    Gateway::start_with(doc, opts).await
}

async fn gateway(up: &Upstream) -> Gateway {
    gateway_with(up, Options::default()).await
}

/// Sends `bytes` on a new connection; the answers until the gateway closes, and whether it did.
async fn exchange(gw: &Gateway, bytes: &[u8]) -> (Vec<u16>, bool) {
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(bytes).await;
    let mut statuses = Vec::new();
    loop {
        if !raw.anything_within(Duration::from_millis(500)).await {
            return (statuses, false);
        }
        match raw.try_response().await {
            Some(r) => {
                let closing = r.header("connection") == Some("close");
                statuses.push(r.status);
                if closing {
                    return (statuses, matches!(raw.closed_within(WAIT).await, Closed::Yes(_)));
                }
            }
            None => return (statuses, true),
        }
    }
}

fn paths_seen(up: &Upstream) -> Vec<String> {
    up.seen().into_iter().map(|s| s.path).collect()
}

/// Sends `bytes`, then streams an endless trailer line from another task until the gateway
/// stops taking it; the gateway's answer, and how many bytes of the endless line it took.
async fn flood_after(gw: &Gateway, bytes: &[u8]) -> (crate::helpers::raw::RawResponse, usize) {
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(bytes).await;
    let mut writer = raw.take_writer();
    let flood = tokio::spawn(async move {
        let mut fed = 0;
        while fed < 64 * 1024 * 1024 {
            match tokio::time::timeout(WAIT, writer.write_all(&[b'a'; 16 * 1024])).await {
                Ok(Ok(())) => fed += 16 * 1024,
                _ => break,
            }
        }
        fed
    });
    let answer = raw.response().await;
    let _ = raw.closed_within(WAIT).await;
    (answer, flood.await.unwrap_or(usize::MAX))
}

#[tokio::test]
async fn an_endless_trailer_is_cut_off_within_the_trailer_bound() {
    let up = Upstream::echo("up").await;
    let gw = gateway(&up).await;
    let mut filled = b"x: ".to_vec();
    filled.resize(16 * 1024 - 2, b'a');
    for path in ["/private/x", "/public/x"] {
        // The bytes (a 16 KiB line that is no field line) and a valid field line that
        // fills the section exactly, each followed by a line that never ends.
        for first in [vec![b'a'; 16 * 1024], filled.clone()] {
            let mut head =
                format!("POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n").into_bytes();
            head.extend_from_slice(&first);
            head.extend_from_slice(b"\r\n");
            let (answer, fed) = flood_after(&gw, &head).await;
            // An answer (401 before the body is looked at, 400 once it is found broken), and
            // the end of the connection, not a crash or an endless read.
            assert!(matches!(answer.status, 400 | 401), "{path}: {answer:?}");
            assert_eq!(answer.header("connection"), Some("close"), "{path}");
            // What the kernel buffers on both sides, not what the gateway keeps: a few MB at
            // most, where the unbounded decoder took everything offered (64 MiB here).
            assert!(fed < 16 * 1024 * 1024, "{path}: the gateway kept reading ({fed} bytes)");
        }
    }
}

#[tokio::test]
async fn an_h2c_upgrade_never_reaches_the_upstream() {
    let up = Upstream::echo("up").await;
    let gw = gateway(&up).await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(
        b"GET /public/u HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\n\
          http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    let r = raw.response().await;
    assert_eq!(r.status, 200, "served as a plain request: {}", r.text());
    let seen = up.seen();
    let h = &seen[0].headers;
    assert!(h.get("upgrade").is_none() && h.get("http2-settings").is_none(), "{h:?}");
    // Nor in HTTP/1.0, nor for a POST, nor any protocol but WebSocket.
    for req in [
        "GET /public/v HTTP/1.0\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        "POST /public/v HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\ncontent-length: 0\r\n\r\n",
        "GET /public/v HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket, h2c\r\n\r\n",
    ] {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(req.as_bytes()).await;
        assert_eq!(raw.response().await.status, 200, "{req}");
    }
    assert!(up.seen().iter().all(|s| s.headers.get("upgrade").is_none()), "no Upgrade went upstream");
}

/// An upstream that answers every request `101 Switching Protocols` (to h2c) and then logs
/// whatever comes through the tunnel as requests.
async fn switching(stream: TcpStream, stats: Arc<Stats>) {
    let mut stream = stream;
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buf).await {
        stats.record(Seen { method: head.method, path: head.path, headers: http::HeaderMap::new() });
        let answer = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn an_unasked_or_foreign_101_is_a_502_and_opens_no_tunnel() {
    let up = Upstream::raw("switching", switching).await;
    let gw = gateway(&up).await;
    for req in [
        "GET /public/a HTTP/1.1\r\nhost: x\r\n\r\n",
        "GET /public/a HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
    ] {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(req.as_bytes()).await;
        let r = raw.response().await;
        assert_eq!(r.status, 502, "{req}: {}", r.text());
        // Whatever follows on the connection is a request to the gateway, not tunnel bytes.
        raw.send(b"GET /private/secret HTTP/1.1\r\nhost: x\r\n\r\n").await;
        if raw.anything_within(WAIT).await
            && let Some(r) = raw.try_response().await
        {
            assert_eq!(r.status, 401, "{req}");
        }
    }
    assert!(!paths_seen(&up).iter().any(|p| p.starts_with("/private")), "{:?}", paths_seen(&up));
}

#[tokio::test]
async fn a_broken_chunk_line_ends_the_connection_and_smuggles_nothing() {
    let up = Upstream::echo("up").await;
    let gw = gateway(&up).await;
    let attack = b"POST /public/outer HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n2f\nx\r\n0\r\n\r\n\
                   GET /public/INNER HTTP/1.1\r\nhost: x\r\n\r\n\r\n0\r\n\r\n";
    let (statuses, closed) = exchange(&gw, attack).await;
    assert_eq!(statuses.len(), 1, "one answer: {statuses:?}");
    assert!(statuses[0] >= 400, "{statuses:?}");
    assert!(closed, "the connection ends");
    // Byte by byte too: the gateway's read boundaries fall everywhere.
    let mut raw = Raw::connect(gw.addr).await;
    for b in attack.iter() {
        if !raw.try_send(std::slice::from_ref(b)).await {
            break;
        }
    }
    let _ = raw.closed_within(WAIT).await;
    assert!(!paths_seen(&up).iter().any(|p| p.contains("INNER")), "{:?}", paths_seen(&up));
}

#[tokio::test]
async fn framing_leniencies_nginx_refuses_are_refused_and_end_the_connection() {
    let up = Upstream::echo("up").await;
    let gw = gateway(&up).await;
    let cases: [(&str, u16); 13] = [
        ("POST /public/a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked,\r\n\r\n0\r\n\r\n", 400),
        ("POST /public/a HTTP/1.1\r\nhost: x\r\ntransfer-encoding:\tchunked\r\n\r\n0\r\n\r\n", 400),
        ("POST /public/a HTTP/1.1\r\nhost: x\r\ncontent-length:\t1\r\n\r\nx", 400),
        ("POST /public/a HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 5\r\n\r\nhello", 400),
        ("POST /public/a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello", 400),
        ("GET /public/a HTTP/1.1\r\nhost:\r\n\r\n", 400),
        ("GET /public/a HTTP/1.1\r\nhost: x/private\r\n\r\n", 400),
        ("GET /public/a HTTP/1.0\r\nhost: x\r\nhost: y\r\n\r\n", 400),
        ("get /public/a HTTP/1.1\r\nhost: x\r\n\r\n", 400),
        ("TRACE /public/a HTTP/1.1\r\nhost: x\r\n\r\n", 405),
        ("CONNECT x:443 HTTP/1.1\r\nhost: x:443\r\n\r\n", 405),
        ("OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n", 400),
        ("POST /public/a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ];
    for (req, status) in cases {
        let (statuses, closed) = exchange(&gw, req.as_bytes()).await;
        assert_eq!(statuses, [status], "{req:?}");
        assert!(closed, "{req:?}: the connection ends");
    }
    assert_eq!(up.requests(), 0, "nothing was forwarded: {:?}", paths_seen(&up));
}

/// An upstream that answers its first request on a connection, then reads the next one
/// and closes without a byte of answer (as one that crashed while handling it).
async fn answers_once(stream: TcpStream, stats: Arc<Stats>) {
    let mut stream = stream;
    let mut buf = Vec::new();
    let mut served = 0;
    while let Some(head) = read_head(&mut stream, &mut buf).await {
        stats.record(Seen { method: head.method, path: head.path, headers: http::HeaderMap::new() });
        if served == 1 {
            return;
        }
        served += 1;
        if stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_post_whose_answer_never_came_is_not_sent_again() {
    let up = Upstream::raw("once", answers_once).await;
    let gw = gateway(&up).await;
    let post = b"POST /public/pay HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
    let get = b"GET /public/read HTTP/1.1\r\nhost: x\r\n\r\n";
    for (second, replayed) in [(&post[..], false), (&get[..], true)] {
        let before = up.seen().len();
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(get).await;
        assert_eq!(raw.response().await.status, 200, "warms a pooled connection");
        raw.send(second).await;
        let r = raw.response().await;
        let seen = up.seen().len() - before;
        if replayed {
            assert_eq!((r.status, seen), (200, 3), "an idempotent request goes again on a new connection");
        } else {
            assert_eq!((r.status, seen), (502, 2), "the POST ran once and is not sent again");
        }
    }
}

#[tokio::test]
async fn a_stalled_request_body_is_cut_off_and_short_bodies_hold_no_upstream_connection() {
    let up = Upstream::echo("up").await;
    let mut opts = Options::default();
    opts.listener.body_read_timeout = Duration::from_millis(800);
    let gw = gateway_with(&up, opts).await;
    // Short declared bodies are read before anything goes upstream (408 when they stall).
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(b"POST /public/slow HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc").await;
        slow.push(raw);
    }
    let started = Instant::now();
    for raw in &mut slow {
        let r = raw.response().await;
        assert_eq!((r.status, r.header("connection")), (408, Some("close")));
    }
    assert!(started.elapsed() < WAIT);
    assert_eq!(up.connections(), 0, "no upstream connection was opened for a slow client");
    // A streamed (chunked) body that stalls mid-way fails after the read timeout.
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"POST /public/stream HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n").await;
    let r = raw.response().await;
    assert_eq!((r.status, r.header("connection")), (400, Some("close")), "{}", r.text());
    assert!(matches!(raw.closed_within(WAIT).await, Closed::Yes(_)));
}

/// An upstream that sends a head and part of a body, then stalls (keeping the connection).
async fn stalls_mid_body(stream: TcpStream, stats: Arc<Stats>) {
    let mut stream = stream;
    let mut buf = Vec::new();
    if let Some(head) = read_head(&mut stream, &mut buf).await {
        stats.record(Seen { method: head.method, path: head.path, headers: http::HeaderMap::new() });
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial").await;
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut sink)).await;
    }
}

#[tokio::test]
async fn a_stalled_upstream_body_ends_the_client_response() {
    let up = Upstream::raw("stall", stalls_mid_body).await;
    let gw = gateway(&up).await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"GET /public/x HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let head = raw.response_head().await;
    assert_eq!(head.status, 200);
    let started = Instant::now();
    // The response is cut (read timeout 1.5 s): the connection closes short of 100 bytes.
    match raw.closed_within(WAIT).await {
        Closed::Yes(rest) => assert!(rest.len() < 100, "{rest:?}"),
        Closed::No => panic!("the stalled response was never ended"),
    }
    assert!(started.elapsed() >= Duration::from_millis(1000), "not before the stall limit");
}

/// An upstream that answers with an endless body as fast as it can be taken; counts bytes.
async fn endless(stream: TcpStream, stats: Arc<Stats>) {
    let mut stream = stream;
    let mut buf = Vec::new();
    if read_head(&mut stream, &mut buf).await.is_some() {
        stats.record(Seen { method: "GET".into(), path: "/endless".into(), headers: http::HeaderMap::new() });
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
        let chunk = [b"4000\r\n".as_slice(), &[b'z'; 0x4000], b"\r\n"].concat();
        while stream.write_all(&chunk).await.is_ok() {}
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_at_the_send_timeout() {
    let up = Upstream::raw("endless", endless).await;
    let mut opts = Options::default();
    opts.listener.send_timeout = Duration::from_millis(800);
    let gw = gateway_with(&up, opts).await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let mut stream = stream;
    stream.write_all(b"GET /public/endless HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    // Not reading: the gateway's writes block, then it gives up and closes. Reading now
    // drains what the kernel buffered and then finds the end.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut total = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    let drained = tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the gateway kept the connection of a client that stopped reading");
    assert!(total < 64 * 1024 * 1024, "{total} bytes");
}
