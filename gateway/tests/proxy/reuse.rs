//! Pooled upstream connections: a request body the upstream did not read (or the client did
//! not finish) is never left on a connection that is used again.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::raw::find;
use crate::helpers::upstream::{Seen, Stats, text};
use crate::helpers::{Client, Gateway, Raw, Upstream, api, config, paths};

/// One request head as the raw upstream parsed it.
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) path: String,
    content_length: usize,
    chunked: bool,
}

/// Reads until a blank line; `None` on EOF.
pub(crate) async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Head> {
    let end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let mut head = Head { method, path, content_length: 0, chunked: false };
    for (name, value) in lines.filter_map(|l| l.split_once(':')) {
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => head.content_length = value.trim().parse().ok()?,
            "transfer-encoding" => head.chunked = value.contains("chunked"),
            _ => {}
        }
    }
    Some(head)
}

/// Skips a body framed by `head`; `false` if the connection ended first.
async fn skip_body(stream: &mut TcpStream, buf: &mut Vec<u8>, head: &Head) -> bool {
    let need = |buf: &Vec<u8>| {
        if head.chunked { chunked_end(buf) } else { (buf.len() >= head.content_length).then_some(head.content_length) }
    };
    loop {
        if let Some(end) = need(buf) {
            buf.drain(..end);
            return true;
        }
        let mut chunk = [0u8; 65536];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Where a complete chunked body in `buf` ends, if it is all there.
fn chunked_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line = find(buf.get(at..)?, b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(buf.get(at..at + line)?).ok()?.split(';').next()?.trim(), 16)
                .ok()?;
        at += line + 2;
        if size == 0 {
            return (buf.len() >= at + 2).then_some(at + 2);
        }
        at += size + 2;
        if buf.len() < at {
            return None;
        }
    }
}

/// A keep-alive server that answers each request as soon as it has the head — before the
/// body — and then skips the body by its framing, as a correct early-answering server does.
/// A connection reused with a body half sent would make it read the next request as body.
async fn early_answering(stream: TcpStream, stats: Arc<Stats>) {
    let mut stream = stream;
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut stream, &mut buf).await {
        stats.record(Seen { method: head.method.clone(), path: head.path.clone(), headers: http::HeaderMap::new() });
        let body = json!({ "method": head.method, "path": head.path }).to_string();
        let res = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(res.as_bytes()).await.is_err() || !skip_body(&mut stream, &mut buf, &head).await {
            return;
        }
    }
}

async fn gateway_for(up: &Upstream) -> Gateway {
    let extra = json!({ "read_timeout_ms": 3000 });
    Gateway::start(config(vec![api("reuse", &[up], json!([paths("all", &["/*"])]), extra)])).await
}

#[tokio::test]
async fn an_upstream_answering_before_reading_the_body_still_gets_clean_requests() {
    let up = Upstream::raw("early", early_answering).await;
    let gw = gateway_for(&up).await;
    let c = Client::http1();
    for (i, size) in [0usize, 10, 1024, 256 * 1024, 10, 64 * 1024].into_iter().enumerate() {
        let r = c.send_body(Method::POST, &gw.url(&format!("/write/{i}")), Bytes::from(vec![b'x'; size])).await;
        assert_eq!(
            (r.status, r.json()["path"].clone()),
            (http::StatusCode::OK, json!(format!("/write/{i}"))),
            "{}",
            r.text()
        );
        let r = c.get(&gw.url(&format!("/after/{i}"))).await;
        assert_eq!(
            (r.status, r.json()["path"].clone()),
            (http::StatusCode::OK, json!(format!("/after/{i}"))),
            "{}",
            r.text()
        );
    }
    let methods: Vec<String> = up.seen().into_iter().map(|s| s.method).collect();
    assert_eq!(methods, ["POST", "GET"].repeat(6), "every request arrived intact, in order");
    assert!(up.connections() < 12, "upstream connections were reused ({} for 12 requests)", up.connections());
}

#[tokio::test]
async fn a_body_the_client_abandons_is_never_left_on_a_pooled_connection() {
    let up = Upstream::raw("early", early_answering).await;
    let gw = gateway_for(&up).await;
    let c = Client::http1();
    assert_eq!(c.get(&gw.url("/warm")).await.status, 200);
    for i in 0..3 {
        // Promise 100 kB, send 1 kB, hang up.
        let mut raw = Raw::connect(gw.addr).await;
        let head = format!("POST /abandoned/{i} HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n");
        raw.send(head.as_bytes()).await;
        raw.send(&[b'y'; 1000]).await;
        let _ = raw.response().await;
        drop(raw);
        let r = c.get(&gw.url(&format!("/after/{i}"))).await;
        assert_eq!(
            (r.status, r.json()["path"].clone()),
            (http::StatusCode::OK, json!(format!("/after/{i}"))),
            "{}",
            r.text()
        );
    }
}

#[tokio::test]
async fn an_upstream_that_never_reads_the_body_does_not_break_the_next_request() {
    let up = Upstream::start("lazy", |req| async move {
        // Answers without touching the body; hyper then drops or drains it.
        text(200, &json!({ "path": req.uri().path() }).to_string())
    })
    .await;
    let gw = gateway_for(&up).await;
    let c = Client::http1();
    for i in 0..20 {
        let size = if i % 2 == 0 { 512 * 1024 } else { 100 };
        let r = c.send_body(Method::POST, &gw.url(&format!("/ignored/{i}")), Bytes::from(vec![b'z'; size])).await;
        // A small body is drained by the upstream and the answer relayed. A large one makes
        // it close the connection while the gateway is still sending: hyper's client then
        // reports the failed write, not the early answer, so the client may get a 502.
        let relayed = r.status == 200 && r.json()["path"] == format!("/ignored/{i}");
        assert!(relayed || (size > 100 && r.status == 502), "POST {i} ({size} bytes): {} {}", r.status, r.text());
        let r = c.get(&gw.url(&format!("/next/{i}"))).await;
        assert_eq!(
            (r.status, r.json()["path"].clone()),
            (http::StatusCode::OK, json!(format!("/next/{i}"))),
            "GET {i}: {}",
            r.text()
        );
    }
}
