//! Picking, passive health, backups and state carry-over of [`Upstream`].

use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn target(weight: u32, backup: bool) -> TargetConfig {
    TargetConfig { weight, backup, ..TargetConfig::new("127.0.0.1", 8000) }
}

fn upstream(policy: LbPolicy, weights: &[u32]) -> Upstream {
    Upstream::new(UpstreamConfig {
        policy,
        targets: weights.iter().map(|&w| target(w, false)).collect(),
        ..Default::default()
    })
}

fn pick_index(up: &Upstream, hash: Option<u64>) -> Option<usize> {
    up.pick(hash, &[]).map(|p| p.index)
}

fn counts(up: &Upstream, picks: usize) -> Vec<usize> {
    let mut counts = vec![0; up.targets().len()];
    for _ in 0..picks {
        if let Some(i) = pick_index(up, None) {
            counts[i] += 1;
        }
    }
    counts
}

/// Reports enough failures to eject target `index` with the default passive config.
fn eject(up: &Upstream, index: usize) {
    (0..up.config().passive.consecutive_failures).for_each(|_| up.report(index, Outcome::ConnectFailure));
}

#[test]
fn round_robin_follows_weights_exactly_over_whole_cycles() {
    let up = upstream(LbPolicy::RoundRobin, &[3, 2, 1, 0]);
    let cycle: Vec<_> = (0..6).filter_map(|_| pick_index(&up, None)).collect();
    assert_eq!(cycle, vec![0, 1, 0, 2, 1, 0], "smooth: no target twice in a row unless it must");
    assert_eq!(counts(&up, 600), vec![300, 200, 100, 0], "weight 0 is never picked");
}

#[test]
fn round_robin_skips_unavailable_targets() {
    let up = upstream(LbPolicy::RoundRobin, &[1, 1, 1]);
    eject(&up, 1);
    assert!(!up.is_available(1));
    let shares = counts(&up, 300);
    assert_eq!(shares[1], 0);
    assert!(shares.iter().step_by(2).all(|c| (120..=180).contains(c)), "the skipped share is spread: {shares:?}");
}

#[test]
fn least_requests_prefers_less_loaded_targets() {
    let up = upstream(LbPolicy::LeastRequests, &[1, 1, 1]);
    let busy: Vec<_> = (0..10).map(|_| up.targets()[0].begin()).collect();
    assert_eq!(counts(&up, 1000)[0], 0, "of any two choices, the busy one loses");
    drop(busy);
    assert!(counts(&up, 1000).iter().all(|&c| c > 200), "idle targets share the load");
}

#[test]
fn least_requests_compares_load_per_weight() {
    let up = upstream(LbPolicy::LeastRequests, &[4, 1]);
    let _busy: Vec<_> = (0..3).map(|_| up.targets()[0].begin()).collect();
    let _light = up.targets()[1].begin();
    // 3 in flight per 4 weight is lighter than 1 per 1.
    assert_eq!(counts(&up, 100), vec![100, 0]);
}

#[test]
fn in_flight_counts_live_picks() {
    let up = upstream(LbPolicy::RoundRobin, &[1]);
    let pick = up.pick(None, &[]);
    assert_eq!(up.targets()[0].in_flight(), 1);
    drop(pick);
    assert_eq!(up.targets()[0].in_flight(), 0);
}

fn key_hashes() -> Vec<u64> {
    (0..10_000).map(|k: u32| hash::stable_hash(&[b"key", &k.to_le_bytes()])).collect()
}

fn assignment(up: &Upstream, keys: &[u64]) -> Vec<uuid::Uuid> {
    keys.iter().filter_map(|&k| up.pick(Some(k), &[]).map(|p| p.target.id)).collect()
}

#[test]
fn consistent_hashing_moves_only_the_removed_targets_keys() {
    let cfg = UpstreamConfig {
        policy: LbPolicy::ConsistentHash(HashOn::ClientIp),
        targets: (0..5).map(|_| target(DEFAULT_WEIGHT, false)).collect(),
        ..Default::default()
    };
    let keys = key_hashes();
    let up = Upstream::new(cfg.clone());
    let before = assignment(&up, &keys);
    assert_eq!(before, assignment(&up, &keys), "same key, same target");
    let removed = cfg.targets[2].id;
    let share = before.iter().filter(|&&id| id == removed).count() as f64 / keys.len() as f64;
    assert!((0.12..0.28).contains(&share), "about a fifth of the keys: {share}");
    let fewer = UpstreamConfig { targets: cfg.targets.iter().filter(|t| t.id != removed).cloned().collect(), ..cfg };
    let after = assignment(&up.rebuild(fewer), &keys);
    for (old, new) in before.iter().zip(&after) {
        assert!(old == new || *old == removed, "a key of a surviving target moved");
    }
}

#[test]
fn consistent_hashing_walks_past_an_unavailable_target_and_back() {
    let up = Upstream::new(UpstreamConfig {
        policy: LbPolicy::ConsistentHash(HashOn::ClientIp),
        targets: (0..5).map(|_| target(DEFAULT_WEIGHT, false)).collect(),
        ..Default::default()
    });
    let keys = key_hashes();
    let indices = |up: &Upstream| -> Vec<usize> { keys.iter().filter_map(|&k| pick_index(up, Some(k))).collect() };
    let before = indices(&up);
    let probes = ActiveHealthConfig { healthy_threshold: 1, unhealthy_threshold: 1, ..Default::default() };
    up.targets()[3].shared.health.record_probe(false, &probes);
    for (old, new) in before.iter().zip(&indices(&up)) {
        assert!(if *old == 3 { *new != 3 } else { old == new }, "only the unavailable target's keys move");
    }
    up.targets()[3].shared.health.record_probe(true, &probes);
    assert_eq!(indices(&up), before, "and they come back");
}

#[test]
fn hash_key_follows_the_policy() {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("acme"));
    let on_header = LbPolicy::ConsistentHash(HashOn::Header(http::HeaderName::from_static("x-tenant")));
    assert!(upstream(on_header, &[1]).hash_key(&headers, None, None).is_some());
    assert_eq!(upstream(LbPolicy::RoundRobin, &[1]).hash_key(&headers, None, None), None);
    // An identity header is the caller's, whatever the client sent.
    #[derive(Debug)]
    struct Anonymous;
    impl crate::wire::ExtraFields for Anonymous {
        fn each(&self, field: &mut dyn FnMut(&http::HeaderName, &[u8])) {
            field(&http::HeaderName::from_static("x-anonymous-consumer"), b"true");
        }
    }
    let anonymous = Anonymous;
    let name = http::HeaderName::from_static("x-anonymous-consumer");
    let on_identity = upstream(LbPolicy::ConsistentHash(HashOn::Header(name.clone())), &[1]);
    let mut forged = HeaderMap::new();
    forged.insert(&name, http::HeaderValue::from_static("false"));
    let mut sent = HeaderMap::new();
    sent.insert(&name, http::HeaderValue::from_static("true"));
    let hashed = on_identity.hash_key(&forged, Some(&anonymous), None);
    assert!(hashed.is_some());
    assert_eq!(hashed, on_identity.hash_key(&sent, None, None));
    assert_ne!(hashed, on_identity.hash_key(&forged, None, None));
    let up = upstream(LbPolicy::ConsistentHash(HashOn::ClientIp), &[1, 1]);
    assert!(pick_index(&up, None).is_some(), "no key: random, not nothing");
}

fn with_backup(policy: LbPolicy) -> Upstream {
    Upstream::new(UpstreamConfig {
        policy,
        targets: vec![target(1, false), target(1, false), target(1, true)],
        ..Default::default()
    })
}

#[tokio::test(start_paused = true)]
async fn backups_serve_only_while_no_primary_is_available() {
    for policy in [LbPolicy::RoundRobin, LbPolicy::LeastRequests, LbPolicy::ConsistentHash(HashOn::ClientIp)] {
        let up = with_backup(policy.clone());
        assert_eq!(counts(&up, 100)[2], 0, "{policy:?}");
        eject(&up, 0);
        assert_eq!(counts(&up, 100), vec![0, 100, 0], "{policy:?}");
        eject(&up, 1);
        assert_eq!(counts(&up, 100), vec![0, 0, 100], "{policy:?}");
        eject(&up, 2);
        assert!(up.pick(None, &[]).is_none(), "{policy:?}");
        tokio::time::advance(up.config().passive.base_ejection).await;
        assert_eq!(counts(&up, 100)[2], 0, "{policy:?}: primaries are back");
    }
}

#[test]
fn retries_go_to_another_target_when_there_is_one() {
    let up = with_backup(LbPolicy::RoundRobin);
    assert!((0..10).all(|_| pick_index(&up, None).is_some_and(|i| i < 2)));
    assert!((0..10).all(|_| up.pick(None, &[0]).is_some_and(|p| p.index == 1)));
    assert!((0..10).all(|_| up.pick(None, &[0, 1]).is_some_and(|p| p.index == 2)), "the backup is untried");
    assert!(up.pick(None, &[0, 1, 2]).is_some(), "all tried: try one again rather than fail");
    let single = upstream(LbPolicy::LeastRequests, &[1]);
    assert_eq!(single.pick(None, &[0]).map(|p| p.index), Some(0));
}

#[tokio::test(start_paused = true)]
async fn passive_ejection_expires_and_doubles_on_relapse() {
    let up = upstream(LbPolicy::RoundRobin, &[1, 1]);
    (0..4).for_each(|_| up.report(0, Outcome::Status(502)));
    up.report(0, Outcome::Status(404));
    (0..4).for_each(|_| up.report(0, Outcome::Timeout));
    assert!(up.is_available(0), "a 4xx is a success and resets the count");
    up.report(0, Outcome::Timeout);
    assert!(!up.is_available(0));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(up.is_available(0), "tried again after the ejection");
    up.report(0, Outcome::ConnectFailure);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(!up.is_available(0), "second ejection lasts 60 s");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(up.is_available(0));
    up.report(0, Outcome::Success);
    up.report(0, Outcome::ConnectFailure);
    assert!(up.is_available(0), "success ended probation");
    up.report(99, Outcome::ConnectFailure);
}

#[tokio::test(start_paused = true)]
async fn rebuild_carries_state_by_target_id() {
    let (a, b) = (target(1, false), target(1, false));
    let up = Upstream::new(UpstreamConfig { targets: vec![a.clone(), b.clone()], ..Default::default() });
    eject(&up, 0);
    let held = up.pick(None, &[]);
    assert_eq!(held.as_ref().map(|p| p.index), Some(1));
    let c = target(1, false);
    let heavier_b = TargetConfig { weight: 5, ..b.clone() };
    let next = up.rebuild(UpstreamConfig { targets: vec![c, heavier_b, a.clone()], ..Default::default() });
    assert!(next.is_available(0) && next.is_available(1) && !next.is_available(2), "a stays ejected");
    assert_eq!(next.targets()[1].in_flight(), 1, "b's in-flight request is still counted");
    drop(held);
    assert_eq!(next.targets()[1].in_flight(), 0);
    let moved_a = TargetConfig { port: 9000, ..a };
    let moved = next.rebuild(UpstreamConfig { targets: vec![moved_a], ..Default::default() });
    assert!(moved.is_available(0), "a new address starts fresh");
    let ids: HashMap<_, _> = next.targets().iter().map(|t| (t.id, t.weight)).collect();
    assert_eq!(ids.get(&b.id), Some(&5));
}

#[tokio::test(start_paused = true)]
async fn rebuild_keeps_an_unchanged_breaker_and_replaces_a_changed_one() {
    let breaker = BreakerConfig { consecutive_failures: 1, ..Default::default() };
    let cfg = UpstreamConfig { targets: vec![target(1, false)], breaker: Some(breaker.clone()), ..Default::default() };
    let up = Upstream::new(cfg.clone());
    if let Ok(permit) = up.admit() {
        permit.record(false);
    }
    assert!(up.admit().is_err());
    assert!(up.rebuild(cfg.clone()).admit().is_err(), "still open");
    let changed = BreakerConfig { open_for: Duration::from_secs(1), ..breaker };
    assert!(up.rebuild(UpstreamConfig { breaker: Some(changed), ..cfg }).admit().is_ok());
    assert!(upstream(LbPolicy::RoundRobin, &[1]).admit().is_ok_and(|p| !p.is_trial()));
}
