//! Header handling between client and upstream: hop-by-hop headers removed both ways,
//! forwarding headers, request ids, trace context and `Host`.

use http::{HeaderValue, Response};
use serde_json::{Value, json};

use crate::helpers::upstream::text;
use crate::helpers::{Client, Gateway, Raw, Upstream, api, config, paths, raw};

async fn echo_gateway() -> (Gateway, Upstream) {
    let up = Upstream::echo("echo").await;
    let gw = Gateway::start(config(vec![api("echo", &[&up], json!([paths("all", &["/*"])]), json!({}))])).await;
    (gw, up)
}

/// All values of header `name` as the echo upstream saw them.
fn seen(doc: &Value, name: &str) -> Vec<String> {
    doc["headers"][name]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn one(doc: &Value, name: &str) -> String {
    let values = seen(doc, name);
    assert_eq!(values.len(), 1, "{name}: {values:?} in {doc}");
    values.into_iter().next().unwrap_or_default()
}

async fn send(gw: &Gateway, head: &str) -> raw::RawResponse {
    let mut conn = Raw::connect(gw.addr).await;
    conn.send(format!("{head}\r\n").as_bytes()).await;
    conn.response().await
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let (gw, _up) = echo_gateway().await;
    let r = send(
        &gw,
        "GET /h HTTP/1.1\r\nhost: example.com\r\nconnection: keep-alive, x-hop, X-Other-Hop\r\nx-hop: secret\r\n\
         x-other-hop: 2\r\nkeep-alive: timeout=5\r\nproxy-authorization: Basic Zm9vOmJhcg==\r\n\
         proxy-connection: keep-alive\r\nte: trailers\r\ntrailer: x-sum\r\nx-kept: yes\r\n",
    )
    .await;
    let doc = r.json();
    for name in
        ["connection", "x-hop", "x-other-hop", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer"]
    {
        assert!(seen(&doc, name).is_empty(), "{name} was forwarded: {doc}");
    }
    assert!(seen(&doc, "transfer-encoding").is_empty(), "no body, no framing header: {doc}");
    assert_eq!(one(&doc, "x-kept"), "yes");
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_not_returned() {
    let up = Upstream::start("hoppy", |_req| async {
        let mut res: Response<_> = text(200, "body");
        for (name, value) in [
            ("connection", "x-up-hop, keep-alive"),
            ("x-up-hop", "secret"),
            ("keep-alive", "timeout=5, max=100"),
            ("proxy-authenticate", "Basic realm=\"up\""),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ] {
            res.headers_mut().insert(name, HeaderValue::from_static(value));
        }
        res
    })
    .await;
    let gw = Gateway::start(config(vec![api("hoppy", &[&up], json!([paths("all", &["/*"])]), json!({}))])).await;
    let r = send(&gw, "GET /x HTTP/1.1\r\nhost: example.com\r\n").await;
    assert_eq!((r.status, r.text().as_str()), (200, "body"));
    for name in ["x-up-hop", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert!(r.header(name).is_none(), "{name} was returned: {:?}", r.headers);
    }
    assert!(r.headers.iter().all(|(n, v)| n != "connection" || !v.contains("x-up-hop")), "{:?}", r.headers);
    assert_eq!(r.header("x-kept"), Some("yes"));
}

#[tokio::test]
async fn forwarding_headers_are_appended_and_set() {
    let (gw, _up) = echo_gateway().await;
    let r = send(
        &gw,
        "GET /f HTTP/1.1\r\nhost: api.example.com:8443\r\nx-forwarded-for: 203.0.113.7\r\n\
         forwarded: for=203.0.113.7;proto=https\r\nx-forwarded-proto: https\r\n",
    )
    .await;
    let doc = r.json();
    assert_eq!(one(&doc, "x-forwarded-for"), "203.0.113.7, 127.0.0.1");
    assert_eq!(one(&doc, "x-forwarded-proto"), "http", "the gateway's own scheme replaces the client's claim");
    assert_eq!(one(&doc, "x-forwarded-host"), "api.example.com:8443");
    // RFC 7239: a host with a port is not a token and must be quoted.
    assert_eq!(
        one(&doc, "forwarded"),
        "for=203.0.113.7;proto=https, for=127.0.0.1;proto=http;host=\"api.example.com:8443\""
    );
    let r = send(&gw, "GET /f HTTP/1.1\r\nhost: plain.example.com\r\n").await;
    let doc = r.json();
    assert_eq!(one(&doc, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(one(&doc, "forwarded"), "for=127.0.0.1;proto=http;host=plain.example.com");
}

#[tokio::test]
async fn the_upstream_gets_its_own_authority_as_host() {
    let (gw, up) = echo_gateway().await;
    let doc = send(&gw, "GET /h HTTP/1.1\r\nhost: api.example.com\r\n").await.json();
    assert_eq!(one(&doc, "host"), format!("127.0.0.1:{}", up.port()));
    assert_eq!(one(&doc, "x-forwarded-host"), "api.example.com");
}

#[tokio::test]
async fn request_ids_are_kept_when_sane_and_generated_otherwise() {
    let (gw, up) = echo_gateway().await;
    let r = send(&gw, "GET /id HTTP/1.1\r\nhost: example.com\r\nx-request-id: client-id-123\r\n").await;
    assert_eq!(one(&r.json(), "x-request-id"), "client-id-123");
    assert_eq!(r.header("x-request-id"), Some("client-id-123"), "returned to the client");

    let long = "a".repeat(200);
    for head in [
        "GET /id HTTP/1.1\r\nhost: example.com\r\n".to_owned(),
        "GET /id HTTP/1.1\r\nhost: example.com\r\nx-request-id: has space\r\n".to_owned(),
        format!("GET /id HTTP/1.1\r\nhost: example.com\r\nx-request-id: {long}\r\n"),
    ] {
        let r = send(&gw, &head).await;
        let upstream_id = one(&r.json(), "x-request-id");
        assert!(uuid::Uuid::parse_str(&upstream_id).is_ok(), "a fresh id is generated: {upstream_id}");
        assert_eq!(r.header("x-request-id"), Some(upstream_id.as_str()), "the same id goes back to the client");
    }
    let ids: std::collections::HashSet<String> = up
        .seen()
        .iter()
        .filter_map(|s| s.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 4, "every request got its own id: {ids:?}");
    // The gateway's own answers carry the id too.
    let r = send(&gw, "GET /%2f HTTP/1.1\r\nhost: example.com\r\nx-request-id: err-1\r\n").await;
    assert_eq!((r.status, r.header("x-request-id")), (400, Some("err-1")));
}

#[tokio::test]
async fn trace_context_passes_through_unchanged() {
    let (gw, _up) = echo_gateway().await;
    let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let r = Client::http1()
        .send(
            crate::helpers::client::get(&gw.url("/t"))
                .header("traceparent", parent)
                .header("tracestate", state)
                .body(crate::helpers::client::empty())
                .expect("request"),
        )
        .await;
    let doc = r.json();
    assert_eq!(one(&doc, "traceparent"), parent);
    assert_eq!(one(&doc, "tracestate"), state);
}

#[tokio::test]
async fn http2_requests_forward_their_authority() {
    let (gw, up) = echo_gateway().await;
    let r = Client::h2c().get(&gw.url("/h2?x=1")).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    let doc = r.json();
    assert_eq!(doc["path"], "/h2?x=1");
    assert_eq!(one(&doc, "host"), format!("127.0.0.1:{}", up.port()));
    assert_eq!(one(&doc, "x-forwarded-host"), gw.addr.to_string(), "from :authority: {doc}");
    assert_eq!(one(&doc, "x-forwarded-proto"), "http");
}

#[tokio::test]
async fn upstream_fields_pass_once_and_the_upstreams_own_request_id_is_kept() {
    let up = Upstream::start("ids", |_req| async {
        let mut res = text(200, "ok");
        res.headers_mut().insert("x-request-id", HeaderValue::from_static("upstream-7"));
        res.headers_mut().insert("x-custom", HeaderValue::from_static("Mixed Case, value"));
        res
    })
    .await;
    let gw = Gateway::start(config(vec![api("ids", &[&up], json!([paths("all", &["/*"])]), json!({}))])).await;
    let r = send(&gw, "GET /x HTTP/1.1\r\nhost: example.com\r\n").await;
    let count = |name: &str| r.headers.iter().filter(|(n, _)| n == name).count();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    for name in ["x-request-id", "content-length", "date", "x-custom"] {
        assert_eq!(count(name), 1, "{name} exactly once: {:?}", r.headers);
    }
    assert_eq!(r.header("x-request-id"), Some("upstream-7"));
    assert_eq!(r.header("x-custom"), Some("Mixed Case, value"));
    // HTTP/2 answers carry the same fields.
    let r2 = Client::h2c().get(&gw.url("/x")).await;
    assert_eq!((r2.header("x-request-id"), r2.header("x-custom")), (Some("upstream-7"), Some("Mixed Case, value")));
    assert_eq!(r2.header("content-length"), Some("2"));
}
