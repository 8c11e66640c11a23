//! Routes of an API: which requests it receives (hosts, paths, methods, headers, query)
//! and how the path is passed upstream (strip, rewrite). Path syntax: `/exact`,
//! `/prefix/*`, and `{name}` template segments (`/users/{id}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::apis::AuthMethod;
use crate::error::ApiError;
use crate::ops::resource_handlers;
use crate::resource::{ColumnWriter, Columns, Filter, Resource, Write, eq};
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::validate::{Validate, Violations, array_schema, blank_or_control_class, is_blank_or_control, string_schema};

const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
/// At most this many hosts, and this many paths, per route.
const MAX_PATTERNS: usize = 100;
/// Longest path pattern, in characters.
const MAX_PATH: usize = 1024;
/// Longest host pattern (a DNS name, or `*.` and a shorter one).
const MAX_HOST: usize = 253;
/// Largest cost of one request.
pub const MAX_COST: i32 = 1_000_000;

fn default_cost() -> i32 {
    1
}

fn auth_methods_schema() -> utoipa::openapi::schema::ArrayBuilder {
    use utoipa::openapi::schema::{ArrayBuilder, SchemaType};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(utoipa::openapi::Ref::from_schema_name("AuthMethod"))
        .min_items(Some(1))
        .unique_items(true)
        .description(Some("Overrides the API's `auth_methods` for this route; null: the API's."))
}

/// One segment of a path pattern: a literal (not `.` or `..`) or a `{name}` template.
macro_rules! path_segment {
    () => {
        concat!(
            r"(?:[^./{}*?#%",
            blank_or_control_class!(),
            r"][^/{}*?#%",
            blank_or_control_class!(),
            r"]*|\.[^./{}*?#%",
            blank_or_control_class!(),
            r"][^/{}*?#%",
            blank_or_control_class!(),
            r"]*|\.\.[^/{}*?#%",
            blank_or_control_class!(),
            r"]+|\{[a-z0-9_]{1,63}\})"
        )
    };
}
/// What [`valid_path`] accepts, as a regex: segments that are literals (not `.` or `..`),
/// `{name}` templates, then optionally a trailing `/` or `/*`.
pub const PATH_PATTERN: &str = concat!(r"^/(?:", path_segment!(), r"(?:/", path_segment!(), r")*(?:/\*?)?|\*)?$");

/// What [`valid_host`] accepts, as a regex.
pub const HOST_PATTERN: &str = r"^(?:\*\.)?[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*$";

/// What [`valid_header_name`] accepts, as a regex (an RFC 9110 token).
pub const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$";

fn path_schema() -> ObjectBuilder {
    string_schema(PATH_PATTERN, MAX_PATH)
}

fn paths_schema() -> utoipa::openapi::schema::ArrayBuilder {
    array_schema(path_schema(), MAX_PATTERNS)
        .description(Some("`/exact`, `/prefix/*`, or templates such as `/users/{id}`."))
}

fn rewrite_path_schema() -> ObjectBuilder {
    path_schema()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .description(Some("Upstream path template, e.g. `/v2/users/{id}`."))
}

fn hosts_schema() -> utoipa::openapi::schema::ArrayBuilder {
    array_schema(string_schema(HOST_PATTERN, MAX_HOST), MAX_PATTERNS)
        .description(Some("Exact hosts (`api.example.com`) or wildcards (`*.example.com`)."))
}

fn methods_schema() -> utoipa::openapi::schema::ArrayBuilder {
    let method = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(METHODS));
    array_schema(method, METHODS.len()).unique_items(true).description(Some("Allowed methods; empty means any."))
}

/// `{name: [values]}`, each name described by `names`.
fn matches_schema(names: ObjectBuilder) -> ObjectBuilder {
    let values = array_schema(ObjectBuilder::new().schema_type(Type::String), MAX_PATTERNS);
    ObjectBuilder::new().schema_type(Type::Object).additional_properties(Some(values)).property_names(Some(names))
}

fn headers_schema() -> ObjectBuilder {
    matches_schema(ObjectBuilder::new().schema_type(Type::String).pattern(Some(HEADER_NAME_PATTERN)))
        .description(Some("Header name → accepted values; every listed header must match one of its values."))
}

fn query_schema() -> ObjectBuilder {
    matches_schema(ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(256)))
        .description(Some("Query parameter → accepted values."))
}

/// The writable fields of a route. At least one host or path is required.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "orders-read", "paths": ["/orders/*", "/orders/{id}"], "methods": ["GET"], "strip_path": false}))]
pub struct RouteInput {
    /// Slug, unique within the API.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$", max_length = 63)]
    pub name: String,
    /// Exact hosts (`api.example.com`) or wildcards (`*.example.com`).
    #[serde(default)]
    #[schema(schema_with = hosts_schema)]
    pub hosts: Vec<String>,
    /// `/exact`, `/prefix/*`, or templates such as `/users/{id}`.
    #[serde(default)]
    #[schema(schema_with = paths_schema)]
    pub paths: Vec<String>,
    /// Allowed methods; empty means any.
    #[serde(default)]
    #[schema(schema_with = methods_schema)]
    pub methods: Vec<String>,
    /// Header name → accepted values; every listed header must match one of its values.
    #[serde(default)]
    #[schema(schema_with = headers_schema)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// Query parameter → accepted values.
    #[serde(default)]
    #[schema(schema_with = query_schema)]
    pub query: BTreeMap<String, Vec<String>>,
    /// Remove the matched path prefix before proxying.
    #[serde(default)]
    pub strip_path: bool,
    /// Upstream path template, e.g. `/v2/users/{id}`.
    #[serde(default)]
    #[schema(schema_with = rewrite_path_schema)]
    pub rewrite_path: Option<String>,
    /// Higher wins among routes that match equally specifically.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
    /// Units one request costs against rate limits and quotas (a plan may override it).
    #[serde(default = "default_cost")]
    #[schema(minimum = 0, maximum = 1000000)]
    pub cost: i32,
    /// Overrides the API's `auth_methods` for this route; null: the API's.
    #[serde(default)]
    #[schema(schema_with = auth_methods_schema)]
    pub auth_methods: Option<Vec<AuthMethod>>,
}

/// Whether `p` is a valid path pattern: absolute, no dot segments, no empty segments, `*` only
/// as the whole last segment, `{name}` only as whole segments.
pub fn valid_path(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else { return false };
    if p.chars().count() > MAX_PATH || p.chars().any(|c| is_blank_or_control(c) || matches!(c, '?' | '#' | '%')) {
        return false;
    }
    if rest.is_empty() {
        return true;
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let last = segs.len() - 1;
    segs.iter().enumerate().all(|(i, s)| {
        let template = s.strip_prefix('{').and_then(|t| t.strip_suffix('}')).is_some_and(is_param_name);
        let literal = !s.is_empty() && *s != "." && *s != ".." && !s.contains(['{', '}', '*']);
        template || literal || (*s == "*" && i == last) || (s.is_empty() && i == last && i > 0)
    })
}

/// Whether `name` may name a `{name}` template segment: 1 to 63 of `a-z`, `0-9` and `_`,
/// which the gateway's parser accepts too (it also allows upper case; the admin does not).
fn is_param_name(name: &str) -> bool {
    (1..=63).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `h` is a host pattern: a DNS name, optionally with a leading `*.`.
pub fn valid_host(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.is_empty()
        && h.len() <= MAX_HOST
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn unique(items: &[String]) -> bool {
    items.iter().enumerate().all(|(i, m)| !items[..i].contains(m))
}

fn valid_header_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 256 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Validate for RouteInput {
    fn validate(&self, v: &mut Violations) {
        v.slug("name", &self.name)
            .check(!self.hosts.is_empty() || !self.paths.is_empty(), "paths", "a route needs at least one host or path")
            .check(self.hosts.len() <= MAX_PATTERNS, "hosts", "must be at most 100 hosts")
            .check(self.paths.len() <= MAX_PATTERNS, "paths", "must be at most 100 paths")
            .check(
                self.hosts.iter().all(|h| valid_host(h)),
                "hosts",
                "must be DNS names, optionally starting with '*.'",
            )
            .check(
                self.paths.iter().all(|p| valid_path(p)),
                "paths",
                "must be '/exact', '/prefix/*' or '/users/{id}' patterns without '.', '..', '%' or empty segments",
            )
            .check(
                self.methods.iter().all(|m| METHODS.contains(&m.as_str())),
                "methods",
                "must be upper-case HTTP methods",
            )
            .check(unique(&self.methods), "methods", "must not repeat a method")
            .check(self.headers.keys().all(|h| valid_header_name(h)), "headers", "keys must be HTTP header names")
            .check(self.headers.values().all(|v| v.len() <= MAX_PATTERNS), "headers", "at most 100 values per header")
            .check(
                self.query.keys().all(|k| (1..=256).contains(&k.chars().count())),
                "query",
                "keys must be 1-256 characters",
            )
            .check(self.query.values().all(|v| v.len() <= MAX_PATTERNS), "query", "at most 100 values per parameter")
            .check(self.rewrite_path.as_deref().is_none_or(valid_path), "rewrite_path", "must be a path template")
            .check((-1000..=1000).contains(&self.priority), "priority", "must be -1000 to 1000")
            .check((0..=MAX_COST).contains(&self.cost), "cost", "must be 0 to 1000000");
        if v.is_empty() {
            self.gateway_check(v);
        }
        if let Some(methods) = &self.auth_methods {
            let unique = methods.iter().enumerate().all(|(i, m)| !methods[..i].contains(m));
            v.check(!methods.is_empty(), "auth_methods", "must list a method, or be null for the API's").check(
                unique,
                "auth_methods",
                "must not repeat a method",
            );
        }
    }
}

impl RouteInput {
    /// Compiles the route with the gateway's own router, which would drop any pattern it
    /// refuses (a repeated `{name}` in one path, a `rewrite_path` parameter that a path does
    /// not capture, ...) with only a log line: refused here instead, so a saved route is
    /// always the route the gateways serve. Runs after the admin's own checks, which report
    /// the rest with the same pointers.
    fn gateway_check(&self, v: &mut Violations) {
        let def = tollgate_gateway::config::model::RouteDef {
            id: Uuid::nil(),
            api_id: Uuid::nil(),
            name: self.name.clone(),
            hosts: self.hosts.clone(),
            paths: self.paths.clone(),
            methods: self.methods.clone(),
            headers: self.headers.clone(),
            query: self.query.clone(),
            strip_path: self.strip_path,
            rewrite_path: self.rewrite_path.clone(),
            priority: self.priority,
            cost: self.cost,
            auth_methods: self.auth_methods.as_ref().map(|m| m.iter().map(|m| m.as_str().to_owned()).collect()),
        };
        let (_, errors) = tollgate_gateway::router::Router::build([&def]);
        for e in &errors {
            let listed = match e.field {
                "paths" => self.paths.iter().position(|p| *p == e.value),
                "hosts" => self.hosts.iter().position(|h| *h == e.value),
                _ => None,
            };
            // "no valid path left" and the like sum up errors already reported one by one.
            if listed.is_none() && e.value.is_empty() && errors.len() > 1 {
                continue;
            }
            let field = listed.map_or_else(|| e.field.to_owned(), |i| format!("{}/{i}", e.field));
            v.check(false, &field, &format!("the gateways refuse {:?}: {}", e.value, e.reason));
        }
    }
}

impl Columns for RouteInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("name", &self.name)
            .col("hosts", &self.hosts)
            .col("paths", &self.paths)
            .col("methods", &self.methods)
            .col("headers", Json(&self.headers))
            .col("query", Json(&self.query))
            .col("strip_path", self.strip_path)
            .col("rewrite_path", self.rewrite_path.as_deref())
            .col("priority", self.priority)
            .col("cost", self.cost)
            .col("auth_methods", self.auth_methods.as_ref().map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>()));
    }
}

/// A route as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Route {
    pub id: Uuid,
    pub api_id: Uuid,
    pub name: String,
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    #[schema(value_type = BTreeMap<String, Vec<String>>)]
    pub headers: Json<BTreeMap<String, Vec<String>>>,
    #[schema(value_type = BTreeMap<String, Vec<String>>)]
    pub query: Json<BTreeMap<String, Vec<String>>>,
    pub strip_path: bool,
    pub rewrite_path: Option<String>,
    pub priority: i32,
    pub cost: i32,
    #[schema(value_type = Option<Vec<AuthMethod>>)]
    pub auth_methods: Option<Vec<String>>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for Route {
    const KIND: &'static str = "route";
    const TABLE: &'static str = "routes";
    const PARENT: Option<&'static str> = Some("api_id");
    type Input = RouteInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> RouteInput {
        RouteInput {
            name: self.name.clone(),
            hosts: self.hosts.clone(),
            paths: self.paths.clone(),
            methods: self.methods.clone(),
            headers: self.headers.0.clone(),
            query: self.query.0.clone(),
            strip_path: self.strip_path,
            rewrite_path: self.rewrite_path.clone(),
            priority: self.priority,
            cost: self.cost,
            auth_methods: self.auth_methods.as_ref().map(|m| m.iter().filter_map(|s| AuthMethod::parse(s)).collect()),
        }
    }

    async fn check<'a>(w: Write<'a, Self>, input: &'a RouteInput) -> Result<(), ApiError> {
        let (Some(api), Some(methods)) = (w.parent, &input.auth_methods) else { return Ok(()) };
        let needs = |m: AuthMethod| methods.contains(&m);
        if !needs(AuthMethod::Jwt) && !needs(AuthMethod::Introspection) && !needs(AuthMethod::Mtls) {
            return Ok(());
        }
        // Shared lock: the API cannot drop its settings until this write commits.
        let (jwt, introspection, mtls): (bool, bool, bool) = sqlx::query_as(
            "SELECT jwt IS NOT NULL, introspection IS NOT NULL, mtls IS NOT NULL FROM apis WHERE id = $1 FOR SHARE",
        )
        .bind(api)
        .fetch_optional(&mut *w.conn)
        .await?
        .ok_or_else(|| ApiError::not_found("api"))?;
        let methods = [(AuthMethod::Jwt, jwt), (AuthMethod::Introspection, introspection), (AuthMethod::Mtls, mtls)];
        for (method, configured) in methods {
            if needs(method) && !configured {
                let detail = format!("lists {0}, but the API has no {0} settings", method.as_str());
                return Err(ApiError::invalid_field("auth_methods", detail));
            }
        }
        Ok(())
    }
}

/// Filters of `GET /apis/{api_id}/routes`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RouteFilter {
    pub name: Option<String>,
}

impl Filter for RouteFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "name", self.name.as_deref());
    }
}

resource_handlers! {
    Route, input: RouteInput, filter: RouteFilter, tag: "routes", parent: Some(("api", "apis")),
    collection: "/apis/{api_id}/routes" [("api_id" = Uuid, Path, description = "API id"),],
    item: "/apis/{api_id}/routes/{id}" [("api_id" = Uuid, Path, description = "API id"), ("id" = Uuid, Path, description = "Route id"),],
    ops: { list: list_routes, get: get_route, create: create_route, patch: patch_route, delete: delete_route }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        for ok in ["/", "/orders", "/orders/*", "/users/{id}", "/users/{user_id}/posts", "/a/"] {
            assert!(valid_path(ok), "{ok}");
        }
        for bad in [
            "", "orders", "/a/../b", "/a/./b", "//a", "/a//b", "/a/*/b", "/%2e%2e", "/a b", "/{}", "/x{id}", "/a?b",
            "/{a.b}", "/{m0-}",
        ] {
            assert!(!valid_path(bad), "{bad}");
        }
    }

    #[test]
    fn patterns_state_the_rules() {
        let mut samples: Vec<String> = [
            "",
            "/",
            "/*",
            "/a/",
            "//",
            "/.",
            "/..",
            "/...",
            "/.a",
            "/..a",
            "/a/.",
            "/a/.b/",
            "/{id}",
            "/{Id}",
            "/{a.b}",
            "/{m0-}",
            "/{0}",
            "/{a}/{b}",
            "/{_x}",
            "/{x_y}",
            "/a/{b}/*",
            "/a*",
            "/é",
            "/a b",
            "/a\u{3000}",
            "/a\u{1c}",
            "/%",
            "*.example.com",
            "*",
            "a.-b",
            "a..b",
            "ex-ample.com",
            "Host",
            "x-api-key",
            "a b",
            "a:b",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        samples.push(format!("/{}", "a".repeat(MAX_PATH - 1)));
        samples.push(format!("/{}", "a".repeat(MAX_PATH)));
        let samples: Vec<&str> = samples.iter().map(String::as_str).collect();
        let in_length = |s: &str, max: usize| s.chars().count() <= max;
        crate::validate::tests::agree(PATH_PATTERN, |s| valid_path(s) || !in_length(s, MAX_PATH), &samples);
        crate::validate::tests::agree(HOST_PATTERN, valid_host, &samples);
        crate::validate::tests::agree(HEADER_NAME_PATTERN, valid_header_name, &samples);
    }

    fn route(paths: &[&str], rewrite: Option<&str>) -> RouteInput {
        let mut body = serde_json::json!({"name": "r", "paths": paths});
        if let Some(rewrite) = rewrite {
            body["rewrite_path"] = rewrite.into();
        }
        crate::extract::parse_json(body.to_string().as_bytes()).unwrap_or_else(|_| panic!("{body}"))
    }

    fn pointers(input: &RouteInput) -> Vec<String> {
        crate::validate::validate(input)
            .err()
            .map(|e| e.problem().errors)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    #[test]
    fn what_the_gateway_refuses_is_refused_here() {
        assert_eq!(pointers(&route(&["/a", "/{id}/{id}"], None)), ["/paths/1"]);
        assert_eq!(pointers(&route(&["/u/{id}", "/v/{x}"], Some("/w/{id}"))), ["/paths/1"]);
        assert_eq!(pointers(&route(&["/{a.b}"], None)), ["/paths"], "the admin's own check, reported once");
        assert!(pointers(&route(&["/u/{id}/*", "/"], Some("/v2/"))).is_empty());
    }

    #[test]
    fn host_patterns() {
        assert!(valid_host("api.example.com"));
        assert!(valid_host("*.example.com"));
        assert!(!valid_host("*"));
        assert!(!valid_host("a..b"));
        assert!(!valid_host("-a.com"));
        assert!(!valid_host("ex ample.com"));
    }
}
