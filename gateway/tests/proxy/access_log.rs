//! The access log through the whole gateway: one JSON line per request with who called, what
//! was routed where and why a refusal happened; the query (which may hold a key) never in it;
//! and a writer that cannot keep up drops lines instead of slowing requests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tollgate_gateway::access_log::{AccessLogOptions, FieldSet, Sink};

use crate::helpers::client::{empty, get};
use crate::helpers::{Client, Gateway, Options, Raw, Upstream, WAIT, api, closed_port, config, eventually, paths};

const KEY: &str = "tg_logtest_key_0123456789abcdefghij";

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-access-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// `orders` (key auth, `?api_key=` too), `open` (anonymous) and `down` (a closed port).
async fn setup(log: AccessLogOptions) -> (Gateway, Upstream) {
    let up = Upstream::echo("orders").await;
    let orders = api(
        "orders",
        &[&up],
        json!([paths("all", &["/orders/*"])]),
        json!({"auth_methods": ["key_auth"], "key_query_param": "api_key", "plans": [{"name": "free", "rate_limit_per_minute": 1000, "burst": 100}]}),
    );
    let open = api("open", &[&up], json!([paths("open", &["/open/*"])]), json!({}));
    let mut down = api("down", &[], json!([paths("down", &["/down/*"])]), json!({}));
    down["targets"] = json!([{ "host": "127.0.0.1", "port": closed_port().await }]);
    let mut doc = config(vec![orders, open, down]);
    doc["consumers"] = json!([{
        "name": "acme",
        "keys": [{"key": KEY}],
        "subscriptions": [{"api": "orders", "plan": "free"}],
    }]);
    let gw = Gateway::start_with(doc, Options { access_log: Some(log), ..Options::default() }).await;
    (gw, up)
}

#[tokio::test]
async fn each_request_gets_one_line_saying_who_what_and_why() {
    let dir = temp_dir();
    let path = dir.join("access.log");
    let (mut gw, up) = setup(AccessLogOptions::new(Sink::File(path.clone()))).await;
    let client = Client::http1();
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    let ok = client
        .send(
            get(&gw.url("/orders/1?limit=5"))
                .header("x-api-key", KEY)
                .header("traceparent", traceparent)
                .header("x-request-id", "req-ok")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let wrong = format!("{}zz", &KEY[..KEY.len() - 2]);
    let bad = client.send(get(&gw.url("/orders/2")).header("x-api-key", &wrong).body(empty()).unwrap()).await;
    bad.assert_problem(401, "invalid-credentials");
    let in_query = client.get(&gw.url(&format!("/orders/3?api_key={KEY}&secret=hunter2"))).await;
    assert_eq!(in_query.status, 200, "{}", in_query.text());
    client.get(&gw.url("/nowhere")).await.assert_problem(404, "no-route");
    client.get(&gw.url("/down/x")).await.assert_problem(502, "upstream-unreachable");
    let mut raw = Raw::connect(gw.addr).await;
    raw.send(b"GET /open/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello").await;
    assert_eq!(raw.response().await.status, 400);
    let posted = client.send_body(http::Method::POST, &gw.url("/open/caf%C3%A9%22q%22"), "twelve bytes").await;
    assert_eq!(posted.status, 200, "{}", posted.text());

    // The probe requests the helper sends on start are logged too: find ours by path.
    let want = ["/orders/1", "/orders/2", "/orders/3", "/nowhere", "/down/x", "/open/caf%C3%A9%22q%22"];
    let of = |all: &[Value], p: &str| all.iter().find(|l| l["path"] == p).cloned();
    eventually(WAIT, "every request's line", || {
        let all = lines(&path);
        async move { want.iter().all(|p| of(&all, p).is_some()) }
    })
    .await;
    let all = lines(&path);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(!text.contains("hunter2") && !text.contains(KEY), "no query and no whole key in the log");

    let line = of(&all, "/orders/1").unwrap();
    assert_eq!(line["request_id"], "req-ok");
    assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert_eq!(line["scheme"], "http");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["host"], "127.0.0.1");
    assert_eq!(line["api"], "orders");
    assert!(line["api_id"].as_str().is_some_and(|s| s.len() == 36), "{line}");
    assert!(line["route_id"].as_str().is_some_and(|s| s.len() == 36), "{line}");
    assert!(line["consumer_id"].as_str().is_some_and(|s| s.len() == 36), "{line}");
    assert_eq!(line["key_prefix"], &KEY[..9]);
    assert_eq!(line["status"], 200);
    assert_eq!(line["upstream"], format!("127.0.0.1:{}", up.port()));
    assert_eq!(line["upstream_attempts"], 1);
    assert_eq!(line["reason"], Value::Null);
    let total = line["latency_ms"].as_f64().unwrap_or(-1.0);
    let upstream = line["upstream_latency_ms"].as_f64().unwrap_or(-1.0);
    assert!(upstream > 0.0 && total >= upstream, "upstream {upstream} ms within total {total} ms");
    assert_eq!(line["response_bytes"].as_u64(), ok.header("content-length").and_then(|l| l.parse().ok()));
    assert!(line["time"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{line}");

    let line = of(&all, "/orders/2").unwrap();
    assert_eq!((line["status"].clone(), line["reason"].clone()), (json!(401), json!("invalid-credentials")));
    assert_eq!(line["key_prefix"], &KEY[..9], "the refused key's prefix, for support");
    assert_eq!((line["consumer_id"].clone(), line["upstream"].clone()), (Value::Null, Value::Null));
    assert_eq!(line["upstream_attempts"], 0);

    let line = of(&all, "/orders/3").unwrap();
    assert_eq!(line["key_prefix"], &KEY[..9], "a key in the query is found and logged by prefix");
    assert_eq!(line["status"], 200);

    let line = of(&all, "/nowhere").unwrap();
    assert_eq!((line["status"].clone(), line["reason"].clone()), (json!(404), json!("no-route")));
    assert_eq!((line["api"].clone(), line["route_id"].clone()), (Value::Null, Value::Null));

    let line = of(&all, "/down/x").unwrap();
    assert_eq!((line["status"].clone(), line["reason"].clone()), (json!(502), json!("upstream-unreachable")));
    assert_eq!(line["api"], "down");
    assert!(line["upstream"].as_str().is_some_and(|u| u.starts_with("127.0.0.1:")), "{line}");

    let line = of(&all, "/open/caf%C3%A9%22q%22").unwrap();
    assert_eq!((line["method"].clone(), line["request_bytes"].clone()), (json!("POST"), json!(12)));
    assert_eq!(line["key_prefix"], Value::Null);

    let refused: Vec<&Value> = all.iter().filter(|l| l["reason"] == "bad-request").collect();
    assert_eq!(refused.len(), 1, "the malformed request's line: {refused:?}");
    assert_eq!(refused[0]["status"], 400);
    assert_eq!(refused[0]["client_ip"], "127.0.0.1");
    for untrusted in ["method", "host", "path", "request_id"] {
        assert_eq!(refused[0][untrusted], Value::Null, "nothing of a malformed request is logged");
    }
    assert!(all.iter().all(|l| l.as_object().map(|o| o.len()) == Some(21)), "every field in every line");
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn fields_can_be_chosen_and_rotation_reopens_the_file() {
    let dir = temp_dir();
    let path = dir.join("access.log");
    let fields = FieldSet::parse("status,path,reason").unwrap();
    let (mut gw, _up) = setup(AccessLogOptions { fields, ..AccessLogOptions::new(Sink::File(path.clone())) }).await;
    let client = Client::http1();
    assert_eq!(client.get(&gw.url("/open/before")).await.status, 200);
    eventually(WAIT, "the first line", || {
        let all = lines(&path);
        async move { all.iter().any(|l| l["path"] == "/open/before") }
    })
    .await;
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    // What logrotate does next: SIGHUP to the process (this test process; the gateway
    // catches it while it runs).
    let hup = std::process::Command::new("kill").args(["-HUP", &std::process::id().to_string()]).status();
    assert!(hup.is_ok_and(|s| s.success()), "kill -HUP");
    // Lines keep going to the renamed file until the writer reopens (within 20 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(client.get(&gw.url("/open/after")).await.status, 200);
    eventually(WAIT, "the line after rotation in the new file", || {
        let all = lines(&path);
        async move { all.iter().any(|l| l["path"] == "/open/after") }
    })
    .await;
    let old = lines(&rotated);
    assert!(old.iter().any(|l| l["path"] == "/open/before") && !old.iter().any(|l| l["path"] == "/open/after"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    for line in text.lines() {
        let at = |k: &str| line.find(&format!("\"{k}\":"));
        assert_eq!(at("path"), Some(1), "{line}");
        assert!(at("path") < at("status") && at("status") < at("reason"), "in the log's order: {line}");
        let fields = serde_json::from_str::<Value>(line).ok().and_then(|v| v.as_object().map(|o| o.len()));
        assert_eq!(fields, Some(3), "only the chosen fields: {line}");
    }
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A log nobody reads (a FIFO whose reader never reads: the pipe fills) does not slow
/// requests down: every request is answered, the lines that fit are whole, and the rest
/// are dropped — not queued without bound.
#[tokio::test]
async fn a_stalled_log_never_holds_requests() {
    let dir = temp_dir();
    let fifo = dir.join("access.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo (coreutils)");
    assert!(made.success());
    // The writer's open blocks until a reader opens: the reader opens on a thread and then
    // reads nothing until told to.
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut file = std::fs::File::open(&reader_path).expect("open the FIFO to read");
        let _ = go_rx.recv();
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut all).expect("read the FIFO");
        all
    });
    let opts = AccessLogOptions { capacity: 16, ..AccessLogOptions::new(Sink::File(fifo.clone())) };
    let (mut gw, _up) = setup(opts).await;
    let client = Client::http1();
    let requests = 2_000;
    // A request that waited for its log line would block its worker thread for good, and the
    // runtime with it: a watchdog thread fails the whole test binary instead of a hang.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = done.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        while !watched.load(std::sync::atomic::Ordering::SeqCst) {
            if std::time::Instant::now() > deadline {
                eprintln!("a_stalled_log_never_holds_requests: requests blocked behind the stalled access log");
                std::process::exit(101);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    for i in 0..requests {
        let r = client.get(&gw.url(&format!("/open/{i}"))).await;
        assert_eq!(r.status, 200, "request {i} answered while the log is stalled");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    // Let the reader drain the pipe, then stop the gateway (which closes the log).
    let _ = go_tx.send(());
    gw.begin_shutdown();
    gw.stopped().await.expect("gateway stops");
    let bytes = reader.join().expect("reader thread");
    let text = String::from_utf8(bytes).expect("UTF-8 lines");
    let logged: Vec<Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a torn line ({e}): {l}"))).collect();
    let ours = logged.iter().filter(|l| l["path"].as_str().is_some_and(|p| p.starts_with("/open/"))).count();
    assert!(ours < requests, "a pipe of 64 KiB and a queue of 16 cannot hold {requests} lines: {ours} came through");
    assert!(ours > 0, "the lines that fit are written");
    let _ = std::fs::remove_dir_all(&dir);
}
