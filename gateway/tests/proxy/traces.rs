//! Traces through the whole gateway, exported to an in-process OTLP/HTTP receiver: a
//! request's server span continues the trace the client sent, each upstream attempt is a
//! child span whose id the upstream receives in `traceparent`, a failed attempt is an error,
//! and an unsampled request exports nothing but still carries its trace id upstream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{Value, json};
use tollgate_gateway::trace::TraceOptions;

use crate::helpers::client::{empty, get};
use crate::helpers::upstream::text;
use crate::helpers::{Client, Gateway, Options, Upstream, WAIT, api, closed_port, config, eventually, paths};

/// Every span the receiver got, flattened, with the resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

async fn otlp_receiver() -> (Upstream, Received) {
    let received: Received = Arc::default();
    let store = received.clone();
    let up = Upstream::start("otlp", move |req| {
        let store = store.clone();
        async move {
            assert_eq!(req.uri().path(), "/v1/traces");
            assert_eq!(req.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
            let bytes = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let doc: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
                let service = rs["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == "service.name")
                    .and_then(|a| a["value"]["stringValue"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for span in ss["spans"].as_array().into_iter().flatten() {
                        store.lock().unwrap().push((service.clone(), span.clone()));
                    }
                }
            }
            text(200, "{}")
        }
    })
    .await;
    (up, received)
}

fn attr(span: &Value, key: &str) -> Value {
    let a = span["attributes"].as_array().into_iter().flatten().find(|a| a["key"] == key);
    a.map(|a| a["value"].clone()).unwrap_or(Value::Null)
}

fn spans_of(received: &Received, trace: &str) -> Vec<Value> {
    received.lock().unwrap().iter().filter(|(_, s)| s["traceId"] == trace).map(|(_, s)| s.clone()).collect()
}

fn nanos(span: &Value, field: &str) -> u128 {
    span[field].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn a_trace_continues_the_clients_and_names_each_upstream_attempt() {
    let (collector, received) = otlp_receiver().await;
    let up = Upstream::echo("orders").await;
    let orders = api("orders", &[&up], json!([paths("all", &["/orders/*"])]), json!({}));
    let mut down = api("down", &[], json!([paths("down", &["/down/*"])]), json!({}));
    down["targets"] = json!([{ "host": "127.0.0.1", "port": closed_port().await }]);
    let tracing = TraceOptions {
        endpoint: format!("http://127.0.0.1:{}/v1/traces", collector.port()).parse().unwrap(),
        // Only what the client asks to sample is traced.
        sample_ratio: 0.0,
        service_name: "tollgate-gateway".into(),
        instance_id: "node-1".into(),
        capacity: 1024,
    };
    let opts = Options { tracing: Some(tracing), ..Options::default() };
    let mut gw = Gateway::start_with(config(vec![orders, down]), opts).await;
    let client = Client::http1();
    let (t1, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let t2 = "0af7651916cd43dd8448eb211c80319c";

    let ok = client
        .send(
            get(&gw.url("/orders/1")).header("traceparent", format!("00-{t1}-{client_span}-01")).body(empty()).unwrap(),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let sent = ok.json()["headers"]["traceparent"].clone();
    let sent: Vec<&str> = sent.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert_eq!(sent.len(), 1, "one traceparent upstream, the gateway's: {sent:?}");
    let (prefix, rest) = sent[0].split_at(36);
    assert_eq!(prefix, format!("00-{t1}-"), "the client's trace id goes upstream");
    let (attempt_span, flags) = rest.split_at(16);
    assert_ne!(attempt_span, client_span, "under the gateway's own span");
    assert_eq!(flags, "-01");

    let unsampled = client.get(&gw.url("/orders/2")).await;
    let tp = unsampled.json()["headers"]["traceparent"][0].as_str().unwrap_or_default().to_owned();
    assert!(tp.len() == 55 && tp.ends_with("-00"), "an unsampled request still passes a trace id: {tp}");
    let unsampled_trace = tp[3..35].to_owned();

    let failed = client
        .send(get(&gw.url("/down/x")).header("traceparent", format!("00-{t2}-{client_span}-01")).body(empty()).unwrap())
        .await;
    assert_eq!(failed.status, 502);

    eventually(WAIT, "both traces exported", || {
        let done = spans_of(&received, t1).len() == 2 && spans_of(&received, t2).len() == 2;
        async move { done }
    })
    .await;
    let spans = spans_of(&received, t1);
    let server = spans.iter().find(|s| s["kind"] == 2).unwrap();
    let attempt = spans.iter().find(|s| s["kind"] == 3).unwrap();
    assert_eq!(server["parentSpanId"], client_span, "the server span's parent is the client's span");
    assert_eq!(server["name"], "GET orders");
    assert_eq!(attr(server, "http.response.status_code")["intValue"], "200");
    assert_eq!(attr(server, "tollgate.api")["stringValue"], "orders");
    assert_eq!(attr(server, "url.path")["stringValue"], "/orders/1");
    assert_eq!(server["status"]["code"], 0);
    assert_eq!(attempt["parentSpanId"], server["spanId"], "the attempt is the server span's child");
    assert_eq!(attempt["spanId"], attempt_span, "the upstream was told the attempt's span");
    assert_eq!(attr(attempt, "server.address")["stringValue"], format!("127.0.0.1:{}", up.port()));
    assert!(nanos(server, "startTimeUnixNano") <= nanos(attempt, "startTimeUnixNano"));
    assert!(nanos(attempt, "endTimeUnixNano") <= nanos(server, "endTimeUnixNano"));
    assert!(received.lock().unwrap().iter().all(|(service, _)| service == "tollgate-gateway"));

    let spans = spans_of(&received, t2);
    let server = spans.iter().find(|s| s["kind"] == 2).unwrap();
    let attempt = spans.iter().find(|s| s["kind"] == 3).unwrap();
    assert_eq!(server["status"]["code"], 2, "a 502 is an error");
    assert_eq!(attr(server, "error.type")["stringValue"], "upstream-unreachable");
    assert_eq!(attempt["status"]["code"], 2, "the attempt that could not connect is an error");
    assert_eq!(attempt["parentSpanId"], server["spanId"]);

    // Nothing of the unsampled request, even after the next export.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(spans_of(&received, &unsampled_trace).is_empty());
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");
}

#[tokio::test]
async fn spans_queued_at_shutdown_are_exported_and_a_dead_collector_holds_nothing() {
    let (collector, received) = otlp_receiver().await;
    let up = Upstream::echo("orders").await;
    let orders = api("orders", &[&up], json!([paths("all", &["/orders/*"])]), json!({}));
    let tracing = |port: u16| TraceOptions {
        endpoint: format!("http://127.0.0.1:{port}/v1/traces").parse().unwrap(),
        sample_ratio: 1.0,
        service_name: "tollgate-gateway".into(),
        instance_id: "node-1".into(),
        capacity: 1024,
    };
    let opts = Options { tracing: Some(tracing(collector.port())), ..Options::default() };
    let mut gw = Gateway::start_with(config(vec![orders.clone()]), opts).await;
    let client = Client::http1();
    for i in 0..20 {
        assert_eq!(client.get(&gw.url(&format!("/orders/{i}"))).await.status, 200);
    }
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");
    let paths: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["kind"] == 2)
        .filter_map(|(_, s)| attr(s, "url.path")["stringValue"].as_str().map(str::to_owned))
        .filter(|p| p.starts_with("/orders/"))
        .collect();
    assert_eq!(paths.len(), 20, "every sampled request's span, the last ones flushed on shutdown: {paths:?}");

    // A collector that is down costs requests nothing: they are all answered.
    let opts = Options { tracing: Some(tracing(closed_port().await)), ..Options::default() };
    let mut gw = Gateway::start_with(config(vec![orders]), opts).await;
    for i in 0..20 {
        assert_eq!(client.get(&gw.url(&format!("/orders/{i}"))).await.status, 200);
    }
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");
}
