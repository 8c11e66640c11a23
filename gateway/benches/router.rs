//! Router micro-benchmark: build time and ns per `find` for 10, 1,000 and 10,000 generated
//! routes (exact, prefix and template paths, some host-bound, some method-bound), over a mix
//! of hitting and missing requests. Median of 5 runs. Run with
//! `cargo bench -p tollgate-gateway --bench router`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method};
use tollgate_gateway::config::model::RouteDef;
use tollgate_gateway::router::{RequestView, Router, normalize_path};
use uuid::Uuid;

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const LOOKUPS_PER_RUN: usize = 400_000;
const RUNS: usize = 5;

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
        strip_path: i % 2 == 0,
        rewrite_path: None,
        priority: 0,
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

/// 1,000 requests, half hits (spread over all routes), half misses, interleaved.
fn requests(hits: Vec<Request>) -> Vec<Request> {
    let n = hits.len();
    let mut out = Vec::with_capacity(1_000);
    for k in 0..500 {
        let Some(hit) = hits.get(k * 7919 % n) else { continue };
        out.push(Request { host: hit.host.clone(), method: hit.method.clone(), path: hit.path.clone() });
        out.push(miss(k, n));
    }
    out
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
    let reqs = requests(hits);
    let (ns, hit_count) = time_finds(&router, &reqs, &HeaderMap::new());
    let hit_rate = 100.0 * hit_count as f64 / LOOKUPS_PER_RUN as f64;
    println!(
        "| {n:>6} | {:>10.2} | {ns:>12.1} | {hit_rate:>5.1}% | {:>6} |",
        median(builds).as_secs_f64() * 1e3,
        errors.len()
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
    println!("| routes | build (ms) | find (ns/op) |  hits  | errors |");
    println!("|-------:|-----------:|-------------:|-------:|-------:|");
    for n in SIZES {
        bench_size(n);
    }
    println!("\n| normalize_path input     | ns/op    |");
    println!("|--------------------------|---------:|");
    bench_normalize();
}
