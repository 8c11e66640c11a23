//! Path pattern semantics, predicates, parameters, strip/rewrite and build errors.

use http::Method;

use super::*;

#[test]
fn prefix_matches_whole_segments() {
    let router = build(&[route(1, &["/orders/*"])]);
    for path in ["/orders", "/orders/", "/orders/42/items"] {
        assert_eq!(req(path).hit(&router), Some(1), "{path}");
    }
    assert_eq!(req("/ordersX").hit(&router), None);
    assert_eq!(req("/order").hit(&router), None);
    let router = build(&[route(1, &["/*"])]);
    assert_eq!(req("/").hit(&router), Some(1));
    assert_eq!(req("/anything/at/all").hit(&router), Some(1));
}

#[test]
fn exact_trailing_slash_is_significant() {
    let router = build(&[route(1, &["/a"]), route(2, &["/a/"]), route(3, &["/"])]);
    assert_eq!(req("/a").hit(&router), Some(1));
    assert_eq!(req("/a/").hit(&router), Some(2));
    assert_eq!(req("/").hit(&router), Some(3));
    assert_eq!(req("/a/b").hit(&router), None);
}

#[test]
fn templates_match_one_non_empty_segment() -> Result<(), String> {
    let router = build(&[route(1, &["/users/{id}/posts/{post}"])]);
    let r = req("/users/42/posts/7");
    let m = r.find(&router).ok_or("no match")?;
    assert_eq!(m.params(), &[("id", "42"), ("post", "7")]);
    assert_eq!(m.param("post"), Some("7"));
    assert_eq!(m.param("nope"), None);
    assert_eq!(m.pattern(), "/users/{id}/posts/{post}");
    for path in ["/users//posts/7", "/users/42/posts/", "/users/42/posts", "/users/42/posts/7/8"] {
        assert_eq!(req(path).hit(&router), None, "{path}");
    }
    Ok(())
}

#[test]
fn paths_that_are_not_normalised_absolute_do_not_match() {
    let router = build(&[route(1, &["/*"])]);
    assert_eq!(req("").hit(&router), None);
    assert_eq!(req("relative").hit(&router), None);
}

#[test]
fn literal_segments_are_canonicalised_like_requests() {
    let router = build(&[route(1, &["/caf%c3%a9"]), route(2, &["/%7euser/*"])]);
    assert_eq!(req("/caf%C3%A9").hit(&router), Some(1));
    assert_eq!(req("/~user/x").hit(&router), Some(2));
}

#[test]
fn methods_any_or_listed() {
    let router = build(&[with_methods(route(1, &["/m"]), &["get", "POST"]), route(2, &["/any"])]);
    assert_eq!(req("/m").hit(&router), Some(1));
    assert_eq!(req("/m").method(Method::POST).hit(&router), Some(1));
    assert_eq!(req("/m").method(Method::DELETE).hit(&router), None);
    assert_eq!(req("/any").method(Method::PATCH).hit(&router), Some(2));
}

#[test]
fn headers_need_one_listed_value() {
    let router = build(&[
        with_header(route(1, &["/h"]), "X-Version", &["2", "3"]),
        with_header(route(2, &["/present"]), "x-flag", &[]),
    ]);
    assert_eq!(req("/h").header("x-version", "3").hit(&router), Some(1));
    assert_eq!(req("/h").header("x-version", "1").header("x-version", "2").hit(&router), Some(1));
    assert_eq!(req("/h").header("x-version", "4").hit(&router), None);
    assert_eq!(req("/h").hit(&router), None);
    assert_eq!(req("/present").header("x-flag", "anything").hit(&router), Some(2));
    assert_eq!(req("/present").hit(&router), None);
}

#[test]
fn header_values_are_case_sensitive() {
    let router = build(&[with_header(route(1, &["/h"]), "x-env", &["Prod"])]);
    assert_eq!(req("/h").header("x-env", "Prod").hit(&router), Some(1));
    assert_eq!(req("/h").header("x-env", "prod").hit(&router), None);
}

#[test]
fn query_parameters_are_decoded() {
    let router = build(&[with_query(with_query(route(1, &["/q"]), "a b", &["x/y"]), "v", &["2"])]);
    assert_eq!(req("/q").query("v=2&a+b=x%2Fy").hit(&router), Some(1));
    assert_eq!(req("/q").query("a%20b=x/y&v=1&v=2").hit(&router), Some(1));
    assert_eq!(req("/q").query("v=2").hit(&router), None);
    assert_eq!(req("/q").query("v=22&a+b=x%2Fy").hit(&router), None);
    assert_eq!(req("/q").hit(&router), None);
    let router = build(&[with_query(route(2, &["/p"]), "debug", &[])]);
    assert_eq!(req("/p").query("x=1&debug").hit(&router), Some(2));
    assert_eq!(req("/p").query("debugx=1").hit(&router), None);
    assert_eq!(req("/p").query("%").hit(&router), None);
}

fn upstream(def: RouteDef, path: &'static str) -> Option<String> {
    let router = build(&[def]);
    req(path).find(&router).map(|m| m.upstream_path().into_owned())
}

fn stripped(paths: &[&str]) -> RouteDef {
    RouteDef { strip_path: true, ..route(1, paths) }
}

fn rewritten(paths: &[&str], rewrite: &str) -> RouteDef {
    RouteDef { rewrite_path: Some(rewrite.to_owned()), ..route(1, paths) }
}

#[test]
fn strip_path_removes_the_matched_prefix() {
    assert_eq!(upstream(stripped(&["/orders/*"]), "/orders/42").as_deref(), Some("/42"));
    assert_eq!(upstream(stripped(&["/orders/*"]), "/orders/42/items/").as_deref(), Some("/42/items/"));
    assert_eq!(upstream(stripped(&["/orders/*"]), "/orders").as_deref(), Some("/"));
    assert_eq!(upstream(stripped(&["/orders/*"]), "/orders/").as_deref(), Some("/"));
    assert_eq!(upstream(stripped(&["/*"]), "/a/b").as_deref(), Some("/a/b"));
    assert_eq!(upstream(stripped(&["/{t}/api/*"]), "/acme/api/v1").as_deref(), Some("/v1"));
    assert_eq!(upstream(stripped(&["/users/{id}"]), "/users/7").as_deref(), Some("/"));
    assert_eq!(upstream(stripped(&["/exact"]), "/exact").as_deref(), Some("/"));
    assert_eq!(upstream(route(1, &["/orders/*"]), "/orders/42").as_deref(), Some("/orders/42"));
}

#[test]
fn rewrite_substitutes_and_appends_the_remainder() {
    assert_eq!(upstream(rewritten(&["/users/{id}"], "/v2/users/{id}"), "/users/7").as_deref(), Some("/v2/users/7"));
    assert_eq!(upstream(rewritten(&["/u/{id}/*"], "/v2/{id}"), "/u/7/posts/1").as_deref(), Some("/v2/7/posts/1"));
    assert_eq!(upstream(rewritten(&["/u/{id}/*"], "/v2/{id}"), "/u/7").as_deref(), Some("/v2/7"));
    assert_eq!(upstream(rewritten(&["/old/*"], "/new/"), "/old/x").as_deref(), Some("/new/x"));
    assert_eq!(upstream(rewritten(&["/old/*"], "/"), "/old").as_deref(), Some("/"));
    assert_eq!(upstream(rewritten(&["/f/{name}"], "/files/{name}.json"), "/f/a").as_deref(), Some("/files/a.json"));
    let both = RouteDef { strip_path: true, ..rewritten(&["/old/*"], "/new") };
    assert_eq!(upstream(both, "/old/x").as_deref(), Some("/new/x"));
}

/// A parameter spliced into a rewrite segment must not build what normalisation refuses in
/// a request (a dot segment with a parameter, double encoding): such a route does not match,
/// and a less specific one gets the request path as it is.
#[test]
fn spliced_rewrites_never_forward_what_a_request_could_not_be() {
    let dots = || rewritten(&["/old/{id}/*"], "/v2/..{id}");
    assert_eq!(upstream(dots(), "/old/x/rest").as_deref(), Some("/v2/..x/rest"));
    assert_eq!(upstream(dots(), "/old/;x/rest"), None);
    assert_eq!(upstream(rewritten(&["/old/{id}"], "/v2/.{id}"), "/old/;"), None);
    let percent = || rewritten(&["/old/{id}"], "/v2/%25{id}");
    assert_eq!(upstream(percent(), "/old/x").as_deref(), Some("/v2/%25x"));
    assert_eq!(upstream(percent(), "/old/2e"), None);
    assert_eq!(upstream(rewritten(&["/a/{x}/{y}"], "/b/{x}{y}"), "/a/1%25/2f"), None);
    assert_eq!(upstream(rewritten(&["/a/{x}/{y}"], "/b/{x}{y}"), "/a/1%25/zz").as_deref(), Some("/b/1%25zz"));
    assert_eq!(upstream(rewritten(&["/a/{x}/*"], "/b/{x}"), "/a/x;y/z").as_deref(), Some("/b/x;y/z"));
    let router = build(&[rewritten(&["/old/{id}"], "/v2/..{id}"), route(2, &["/*"])]);
    let r = req("/old/;x");
    let m = r.find(&router).map(|m| (m.id().as_u128(), m.upstream_path().into_owned()));
    assert_eq!(m, Some((2, "/old/;x".to_owned())));
}

#[test]
fn match_exposes_the_route() -> Result<(), String> {
    let def = RouteDef { strip_path: true, ..rewritten(&["/a/*"], "/b") };
    let router = build(&[def]);
    let r = req("/a/c");
    let m = r.find(&router).ok_or("no match")?;
    assert_eq!((m.id(), m.api_id()), (Uuid::from_u128(1), Uuid::from_u128(1001)));
    assert!(m.strip_path());
    assert_eq!(m.rewrite_path(), Some("/b"));
    assert_eq!((m.path(), m.remainder()), ("/a/c", Some("/c")));
    Ok(())
}

/// `(field, route_skipped)` of each error `build` reports for `def`, and whether `path`
/// still reaches the route.
fn errors_of(def: RouteDef, path: &'static str) -> (Vec<(&'static str, bool)>, bool) {
    let (router, errors) = Router::build(&[def]);
    (errors.iter().map(|e| (e.field, e.route_skipped)).collect(), req(path).hit(&router).is_some())
}

#[test]
fn invalid_paths_are_skipped_and_reported() {
    for bad in
        ["nope", "/a//b", "/a/*/b", "/a*", "/{id", "/{}", "/{a-b}", "/x{id}", "/{a}/{a}", "/a/../b", "/%2f", "/%zz"]
    {
        let (errors, reachable) = errors_of(route(1, &[bad, "/ok"]), "/ok");
        assert_eq!(errors, [("paths", false)], "{bad}");
        assert!(reachable, "{bad}");
    }
    let (errors, _) = errors_of(route(1, &["/a/./b"]), "/a/b");
    assert_eq!(errors, [("paths", false), ("paths", true)]);
}

#[test]
fn invalid_hosts_never_widen_a_route() {
    let (errors, reachable) = errors_of(with_hosts(route(1, &["/"]), &["bad host", "api.example.com"]), "/");
    assert_eq!((errors, reachable), (vec![("hosts", false)], true));
    let (errors, reachable) = errors_of(with_hosts(route(1, &["/"]), &["a.*.com", "x:80"]), "/");
    assert_eq!((errors, reachable), (vec![("hosts", false), ("hosts", false), ("hosts", true)], false));
}

#[test]
fn invalid_conditions_skip_the_route() {
    let cases = [
        (with_methods(route(1, &["/"]), &["GE T"]), "methods"),
        (with_header(route(1, &["/"]), "bad header", &["1"]), "headers"),
        (with_query(route(1, &["/"]), "", &["1"]), "query"),
        (rewritten(&["/"], "no-slash"), "rewrite_path"),
        (rewritten(&["/"], "/a/../b"), "rewrite_path"),
        (rewritten(&["/"], "/{id"), "rewrite_path"),
    ];
    for (def, field) in cases {
        assert_eq!(errors_of(def, "/"), (vec![(field, true)], false), "{field}");
    }
}

#[test]
fn rewrite_params_must_be_captured_by_each_path() {
    let def = rewritten(&["/users/{id}", "/me"], "/v2/users/{id}");
    assert_eq!(errors_of(def.clone(), "/users/1"), (vec![("paths", false)], true));
    assert!(!errors_of(def, "/me").1);
}

#[test]
fn errors_display_route_and_reason() {
    let (_, errors) = Router::build(&[route(5, &["/a//b"])]);
    let text = errors.first().map(ToString::to_string).unwrap_or_default();
    assert!(text.contains("00000000-0000-0000-0000-000000000005") && text.contains("empty segment"), "{text}");
}

#[test]
fn empty_paths_mean_every_path() {
    let router = build(&[with_hosts(route(1, &[]), &["api.example.com"])]);
    assert_eq!(req("/any/thing").hit(&router), Some(1));
    assert_eq!((router.len(), router.is_empty()), (1, false));
}

#[test]
fn many_routes_still_resolve_exactly() {
    let defs: Vec<RouteDef> = (0..5_000u128)
        .map(|i| match i % 3 {
            0 => route(i + 1, &[&format!("/svc{i}/items")]),
            1 => route(i + 1, &[&format!("/svc{i}/users/{{id}}")]),
            _ => route(i + 1, &[&format!("/svc{i}/*")]),
        })
        .collect();
    let router = build(&defs);
    let r = req("/svc3000/items");
    assert_eq!(r.hit(&router), Some(3001));
    let r = req("/svc4000/users/9");
    assert_eq!(r.find(&router).map(|m| (m.id().as_u128(), m.param("id"))), Some((4001, Some("9"))));
    assert_eq!(req("/svc4001/x/y").hit(&router), Some(4002));
    assert_eq!(req("/svc4000/items").hit(&router), None);
}

#[test]
fn deep_paths_match_only_what_they_should() {
    let deep: &'static str = "/a".repeat(100).leak();
    let exact64: String = "/a".repeat(64);
    let router = build(&[stripped(&["/*"]), route(2, &[&exact64]), route(3, &[&format!("{}/*", "/a".repeat(63))])]);
    assert_eq!(req(deep).hit(&router), Some(3));
    assert_eq!(req(deep).find(&router).and_then(|m| m.remainder()).map(str::len), Some(74));
    assert_eq!(req(exact64.leak()).hit(&router), Some(2));
    let (_, errors) = Router::build(&[route(4, &[&"/a".repeat(65)])]);
    assert_eq!(errors.first().map(|e| e.reason), Some("too many segments"));
}

#[test]
fn request_segments_split_like_str_split() {
    let deep = "a/".repeat(80);
    for path in ["", "a", "a/", "/", "//", "a/b/c", "a//b/", "é/ü", deep.as_str()] {
        let want: Vec<&str> = path.split('/').take(crate::router::pattern::MAX_SEGMENTS + 1).collect();
        assert_eq!(crate::router::segments(path).to_vec(), want, "{path}");
    }
}
