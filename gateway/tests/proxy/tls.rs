//! The HTTPS listener: the gateway's own HTTP/1.1 server over rustls (HTTP/2 by ALPN goes to
//! hyper), with the same framing rules as plain HTTP. Requests are sent whole, one byte per
//! TLS record, and split at every boundary; a framing error ends the connection; bodies go
//! both ways through the bounded send buffer with a slow reader; upgrades splice over TLS;
//! what is not TLS, or never finishes its handshake, is cut off.

use std::time::Duration;

use http::{Response, StatusCode};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::raw::{Closed, tls_stream};
use crate::helpers::upstream::{full, text};
use crate::helpers::{Gateway, Options, Raw, Upstream, WAIT, api, paths};

/// A CA and a leaf for `localhost` and 127.0.0.1.
struct Pki {
    ca: Vec<u8>,
    chain: String,
    key: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "proxy test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki { ca: ca_cert.der().to_vec(), chain: format!("{}{}", leaf.pem(), ca_cert.pem()), key: key.serialize_pem() }
}

/// A gateway with an HTTPS listener serving `pki`'s certificate for `apis`.
async fn gateway(pki: &Pki, apis: Vec<Value>, mut opts: Options) -> Gateway {
    opts.tls = true;
    let config = json!({
        "apis": apis,
        "certificates": [{ "name": "local", "cert": pki.chain, "key": pki.key, "default": true }],
    });
    Gateway::start_with(config, opts).await
}

async fn echo_gateway(pki: &Pki) -> (Upstream, Gateway) {
    let up = Upstream::echo("up").await;
    let gw = gateway(pki, vec![api("e", &[&up], json!([paths("e", &["/e/*"])]), json!({}))], Options::default()).await;
    (up, gw)
}

async fn tls(gw: &Gateway, pki: &Pki) -> Raw {
    Raw::connect_tls(gw.tls_addr.unwrap(), &pki.ca, "localhost", &[b"http/1.1"]).await
}

#[tokio::test]
async fn requests_over_tls_reach_the_upstream_marked_https() {
    let pki = pki();
    let (up, gw) = echo_gateway(&pki).await;
    let mut raw = tls(&gw, &pki).await;
    for i in 0..3 {
        raw.send(format!("GET /e/{i} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes()).await;
        let res = raw.response().await;
        assert_eq!(res.status, 200, "{}", res.text());
        let echo = res.json();
        assert_eq!(echo["path"], format!("/e/{i}"));
        assert_eq!(echo["headers"]["x-forwarded-proto"], json!(["https"]));
    }
    assert_eq!(up.connections(), 1, "one keep-alive connection upstream");
    // The plain listener says http.
    let mut plain = Raw::connect(gw.addr).await;
    plain.send(b"GET /e/p HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    assert_eq!(plain.response().await.json()["headers"]["x-forwarded-proto"], json!(["http"]));
}

#[tokio::test]
async fn alpn_h2_is_served_by_http2() {
    let pki = pki();
    let (_up, gw) = echo_gateway(&pki).await;
    let stream = tls_stream(gw.tls_addr.unwrap(), &pki.ca, "localhost", &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, _conn) = crate::helpers::client::h2_over(stream).await;
    let req = http::Request::get("https://localhost/e/h2").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!((res.status(), res.version()), (StatusCode::OK, http::Version::HTTP_2));
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((echo["path"].as_str(), &echo["headers"]["x-forwarded-proto"]), (Some("/e/h2"), &json!(["https"])));
}

/// A chunked POST with a trailer, and a request after it on the same connection.
const CHUNKED: &[u8] = b"POST /e/c HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n\
    5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\nGET /e/next HTTP/1.1\r\nhost: localhost\r\n\r\n";

async fn two_answers(raw: &mut Raw) {
    let first = raw.response().await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!((first.json()["path"].as_str(), first.json()["body"].as_str()), (Some("/e/c"), Some("hello world")));
    let second = raw.response().await;
    assert_eq!(second.json()["path"], "/e/next");
}

#[tokio::test]
async fn a_request_sent_one_byte_per_record_is_read_whole() {
    let pki = pki();
    let (_up, gw) = echo_gateway(&pki).await;
    let mut raw = tls(&gw, &pki).await;
    for b in CHUNKED {
        raw.send(std::slice::from_ref(b)).await;
    }
    two_answers(&mut raw).await;
}

#[tokio::test]
async fn a_request_split_at_every_boundary_is_read_whole() {
    let pki = pki();
    let (_up, gw) = echo_gateway(&pki).await;
    // One connection per split point: the head, the chunk lines, the trailer and the
    // pipelined request each get cut somewhere.
    for cut in 1..CHUNKED.len() {
        let mut raw = tls(&gw, &pki).await;
        raw.send(&CHUNKED[..cut]).await;
        tokio::task::yield_now().await;
        raw.send(&CHUNKED[cut..]).await;
        two_answers(&mut raw).await;
    }
}

#[tokio::test]
async fn a_framing_error_over_tls_ends_the_connection_and_smuggles_nothing() {
    let pki = pki();
    let (up, gw) = echo_gateway(&pki).await;
    let mut raw = tls(&gw, &pki).await;
    // Issue 12's desync bytes: a bare LF after the chunk size.
    raw.send(
        b"POST /e/outer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2f\nx\r\n0\r\n\r\n\
          GET /e/INNER HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n",
    )
    .await;
    let res = raw.response().await;
    assert_eq!(res.status, 400, "{}", res.text());
    assert_eq!(res.header("connection"), Some("close"));
    assert!(matches!(raw.closed_within(WAIT).await, Closed::Yes(rest) if rest.is_empty()));
    assert!(up.seen().iter().all(|s| s.path != "/e/INNER"), "nothing inside a body is a request");
}

#[tokio::test]
async fn large_bodies_cross_the_send_buffer_both_ways_with_a_slow_reader() {
    let pki = pki();
    // Far more than the kernel's socket buffers hold, so the gateway must wait for room.
    let big = vec![b'z'; 24 * 1024 * 1024];
    let served = big.clone();
    let up = Upstream::start("big", move |_req| {
        let body = served.clone();
        async move { Response::new(full(body)) }
    })
    .await;
    let echo = Upstream::echo("echo").await;
    let apis = vec![
        api("big", &[&up], json!([paths("big", &["/big"])]), json!({})),
        api("e", &[&echo], json!([paths("e", &["/e/*"])]), json!({})),
    ];
    let gw = gateway(&pki, apis, Options::default()).await;
    let mut stream = tls_stream(gw.tls_addr.unwrap(), &pki.ca, "localhost", &[b"http/1.1"]).await.unwrap();
    stream.write_all(b"GET /big HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    // Nothing read for a while, then small sips: the gateway waits on the socket, never errs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::with_capacity(big.len() + 1024);
    let mut chunk = [0u8; 16 * 1024];
    let started = std::time::Instant::now();
    let head_len = |got: &[u8]| got.windows(4).position(|w| w == b"\r\n\r\n").map(|h| h + 4);
    while head_len(&got).is_none_or(|h| got.len() < h + big.len()) {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        if got.len() < 128 * 1024 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(started.elapsed() < WAIT, "too slow");
    }
    let head_end = head_len(&got).unwrap();
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(got[head_end..].iter().all(|b| *b == b'z') && got.len() - head_end == big.len());
    // A 2 MiB upload over the same connection.
    let upload = vec![b'u'; 2 * 1024 * 1024];
    let head = format!("POST /e/up HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n", upload.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&upload).await.unwrap();
    let mut reply = Vec::new();
    while !reply.ends_with(b"}") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0);
        reply.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains(&format!("\"body_len\":{}", upload.len())), "{text}");
}

#[tokio::test]
async fn expect_continue_and_upgrades_work_over_tls() {
    let pki = pki();
    let echo = Upstream::echo("echo").await;
    let ws = Upstream::start("ws", |mut req| async move {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else { return };
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = io.read(&mut buf).await {
                if io.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                    break;
                }
            }
        });
        let mut res = text(101, "");
        res.headers_mut().insert("connection", http::HeaderValue::from_static("Upgrade"));
        res.headers_mut().insert("upgrade", http::HeaderValue::from_static("websocket"));
        res
    })
    .await;
    let apis = vec![
        api("e", &[&echo], json!([paths("e", &["/e/*"])]), json!({})),
        api("ws", &[&ws], json!([paths("ws", &["/ws"])]), json!({})),
    ];
    let gw = gateway(&pki, apis, Options::default()).await;
    let mut raw = tls(&gw, &pki).await;
    raw.send(b"POST /e/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n").await;
    let cont = raw.response_head().await;
    assert_eq!(cont.status, 100);
    raw.send(b"hello").await;
    assert_eq!(raw.response().await.json()["body"], "hello");
    raw.send(
        b"GET /ws HTTP/1.1\r\nhost: localhost\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
    )
    .await;
    assert_eq!(raw.response_head().await.status, 101);
    raw.send(b"ping over tls").await;
    assert_eq!(raw.read_exact(13).await, b"PING OVER TLS");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_and_stalled_handshakes_are_cut_off() {
    let pki = pki();
    let up = Upstream::echo("up").await;
    let opts = Options {
        listener: tollgate_gateway::ListenerOptions {
            header_read_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    let gw = gateway(&pki, vec![api("e", &[&up], json!([paths("e", &["/e/*"])]), json!({}))], opts).await;
    let addr = gw.tls_addr.unwrap();
    // Plain HTTP to the TLS port: an alert, then the connection ends.
    let mut plain = Raw::connect(addr).await;
    plain.send(b"GET /e/x HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    assert!(matches!(plain.closed_within(WAIT).await, Closed::Yes(_)));
    // A client that connects and says nothing, or stops half-way through a ClientHello.
    let mut silent = Raw::connect(addr).await;
    assert!(matches!(silent.closed_within(Duration::from_secs(5)).await, Closed::Yes(_)));
    let mut half = Raw::connect(addr).await;
    half.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).await;
    assert!(matches!(half.closed_within(Duration::from_secs(5)).await, Closed::Yes(_)));
    // A client that does not trust the certificate goes away; the listener stays fine.
    let other_ca = pki_ca_only();
    assert!(tls_stream(addr, &other_ca, "localhost", &[]).await.is_err());
    let mut ok = Raw::connect_tls(addr, &pki.ca, "localhost", &[]).await;
    ok.send(b"GET /e/after HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    assert_eq!(ok.response().await.status, 200);
    assert_eq!(up.requests(), 1, "only the last request reached the upstream");
}

fn pki_ca_only() -> Vec<u8> {
    pki().ca
}

#[tokio::test]
async fn the_plain_listener_can_send_everyone_to_https() {
    let pki = pki();
    let up = Upstream::echo("up").await;
    let apis = vec![api("e", &[&up], json!([paths("e", &["/e/*"])]), json!({}))];
    let edge = tollgate_gateway::edge::EdgeOptions { https_redirect_port: Some(8443), ..Default::default() };
    let gw = gateway(&pki, apis.clone(), Options { edge, ..Default::default() }).await;
    let mut plain = Raw::connect(gw.addr).await;
    for method in ["GET", "POST"] {
        plain
            .send(
                format!("{method} /e/x?q=1&r=%2F HTTP/1.1\r\nhost: API.example.com:8000\r\ncontent-length: 0\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let res = plain.response().await;
        assert_eq!(res.status, 308, "{method}: 308 keeps the method and body");
        assert_eq!(res.header("location"), Some("https://api.example.com:8443/e/x?q=1&r=%2F"));
    }
    // The node's own endpoints stay on plain HTTP (load balancer probes).
    plain.send(b"GET /__tollgate/health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(plain.response().await.status, 200);
    // HTTP/1.0 without a Host cannot be redirected.
    let mut old = Raw::connect(gw.addr).await;
    old.send(b"GET /e/x HTTP/1.0\r\n\r\n").await;
    assert_eq!(old.response().await.status, 400);
    // The HTTPS listener serves as usual; nothing reached the upstream over plain HTTP.
    let mut secure = tls(&gw, &pki).await;
    secure.send(b"GET /e/y HTTP/1.1\r\nhost: localhost\r\n\r\n").await;
    assert_eq!(secure.response().await.json()["path"], "/e/y");
    assert_eq!(up.requests(), 1);
    // On port 443 the port is left out.
    let edge = tollgate_gateway::edge::EdgeOptions { https_redirect_port: Some(443), ..Default::default() };
    let gw = gateway(&pki, apis, Options { edge, ..Default::default() }).await;
    let mut plain = Raw::connect(gw.addr).await;
    plain.send(b"GET / HTTP/1.1\r\nhost: [::1]:80\r\n\r\n").await;
    assert_eq!(plain.response().await.header("location"), Some("https://[::1]/"));
}
