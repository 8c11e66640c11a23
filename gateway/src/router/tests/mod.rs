//! Router tests: priority rules in [`priority`], predicates, patterns, strip/rewrite and
//! build errors in [`matching`], incremental updates in [`update`]. Shared helpers here.

mod matching;
mod priority;
mod update;

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use uuid::Uuid;

use super::{RequestView, RouteMatch, Router};
use crate::config::model::RouteDef;

/// A route with id `n` (api id `1000 + n`) on `paths`, everything else empty.
fn route(n: u128, paths: &[&str]) -> RouteDef {
    RouteDef {
        id: Uuid::from_u128(n),
        api_id: Uuid::from_u128(1000 + n),
        name: format!("r{n}"),
        hosts: Vec::new(),
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        methods: Vec::new(),
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
        strip_path: false,
        rewrite_path: None,
        priority: 0,
        cost: 1,
        auth_methods: None,
    }
}

fn with_hosts(mut def: RouteDef, hosts: &[&str]) -> RouteDef {
    def.hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
    def
}

fn with_methods(mut def: RouteDef, methods: &[&str]) -> RouteDef {
    def.methods = methods.iter().map(|m| (*m).to_owned()).collect();
    def
}

fn with_header(mut def: RouteDef, name: &str, values: &[&str]) -> RouteDef {
    def.headers.insert(name.to_owned(), values.iter().map(|v| (*v).to_owned()).collect());
    def
}

fn with_query(mut def: RouteDef, key: &str, values: &[&str]) -> RouteDef {
    def.query.insert(key.to_owned(), values.iter().map(|v| (*v).to_owned()).collect());
    def
}

fn with_priority(mut def: RouteDef, priority: i32) -> RouteDef {
    def.priority = priority;
    def
}

/// Builds a router and fails the test if any definition was rejected.
fn build(defs: &[RouteDef]) -> Router {
    let (router, errors) = Router::build(defs);
    assert!(errors.is_empty(), "unexpected errors: {errors:?}");
    router
}

/// A request to match; defaults: `GET`, host `api.example.com`, no headers or query.
struct Req {
    host: &'static str,
    method: Method,
    path: &'static str,
    headers: HeaderMap,
    query: Option<&'static str>,
}

fn req(path: &'static str) -> Req {
    Req { host: "api.example.com", method: Method::GET, path, headers: HeaderMap::new(), query: None }
}

impl Req {
    fn host(mut self, host: &'static str) -> Self {
        self.host = host;
        self
    }

    fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        self
    }

    fn query(mut self, query: &'static str) -> Self {
        self.query = Some(query);
        self
    }

    fn view(&self) -> RequestView<'_> {
        RequestView {
            host: self.host,
            method: &self.method,
            path: self.path,
            headers: &self.headers,
            query: self.query,
        }
    }

    fn find<'r>(&'r self, router: &'r Router) -> Option<RouteMatch<'r>> {
        router.find(&self.view())
    }

    /// The id (as a number) of the route `router` picks for this request.
    fn hit(&self, router: &Router) -> Option<u128> {
        self.find(router).map(|m| m.id().as_u128())
    }
}
