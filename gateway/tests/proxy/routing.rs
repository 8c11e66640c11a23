//! Routing end to end: path shapes, strip/rewrite, hosts, methods, 404s, and path tricks that
//! must not reach a route they were not normalised into.

use serde_json::{Value, json};

use crate::helpers::{Client, Gateway, Upstream, api, config, paths, raw};

struct Setup {
    gw: Gateway,
    main: Upstream,
    public: Upstream,
    admin: Upstream,
    _others: Vec<Upstream>,
}

async fn setup() -> Setup {
    let (main, hosted, wild) =
        (Upstream::echo("main").await, Upstream::echo("hosted").await, Upstream::echo("wild").await);
    let (public, admin) = (Upstream::echo("public").await, Upstream::echo("admin").await);
    let main_routes = json!([
        { "name": "exact", "paths": ["/exact"] },
        { "name": "prefix", "paths": ["/prefix/*"] },
        { "name": "template", "paths": ["/users/{id}"] },
        { "name": "strip", "paths": ["/strip/*"], "strip_path": true },
        { "name": "rewrite", "paths": ["/old/{id}/*"], "rewrite_path": "/v2/items/{id}" },
        { "name": "post-only", "paths": ["/only-post"], "methods": ["POST"] },
    ]);
    let gw = Gateway::start(config(vec![
        api("main", &[&main], main_routes, json!({})),
        api(
            "hosted",
            &[&hosted],
            json!([{ "name": "h", "hosts": ["api.example.com"], "paths": ["/exact"] }]),
            json!({}),
        ),
        api("wild", &[&wild], json!([{ "name": "w", "hosts": ["*.example.org"] }]), json!({})),
        api("public", &[&public], json!([paths("p", &["/public/*"])]), json!({})),
        api("admin", &[&admin], json!([paths("a", &["/admin/*"])]), json!({})),
    ]))
    .await;
    Setup { gw, main, public, admin, _others: vec![hosted, wild] }
}

/// The upstream and path an echo answer came from.
fn served(doc: &Value) -> (String, String) {
    (doc["upstream"].as_str().unwrap_or_default().to_owned(), doc["path"].as_str().unwrap_or_default().to_owned())
}

fn pair(upstream: &str, path: &str) -> (String, String) {
    (upstream.to_owned(), path.to_owned())
}

#[tokio::test]
async fn exact_prefix_and_template_paths_reach_their_api() {
    let s = setup().await;
    let c = Client::http1();
    for (path, expected) in [
        ("/exact", "/exact"),
        ("/prefix", "/prefix"),
        ("/prefix/a/b?x=1&y=%20", "/prefix/a/b?x=1&y=%20"),
        ("/users/42", "/users/42"),
    ] {
        let r = c.get(&s.gw.url(path)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(served(&r.json()), pair("main", expected), "{path}");
    }
    for path in ["/exact/more", "/users/42/orders", "/users", "/prefixed"] {
        c.get(&s.gw.url(path)).await.assert_problem(404, "no-route");
    }
    assert_eq!(s.main.requests(), 4);
}

#[tokio::test]
async fn strip_path_and_rewrite_path_change_what_the_upstream_sees() {
    let s = setup().await;
    let c = Client::http1();
    for (path, expected) in [
        ("/strip/a/b?q=1", "/a/b?q=1"),
        ("/strip", "/"),
        ("/old/7/rest/of/it", "/v2/items/7/rest/of/it"),
        ("/old/7", "/v2/items/7"),
    ] {
        let r = c.get(&s.gw.url(path)).await;
        assert_eq!(served(&r.json()), pair("main", expected), "{path}");
    }
}

#[tokio::test]
async fn exact_and_wildcard_hosts_route_by_host() {
    let s = setup().await;
    let cases = [
        ("api.example.com", "/exact", Some("hosted")),
        ("API.Example.COM:8443", "/exact", Some("hosted")),
        ("other.example.com", "/exact", Some("main")),
        ("a.example.org", "/anything/at/all", Some("wild")),
        ("deep.a.example.org", "/x", Some("wild")),
        ("example.org", "/x", None),
    ];
    for (host, path, expected) in cases {
        let r = raw::get(s.gw.addr, path, host).await;
        match expected {
            Some(upstream) => assert_eq!(r.json()["upstream"], upstream, "{host}{path}"),
            None => assert_eq!(r.status, 404, "{host}{path}: {}", r.text()),
        }
    }
}

#[tokio::test]
async fn methods_restrict_a_route() {
    let s = setup().await;
    let c = Client::http1();
    let r = c.send_body(http::Method::POST, &s.gw.url("/only-post"), "x").await;
    assert_eq!(served(&r.json()), pair("main", "/only-post"));
    assert_eq!(r.json()["method"], "POST");
    c.get(&s.gw.url("/only-post")).await.assert_problem(404, "no-route");
    c.send_body(http::Method::PUT, &s.gw.url("/only-post"), "x").await.assert_problem(404, "no-route");
}

#[tokio::test]
async fn no_route_is_a_404_problem_with_a_request_id() {
    let s = setup().await;
    let r = Client::http1().get(&s.gw.url("/nowhere")).await;
    r.assert_problem(404, "no-route");
    assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(s.main.requests() + s.public.requests() + s.admin.requests(), 0);
}

#[tokio::test]
async fn dot_segments_are_resolved_before_routing_so_the_upstream_sees_the_routed_path() {
    let s = setup().await;
    // Each trick climbs out of /public; the gateway resolves it first, so the request is
    // routed (and sent) as /admin/..., never as a /public path an upstream might resolve.
    for (path, expected) in [
        ("/public/%2e%2e/admin/secret", "/admin/secret"),
        ("/public/%2E%2E/admin/secret", "/admin/secret"),
        ("/public/../admin/secret", "/admin/secret"),
        ("/public/./%2e%2e/admin/x?y=1", "/admin/x?y=1"),
        ("//admin//z", "/admin/z"),
        ("/public/a/%2e%2e/%2e%2e/admin/deep", "/admin/deep"),
    ] {
        let r = raw::get(s.gw.addr, path, "example.com").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(served(&r.json()), pair("admin", expected), "{path}");
    }
    assert_eq!(s.public.requests(), 0, "no trick reached the /public route");
    let seen: Vec<String> = s.admin.seen().into_iter().map(|r| r.path).collect();
    assert!(seen.iter().all(|p| !p.contains("..") && !p.to_ascii_lowercase().contains("%2e")), "{seen:?}");
    // Encoded unreserved characters are decoded: the upstream sees what was routed.
    let r = raw::get(s.gw.addr, "/public/%61%62c", "example.com").await;
    assert_eq!(served(&r.json()), pair("public", "/public/abc"));
    let r = raw::get(s.gw.addr, "/public/%2e%2e/%2e%2e/etc/passwd", "example.com").await;
    assert_eq!(r.status, 400, "climbing above the root is refused: {}", r.text());
}

#[tokio::test]
async fn encoded_slashes_and_backslashes_are_refused_with_400() {
    let s = setup().await;
    for path in ["/public/..%2fadmin/secret", "/admin%2Fsecret", "/public/%5c..%5cadmin", "/public/%2e%2e%2fadmin"] {
        let r = raw::get(s.gw.addr, path, "example.com").await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{path}");
        assert_eq!(r.json()["type"], "urn:tollgate:problem:bad-request", "{path}");
    }
    assert_eq!(s.public.requests() + s.admin.requests(), 0);
}
