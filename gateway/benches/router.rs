//! Router micro-benchmark: build time, the time of an `update` with one changed route
//! (derive the new router, drop the old one), and ns per `find` for 10, 1,000, 10,000 and
//! 100,000 generated routes (exact, prefix and template paths, some host-bound, some
//! method-bound), over a mix of hitting and missing requests, then hits only and misses only
//! ("sane": every hit found, no miss found, no build error). Median of 5 runs (of 101
//! updates). Run with `cargo bench -p tollgate-gateway --bench router`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use tollgate_gateway::config::model::RouteDef;
use tollgate_gateway::router::{RequestView, Router, normalize_path};
use uuid::Uuid;

const SIZES: [usize; 4] = [10, 1_000, 10_000, 100_000];
const LOOKUPS_PER_RUN: usize = 400_000;
const RUNS: usize = 5;
const UPDATES: usize = 101;

/// Routes per service: service `s` owns routes `10 s .. 10 s + 9`.
const PER_SERVICE: usize = 10;

fn route(i: usize, hosts: Vec<String>, path: String, methods: &[&str]) -> RouteDef {
    RouteDef {
        id: Uuid::from_u128(i as u128 + 1),
        api_id: Uuid::from_u128((i / PER_SERVICE) as u128 + 1),
        name: format!("route-{i}"),
        hosts,
        paths: vec![path],
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
        strip_path: i.is_multiple_of(2),
        rewrite_path: None,
        priority: 0,
        cost: 1,
        auth_methods: None,
    }
}

/// Route `i` of the generated mix, and a request path (with host and method) that hits it.
fn generated(i: usize) -> (RouteDef, Request) {
    let s = i / PER_SERVICE;
    let (host, path, methods, req_path): (Option<String>, String, &[&str], String) = match i % PER_SERVICE {
        0..=2 => (None, format!("/api/v1/svc{s}/res{i}"), &[], format!("/api/v1/svc{s}/res{i}")),
        3 => (None, format!("/api/v1/svc{s}/res{i}"), &["GET", "HEAD"], format!("/api/v1/svc{s}/res{i}")),
        4 => (None, format!("/api/v1/svc{s}/res{i}/{{id}}"), &[], format!("/api/v1/svc{s}/res{i}/42")),
        5 => (
            None,
            format!("/api/v1/svc{s}/res{i}/{{id}}/sub/{{sub}}"),
            &["GET"],
            format!("/api/v1/svc{s}/res{i}/7/sub/x"),
        ),
        6 | 7 => (None, format!("/svc{s}/r{i}/*"), &[], format!("/svc{s}/r{i}/a/b/c")),
        8 => (Some(format!("h{s}.example.com")), format!("/res{i}/*"), &[], format!("/res{i}/x")),
        _ => (Some(format!("*.t{s}.example.com")), "/items/{id}".to_owned(), &["GET"], "/items/9".to_owned()),
    };
    let req_host = match (&host, i % PER_SERVICE) {
        (Some(_), 9) => format!("acme.t{s}.example.com"),
        (Some(h), _) => h.clone(),
        (None, _) => "api.example.com".to_owned(),
    };
    let def = route(i, host.into_iter().collect(), path, methods);
    (def, Request { host: req_host, method: Method::GET, path: req_path })
}

struct Request {
    host: String,
    method: Method,
    path: String,
}

/// Misses of several kinds: unknown paths, near misses, wrong methods, unknown hosts.
fn miss(k: usize, routes: usize) -> Request {
    let s = k % routes.div_ceil(PER_SERVICE);
    let i = s * PER_SERVICE;
    let (host, method, path) = match k % 5 {
        0 => ("api.example.com", Method::GET, format!("/nothing/here/{k}")),
        1 => ("api.example.com", Method::GET, format!("/api/v1/svc{s}/unknown")),
        2 => ("api.example.com", Method::DELETE, format!("/api/v1/svc{s}/res{}", i + 3)),
        3 => ("other.org", Method::GET, format!("/res{}/x", i + 8)),
        _ => ("api.example.com", Method::GET, format!("/svc{s}/r{}", i + 5)),
    };
    Request { host: host.to_owned(), method, path }
}

/// 500 hits spread over all routes, and 500 misses.
fn requests(hits: &[Request]) -> (Vec<Request>, Vec<Request>) {
    let n = hits.len();
    let pick = |k: usize| {
        hits.get(k * 7919 % n).map(|h| Request { host: h.host.clone(), method: h.method.clone(), path: h.path.clone() })
    };
    ((0..500).filter_map(pick).collect(), (0..500).map(|k| miss(k, n)).collect())
}

/// The hits and misses interleaved.
fn mixed(hits: &[Request], misses: &[Request]) -> Vec<Request> {
    let copy = |r: &Request| Request { host: r.host.clone(), method: r.method.clone(), path: r.path.clone() };
    hits.iter().zip(misses).flat_map(|(h, m)| [copy(h), copy(m)]).collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn time_finds(router: &Router, reqs: &[Request], headers: &HeaderMap) -> (f64, usize) {
    let mut hits = 0;
    let runs = (0..RUNS)
        .map(|_| {
            hits = 0;
            let start = Instant::now();
            for r in reqs.iter().cycle().take(LOOKUPS_PER_RUN) {
                let view = RequestView { host: &r.host, method: &r.method, path: &r.path, headers, query: None };
                hits += usize::from(black_box(router.find(black_box(&view))).is_some());
            }
            start.elapsed()
        })
        .collect();
    (median(runs).as_nanos() as f64 / LOOKUPS_PER_RUN as f64, hits)
}

/// Median time of one `update` changing one route's priority (a different route each time),
/// including dropping the router it replaces.
fn time_updates(router: &Router, defs: &[RouteDef]) -> Duration {
    let mut map: BTreeMap<Uuid, RouteDef> = defs.iter().map(|d| (d.id, d.clone())).collect();
    let mut router = router.clone();
    let samples = (0..UPDATES)
        .filter_map(|k| {
            let id = defs.get(k * 7919 % defs.len())?.id;
            map.get_mut(&id)?.priority = 1 + (k % 2) as i32;
            let start = Instant::now();
            router = black_box(router.update(&map, &[id])).0;
            Some(start.elapsed())
        })
        .collect();
    median(samples)
}

fn bench_size(n: usize) {
    let (defs, hits): (Vec<RouteDef>, Vec<Request>) = (0..n).map(generated).unzip();
    let builds = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(Router::build(&defs));
            start.elapsed()
        })
        .collect();
    let (router, errors) = Router::build(&defs);
    let (hit_reqs, miss_reqs) = requests(&hits);
    let headers = HeaderMap::new();
    let (ns, hit_count) = time_finds(&router, &mixed(&hit_reqs, &miss_reqs), &headers);
    let (hit_ns, hits_found) = time_finds(&router, &hit_reqs, &headers);
    let (miss_ns, misses_found) = time_finds(&router, &miss_reqs, &headers);
    let hit_rate = 100.0 * hit_count as f64 / LOOKUPS_PER_RUN as f64;
    let sane = hits_found == LOOKUPS_PER_RUN && misses_found == 0 && errors.is_empty();
    let build_ms = median(builds).as_secs_f64() * 1e3;
    let update_us = time_updates(&router, &defs).as_secs_f64() * 1e6;
    println!(
        "| {n:>7} | {build_ms:>10.2} | {update_us:>11.1} | {ns:>9.1} | {hit_ns:>9.1} | {miss_ns:>9.1} | {hit_rate:>5.1}% | {sane:>5} |"
    );
}

fn bench_normalize() {
    let paths = ["/api/v1/svc3/res31", "/svc9/r96/a/b/c", "/a/./b/../c//d", "/public/%2e%2e/admin", "/caf%c3%a9/x"];
    for path in paths {
        let runs = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..LOOKUPS_PER_RUN {
                    let _ = black_box(normalize_path(black_box(path)));
                }
                start.elapsed()
            })
            .collect();
        println!("| {path:<24} | {:>8.1} |", median(runs).as_nanos() as f64 / LOOKUPS_PER_RUN as f64);
    }
}

fn main() {
    println!("router: {LOOKUPS_PER_RUN} lookups per run, 50% hits / 50% misses, median of {RUNS} runs\n");
    println!("|  routes | build (ms) | update (µs) | mixed (ns)|  hit (ns) | miss (ns) |  hits  | sane  |");
    println!("|--------:|-----------:|------------:|----------:|----------:|----------:|-------:|------:|");
    for n in SIZES {
        bench_size(n);
    }
    println!("\n| normalize_path input     | ns/op    |");
    println!("|--------------------------|---------:|");
    bench_normalize();
}
