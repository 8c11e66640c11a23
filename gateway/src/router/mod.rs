//! Request routing: from (host, method, normalised path, headers, query) to one route.
//!
//! Every request path first goes through [`normalize_path`]; the router matches the
//! normalised path and the upstream receives it (or its stripped/rewritten form), so the
//! upstream always sees the path the gateway routed on.
//!
//! # Priority
//!
//! [`Router::find`] returns the first route, in this order, whose host, path, methods,
//! headers and query all match. A route whose path matches but whose other conditions do not
//! never hides a less specific route that matches fully (the search backtracks).
//!
//! 1. **Host tier.** Routes bound to the exact request host; then routes bound to a wildcard
//!    (`*.example.com`), longest suffix first, each suffix its own tier; then routes without
//!    hosts. A later tier is searched only when nothing in the earlier ones matched.
//! 2. **Path specificity**, within a tier. Exact and template patterns beat prefix patterns.
//!    Between exact/template patterns, segments are compared left to right and a literal
//!    segment beats a `{param}` at the first difference (`/users/me` > `/users/{id}`,
//!    `/a/{x}/c` > `/{y}/b/c`). Between prefix patterns (`/p/*`), the one with more segments
//!    wins; at equal length, the same literal-before-parameter rule applies.
//! 3. **`priority`**, higher first, between routes with the same path shape (e.g.
//!    `/users/{id}` and `/users/{name}`).
//! 4. **More conditions** first: one per header, one per query parameter, one for a
//!    non-empty method list.
//! 5. **Lower route id** first (ids are UUIDv7, so the older route).
//!
//! # Cost
//!
//! Each host tier is a segment trie (`trie.rs`): one hash probe per path segment, plus
//! backtracking into `{param}` children, bounded by the request depth and never by the
//! number of routes. A lookup allocates only in rare cases: a path deeper than 16 segments
//! (the segment list spills to the heap), more than eight prefix routes along the request's
//! path, more than four template parameters, a host with upper-case letters (callers pass
//! it lower-cased), or a candidate route whose rewrite splices a parameter into a segment
//! (its rendering is checked before it may match). Computing a rewritten upstream path allocates the new path.
//!
//! # Updates
//!
//! [`Router::update`] derives the router for a few changed routes from the previous one:
//! only those are compiled again, and everything they do not touch — host tables, trie
//! nodes, chunks of the larger tables — is shared with the previous router (copied on write:
//! `tiers.rs`, `trie.rs`, `cowmap.rs`). A change copies the nodes on its paths and about √n
//! entries of each large table on its way, so it costs microseconds, whatever the number of
//! routes. The result answers exactly like a fresh [`Router::build`] (`tests/update.rs`).

mod cowmap;
mod methods;
mod normalize;
#[doc(hidden)]
pub mod oracle;
mod pattern;
mod route;
mod tiers;
mod trie;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use http::{HeaderMap, Method};
use smallvec::SmallVec;
use uuid::Uuid;

use crate::config::model::RouteDef;
use cowmap::CowMap;
pub use methods::Methods;
pub use normalize::{PathError, normalize_path};
use pattern::PathPattern;
use route::CompiledRoute;
pub use route::RouteError;
use tiers::Tiers;
use trie::{Entry, Found, Node, Order};

/// What the router looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Host without port, lower-cased.
    pub host: &'a str,
    pub method: &'a Method,
    /// The path as returned by [`normalize_path`], without the query string.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
}

/// Template parameters of a match, `name → value`, on the stack for up to four.
pub type Params<'a> = SmallVec<[(&'a str, &'a str); 4]>;

/// The route chosen for a request, borrowing from the router and the request path.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    route: &'a CompiledRoute,
    pattern: &'a PathPattern,
    path: &'a str,
    params: Params<'a>,
    /// For a prefix pattern, the byte offset in `path` where the prefix ends.
    prefix_end: Option<usize>,
}

/// The compiled routing table: immutable, shared by all requests. Cloning is cheap (it
/// shares everything); [`Router::update`] derives a new table sharing all untouched parts.
#[derive(Debug, Default, Clone)]
pub struct Router {
    /// Compiled routes by id (as a number: the Fx hash spreads sequential ids badly when
    /// hashing them as bytes): what an update takes out of the tries.
    routes: CowMap<u128, Arc<CompiledRoute>>,
    tiers: Tiers,
}

impl Router {
    /// Compiles `routes`. Invalid parts are left out (see [`RouteError::route_skipped`]),
    /// logged, and returned; the router is usable either way.
    pub fn build<'a>(routes: impl IntoIterator<Item = &'a RouteDef>) -> (Router, Vec<RouteError>) {
        let mut errors = Vec::new();
        let mut router = Router::default();
        for route in routes.into_iter().filter_map(|def| route::compile(def, &mut errors)) {
            let route = Arc::new(route);
            router.tiers.add(&route, Order::Later);
            router.routes.insert(route.id.as_u128(), route);
        }
        router.tiers.sort();
        log_errors(&errors);
        (router, errors)
    }

    /// The router for `routes`, derived from this one, which was built (or updated) from
    /// the same definitions except those in `changed`: the ids of routes added, modified or
    /// removed since. Only those are compiled again, and only the host tries and trie nodes
    /// on their paths are copied; the rest is shared. Answers exactly like
    /// `Router::build(routes.values())`; returns the errors of the changed routes only.
    pub fn update(&self, routes: &BTreeMap<Uuid, RouteDef>, changed: &[Uuid]) -> (Router, Vec<RouteError>) {
        let mut errors = Vec::new();
        let mut next = self.clone();
        for id in changed.iter().collect::<BTreeSet<_>>() {
            if let Some(old) = next.routes.remove(id.as_u128()) {
                next.tiers.remove(&old);
            }
            if let Some(route) = routes.get(id).and_then(|def| route::compile(def, &mut errors)) {
                let route = Arc::new(route);
                next.tiers.add(&route, Order::Now);
                next.routes.insert(route.id.as_u128(), route);
            }
        }
        log_errors(&errors);
        (next, errors)
    }

    /// Number of compiled routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no route was compiled.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Finds the route for `req` by the documented priority; `None` if nothing matches or
    /// `req.path` does not start with `/`.
    pub fn find<'a>(&'a self, req: &RequestView<'a>) -> Option<RouteMatch<'a>> {
        let segs = segments(req.path.strip_prefix('/')?);
        let host = canonical_host(req.host);
        if let Some(hit) = self.tiers.exact.get(&*host).and_then(|t| find_in(t, req, &segs)) {
            return Some(hit);
        }
        if !self.tiers.wildcard.is_empty() {
            // Left to right: the first dot gives the longest suffix; a suffix needs a label
            // before it, so `example.com` is not in `*.example.com`.
            for (dot, _) in host.match_indices('.').filter(|(i, _)| *i > 0) {
                let trie = host.get(dot..).and_then(|suffix| self.tiers.wildcard.get(suffix));
                if let Some(hit) = trie.and_then(|t| find_in(t, req, &segs)) {
                    return Some(hit);
                }
            }
        }
        find_in(&self.tiers.any, req, &segs)
    }
}

/// The `/`-separated segments of `path` (without its leading `/`), at most one more than
/// the deepest pattern ([`pattern::MAX_SEGMENTS`]), which tells "longer" apart. A byte
/// loop: `/` is ASCII, so every cut is a char boundary, and short segments make
/// `str::split`'s searcher the costlier way.
fn segments(path: &str) -> SmallVec<[&str; 16]> {
    let mut segs = SmallVec::new();
    let mut start = 0;
    for (i, _) in path.bytes().enumerate().filter(|(_, b)| *b == b'/') {
        segs.extend(path.get(start..i));
        start = i + 1;
        if segs.len() > pattern::MAX_SEGMENTS {
            return segs;
        }
    }
    segs.extend(path.get(start..));
    segs
}

fn find_in<'a>(trie: &'a Node, req: &RequestView<'a>, segs: &[&'a str]) -> Option<RouteMatch<'a>> {
    let Found { entry, prefix_depth } = trie.find(segs, &mut |e| e.route.accepts(req) && rewrite_fits(e, segs))?;
    let route = &*entry.route;
    let pattern = route.paths.get(entry.path)?;
    let params = pattern.params.iter().filter_map(|(name, i)| Some((&**name, *segs.get(*i)?))).collect();
    // Each segment of the prefix counts with the `/` before it.
    let prefix_end = prefix_depth.map(|d| segs.iter().take(d).map(|s| s.len() + 1).sum());
    Some(RouteMatch { route, pattern, path: req.path, params, prefix_end })
}

/// Whether the entry's rewrite, with this request's parameters, is a canonical path
/// ([`pattern::Rewrite::fits`]). One that is not is passed over like a route whose
/// conditions fail: the request may still reach a less specific route, which gets the
/// (canonical) request path itself.
fn rewrite_fits(e: &Entry, segs: &[&str]) -> bool {
    let Some(rewrite) = e.route.rewrite.as_ref().filter(|r| r.spliced) else { return true };
    let Some(pattern) = e.route.paths.get(e.path) else { return false };
    let params: Params<'_> = pattern.params.iter().filter_map(|(name, i)| Some((&**name, *segs.get(*i)?))).collect();
    rewrite.fits(&params)
}

fn log_errors(errors: &[RouteError]) {
    for e in errors {
        tracing::warn!(route_id = %e.route_id, field = e.field, value = %e.value, reason = e.reason,
            route_skipped = e.route_skipped, "invalid route definition");
    }
}

/// The host as keyed in the tables: lower-case, no trailing dot.
fn canonical_host(host: &str) -> Cow<'_, str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

impl<'a> RouteMatch<'a> {
    /// The matched route's id.
    pub fn id(&self) -> Uuid {
        self.route.id
    }

    /// The API the matched route belongs to.
    pub fn api_id(&self) -> Uuid {
        self.route.api_id
    }

    /// Units a request on this route costs against plan limits (before plan overrides).
    pub fn cost(&self) -> u32 {
        self.route.cost
    }

    /// The route's own accepted credentials, when it overrides its API's.
    pub fn auth_methods(&self) -> Option<Methods> {
        self.route.auth_methods
    }

    /// Whether the route strips the matched prefix before proxying.
    pub fn strip_path(&self) -> bool {
        self.route.strip_path
    }

    /// The route's rewrite template, as configured.
    pub fn rewrite_path(&self) -> Option<&'a str> {
        self.route.rewrite.as_ref().map(|r| &*r.text)
    }

    /// The path pattern that matched, as configured.
    pub fn pattern(&self) -> &'a str {
        &self.pattern.text
    }

    /// Template parameters, in pattern order.
    pub fn params(&self) -> &[(&'a str, &'a str)] {
        &self.params
    }

    /// The value of one template parameter.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.params.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// The normalised request path that was matched.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// For a prefix pattern, the part of the path below the prefix (`""` or starting with
    /// `/`): `/42/items` for `/orders/*` and `/orders/42/items`.
    pub fn remainder(&self) -> Option<&'a str> {
        self.prefix_end.map(|end| self.path.get(end..).unwrap_or(""))
    }

    /// The path to send upstream (the caller re-appends the query string):
    /// - with `rewrite_path`: the template with parameters substituted, followed for prefix
    ///   patterns by the [`remainder`](Self::remainder) (`rewrite_path` wins over
    ///   `strip_path`); always a canonical path, as a route whose rendering would not be
    ///   one does not match;
    /// - with `strip_path`: the remainder for prefix patterns (`/` if empty), `/` otherwise;
    /// - else the request path unchanged.
    pub fn upstream_path(&self) -> Cow<'a, str> {
        let remainder = self.remainder().unwrap_or("");
        if let Some(rewrite) = &self.route.rewrite {
            return Cow::Owned(rewrite.render(&self.params, remainder));
        }
        match (self.route.strip_path, remainder) {
            (false, _) => Cow::Borrowed(self.path),
            (true, "") => Cow::Borrowed("/"),
            (true, rest) => Cow::Borrowed(rest),
        }
    }
}

#[cfg(test)]
mod tests;
