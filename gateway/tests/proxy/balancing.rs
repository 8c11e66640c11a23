//! Load balancing end to end: weighted round robin, consistent hashing, backups, and a
//! target dying under load.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::helpers::{Client, Gateway, Upstream, WAIT, api, config, eventually, paths, within};

fn all_routes() -> Value {
    json!([paths("all", &["/*"])])
}

fn weighted(up: &Upstream, weight: u32) -> Value {
    json!({ "host": "127.0.0.1", "port": up.port(), "weight": weight })
}

/// An API over explicit target entries.
fn api_with_targets(name: &str, targets: Vec<Value>, extra: Value) -> Value {
    let mut a = api(name, &[], all_routes(), extra);
    a["targets"] = Value::Array(targets);
    a
}

#[tokio::test]
async fn weighted_round_robin_follows_the_weights() {
    let (a, b) = (Upstream::echo("a").await, Upstream::echo("b").await);
    let gw =
        Gateway::start(config(vec![api_with_targets("wrr", vec![weighted(&a, 300), weighted(&b, 100)], json!({}))]))
            .await;
    let c = Client::http1();
    let mut order = Vec::new();
    for _ in 0..40 {
        order.push(c.get(&gw.url("/w")).await.upstream());
    }
    let count = |name: &str| order.iter().filter(|u| *u == name).count();
    assert_eq!((count("a"), count("b")), (30, 10), "{order:?}");
    // Smooth: never more than three a's in a row.
    assert!(order.windows(4).all(|w| w.iter().any(|u| u == "b")), "{order:?}");
}

#[tokio::test]
async fn consistent_hashing_keeps_each_key_on_one_target_across_changes() {
    let ups = [Upstream::echo("a").await, Upstream::echo("b").await, Upstream::echo("c").await];
    let hashed = |targets: &[&Upstream]| {
        config(vec![api(
            "hashed",
            targets,
            all_routes(),
            json!({ "lb_policy": "consistent_hash", "hash_on": "header:x-user" }),
        )])
    };
    let mut gw = Gateway::start(hashed(&[&ups[0], &ups[1], &ups[2]])).await;
    let c = Client::http1();
    let placement = |c: Client, url: String| async move {
        let mut by_key: HashMap<String, HashSet<String>> = HashMap::new();
        for key in 0..30 {
            for _ in 0..4 {
                let req = crate::helpers::client::get(&url).header("x-user", format!("user-{key}"));
                let r = c.send(req.body(crate::helpers::client::empty()).expect("req")).await;
                by_key.entry(format!("user-{key}")).or_default().insert(r.upstream());
            }
        }
        by_key
    };
    let before = placement(c.clone(), gw.url("/h")).await;
    assert!(before.values().all(|set| set.len() == 1), "each key stays on one target: {before:?}");
    let used: HashSet<&String> = before.values().flatten().collect();
    assert_eq!(used.len(), 3, "keys spread over all targets: {used:?}");

    // Removing a target moves only its keys.
    gw.reload(hashed(&[&ups[0], &ups[1]])).await;
    let after = placement(c, gw.url("/h")).await;
    assert!(after.values().flatten().all(|u| u != "c"), "the removed target gets nothing: {after:?}");
    for (key, targets) in &before {
        let now = &after[key];
        assert_eq!(now.len(), 1, "{key}: {now:?}");
        if !targets.contains("c") {
            assert_eq!(targets, now, "{key} moved although its target stayed");
        }
    }
}

#[tokio::test]
async fn backup_targets_serve_only_when_the_primaries_are_down() {
    let (mut primary, backup) = (Upstream::echo("primary").await, Upstream::echo("backup").await);
    let targets = vec![
        json!({ "host": "127.0.0.1", "port": primary.port() }),
        json!({ "host": "127.0.0.1", "port": backup.port(), "backup": true }),
    ];
    let extra = json!({
        "retries": 1,
        "passive_health": { "consecutive_failures": 1, "base_ejection_ms": 60000, "max_ejection_ms": 60000 },
    });
    let gw = Gateway::start(config(vec![api_with_targets("backed", targets, extra)])).await;
    let c = Client::http1();
    for _ in 0..10 {
        assert_eq!(c.get(&gw.url("/b")).await.upstream(), "primary");
    }
    assert_eq!(backup.requests(), 0, "the backup is idle while the primary is up");
    primary.kill().await;
    for i in 0..10 {
        let r = c.get(&gw.url("/b")).await;
        assert_eq!((r.status.as_u16(), r.upstream()), (200, "backup".to_owned()), "request {i}: {}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_requests_keep_succeeding_when_a_target_dies_under_load() {
    let (a, mut b) = (Upstream::echo("a").await, Upstream::echo("b").await);
    let extra = json!({
        "retries": 2,
        "connect_timeout_ms": 500,
        "passive_health": { "consecutive_failures": 2, "base_ejection_ms": 30000, "max_ejection_ms": 30000 },
    });
    let gw = Gateway::start(config(vec![api("pair", &[&a, &b], all_routes(), extra)])).await;
    let url = gw.url("/load");
    let (stop, killed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop, killed, done) = (url.clone(), stop.clone(), killed.clone(), done.clone());
            tokio::spawn(async move {
                let c = Client::http1();
                let mut results = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let started_after_kill = killed.load(Ordering::SeqCst);
                    let r = c.get(&url).await;
                    let upstream = if r.status == 200 { r.upstream() } else { r.text() };
                    results.push((started_after_kill, r.status.as_u16(), upstream));
                    done.fetch_add(1, Ordering::SeqCst);
                }
                results
            })
        })
        .collect();
    eventually(WAIT, "load on both targets", || async { a.requests() > 50 && b.requests() > 50 }).await;
    b.kill().await;
    killed.store(true, Ordering::SeqCst);
    let at_kill = done.load(Ordering::SeqCst);
    eventually(WAIT, "300 more requests", || async { done.load(Ordering::SeqCst) >= at_kill + 300 }).await;
    stop.store(true, Ordering::SeqCst);
    let mut results = Vec::new();
    for w in workers {
        results.extend(within(WAIT, "a worker", w).await.expect("worker"));
    }
    let failed: Vec<_> = results.iter().filter(|(_, status, _)| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
    let late: Vec<_> = results.iter().filter(|(after, _, up)| *after && up != "a").collect();
    assert!(late.is_empty(), "after the kill only a serves: {late:?}");
    assert!(results.iter().filter(|(after, _, _)| *after).count() >= 300);
}

/// A target that refuses connections costs no request, whatever the method and with
/// `retries: 0`: nothing was sent, so the request (body included) goes to the next target;
/// passive health still ejects the refusing one.
#[tokio::test]
async fn a_refusing_target_fails_over_for_every_method_without_retries() {
    let (a, mut b) = (Upstream::echo("a").await, Upstream::echo("b").await);
    let b_port = b.port();
    b.kill().await;
    let passive = json!({ "consecutive_failures": 3, "base_ejection_ms": 60000, "max_ejection_ms": 60000 });
    let gw =
        Gateway::start(config(vec![api("pair", &[&a, &b], all_routes(), json!({ "passive_health": passive }))])).await;
    let (c, url) = (Client::http1(), gw.url("/fail-over"));
    for i in 0..1000 {
        let r = if i % 2 == 0 {
            c.get(&url).await
        } else {
            c.send_body(http::Method::POST, &url, format!("payload {i}")).await
        };
        assert_eq!((r.status.as_u16(), r.upstream()), (200, "a".to_owned()), "request {i}: {}", r.text());
        if i % 2 == 1 {
            assert_eq!(r.json()["body"], format!("payload {i}"), "the body arrives whole");
        }
    }
    assert_eq!(a.requests(), 1000);
    // Ejected: b listening again on its port gets nothing for the ejection's minute.
    let back = tokio::net::TcpListener::bind(("127.0.0.1", b_port)).await.expect("rebind b's port");
    for _ in 0..20 {
        assert_eq!(c.get(&url).await.upstream(), "a");
    }
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(100), back.accept()).await;
    assert!(accepted.is_err(), "the ejected target was tried");
}
