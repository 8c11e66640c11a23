//! An API drafted from an OpenAPI document: its name and description from `info`, its
//! upstream from the first server, and one route per path with that path's operations'
//! methods. The draft is shown for review; nothing is saved until the owner says so, and
//! then only through the same operations as the REST API.

use serde_json::Value;

/// Operation keys of a path item, in the order methods are listed.
const METHODS: [&str; 8] = ["get", "head", "post", "put", "patch", "delete", "options", "trace"];
/// At most this many routes are drafted (a bigger document is imported in part, said so).
pub const MAX_ROUTES: usize = 500;

/// One drafted route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDraft {
    pub include: bool,
    pub name: String,
    /// Space-separated, upper case.
    pub methods: String,
    pub path: String,
    /// Upstream path template when the server URL has a base path.
    pub rewrite: String,
}

/// The drafted API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    pub name: String,
    pub description: String,
    /// `http://host:port/base` (empty when the document names no absolute server).
    pub upstream: String,
    pub routes: Vec<RouteDraft>,
    /// What the owner should know (relative servers, paths left out, renamed parameters).
    pub notes: Vec<String>,
}

/// A slug of `s` (lowercase letters, digits, `.`, `_`, `-`; at most 63 characters).
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.trim().chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_') { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let out: String = out.trim_end_matches('-').chars().take(63).collect();
    let out = out.trim_end_matches(['-', '.', '_']).to_owned();
    if out.is_empty() { "api".to_owned() } else { out }
}

/// A template parameter name the router accepts (`petId` → `pet_id`).
fn param_name(p: &str) -> String {
    let mut out = String::new();
    for c in p.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        let c = c.to_ascii_lowercase();
        out.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    let out: String = out.chars().take(63).collect();
    if out.is_empty() { "param".to_owned() } else { out }
}

/// `path` with its `{parameters}` renamed as the router wants them; whether any changed.
fn route_path(path: &str) -> (String, bool) {
    let mut out = String::new();
    let mut renamed = false;
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..open + close];
        let fixed = param_name(name);
        renamed |= fixed != name;
        out.push('{');
        out.push_str(&fixed);
        out.push('}');
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    (out, renamed)
}

/// The route name for `path`: its literal segments (`/pets/{id}/toys` → `pets-id-toys`).
fn route_name(path: &str) -> String {
    let words: Vec<&str> = path.split('/').map(|s| s.trim_matches(['{', '}'])).filter(|s| !s.is_empty()).collect();
    if words.is_empty() { "root".to_owned() } else { slug(&words.join("-")) }
}

/// Splits an absolute server URL into `scheme://host:port` and its base path.
fn server(doc: &Value) -> Option<(String, String)> {
    let url = doc.get("servers")?.as_array()?.iter().find_map(|s| s.get("url")?.as_str())?;
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" || rest.contains('{') {
        return None;
    }
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let base = path.trim_end_matches('/');
    let base = if base.is_empty() { String::new() } else { format!("/{base}") };
    Some((format!("{scheme}://{authority}"), base))
}

/// Drafts an API from a checked OpenAPI document.
pub fn draft(doc: &Value) -> Draft {
    let info = doc.get("info");
    let text = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str).unwrap_or("").trim().to_owned();
    let description = [text("summary"), text("description")].into_iter().find(|s| !s.is_empty()).unwrap_or_default();
    let mut d =
        Draft { name: slug(&text("title")), description: description.chars().take(2000).collect(), ..Draft::default() };
    let base = match server(doc) {
        Some((origin, base)) => {
            d.upstream = format!("{origin}{base}");
            base
        }
        None => {
            d.notes.push("The document names no absolute http(s) server: enter the upstream URL.".to_owned());
            String::new()
        }
    };
    let paths = doc.get("paths").and_then(Value::as_object);
    let mut renamed = false;
    for (path, item) in paths.into_iter().flatten() {
        let methods: Vec<String> =
            METHODS.iter().filter(|m| item.get(**m).is_some()).map(|m| m.to_ascii_uppercase()).collect();
        if methods.is_empty() {
            continue;
        }
        if d.routes.len() == MAX_ROUTES {
            d.notes.push(format!("Only the first {MAX_ROUTES} paths were drafted."));
            break;
        }
        let (path, changed) = route_path(path);
        renamed |= changed;
        let mut name = route_name(&path);
        let taken = |n: &str| d.routes.iter().any(|r| r.name == n);
        if taken(&name) {
            name = (2..).map(|i| format!("{name}-{i}")).find(|n| !taken(n)).unwrap_or(name);
        }
        let rewrite = if base.is_empty() { String::new() } else { format!("{base}{path}") };
        d.routes.push(RouteDraft { include: true, name, methods: methods.join(" "), path, rewrite });
    }
    if renamed {
        d.notes.push("Path parameters were renamed to lower case with underscores (petId → pet_id).".to_owned());
    }
    if d.routes.is_empty() {
        d.notes.push("The document has no operations: add routes after saving.".to_owned());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_becomes_an_api_with_one_route_per_path() {
        let doc = json!({
            "openapi": "3.1.0",
            "info": {"title": "Pet Store (v2)", "version": "1", "description": "Pets."},
            "servers": [{"url": "https://pets.example.com:8443/v2/"}],
            "paths": {
                "/pets": {"get": {}, "post": {}},
                "/pets/{petId}": {"get": {}, "delete": {}, "parameters": []},
                "/pets/{pet-id}": {"put": {}},
                "/health": {"summary": "no operations"}
            }
        });
        let d = draft(&doc);
        assert_eq!(d.name, "pet-store-v2");
        assert_eq!(d.description, "Pets.");
        assert_eq!(d.upstream, "https://pets.example.com:8443/v2");
        let routes: Vec<(&str, &str, &str, &str)> = d
            .routes
            .iter()
            .map(|r| (r.name.as_str(), r.methods.as_str(), r.path.as_str(), r.rewrite.as_str()))
            .collect();
        assert_eq!(
            routes,
            vec![
                ("pets", "GET POST", "/pets", "/v2/pets"),
                ("pets-pet_id", "PUT", "/pets/{pet_id}", "/v2/pets/{pet_id}"),
                ("pets-pet_id-2", "GET DELETE", "/pets/{pet_id}", "/v2/pets/{pet_id}"),
            ]
        );
        assert!(d.notes.iter().any(|n| n.contains("renamed")));
    }

    #[test]
    fn relative_or_templated_servers_leave_the_upstream_to_the_owner() {
        for servers in [json!([{"url": "/v1"}]), json!([{"url": "https://{region}.example.com"}]), json!([])] {
            let d = draft(&json!({"info": {"title": "x"}, "servers": servers, "paths": {"/a": {"get": {}}}}));
            assert_eq!(d.upstream, "");
            assert_eq!(d.routes[0].rewrite, "");
            assert!(d.notes[0].contains("upstream URL"));
        }
    }

    #[test]
    fn slugs_are_what_names_accept() {
        assert_eq!(slug("  Hello, World!  "), "hello-world");
        assert_eq!(slug("Ünïcode"), "n-code");
        assert_eq!(slug("!!!"), "api");
        assert_eq!(slug(&"a".repeat(100)).len(), 63);
        assert_eq!(param_name("petId"), "pet_id");
        assert_eq!(param_name("X-Id"), "x_id");
    }
}
