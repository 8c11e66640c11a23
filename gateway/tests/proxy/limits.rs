//! Limits enforced at the edge: header and body sizes, connection cap, HTTP/2 streams, the
//! header-read timeout, and request framing.

use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tollgate_gateway::{Limits, ListenerOptions};

use crate::helpers::client::{h2_connection, h2_get};
use crate::helpers::raw::{Closed, RawResponse};
use crate::helpers::upstream::text;
use crate::helpers::{Client, Gate, Gateway, Options, Raw, Upstream, WAIT, api, config, eventually, paths, within};

fn options() -> Options {
    Options {
        listener: ListenerOptions {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(1),
            h2_max_concurrent_streams: 2,
            ..ListenerOptions::default()
        },
        limits: Limits { max_body_bytes: 64 * 1024, max_header_bytes: 4 * 1024 },
        ..Options::default()
    }
}

async fn gateway(up: &Upstream, opts: Options) -> Gateway {
    Gateway::start_with(config(vec![api("limited", &[up], json!([paths("all", &["/*"])]), json!({}))]), opts).await
}

/// An echo upstream behind a gateway taking at most `cap` connections at once.
async fn capped(cap: usize) -> (Upstream, Gateway) {
    let up = Upstream::echo("echo").await;
    let mut opts = options();
    opts.listener.max_connections = cap;
    let gw = gateway(&up, opts).await;
    (up, gw)
}

async fn with_keepalive(up: &Upstream, keepalive: Duration) -> Gateway {
    let mut opts = options();
    opts.listener.keepalive_timeout = keepalive;
    gateway(up, opts).await
}

async fn exchange(gw: &Gateway, request: &str) -> RawResponse {
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(request.as_bytes()).await;
    raw.response().await
}

fn assert_problem(r: &RawResponse, status: u16, slug: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"), "{:?}", r.headers);
    assert_eq!(r.json()["type"], format!("urn:tollgate:problem:{slug}"));
}

#[tokio::test]
async fn headers_over_the_limit_get_a_431_problem() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    let head = |size: usize| format!("GET /h HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(size));
    assert_eq!(exchange(&gw, &head(2_000)).await.status, 200, "under the limit");
    assert_problem(&exchange(&gw, &head(8_000)).await, 431, "headers-too-large");
    // Many small headers count together.
    let many: String = (0..40).map(|i| format!("x-h{i}: {}\r\n", "b".repeat(120))).collect();
    assert_problem(
        &exchange(&gw, &format!("GET /h HTTP/1.1\r\nhost: x\r\n{many}\r\n")).await,
        431,
        "headers-too-large",
    );
    // Over what the listener buffers at all: refused while the head is read.
    assert_problem(&exchange(&gw, &head(100_000)).await, 431, "headers-too-large");
    // HTTP/2 requests are held to the same limit.
    let req = crate::helpers::client::get(&gw.url("/h2")).header("x-big", "c".repeat(8_000));
    Client::h2c()
        .send(req.body(crate::helpers::client::empty()).expect("req"))
        .await
        .assert_problem(431, "headers-too-large");
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn a_body_over_the_limit_by_content_length_gets_413_before_anything_is_sent() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    // The head alone is enough to refuse: no body byte is sent.
    let r = exchange(&gw, "POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n").await;
    assert_problem(&r, 413, "payload-too-large");
    let ok = exchange(&gw, &format!("POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{}", "d".repeat(1000)))
        .await;
    assert_eq!((ok.status, ok.json()["body_len"].as_u64()), (200, Some(1000)));
    assert_eq!(up.requests(), 1, "only the request under the limit was forwarded");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    let chunked = |total: usize| {
        let mut out = b"POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..total / 8192 {
            out.extend_from_slice(format!("2000\r\n{}\r\n", "e".repeat(8192)).as_bytes());
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    let ok = exchange(&gw, &String::from_utf8(chunked(32 * 1024)).expect("ascii")).await;
    assert_eq!((ok.status, ok.json()["body_len"].as_u64()), (200, Some(32 * 1024)));

    let mut raw = Raw::connect(gw.addr).await;
    let mut writer = raw.take_writer();
    let body = chunked(256 * 1024);
    // The gateway may answer and close before it has read everything: write from a task.
    let feed = tokio::spawn(async move {
        let _ = writer.write_all(&body).await;
    });
    assert_problem(&raw.response().await, 413, "payload-too-large");
    let _ = within(WAIT, "the writer", feed).await;
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503_problem() {
    let (_up, gw) = capped(2).await;
    let request = "GET /c HTTP/1.1\r\nhost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(request.as_bytes()).await;
        assert_eq!(raw.response().await.status, 200);
        held.push(raw);
    }
    let mut excess = Raw::connect(gw.addr).await;
    let _ = excess.try_send(request.as_bytes()).await;
    let r = excess.response().await;
    assert_problem(&r, 503, "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(matches!(excess.closed_within(WAIT).await, Closed::Yes(_)), "the excess connection is closed");
    // A held connection still works; closing one frees its slot.
    held[0].send(request.as_bytes()).await;
    assert_eq!(held[0].response().await.status, 200);
    held.pop();
    eventually(WAIT, "a slot to be freed", || async {
        let mut raw = Raw::connect(gw.addr).await;
        raw.try_send(request.as_bytes()).await && raw.response().await.status == 200
    })
    .await;
}

/// A connection that ends with nothing unread closes at once, as nginx's does: it does not
/// wait (up to a second) for the client's FIN, so its slot is free for the next client even
/// while the first keeps its socket open. With bytes left unread it still lingers, so the
/// response is not lost to a reset.
#[tokio::test]
async fn a_connection_that_ends_with_nothing_unread_frees_its_slot_at_once() {
    let (_up, gw) = capped(1).await;
    let closing = "GET /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let mut first = Raw::connect(gw.addr).await;
    first.send(closing.as_bytes()).await;
    assert_eq!(first.response().await.status, 200);
    assert!(matches!(first.closed_within(WAIT).await, Closed::Yes(ref rest) if rest.is_empty()));
    // `first` stays open (no FIN from this side). Three tries 50 ms apart: the slot is
    // released in the same step that closes the socket, so only a scheduling gap between the
    // two can cost a try; a lingering close would hold it for a whole second.
    let mut served = Vec::new();
    for _ in 0..3 {
        let mut next = Raw::connect(gw.addr).await;
        let status = if next.try_send(closing.as_bytes()).await { next.response().await.status } else { 0 };
        served.push(status);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served.last(), Some(&200), "the slot is free while the first client's socket is still open: {served:?}");

    // Pipelined bytes after a closing request are unread: the connection lingers, and the
    // response arrives whole although the client's next bytes reach a closing socket.
    let mut second = Raw::connect(gw.addr).await;
    second.send(format!("{closing}GET /d HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await;
    let r = second.response().await;
    assert_eq!((r.status, r.json()["path"].as_str()), (200, Some("/c")));
    second.send(b"more bytes the gateway will not read").await;
    assert!(matches!(second.closed_within(WAIT).await, Closed::Yes(ref rest) if rest.is_empty()));
    drop(first);
}

/// Reads frames until the server's first SETTINGS frame and returns its parameters.
async fn server_settings(raw: &mut Raw) -> Vec<(u16, u32)> {
    loop {
        let header = raw.read_exact(9).await;
        let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let payload = raw.read_exact(len).await;
        if kind == 0x4 && flags & 0x1 == 0 {
            return payload
                .chunks(6)
                .map(|p| (u16::from_be_bytes([p[0], p[1]]), u32::from_be_bytes([p[2], p[3], p[4], p[5]])))
                .collect();
        }
    }
}

#[tokio::test]
async fn http2_prior_knowledge_is_served_and_advertises_the_stream_limit() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await;
    let settings = within(WAIT, "the server's SETTINGS", server_settings(&mut raw)).await;
    assert!(settings.contains(&(0x3, 2)), "SETTINGS_MAX_CONCURRENT_STREAMS = 2: {settings:?}");

    let r = Client::h2c().get(&gw.url("/over/h2")).await;
    assert_eq!((r.status, r.version), (http::StatusCode::OK, http::Version::HTTP_2));
    assert_eq!(r.json()["path"], "/over/h2");
}

/// The listener tells HTTP/2 (prior knowledge) from HTTP/1 by the first bytes, however they
/// are split: an HTTP/1 request that begins like the preface (`P`, `PO` of a `POST`) and the
/// preface itself, each sent in two writes split at every byte up to the preface's length
/// (the first write read on its own), are served by the right protocol.
#[tokio::test]
async fn the_protocol_is_told_apart_at_every_split_of_the_first_bytes() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
    let post = b"POST /split HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi";
    for at in 1..=24 {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(&post[..at]).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
        raw.send(&post[at..]).await;
        let r = raw.response().await;
        assert_eq!((r.status, r.json()["body_len"].as_u64()), (200, Some(2)), "POST split after {at} bytes");

        let mut raw = Raw::connect(gw.addr).await;
        raw.send(&preface[..at]).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
        raw.send(&preface[at..]).await;
        let settings = within(WAIT, "the server's SETTINGS", server_settings(&mut raw)).await;
        assert!(settings.contains(&(0x3, 2)), "HTTP/2 after a preface split after {at} bytes: {settings:?}");
    }
}

#[tokio::test]
async fn http2_concurrent_streams_are_limited() {
    let release = Gate::default();
    let gate = release.clone();
    let up = Upstream::start("held", move |req| {
        let gate = gate.clone();
        async move {
            if req.uri().path() != "/warm" {
                gate.wait().await;
            }
            text(200, "done")
        }
    })
    .await;
    let gw = gateway(&up, options()).await;
    let client = Client::h2c();
    // One exchange first, so the client has the server's SETTINGS before the burst.
    assert_eq!(client.get(&gw.url("/warm")).await.status, 200);
    let burst: Vec<_> = (0..5)
        .map(|i| {
            let (client, url) = (client.clone(), gw.url(&format!("/held/{i}")));
            tokio::spawn(async move { client.get(&url).await.status })
        })
        .collect();
    eventually(WAIT, "two streams to reach the upstream", || async { up.requests() >= 3 }).await;
    // Bounded check that nothing more arrives while both streams are held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(up.requests(), 3, "only two streams at a time reach the upstream");
    release.open();
    for task in burst {
        assert_eq!(within(WAIT, "a held stream", task).await.expect("task"), 200);
    }
    assert_eq!(up.requests(), 6);
    assert_eq!(up.max_in_flight(), 2);
}

#[tokio::test]
async fn the_header_read_timeout_closes_a_slowloris_connection() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"GET /slow HTTP/1.1\r\nhost: x\r\nx-drip: ").await;
    let mut writer = raw.take_writer();
    let started = tokio::time::Instant::now();
    // The attack: one more byte every 100 ms, never finishing the head.
    let drip = tokio::spawn(async move {
        while writer.write_all(b"a").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let closed = raw.closed_within(Duration::from_secs(5)).await;
    drip.abort();
    assert!(matches!(closed, Closed::Yes(_)), "the connection was closed");
    let after = started.elapsed();
    assert!(after >= Duration::from_millis(900), "not before the timeout: {after:?}");
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn the_header_read_timeout_also_closes_silent_and_stalled_connections() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    // Nothing at all, a stalled request line, and a stalled HTTP/2 preface.
    for first in [&b""[..], b"G", b"PRI * HTTP/2.0\r\n"] {
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(first).await;
        let started = tokio::time::Instant::now();
        let closed = raw.closed_within(Duration::from_secs(5)).await;
        assert!(matches!(closed, Closed::Yes(_)), "closed after sending {:?}", String::from_utf8_lossy(first));
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
}

/// A kept-alive connection may idle up to the keep-alive timeout (here longer than the
/// header-read timeout) between requests, while a slow head on it is still cut at the
/// header-read timeout counted from its first byte.
#[tokio::test]
async fn kept_alive_connections_idle_to_the_keepalive_timeout_and_heads_keep_the_header_timeout() {
    let up = Upstream::echo("echo").await;
    let gw = with_keepalive(&up, Duration::from_secs(4)).await;
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(raw.response().await.status, 200);
    // Idle longer than the header-read timeout (1 s): the connection is still there.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    raw.send(b"GET /second HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(raw.response().await.status, 200);
    let started = tokio::time::Instant::now();
    let closed = raw.closed_within(Duration::from_secs(8)).await;
    assert!(matches!(closed, Closed::Yes(ref rest) if rest.is_empty()), "closed when idle: {closed:?}");
    let idle = started.elapsed();
    assert!(idle >= Duration::from_millis(3900), "not before the keep-alive timeout: {idle:?}");

    // After a short idle pause, an unfinished head: closed by the header-read timeout from
    // its first byte (the keep-alive timeout would close it ~3.7 s later).
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"GET /first HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(raw.response().await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    raw.send(b"GET /slow HTTP/1.1\r\nhost: x\r\n").await;
    let started = tokio::time::Instant::now();
    let closed = raw.closed_within(Duration::from_secs(8)).await;
    assert!(matches!(closed, Closed::Yes(_)), "closed mid-head: {closed:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "not before the header-read timeout: {waited:?}");
    assert!(waited < Duration::from_millis(3000), "by the header-read timeout, not the keep-alive one: {waited:?}");
    assert_eq!(up.requests(), 3, "the unfinished head never went upstream");
}

/// An HTTP/2 connection with no stream for the keep-alive timeout gets GOAWAY and ends;
/// one kept busy with requests stays open past it.
#[tokio::test]
async fn idle_http2_connections_end_at_the_keepalive_timeout() {
    let up = Upstream::echo("echo").await;
    let gw = with_keepalive(&up, Duration::from_secs(2)).await;
    let (mut sender, driver) = h2_connection(gw.addr).await;
    let started = tokio::time::Instant::now();
    let mut sent = 0;
    // Busy for 3 s (past the timeout): a request every 500 ms.
    while started.elapsed() < Duration::from_secs(3) {
        sent += 1;
        let res = within(WAIT, "an HTTP/2 request", sender.send_request(h2_get(gw.addr, "/h2/busy"))).await;
        assert_eq!(res.expect("response").status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!driver.is_finished(), "a busy connection stays open");
    let idle_from = tokio::time::Instant::now();
    let ended = within(Duration::from_secs(8), "the idle connection to end", driver).await;
    assert!(ended.expect("the connection task").is_ok(), "ended by GOAWAY, not by an error");
    let idle = idle_from.elapsed();
    // The timeout runs from the last request (~0.5 s before `idle_from`).
    assert!(idle >= Duration::from_millis(1000), "not long before the timeout: {idle:?}");
    assert_eq!(up.requests(), sent);
}

/// `Content-Length` beside `Transfer-Encoding` is refused (RFC 9112 §6.1 allows the
/// server to read it either way; a proxy that guesses differently from its upstream is how
/// requests get smuggled), and the connection closed with nothing read behind the head.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    for head in [
        "POST /te HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        "POST /te HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
    ] {
        // A second request hides behind the first: by Content-Length it would be body.
        let smuggled = format!("{head}0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n");
        let mut raw = Raw::connect(gw.addr).await;
        raw.send(smuggled.as_bytes()).await;
        assert_problem(&raw.response().await, 400, "bad-request");
        let closed = raw.closed_within(WAIT).await;
        assert!(
            matches!(closed, Closed::Yes(ref rest) if rest.is_empty()),
            "closed, nothing more answered: {closed:?}"
        );
    }
    assert_eq!(up.requests(), 0, "nothing reached the upstream: {:?}", up.seen());
}

#[tokio::test]
async fn malformed_framing_headers_are_refused() {
    let up = Upstream::echo("echo").await;
    let gw = gateway(&up, options()).await;
    for framing in [
        "content-length: abc",
        "content-length: -1",
        "content-length: 5, 6",
        "content-length: 5\r\ncontent-length: 6",
        "content-length: 0x10",
        "transfer-encoding: gzip",
        "transfer-encoding: chunked, gzip",
        "transfer-encoding: gzip, chunked",
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
    ] {
        let r = exchange(&gw, &format!("POST /m HTTP/1.1\r\nhost: x\r\n{framing}\r\n\r\nhello")).await;
        assert_eq!(r.status, 400, "{framing}: {}", r.text());
    }
    assert_eq!(up.requests(), 0, "{:?}", up.seen());
}
