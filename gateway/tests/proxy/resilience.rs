//! Resilience end to end: timeouts, unreachable upstreams, the circuit breaker and its
//! fallback, canary splits, and client faults that must not count against an upstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};

use crate::helpers::upstream::text;
use tollgate_gateway::Limits;

use crate::helpers::{
    Client, Gate, Gateway, Options, Raw, Upstream, WAIT, api, closed_port, config, eventually, paths,
};

fn all_routes() -> Value {
    json!([paths("all", &["/*"])])
}

const NO_PASSIVE: &str = r#"{ "consecutive_failures": 0, "base_ejection_ms": 1000, "max_ejection_ms": 1000 }"#;

fn no_passive() -> Value {
    serde_json::from_str(NO_PASSIVE).expect("json")
}

#[tokio::test]
async fn a_slow_upstream_gets_a_504_after_the_read_timeout() {
    let never = Gate::default();
    let held = never.clone();
    let up = Upstream::start("slow", move |_req| {
        let held = held.clone();
        async move {
            held.wait().await;
            text(200, "too late")
        }
    })
    .await;
    let gw = Gateway::start(config(vec![api("slow", &[&up], all_routes(), json!({ "read_timeout_ms": 300 }))])).await;
    let started = tokio::time::Instant::now();
    let r = Client::http1().get(&gw.url("/slow")).await;
    r.assert_problem(504, "upstream-timeout");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(up.requests(), 1, "no retries are configured");
    never.open();
}

#[tokio::test]
async fn a_refused_connection_is_a_502_without_retries() {
    let port = closed_port().await;
    let mut a = api("down", &[], all_routes(), json!({}));
    a["targets"] = json!([{ "host": "127.0.0.1", "port": port }]);
    let gw = Gateway::start(config(vec![a])).await;
    let r = Client::http1().get(&gw.url("/x")).await;
    r.assert_problem(502, "upstream-unreachable");
    assert!(!r.text().contains(&port.to_string()), "no internals leak: {}", r.text());
    // With a body too: no other target to fail over to, so the refusal is the answer.
    let r = Client::http1().send_body(http::Method::POST, &gw.url("/x"), "payload").await;
    r.assert_problem(502, "upstream-unreachable");
}

fn breaker(fallback: Option<Value>) -> Value {
    json!({
        "consecutive_failures": 3,
        "failure_rate_percent": 0,
        "min_requests": 100,
        "window_ms": 10000,
        "open_ms": 400,
        "half_open_requests": 1,
        "fallback": fallback,
    })
}

#[tokio::test]
async fn the_circuit_breaker_opens_after_failures_serves_the_fallback_and_recovers() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let up = Upstream::start("flaky", move |_req| {
        let ok = flag.load(Ordering::SeqCst);
        async move { if ok { text(200, "fine") } else { text(500, "broken") } }
    })
    .await;
    let fallback = json!({ "status": 503, "content_type": "application/json", "body": "{\"fallback\":true}" });
    let extra = |fallback| json!({ "circuit_breaker": breaker(fallback), "passive_health": no_passive() });
    let gw = Gateway::start(config(vec![
        api("guarded", &[&up], json!([paths("g", &["/g/*"])]), extra(Some(fallback))),
        api("bare", &[&up], json!([paths("b", &["/b/*"])]), extra(None)),
    ]))
    .await;
    let c = Client::http1();
    for _ in 0..3 {
        let r = c.get(&gw.url("/g/x")).await;
        assert_eq!((r.status.as_u16(), r.text()), (500, "broken".to_owned()), "failures pass through until it opens");
    }
    let r = c.get(&gw.url("/g/x")).await;
    assert_eq!((r.status.as_u16(), r.header("content-type")), (503, Some("application/json")));
    assert_eq!(r.json(), json!({ "fallback": true }));
    assert!(r.header("x-request-id").is_some());
    assert_eq!(up.requests(), 3, "an open breaker sends nothing upstream");

    for _ in 0..3 {
        c.get(&gw.url("/b/x")).await;
    }
    c.get(&gw.url("/b/x")).await.assert_problem(503, "circuit-open");
    assert_eq!(up.requests(), 6);

    // Once the upstream heals, a half-open trial closes the breaker again.
    healthy.store(true, Ordering::SeqCst);
    eventually(WAIT, "the breaker to close again", || async { c.get(&gw.url("/g/x")).await.status == 200 }).await;
    for _ in 0..5 {
        assert_eq!(c.get(&gw.url("/g/x")).await.text(), "fine");
    }
}

#[tokio::test]
async fn canary_weight_splits_traffic_and_the_canary_header_forces_a_pool() {
    let (stable, canary) = (Upstream::echo("stable").await, Upstream::echo("canary").await);
    let mut a = api("split", &[], all_routes(), json!({ "canary_weight": 20, "canary_header": "x-canary" }));
    a["targets"] = json!([stable.target(), { "host": "127.0.0.1", "port": canary.port(), "pool": "canary" }]);
    let gw = Gateway::start(config(vec![a])).await;
    let c = Client::http1();
    let mut to_canary = 0;
    for _ in 0..400 {
        if c.get(&gw.url("/s")).await.upstream() == "canary" {
            to_canary += 1;
        }
    }
    // 20 % of 400 is 80 (σ ≈ 8): the bounds are more than five σ away.
    assert!((40..=130).contains(&to_canary), "{to_canary} of 400 went to the canary");
    for (forced, expected) in [("canary", "canary"), ("stable", "stable"), ("CANARY", "canary")] {
        for _ in 0..20 {
            let req = crate::helpers::client::get(&gw.url("/s")).header("x-canary", forced);
            let r = c.send(req.body(crate::helpers::client::empty()).expect("req")).await;
            assert_eq!(r.upstream(), expected, "x-canary: {forced}");
        }
    }
}

#[tokio::test]
async fn a_broken_request_body_is_the_clients_fault_not_the_upstreams() {
    let up = Upstream::echo("echo").await;
    let extra =
        json!({ "passive_health": { "consecutive_failures": 2, "base_ejection_ms": 60000, "max_ejection_ms": 60000 } });
    let opts = Options { limits: Limits { max_body_bytes: 1024, ..Limits::default() }, ..Options::default() };
    let gw = Gateway::start_with(config(vec![api("strict", &[&up], all_routes(), extra)]), opts).await;
    let chunked = |body: &str| format!("POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{body}");
    let oversized = chunked(&format!("800\r\n{}\r\n0\r\n\r\n", "o".repeat(0x800)));
    for (request, status) in [(chunked("5\r\nhello\r\nzz\r\n"), 400), (oversized, 413)] {
        for _ in 0..3 {
            let mut raw = Raw::connect(gw.addr).await;
            raw.send(request.as_bytes()).await;
            let r = raw.response().await;
            assert_eq!(r.status, status, "the client's fault: {}", r.text());
        }
    }
    // Had those counted against the target, it would be ejected now.
    let r = Client::http1().get(&gw.url("/after")).await;
    assert_eq!(r.status, 200, "{}", r.text());
}
