//! A route compiled for the request path: parsed patterns, typed methods and header names,
//! and the predicates (method, headers, query) checked once the path matched.
//!
//! Anything invalid is reported as a [`RouteError`]. An invalid path or host pattern only
//! drops that pattern (the route matches less); an invalid method, header, query parameter or
//! rewrite drops the whole route, because ignoring a condition would make it match more.

use http::{HeaderMap, HeaderName, Method};
use smallvec::SmallVec;
use uuid::Uuid;

use super::Methods;
use super::RequestView;
use super::pattern::{self, HostPattern, PathPattern, Rewrite};
use crate::config::model::RouteDef;

/// A problem found in a route definition by [`super::Router::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route_id}: {field} {value:?}: {reason}")]
pub struct RouteError {
    pub route_id: Uuid,
    /// The `RouteDef` field at fault: `paths`, `hosts`, `methods`, `headers`, `query` or
    /// `rewrite_path`.
    pub field: &'static str,
    /// The offending value.
    pub value: String,
    pub reason: &'static str,
    /// `true` when the whole route was left out, `false` when only this value was.
    pub route_skipped: bool,
}

/// Header conditions: name → accepted values (empty: any value).
type HeaderConditions = Vec<(HeaderName, Vec<Box<[u8]>>)>;

/// Query conditions: decoded key → accepted decoded values (empty: any value).
type QueryConditions = Vec<(Box<str>, Vec<Box<str>>)>;

/// The compiled form of a [`RouteDef`].
#[derive(Debug)]
pub(super) struct CompiledRoute {
    pub id: Uuid,
    pub api_id: Uuid,
    pub priority: i32,
    pub strip_path: bool,
    pub rewrite: Option<Rewrite>,
    /// Empty means any method.
    methods: SmallVec<[Method; 2]>,
    headers: HeaderConditions,
    query: QueryConditions,
    pub hosts: Vec<HostPattern>,
    pub paths: Vec<PathPattern>,
    /// Units a request costs against plan limits (plans may override per route).
    pub cost: u32,
    /// Overrides the API's accepted credentials.
    pub auth_methods: Option<Methods>,
}

/// Collects errors for one route definition.
struct Report<'a> {
    def: &'a RouteDef,
    errors: &'a mut Vec<RouteError>,
}

impl Report<'_> {
    fn push(&mut self, field: &'static str, value: &str, reason: &'static str, route_skipped: bool) {
        let route_id = self.def.id;
        self.errors.push(RouteError { route_id, field, value: value.to_owned(), reason, route_skipped });
    }

    /// Records an error that leaves the whole route out.
    fn skip<T>(&mut self, field: &'static str, value: &str, reason: &'static str) -> Option<T> {
        self.push(field, value, reason, true);
        None
    }
}

/// Compiles `def`, appending to `errors`; `None` when the route must be left out.
pub(super) fn compile(def: &RouteDef, errors: &mut Vec<RouteError>) -> Option<CompiledRoute> {
    let mut report = Report { def, errors };
    let methods = compile_methods(&mut report)?;
    let headers = compile_headers(&mut report)?;
    let query = compile_query(&mut report)?;
    let rewrite = match &def.rewrite_path {
        Some(text) => match pattern::parse_rewrite(text) {
            Ok(rewrite) => Some(rewrite),
            Err(reason) => return report.skip("rewrite_path", text, reason),
        },
        None => None,
    };
    let hosts = compile_hosts(&mut report)?;
    let paths = compile_paths(&mut report, rewrite.as_ref())?;
    let (id, api_id, priority, strip_path) = (def.id, def.api_id, def.priority, def.strip_path);
    let cost = u32::try_from(def.cost).unwrap_or(1);
    let auth_methods = def.auth_methods.as_deref().map(Methods::parse);
    Some(CompiledRoute {
        id,
        api_id,
        priority,
        strip_path,
        rewrite,
        methods,
        headers,
        query,
        hosts,
        paths,
        cost,
        auth_methods,
    })
}

fn compile_methods(report: &mut Report<'_>) -> Option<SmallVec<[Method; 2]>> {
    let mut methods = SmallVec::new();
    for text in &report.def.methods {
        match Method::from_bytes(text.to_ascii_uppercase().as_bytes()) {
            Ok(m) if !methods.contains(&m) => methods.push(m),
            Ok(_) => {}
            Err(_) => return report.skip("methods", text, "not an HTTP method"),
        }
    }
    Some(methods)
}

fn compile_headers(report: &mut Report<'_>) -> Option<HeaderConditions> {
    let mut headers = Vec::with_capacity(report.def.headers.len());
    for (name, values) in &report.def.headers {
        let Ok(header) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
            return report.skip("headers", name, "not a valid header name");
        };
        headers.push((header, values.iter().map(|v| v.as_bytes().into()).collect()));
    }
    Some(headers)
}

fn compile_query(report: &mut Report<'_>) -> Option<QueryConditions> {
    let mut query = Vec::with_capacity(report.def.query.len());
    for (key, values) in &report.def.query {
        if key.is_empty() {
            return report.skip("query", key, "empty query parameter name");
        }
        query.push((key.as_str().into(), values.iter().map(|v| v.as_str().into()).collect()));
    }
    Some(query)
}

fn compile_hosts(report: &mut Report<'_>) -> Option<Vec<HostPattern>> {
    let mut hosts = Vec::with_capacity(report.def.hosts.len());
    for text in &report.def.hosts {
        match pattern::parse_host(text) {
            Ok(host) => hosts.push(host),
            Err(reason) => report.push("hosts", text, reason, false),
        }
    }
    if hosts.is_empty() && !report.def.hosts.is_empty() {
        // Dropping every host would turn a host-bound route into a catch-all.
        return report.skip("hosts", "", "no valid host left");
    }
    hosts.sort();
    hosts.dedup();
    Some(hosts)
}

/// An empty `paths` list means every path (`/*`).
fn compile_paths(report: &mut Report<'_>, rewrite: Option<&Rewrite>) -> Option<Vec<PathPattern>> {
    let all = [String::from("/*")];
    let texts = if report.def.paths.is_empty() { &all[..] } else { &report.def.paths[..] };
    let mut paths = Vec::with_capacity(texts.len());
    for text in texts {
        match pattern::parse_path(text).and_then(|p| check_rewrite_params(p, rewrite)) {
            Ok(path) => paths.push(path),
            Err(reason) => report.push("paths", text, reason, false),
        }
    }
    if paths.is_empty() {
        return report.skip("paths", "", "no valid path left");
    }
    Some(paths)
}

fn check_rewrite_params(path: PathPattern, rewrite: Option<&Rewrite>) -> Result<PathPattern, &'static str> {
    let mut used = rewrite.into_iter().flat_map(Rewrite::param_names);
    match used.any(|name| !path.params.iter().any(|(n, _)| &**n == name)) {
        true => Err("rewrite_path uses a parameter this path does not capture"),
        false => Ok(path),
    }
}

impl CompiledRoute {
    /// How many conditions besides host and path: one per header, one per query parameter,
    /// and one for a method list.
    pub fn conditions(&self) -> usize {
        self.headers.len() + self.query.len() + usize::from(!self.methods.is_empty())
    }

    /// Whether the request satisfies the method, header and query conditions.
    pub fn accepts(&self, req: &RequestView<'_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(req.method))
            && self.headers.iter().all(|(name, values)| header_matches(req.headers, name, values))
            && self.query.iter().all(|(key, values)| query_matches(req.query.unwrap_or(""), key, values))
    }
}

fn header_matches(headers: &HeaderMap, name: &HeaderName, values: &[Box<[u8]>]) -> bool {
    headers.get_all(name).iter().any(|v| values.is_empty() || values.iter().any(|want| **want == *v.as_bytes()))
}

fn query_matches(query: &str, key: &str, values: &[Box<str>]) -> bool {
    query.split('&').any(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        !pair.is_empty() && decoded_eq(k, key) && (values.is_empty() || values.iter().any(|want| decoded_eq(v, want)))
    })
}

/// Whether `raw`, decoded as `application/x-www-form-urlencoded` (`+` is a space, `%XX` a
/// byte, a malformed `%` itself), equals `want`. Decodes on the fly, without allocating.
fn decoded_eq(raw: &str, want: &str) -> bool {
    let (raw, want) = (raw.as_bytes(), want.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let (byte, len) = match raw[i] {
            b'+' => (b' ', 1),
            b'%' => match (raw.get(i + 1).and_then(hex), raw.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => (h << 4 | l, 3),
                _ => (b'%', 1),
            },
            c => (c, 1),
        };
        if want.get(j) != Some(&byte) {
            return false;
        }
        i += len;
        j += 1;
    }
    j == want.len()
}

fn hex(c: &u8) -> Option<u8> {
    char::from(*c).to_digit(16).and_then(|d| u8::try_from(d).ok())
}
