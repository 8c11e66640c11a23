//! [`Router::update`] against [`Router::build`]: over seeded random sequences of route
//! additions, changes and deletions, the updated router answers every generated request
//! exactly like one built from scratch, and the router it was derived from is unchanged.

use std::collections::BTreeMap;

use fastrand::Rng;

use super::*;
use crate::router::cowmap::CowMap;

const HOSTS: [&str; 5] = ["api.example.com", "*.example.com", "*.eu.example.com", "other.org", "API.example.com."];
const SEGMENTS: [&str; 7] = ["a", "b", "users", "me", "{id}", "{x}", ""];
const METHODS: [&str; 3] = ["GET", "POST", "not a method"];
const REQUEST_HOSTS: [&str; 5] = ["api.example.com", "x.example.com", "a.eu.example.com", "other.org", "example.com"];
const REQUEST_SEGMENTS: [&str; 7] = ["a", "b", "users", "me", "42", "", "zz"];

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from.get(rng.usize(..from.len())).copied().unwrap_or_default()
}

/// A path pattern over a small vocabulary, so routes collide; now and then an invalid one
/// (`{id}` twice, or an empty segment).
fn random_path(rng: &mut Rng) -> String {
    let mut path = String::new();
    for _ in 0..rng.usize(0..4) {
        path.push('/');
        path.push_str(pick(rng, &SEGMENTS));
    }
    match rng.u8(..4) {
        0 if !path.is_empty() => path.push_str("/*"),
        1 if path.ends_with('}') => path.push_str("/{id}"),
        _ if path.is_empty() => path.push('/'),
        _ => {}
    }
    path
}

/// A random definition for route `n`, sharing paths, hosts and conditions with others.
fn random_route(rng: &mut Rng, n: u128) -> RouteDef {
    // No paths at all (every path) is rare, or it would answer most requests.
    let count = if rng.u8(..20) == 0 { 0 } else { rng.usize(1..3) };
    let paths: Vec<String> = (0..count).map(|_| random_path(rng)).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut def = with_priority(route(n, &paths), i32::from(rng.u8(..3) == 0));
    def.api_id = Uuid::from_u128(u128::from(rng.u8(..4)));
    def.strip_path = rng.bool();
    if rng.u8(..3) == 0 {
        def.hosts = (0..rng.usize(1..3)).map(|_| pick(rng, &HOSTS).to_owned()).collect();
    }
    if rng.u8(..3) == 0 {
        def.methods = (0..rng.usize(1..3)).map(|_| pick(rng, &METHODS).to_owned()).collect();
    }
    if rng.u8(..4) == 0 {
        def = with_header(def, "x-tenant", &["t1"]);
    }
    if rng.u8(..4) == 0 {
        def = with_query(def, "v", if rng.bool() { &["2"] } else { &[] });
    }
    def
}

/// A request over the same vocabulary as the routes.
fn random_request(rng: &mut Rng) -> Req {
    let mut path = String::new();
    for _ in 0..rng.usize(0..5) {
        path.push('/');
        path.push_str(pick(rng, &REQUEST_SEGMENTS));
    }
    let path = leak(if path.is_empty() { "/".to_owned() } else { path });
    let mut r = req(path).host(pick(rng, &REQUEST_HOSTS));
    r = r.method(if rng.bool() { Method::GET } else { Method::POST });
    if rng.bool() {
        r = r.header("x-tenant", "t1");
    }
    if rng.bool() {
        r = r.query(if rng.bool() { "v=2" } else { "v=1" });
    }
    r
}

/// Everything a caller can see of a match: route id, pattern, parameters, upstream path.
type Answer = (u128, String, Vec<(String, String)>, String);

fn answer(r: &Req, router: &Router) -> Option<Answer> {
    let m = r.find(router)?;
    let params = m.params().iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Some((m.id().as_u128(), m.pattern().to_owned(), params, m.upstream_path().into_owned()))
}

/// Fails unless `router` answers like a router built from `defs`.
fn assert_same_as_built(router: &Router, defs: &BTreeMap<Uuid, RouteDef>, requests: &[Req], step: usize) {
    let (built, _) = Router::build(defs.values());
    assert_eq!(router.len(), built.len(), "step {step}");
    for r in requests {
        assert_eq!(answer(r, router), answer(r, &built), "step {step}: {} {} {}", r.method, r.host, r.path);
    }
}

/// Changes one to three routes among 40 ids: each is added, modified or deleted.
fn random_changes(rng: &mut Rng, defs: &mut BTreeMap<Uuid, RouteDef>) -> Vec<Uuid> {
    (0..rng.usize(1..4))
        .map(|_| {
            let n = rng.u128(1..41);
            if rng.u8(..3) == 0 {
                defs.remove(&Uuid::from_u128(n));
            } else {
                defs.insert(Uuid::from_u128(n), random_route(rng, n));
            }
            Uuid::from_u128(n)
        })
        .collect()
}

#[test]
fn update_answers_like_a_fresh_build() {
    let mut rng = Rng::with_seed(0x7011_0b5e);
    let requests: Vec<Req> = (0..400).map(|_| random_request(&mut rng)).collect();
    let mut defs = BTreeMap::new();
    let mut router = Router::build([]).0;
    for step in 0..300 {
        let (before, previous) = (defs.clone(), router.clone());
        let changed = random_changes(&mut rng, &mut defs);
        let (next, errors) = router.update(&defs, &changed);
        let (_, all_errors) = Router::build(defs.values());
        let want: Vec<_> = all_errors.into_iter().filter(|e| changed.contains(&e.route_id)).collect();
        assert_eq!(errors, want, "step {step}");
        assert_same_as_built(&next, &defs, &requests, step);
        assert_same_as_built(&previous, &before, &requests, step);
        router = next;
    }
}

/// Route `n` of a large config: its own first segment and, for some, its own host, so the
/// trie root and the host tables grow past one table into chunks.
fn wide_route(rng: &mut Rng, n: u128) -> RouteDef {
    let path = format!("/s{}/{}", rng.u16(..400), pick(rng, &["x", "{id}", "*"]));
    let def = with_priority(route(n, &[path.as_str()]), i32::from(rng.u8(..2)));
    match rng.u8(..3) {
        0 => with_hosts(def, &[&format!("h{}.example.com", rng.u16(..300))]),
        1 => with_hosts(def, &[&format!("*.t{}.example.com", rng.u16(..300))]),
        _ => def,
    }
}

/// A request aimed at `def`'s first host and path.
fn request_for(def: &RouteDef) -> Req {
    let host = match def.hosts.first() {
        Some(h) => h.strip_prefix('*').map_or_else(|| h.clone(), |suffix| format!("a{suffix}")),
        None => "api.example.com".to_owned(),
    };
    let path = def.paths.first().map_or("/", String::as_str).replace("{id}", "7").replace('*', "x/y");
    req(leak(path)).host(leak(host))
}

#[test]
fn update_answers_like_a_fresh_build_with_large_tables() {
    let mut rng = Rng::with_seed(0x7011_0e0f);
    let mut defs: BTreeMap<Uuid, RouteDef> =
        (1..=1_500).map(|n| (Uuid::from_u128(n), wide_route(&mut rng, n))).collect();
    let mut router = Router::build(defs.values()).0;
    let sample: Vec<Req> = defs.values().step_by(5).map(request_for).collect();
    for step in 0..40 {
        let changed: Vec<Uuid> = (0..rng.usize(1..20)).map(|_| Uuid::from_u128(rng.u128(1..=1_600))).collect();
        // Aimed at the changed routes as they were and as they are now, and at the rest.
        let mut requests: Vec<Req> = changed.iter().filter_map(|id| defs.get(id)).map(request_for).collect();
        for id in &changed {
            match rng.u8(..4) {
                0 => defs.remove(id),
                _ => defs.insert(*id, wide_route(&mut rng, id.as_u128())),
            };
        }
        requests.extend(changed.iter().filter_map(|id| defs.get(id)).map(request_for));
        router = router.update(&defs, &changed).0;
        assert_same_as_built(&router, &defs, &requests, step);
        assert_same_as_built(&router, &defs, &sample, step);
    }
    assert!(matches!(router.tiers.exact, CowMap::Chunked { .. }), "the host table is chunked");
}

/// A request field that lives as long as the test binary (`Req` borrows `'static` text).
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

#[test]
fn update_with_nothing_changed_keeps_the_answers() {
    let mut rng = Rng::with_seed(0x7011_0c1d);
    let defs: BTreeMap<Uuid, RouteDef> = (1..30).map(|n| (Uuid::from_u128(n), random_route(&mut rng, n))).collect();
    let requests: Vec<Req> = (0..200).map(|_| random_request(&mut rng)).collect();
    let (router, _) = Router::build(defs.values());
    let (same, errors) = router.update(&defs, &[]);
    assert!(errors.is_empty());
    assert_same_as_built(&same, &defs, &requests, 0);
}

#[test]
fn removing_every_route_leaves_no_empty_trie_behind() {
    let mut rng = Rng::with_seed(0x7011_0d0e);
    let mut defs: BTreeMap<Uuid, RouteDef> = (1..60).map(|n| (Uuid::from_u128(n), random_route(&mut rng, n))).collect();
    let (router, _) = Router::build(defs.values());
    let ids: Vec<Uuid> = defs.keys().copied().collect();
    defs.clear();
    let (empty, _) = router.update(&defs, &ids);
    assert!(empty.is_empty());
    assert!(empty.tiers.exact.is_empty() && empty.tiers.wildcard.is_empty() && empty.tiers.any.is_empty());
    assert!(!router.is_empty(), "the original router is untouched");
}
