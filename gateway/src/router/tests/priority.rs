//! One test per priority rule of the router (see the module docs), plus backtracking.

use http::Method;

use super::*;

#[test]
fn exact_host_beats_wildcard_beats_hostless() {
    let router = build(&[
        route(1, &["/users/{id}"]),
        with_hosts(route(2, &["/*"]), &["*.example.com"]),
        with_hosts(route(3, &["/*"]), &["api.example.com"]),
    ]);
    // The exact-host tier wins although its path is the least specific.
    assert_eq!(req("/users/7").hit(&router), Some(3));
    assert_eq!(req("/users/7").host("web.example.com").hit(&router), Some(2));
    assert_eq!(req("/users/7").host("other.org").hit(&router), Some(1));
}

#[test]
fn tiers_fall_through_when_nothing_matches() {
    let router = build(&[
        route(1, &["/public/*"]),
        with_hosts(route(2, &["/admin"]), &["api.example.com"]),
        with_hosts(with_methods(route(3, &["/public/*"]), &["POST"]), &["*.example.com"]),
    ]);
    assert_eq!(req("/admin").hit(&router), Some(2));
    // No path match in the exact tier, a method mismatch in the wildcard tier.
    assert_eq!(req("/public/x").hit(&router), Some(1));
    assert_eq!(req("/public/x").method(Method::POST).hit(&router), Some(3));
}

#[test]
fn longest_wildcard_suffix_first() {
    let router = build(&[
        with_hosts(route(1, &["/*"]), &["*.example.com"]),
        with_hosts(route(2, &["/*"]), &["*.eu.example.com"]),
    ]);
    assert_eq!(req("/").host("a.eu.example.com").hit(&router), Some(2));
    assert_eq!(req("/").host("a.b.eu.example.com").hit(&router), Some(2));
    assert_eq!(req("/").host("eu.example.com").hit(&router), Some(1));
    assert_eq!(req("/").host("a.us.example.com").hit(&router), Some(1));
    assert_eq!(req("/").host("example.com").hit(&router), None);
    assert_eq!(req("/").host("badexample.com").hit(&router), None);
}

#[test]
fn hosts_compare_case_insensitively() {
    let router = build(&[with_hosts(route(1, &["/"]), &["API.Example.COM", "*.Tenant.example.com."])]);
    assert_eq!(req("/").hit(&router), Some(1));
    assert_eq!(req("/").host("Api.Example.Com").hit(&router), Some(1));
    assert_eq!(req("/").host("api.example.com.").hit(&router), Some(1));
    assert_eq!(req("/").host("x.tenant.example.com").hit(&router), Some(1));
    assert_eq!(req("/").host("tenant.example.com").hit(&router), None);
}

#[test]
fn exact_beats_template_beats_prefix() {
    let router = build(&[route(1, &["/users/*"]), route(2, &["/users/{id}"]), route(3, &["/users/me"])]);
    assert_eq!(req("/users/me").hit(&router), Some(3));
    assert_eq!(req("/users/42").hit(&router), Some(2));
    assert_eq!(req("/users/42/posts").hit(&router), Some(1));
    assert_eq!(req("/users").hit(&router), Some(1));
}

#[test]
fn templates_compare_segment_by_segment() {
    let router = build(&[
        route(1, &["/{y}/b/c"]),
        route(2, &["/a/{x}/c"]),
        route(3, &["/a/{x}/{z}"]),
        route(4, &["/{p}/{q}/{r}"]),
    ]);
    assert_eq!(req("/a/b/c").hit(&router), Some(2));
    assert_eq!(req("/a/q/z").hit(&router), Some(3));
    assert_eq!(req("/q/b/c").hit(&router), Some(1));
    assert_eq!(req("/q/q/q").hit(&router), Some(4));
}

#[test]
fn longest_prefix_wins() {
    let router = build(&[
        route(1, &["/*"]),
        route(2, &["/api/*"]),
        route(3, &["/api/v1/*"]),
        route(4, &["/{tenant}/v1/orders/*"]),
    ]);
    assert_eq!(req("/api/v1/users").hit(&router), Some(3));
    assert_eq!(req("/api/v2").hit(&router), Some(2));
    assert_eq!(req("/api").hit(&router), Some(2));
    assert_eq!(req("/other").hit(&router), Some(1));
    // Longer beats literal: four segments of which one is a parameter beat two literals.
    assert_eq!(req("/api/v1/orders/9").hit(&router), Some(4));
}

#[test]
fn equal_length_prefixes_prefer_literals() {
    let router = build(&[route(1, &["/{t}/x/*"]), route(2, &["/a/{u}/*"]), route(3, &["/{t}/{u}/*"])]);
    assert_eq!(req("/a/x/1").hit(&router), Some(2));
    assert_eq!(req("/b/x/1").hit(&router), Some(1));
    assert_eq!(req("/b/y").hit(&router), Some(3));
}

#[test]
fn priority_field_breaks_ties_in_path_shape() {
    let router = build(&[
        route(1, &["/users/{id}"]),
        with_priority(route(2, &["/users/{name}"]), 5),
        with_priority(route(3, &["/users/*"]), 100),
    ]);
    assert_eq!(req("/users/x").hit(&router), Some(2));
    // Priority never beats a more specific path.
    assert_eq!(req("/users/x/y").hit(&router), Some(3));
}

#[test]
fn more_conditions_first() {
    let router = build(&[
        route(1, &["/items"]),
        with_methods(route(2, &["/items"]), &["GET"]),
        with_query(with_methods(route(3, &["/items"]), &["GET"]), "v", &["2"]),
    ]);
    assert_eq!(req("/items").query("v=2").hit(&router), Some(3));
    assert_eq!(req("/items").hit(&router), Some(2));
    assert_eq!(req("/items").method(Method::PUT).hit(&router), Some(1));
}

#[test]
fn lower_id_breaks_the_last_tie() {
    let router = build(&[route(9, &["/same"]), route(4, &["/same"]), route(7, &["/same"])]);
    assert_eq!(req("/same").hit(&router), Some(4));
    let router = build(&[with_priority(route(9, &["/same"]), 1), route(4, &["/same"])]);
    assert_eq!(req("/same").hit(&router), Some(9));
}

#[test]
fn mismatched_specific_route_does_not_hide_general_one() {
    let router = build(&[
        route(1, &["/*"]),
        route(2, &["/users/{id}"]),
        with_methods(route(3, &["/users/me"]), &["POST"]),
        with_header(route(4, &["/users/{id}/*"]), "x-beta", &["1"]),
    ]);
    assert_eq!(req("/users/me").method(Method::POST).hit(&router), Some(3));
    assert_eq!(req("/users/me").hit(&router), Some(2));
    assert_eq!(req("/users/me/x").header("x-beta", "1").hit(&router), Some(4));
    assert_eq!(req("/users/me/x").hit(&router), Some(1));
}

#[test]
fn backtracks_from_literal_branch_into_parameter_branch() {
    // `/a/b/...` enters the literal `b` branch, which has no `c`; the `{x}` branch has.
    let router = build(&[route(1, &["/a/b/d"]), route(2, &["/a/{x}/c"])]);
    assert_eq!(req("/a/b/c").hit(&router), Some(2));
    assert_eq!(req("/a/b/c").find(&router).and_then(|m| m.param("x")), Some("b"));
}
