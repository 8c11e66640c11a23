//! Shared counting against a real Redis: atomic windows across nodes, quotas, failure
//! policies while a private Redis is down, and recovery when it is back.

use std::sync::Arc;
use std::time::Instant;

use time::Month;

use super::redis_server::{self, RedisServer};
use super::*;
use crate::limits::{Backend, Decision, Denial, Limiter, LimiterConfig, QuotaPeriod};

/// A node: its own limiter on the shared Redis, under the test's key namespace.
fn node(url: &str, namespace: &str, nodes: u32) -> Limiter {
    Limiter::new(config_for(url, namespace, nodes)).unwrap()
}

fn config_for(url: &str, namespace: &str, nodes: u32) -> LimiterConfig {
    LimiterConfig {
        redis_url: Some(url.to_owned()),
        namespace: namespace.to_owned(),
        redis_timeout: ms(500),
        circuit_open_for: ms(200),
        node_share: nodes,
        reserve_batch: 0,
    }
}

fn namespace() -> String {
    format!("tgtest-{}", uuid::Uuid::new_v4())
}

#[tokio::test]
async fn redis_gcra_admits_burst_plus_one_then_refills() {
    let (url, _server) = redis_server::shared();
    let l = node(&url, &namespace(), 1);
    let (k, p) =
        (key("burst"), PlanLimits { per_second: Some(5), burst: 2, mode: Mode::Redis, ..PlanLimits::default() });
    let mut ok = 0;
    for _ in 0..10 {
        let d = l.check(&k, &p, 1, l.now()).await;
        assert_eq!(d.backend, Backend::Redis);
        ok += usize::from(d.allowed);
    }
    assert_eq!(ok, 3, "B + 1 at once");
    let d = l.check(&k, &p, 1, l.now()).await;
    let wait = d.retry_after.unwrap();
    assert!(wait <= ms(200) && d.denied_by == Some(Denial::Rate), "{d:?}");
    tokio::time::sleep(wait + ms(5)).await;
    assert!(l.check(&k, &p, 1, l.now()).await.allowed, "refilled after Retry-After");
    assert!(!l.check(&k, &p, 3, l.now()).await.allowed, "a cost of 3 needs 3 intervals");
}

#[tokio::test]
async fn redis_quotas_follow_the_calendar_window_of_now() {
    let (url, _server) = redis_server::shared();
    let l = node(&url, &namespace(), 1);
    let k = key("quota");
    let p = PlanLimits { quota_per_day: Some(4), mode: Mode::Redis, ..PlanLimits::default() };
    let eve = Now { mono_ns: 0, utc: utc(2026, Month::March, 31, 23, 59, 59) };
    let mut ok = 0;
    for cost in [2, 2, 1] {
        ok += usize::from(l.check(&k, &p, cost, eve).await.allowed);
    }
    assert_eq!(ok, 2);
    let d = l.check(&k, &p, 1, eve).await;
    assert_eq!((d.denied_by, d.retry_after), (Some(Denial::Quota), Some(ms(1000))));
    let april = Now { mono_ns: 0, utc: utc(2026, Month::April, 1, 0, 0, 0) };
    let d = l.check(&k, &p, 3, april).await;
    assert_eq!((d.allowed, d.remaining, d.backend), (true, 1, Backend::Redis));
}

#[tokio::test]
async fn three_nodes_on_one_redis_admit_the_plan_limit_together() {
    let (url, _server) = redis_server::shared();
    let ns = namespace();
    let nodes: Vec<Limiter> = (0..3).map(|_| node(&url, &ns, 3)).collect();
    let (k, p) = (key("nodes"), redis_plan(30, 3, FailurePolicy::FailOpen));
    let mut ok = 0;
    let started = Instant::now();
    for i in 0..150 {
        let n = &nodes[i % 3];
        let d = n.check(&k, &p, 1, n.now()).await;
        assert_eq!(d.backend, Backend::Redis);
        ok += usize::from(d.allowed);
    }
    // B + 1 at once, then one every 2 s however the calls spread over the nodes.
    let refilled = usize::try_from(started.elapsed().as_secs() / 2).unwrap();
    assert!((4..=4 + refilled).contains(&ok), "admitted {ok}, expected B + 1 = 4 (+{refilled} refilled)");
}

/// Requests on `node` every 50 ms until Redis decides again (before `deadline`), showing each
/// fallback decision to `meanwhile`; returns Redis's decision.
async fn first_redis_decision(
    node: &Limiter,
    k: &LimitKey,
    p: &PlanLimits,
    deadline: Instant,
    meanwhile: impl Fn(&Decision),
) -> Decision {
    loop {
        let d = node.check(k, p, 1, node.now()).await;
        if d.backend == Backend::Redis {
            return d;
        }
        meanwhile(&d);
        assert!(Instant::now() < deadline, "shared counting did not resume");
        tokio::time::sleep(ms(50)).await;
    }
}

/// Requests `n` times on each node; returns how many passed and the backends seen.
async fn round(nodes: &[Limiter], k: &LimitKey, p: &PlanLimits, n: usize) -> (usize, Vec<Backend>) {
    let (mut ok, mut seen) = (0, Vec::new());
    for node in nodes {
        for _ in 0..n {
            let d = node.check(k, p, 1, node.now()).await;
            ok += usize::from(d.allowed);
            if !seen.contains(&d.backend) {
                seen.push(d.backend);
            }
        }
    }
    (ok, seen)
}

#[tokio::test]
async fn redis_down_falls_back_to_the_node_share_and_recovers() {
    let mut server = RedisServer::start();
    let ns = namespace();
    let nodes: Vec<Limiter> = (0..3).map(|_| node(&server.url(), &ns, 3)).collect();
    let (k, p) = (key("failover"), redis_plan(30, 29, FailurePolicy::FailOpen));
    assert_eq!(round(&nodes, &k, &p, 4).await, (12, vec![Backend::Redis]));

    server.stop();
    let (ok, seen) = round(&nodes, &k, &p, 20).await;
    assert_eq!(seen, vec![Backend::Fallback], "no error surfaces, the fallback counts");
    // Each node holds its third of what the fleet had left when it last asked Redis: after
    // node 0's four calls 26 were left (8 each), after node 1's 22 (7), after node 2's 18 (6).
    assert_eq!(ok, 8 + 7 + 6, "each node holds its share of what the fleet had left");

    server.restart();
    // Each node counts in Redis again once a probe gets through (one per node, at most every
    // 200 ms here); until then its fallback decides. Units Redis admitted are all counted.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut admitted = 0;
    for node in &nodes {
        let d = first_redis_decision(node, &k, &p, deadline, |_| {}).await;
        assert!(d.allowed, "the restarted Redis starts empty");
        admitted += 1;
    }
    let (ok, seen) = round(&nodes, &k, &p, 20).await;
    admitted += ok;
    // The restarted Redis starts empty, and is charged the 21 the nodes admitted on their own.
    assert_eq!((admitted, seen), (30 - 21, vec![Backend::Redis]), "shared counting resumed across nodes");
}

#[tokio::test]
async fn fail_closed_denies_while_redis_is_down() {
    let mut server = RedisServer::start();
    let l = node(&server.url(), &namespace(), 1);
    let (k, p) = (key("closed"), redis_plan(100, 0, FailurePolicy::FailClosed));
    assert!(l.check(&k, &p, 1, l.now()).await.allowed);
    server.stop();
    for _ in 0..5 {
        let d = l.check(&k, &p, 1, l.now()).await;
        assert_eq!((d.allowed, d.denied_by), (false, Some(Denial::CounterUnavailable)));
        assert!(d.retry_after.is_some());
    }
    let open = PlanLimits { failure_policy: FailurePolicy::FailOpen, ..p.clone() };
    assert_eq!(l.check(&k, &open, 1, l.now()).await.backend, Backend::Fallback, "policy is per plan");
}

#[tokio::test]
async fn an_unreachable_redis_from_the_start_is_no_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let l = node(&format!("redis://127.0.0.1:{port}"), &namespace(), 2);
    let (k, p) = (key("never"), redis_plan(10, 9, FailurePolicy::FailOpen));
    let started = Instant::now();
    let (ok, seen) = round(std::slice::from_ref(&l), &k, &p, 10).await;
    assert_eq!((ok, seen), (5, vec![Backend::Fallback]));
    assert!(started.elapsed() < Duration::from_secs(2), "the circuit spares the timeouts");
}

#[tokio::test]
async fn reserved_batches_never_overshoot_and_lose_at_most_a_batch_per_node() {
    let (url, _server) = redis_server::shared();
    let ns = namespace();
    let config = |_| LimiterConfig { reserve_batch: 8, ..config_for(&url, &ns, 3) };
    let nodes: Vec<Limiter> = (0..3).map(config).map(|c| Limiter::new(c).unwrap()).collect();
    let (k, p) = (key("reserve"), redis_plan(120, 119, FailurePolicy::FailOpen));
    let (ok, seen) = round(&nodes, &k, &p, 30).await;
    assert_eq!((ok, seen), (90, vec![Backend::Redis]), "under the limit every request passes");
    let (more, _) = round(&nodes, &k, &p, 30).await;
    assert!((120 - 3 * 8..=120).contains(&(ok + more)), "admitted {}", ok + more);
}

/// The admin's quota answer reads the very counters that enforce: what the gateways counted
/// (in Redis for a `redis` plan, on the node for a `local` one), refused requests not included.
#[tokio::test]
async fn the_quota_read_is_the_count_that_enforces() {
    let (url, _server) = redis_server::shared();
    let ns = namespace();
    let l = node(&url, &ns, 1);
    let reader = crate::limits::RedisCounter::new(&url, &ns, ms(500)).unwrap();
    let k = LimitKey::consumer(uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    let p =
        PlanLimits { quota_per_day: Some(5), quota_per_month: Some(100), mode: Mode::Redis, ..PlanLimits::default() };
    let now = Now { mono_ns: 0, utc: utc(2026, Month::March, 31, 12, 0, 0) };
    let mut admitted = Vec::new();
    for cost in [2, 2, 2] {
        admitted.push(l.check(&k, &p, cost, now).await.allowed);
    }
    assert_eq!(admitted, [true, true, false], "the third would exceed the day's 5");
    for period in [QuotaPeriod::Day, QuotaPeriod::Month] {
        assert_eq!(reader.quota_used(&k, period, now.utc).await.unwrap(), 4, "{period:?}");
    }
    let next_day = utc(2026, Month::April, 1, 0, 0, 1);
    assert_eq!(reader.quota_used(&k, QuotaPeriod::Day, next_day).await.unwrap(), 0);

    let local = Limiter::local();
    let p = PlanLimits { quota_per_day: Some(5), mode: Mode::Local, ..PlanLimits::default() };
    for cost in [2, 2, 2] {
        local.check(&k, &p, cost, now).await;
    }
    let (day_start, _) = crate::limits::quota_window(QuotaPeriod::Day, now.utc).unwrap();
    assert_eq!(local.local_quota_used(&k, &p, now.utc), [(QuotaPeriod::Day, day_start, 4)]);
    let redis_plan = PlanLimits { mode: Mode::Redis, ..p };
    assert!(local.local_quota_used(&k, &redis_plan, now.utc).is_empty(), "a redis plan's count is not local");
}

/// Script calls Redis has run (EVALSHA, and EVAL when the script was not loaded yet).
fn script_calls(url: &str) -> u64 {
    let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query(&mut conn).unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split(['=', ',']).nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Concurrent decisions on three nodes are coalesced into far fewer script calls than
/// decisions, and stay exact: one key's B + 1 at once, however the requests interleave.
#[tokio::test]
async fn concurrent_decisions_share_round_trips_and_stay_exact() {
    let server = RedisServer::start();
    let ns = namespace();
    let nodes: Vec<Arc<Limiter>> = (0..3).map(|_| Arc::new(node(&server.url(), &ns, 3))).collect();
    let p = PlanLimits { per_minute: Some(600), burst: 99, mode: Mode::Redis, ..PlanLimits::default() };
    let k = key("coalesced");
    // Warm each node's connection (and load the script) first.
    for n in &nodes {
        assert!(n.check(&k, &p, 1, n.now()).await.allowed);
    }
    let before = script_calls(&server.url());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..600 {
        let (n, k, p) = (nodes[i % 3].clone(), k.clone(), p.clone());
        tasks.spawn(async move { n.check(&k, &p, 1, n.now()).await });
    }
    let mut admitted = 3;
    while let Some(d) = tasks.join_next().await {
        let d = d.unwrap();
        assert_eq!(d.backend, Backend::Redis, "{d:?}");
        admitted += usize::from(d.allowed);
    }
    let refilled = usize::try_from(started.elapsed().as_millis() / 100).unwrap();
    assert!((100..=100 + refilled).contains(&admitted), "admitted {admitted}: B + 1 = 100 (+{refilled} refilled)");
    let calls = script_calls(&server.url()) - before;
    assert!(calls <= 300, "{calls} script calls for 600 concurrent decisions");
    println!("600 concurrent decisions on 3 nodes: {calls} script calls, {admitted} admitted");
}

/// What a node admits on its own while Redis is away is charged to Redis when it answers
/// again (also to a restarted, empty one), so an outage does not renew the plan.
#[tokio::test]
async fn units_admitted_during_an_outage_are_owed_to_redis() {
    let mut server = RedisServer::start();
    let l = node(&server.url(), &namespace(), 1);
    // 360 an hour, burst 9: 10 at once, then one every 10 s (no refill within the test).
    let p = PlanLimits { per_hour: Some(360), burst: 9, mode: Mode::Redis, ..PlanLimits::default() };
    let k = key("owed");
    let (ok, _) = round(std::slice::from_ref(&l), &k, &p, 4).await;
    assert_eq!(ok, 4);
    server.stop();
    let (ok, seen) = round(std::slice::from_ref(&l), &k, &p, 10).await;
    assert_eq!((ok, seen), (6, vec![Backend::Fallback]), "the fallback holds what the fleet had left");
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let nothing_left = |d: &Decision| assert!(!d.allowed, "the fallback has nothing left: {d:?}");
    let admitted = usize::from(first_redis_decision(&l, &k, &p, deadline, nothing_left).await.allowed);
    let (ok, _) = round(std::slice::from_ref(&l), &k, &p, 10).await;
    // The restarted Redis forgot the 4 it had counted, but is charged the 6 owed: 4 left, not 10.
    assert_eq!(admitted + ok, 4, "the 6 admitted during the outage were charged to Redis");
}

/// A stalled Redis (SIGSTOP) runs, when it resumes, every call the nodes sent meanwhile —
/// decisions they stopped waiting for and decided on their own, and probes carrying what they
/// owed. Those must not count again: after the stall the fleet has left exactly what it had
/// minus what the fallback admitted.
#[tokio::test]
async fn a_stalled_redis_does_not_count_the_calls_it_resumes_with() {
    let server = RedisServer::start();
    let config = LimiterConfig {
        redis_timeout: ms(100),
        circuit_open_for: ms(100),
        ..config_for(&server.url(), &namespace(), 1)
    };
    let l = Limiter::new(config).unwrap();
    // 3,600 an hour, burst 59: 60 at once, then one a second.
    let p = PlanLimits { per_hour: Some(3600), burst: 59, mode: Mode::Redis, ..PlanLimits::default() };
    let k = key("stalled");
    let started = Instant::now();
    let (ok, _) = round(std::slice::from_ref(&l), &k, &p, 10).await;
    assert_eq!(ok, 10);
    server.signal("STOP");
    // Twenty requests over two seconds: the first ones time out in Redis, then probes (each
    // carrying the units owed so far) every 100 ms; the fallback admits them all.
    let mut during = 0;
    for _ in 0..20 {
        let d = l.check(&k, &p, 1, l.now()).await;
        assert_eq!(d.backend, Backend::Fallback, "{d:?}");
        during += usize::from(d.allowed);
        tokio::time::sleep(ms(100)).await;
    }
    assert_eq!(during, 20);
    server.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut admitted = usize::from(first_redis_decision(&l, &k, &p, deadline, |_| {}).await.allowed);
    let (ok, _) = round(std::slice::from_ref(&l), &k, &p, 60).await;
    admitted += ok;
    // 60 − 10 − 20 = 30 were left, plus one a second since the start.
    let refilled = usize::try_from(started.elapsed().as_secs()).unwrap() + 1;
    assert!(
        (30..=30 + refilled).contains(&admitted),
        "after the stall {admitted} were admitted, expected 30 (+ up to {refilled} refilled)"
    );
}

/// The batch task keeps every requester's timeout: requests queued at different moments
/// behind a call to a stalled Redis each wait their own full timeout (not the first one's) and
/// no longer, then the failure policy decides.
#[tokio::test]
async fn each_request_waits_its_own_timeout_for_a_stalled_redis() {
    let server = RedisServer::start();
    let config = LimiterConfig {
        redis_timeout: ms(150),
        circuit_open_for: Duration::from_secs(60),
        ..config_for(&server.url(), &namespace(), 1)
    };
    let l = Arc::new(Limiter::new(config).unwrap());
    let p = PlanLimits { per_second: Some(1000), mode: Mode::Redis, ..PlanLimits::default() };
    let k = key("own-timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(first_redis_decision(&l, &k, &p, deadline, |_| {}).await.allowed);
    server.signal("STOP");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..3u64 {
        let (l, k, p) = (l.clone(), k.clone(), p.clone());
        tasks.spawn(async move {
            tokio::time::sleep(ms(50 * i)).await;
            let asked = Instant::now();
            let d = l.check(&k, &p, 1, l.now()).await;
            (i, d.backend, asked.elapsed())
        });
    }
    let mut waited = Vec::new();
    while let Some(r) = tasks.join_next().await {
        waited.push(r.unwrap());
    }
    server.signal("CONT");
    waited.sort_by_key(|w| w.0);
    for (i, backend, took) in waited {
        assert_eq!(backend, Backend::Fallback, "request {i}");
        assert!(took >= ms(145), "request {i} was given up after {took:?}, before its 150 ms");
        assert!(took < ms(1500), "request {i} waited {took:?} for a 150 ms timeout");
    }
}

/// Identical decisions of concurrent requests travel as one script entry that Redis decides at
/// once: each request gets exactly the decision it would have got from its own call, in queue
/// order — the first ones pass, the others see the state those left.
#[tokio::test]
async fn one_entry_decides_as_separate_calls_would() {
    let (url, _server) = redis_server::shared();
    let redis = crate::limits::RedisCounter::new(&url, &namespace(), ms(2000)).unwrap();
    let utc = utc(2026, Month::June, 15, 12, 0, 0);
    let plans = [
        PlanLimits { per_second: Some(10), burst: 4, mode: Mode::Redis, ..PlanLimits::default() },
        PlanLimits {
            per_minute: Some(600),
            burst: 2,
            quota_per_day: Some(9),
            mode: Mode::Redis,
            ..PlanLimits::default()
        },
        PlanLimits { per_hour: Some(7), mode: Mode::Redis, ..PlanLimits::default() },
    ];
    for (n, plan) in plans.iter().enumerate() {
        for cost in [1, 2, 3] {
            let now_us = 1_000_000_000_000 + 1_000_000 * (n as u64 * 10 + u64::from(cost));
            let (alone, together) = (key(&format!("alone-{n}-{cost}")), key(&format!("together-{n}-{cost}")));
            let mut want = Vec::new();
            for _ in 0..8 {
                want.push(redis.check_at(&alone, plan, cost, utc, now_us, 0).await.unwrap().0);
            }
            let calls = (0..8).map(|_| redis.check_at(&together, plan, cost, utc, now_us, 0));
            let got: Vec<Decision> =
                futures_util::future::join_all(calls).await.into_iter().map(|r| r.unwrap().0).collect();
            assert_eq!(got, want, "plan {n}, cost {cost}");
            assert!(
                want.iter().any(|d| d.allowed) && want.iter().any(|d| !d.allowed),
                "plan {n}, cost {cost}: {want:?}"
            );
        }
    }
}
