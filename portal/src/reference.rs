//! An API's reference, rendered on the server from its published OpenAPI documents:
//! operations by tag with parameters, request and response schemas, examples, a `curl` line
//! on the gateway's public URL, and a try-it form that works without JavaScript (the portal
//! sends the request to the gateway itself; see [`crate::tryit`]). Descriptions are Markdown,
//! rendered and sanitised ([`crate::markdown`]); everything else is escaped text.

use serde_json::{Map, Value};

use crate::markdown;

/// Most schema lines shown for one body or response (large schemas are cut, with a note).
const MAX_LINES: usize = 300;
/// Deepest nesting shown.
const MAX_DEPTH: usize = 6;
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

/// One line of a schema outline.
#[derive(Debug, Clone)]
pub struct SchemaLine {
    pub depth: usize,
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub description: String,
}

/// A parameter.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub location: String,
    pub required: bool,
    pub kind: String,
    pub description: String,
}

/// A request body or a response's content.
#[derive(Debug, Clone)]
pub struct Content {
    pub content_type: String,
    pub lines: Vec<SchemaLine>,
    pub cut: bool,
    pub example: String,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: String,
    pub description: String,
    pub content: Option<Content>,
}

/// An operation, ready for the template.
#[derive(Debug, Clone)]
pub struct Operation {
    pub anchor: String,
    pub method: String,
    pub path: String,
    pub summary: String,
    /// Sanitised HTML.
    pub description: String,
    pub deprecated: bool,
    pub params: Vec<Param>,
    pub body: Option<Content>,
    pub responses: Vec<Response>,
    pub curl: String,
}

impl Operation {
    pub fn path_params(&self) -> Vec<&Param> {
        self.params.iter().filter(|p| p.location == "path").collect()
    }

    pub fn query_params(&self) -> Vec<&Param> {
        self.params.iter().filter(|p| p.location == "query").collect()
    }
}

/// Operations under one tag.
#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub description: String,
    pub operations: Vec<Operation>,
}

/// A rendered document.
#[derive(Debug, Clone)]
pub struct Reference {
    pub title: String,
    pub version: String,
    pub description: String,
    pub tags: Vec<Tag>,
}

/// How calls authenticate, for `curl` lines.
pub struct Auth<'a> {
    pub gateway_url: &'a str,
    pub key_header: &'a str,
}

/// Follows local `$ref`s (`#/components/...`), at most 10 hops; returns the target and the
/// name of the last component referenced.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> (&'a Value, Option<String>) {
    let mut name = None;
    for _ in 0..10 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else { break };
        let Some(target) = r.strip_prefix('#').and_then(|p| doc.pointer(p)) else { break };
        name = r.rsplit('/').next().map(str::to_owned);
        v = target;
    }
    (v, name)
}

fn text(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// `string (date-time)`, `array of Pet`, `one of: A, B`, …
fn kind(doc: &Value, schema: &Value) -> String {
    let (s, name) = resolve(doc, schema);
    let base = match s.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let items = s.get("items").map(|i| kind(doc, i)).unwrap_or_else(|| "any".into());
            format!("array of {items}")
        }
        Some(Value::String(t)) => match s.get("format").and_then(Value::as_str) {
            Some(f) => format!("{t} ({f})"),
            None => t.clone(),
        },
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" or "),
        _ if s.get("properties").is_some() => "object".into(),
        _ => ["oneOf", "anyOf", "allOf"]
            .iter()
            .find_map(|k| s.get(*k).and_then(Value::as_array).map(|alts| (k, alts)))
            .map(|(k, alts)| {
                let word = if *k == "allOf" { "all of" } else { "one of" };
                format!("{word}: {}", alts.iter().map(|a| kind(doc, a)).collect::<Vec<_>>().join(", "))
            })
            .unwrap_or_else(|| "any".into()),
    };
    let base = match (name, s.get("type").and_then(Value::as_str)) {
        (Some(n), Some("object")) | (Some(n), None) => n,
        (Some(n), Some(_)) if !base.starts_with("array") => format!("{n}: {base}"),
        _ => base,
    };
    match s.get("enum").and_then(Value::as_array) {
        Some(values) => {
            let shown: Vec<String> =
                values.iter().take(12).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect();
            format!("{base}, one of {}", shown.join(", "))
        }
        None => base,
    }
}

fn outline(doc: &Value, schema: &Value, depth: usize, seen: &mut Vec<String>, out: &mut Vec<SchemaLine>) -> bool {
    let (s, name) = resolve(doc, schema);
    if depth > MAX_DEPTH || name.as_ref().is_some_and(|n| seen.contains(n)) {
        return true;
    }
    if let Some(n) = &name {
        seen.push(n.clone());
    }
    let mut cut = false;
    let s = match s.get("items") {
        Some(items) if s.get("type").and_then(Value::as_str) == Some("array") => resolve(doc, items).0,
        _ => s,
    };
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let props = s.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    for (prop, ps) in &props {
        if out.len() >= MAX_LINES {
            cut = true;
            break;
        }
        let (resolved, _) = resolve(doc, ps);
        out.push(SchemaLine {
            depth,
            name: prop.clone(),
            kind: kind(doc, ps),
            required: required.contains(&prop.as_str()),
            description: text(resolved.get("description")),
        });
        let nested = resolved.get("properties").is_some()
            || resolved.get("items").is_some_and(|i| resolve(doc, i).0.get("properties").is_some());
        if nested {
            cut |= outline(doc, ps, depth + 1, seen, out);
        }
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for alt in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            cut |= outline(doc, alt, depth, seen, out);
        }
    }
    if name.is_some() {
        seen.pop();
    }
    cut
}

/// A sample value for `schema`: its example if it has one, else one built from its types.
fn sample(doc: &Value, schema: &Value, depth: usize) -> Value {
    let (s, _) = resolve(doc, schema);
    if let Some(e) = s.get("example") {
        return e.clone();
    }
    if let Some(first) = s.get("enum").and_then(Value::as_array).and_then(|v| v.first()) {
        return first.clone();
    }
    if depth > 4 {
        return Value::Null;
    }
    let ty = s.get("type").and_then(Value::as_str).unwrap_or(if s.get("properties").is_some() { "object" } else { "" });
    match ty {
        "object" => {
            let props = s.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
            Value::Object(
                props.iter().take(30).map(|(k, v)| (k.clone(), sample(doc, v, depth + 1))).collect::<Map<_, _>>(),
            )
        }
        "array" => Value::Array(s.get("items").map(|i| vec![sample(doc, i, depth + 1)]).unwrap_or_default()),
        "integer" | "number" => Value::from(0),
        "boolean" => Value::Bool(true),
        "string" => Value::String(match s.get("format").and_then(Value::as_str) {
            Some("date-time") => "2026-01-01T00:00:00Z".into(),
            Some("date") => "2026-01-01".into(),
            Some("uuid") => "00000000-0000-0000-0000-000000000000".into(),
            Some("email") => "dev@example.com".into(),
            _ => "string".into(),
        }),
        _ => s
            .get("oneOf")
            .or(s.get("anyOf"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .map_or(Value::Null, |a| sample(doc, a, depth + 1)),
    }
}

fn media_example(doc: &Value, media: &Value) -> Value {
    if let Some(e) = media.get("example") {
        return e.clone();
    }
    let from_examples =
        media.get("examples").and_then(Value::as_object).and_then(|m| m.values().next()).map(|e| resolve(doc, e).0);
    if let Some(v) = from_examples.and_then(|e| e.get("value")) {
        return v.clone();
    }
    media.get("schema").map_or(Value::Null, |s| sample(doc, s, 0))
}

fn content(doc: &Value, holder: &Value) -> Option<Content> {
    let map = holder.get("content")?.as_object()?;
    let (ct, media) = map.iter().find(|(k, _)| k.contains("json")).or_else(|| map.iter().next())?;
    let mut lines = Vec::new();
    let cut = media.get("schema").is_some_and(|s| outline(doc, s, 0, &mut Vec::new(), &mut lines));
    let example = match media_example(doc, media) {
        Value::Null => String::new(),
        v => serde_json::to_string_pretty(&v).unwrap_or_default(),
    };
    Some(Content { content_type: ct.clone(), lines, cut, example })
}

fn params(doc: &Value, item: &Value, op: &Value) -> Vec<Param> {
    let mut out: Vec<Param> = Vec::new();
    let lists = [op.get("parameters"), item.get("parameters")];
    for p in lists.into_iter().flatten().filter_map(Value::as_array).flatten() {
        let (p, _) = resolve(doc, p);
        let name = text(p.get("name"));
        let location = text(p.get("in"));
        if name.is_empty() || out.iter().any(|q| q.name == name && q.location == location) {
            continue;
        }
        out.push(Param {
            required: location == "path" || p.get("required").and_then(Value::as_bool).unwrap_or(false),
            kind: p.get("schema").map(|s| kind(doc, s)).unwrap_or_else(|| "string".into()),
            description: markdown::to_html(&text(p.get("description"))),
            name,
            location,
        });
    }
    out
}

/// `'…'` for a shell: single quotes, with `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn curl(auth: &Auth<'_>, method: &str, path: &str, body: Option<&Content>) -> String {
    let mut line = String::from("curl");
    if method != "GET" {
        line.push_str(&format!(" -X {method}"));
    }
    line.push_str(&format!(" {}", shell_quote(&format!("{}{path}", auth.gateway_url))));
    line.push_str(&format!(" \\\n  -H \"{}: $TOLLGATE_KEY\"", auth.key_header));
    if let Some(b) = body.filter(|b| !b.example.is_empty()) {
        let compact =
            serde_json::from_str::<Value>(&b.example).map(|v| v.to_string()).unwrap_or_else(|_| b.example.clone());
        line.push_str(&format!(
            " \\\n  -H {} \\\n  -d {}",
            shell_quote(&format!("content-type: {}", b.content_type)),
            shell_quote(&compact)
        ));
    }
    line
}

/// An anchor for an operation: `op-post-orders-id`.
pub fn anchor(method: &str, path: &str) -> String {
    let mut a = format!("op-{method}");
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()) {
        a.push('-');
        a.push_str(&part.to_ascii_lowercase());
    }
    a
}

/// Renders `doc` for the page.
pub fn render(doc: &Value, auth: &Auth<'_>) -> Reference {
    let info = doc.get("info").cloned().unwrap_or_default();
    let tag_docs: Vec<(String, String)> = doc
        .get("tags")
        .and_then(Value::as_array)
        .map(|t| t.iter().map(|t| (text(t.get("name")), markdown::to_html(&text(t.get("description"))))).collect())
        .unwrap_or_default();
    let mut tags: Vec<Tag> =
        tag_docs.iter().map(|(n, d)| Tag { name: n.clone(), description: d.clone(), operations: Vec::new() }).collect();
    for (path, item) in doc.get("paths").and_then(Value::as_object).into_iter().flatten() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let operation = operation(doc, auth, path, item, method, op);
            let tag = op
                .get("tags")
                .and_then(Value::as_array)
                .and_then(|t| t.first())
                .and_then(Value::as_str)
                .unwrap_or("Endpoints");
            match tags.iter_mut().find(|t| t.name == tag) {
                Some(t) => t.operations.push(operation),
                None => {
                    tags.push(Tag { name: tag.to_owned(), description: String::new(), operations: vec![operation] })
                }
            }
        }
    }
    tags.retain(|t| !t.operations.is_empty());
    Reference {
        title: text(info.get("title")),
        version: text(info.get("version")),
        description: markdown::to_html(&text(info.get("description"))),
        tags,
    }
}

fn operation(doc: &Value, auth: &Auth<'_>, path: &str, item: &Value, method: &str, op: &Value) -> Operation {
    let body = op.get("requestBody").map(|b| resolve(doc, b).0).and_then(|b| content(doc, b));
    let mut responses: Vec<Response> = op
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(status, r)| {
            let (r, _) = resolve(doc, r);
            Response {
                status: status.clone(),
                description: markdown::to_html(&text(r.get("description"))),
                content: content(doc, r),
            }
        })
        .collect();
    responses.sort_by(|a, b| a.status.cmp(&b.status));
    let upper = method.to_ascii_uppercase();
    Operation {
        anchor: anchor(method, path),
        curl: curl(auth, &upper, path, body.as_ref()),
        method: upper,
        path: path.to_owned(),
        summary: text(op.get("summary")),
        description: markdown::to_html(&text(op.get("description"))),
        deprecated: op.get("deprecated").and_then(Value::as_bool).unwrap_or(false),
        params: params(doc, item, op),
        body,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"title": "Pets", "version": "1", "description": "All **pets**"},
            "tags": [{"name": "pets", "description": "Pet things"}],
            "paths": {
                "/pets/{id}": {
                    "parameters": [{"name": "id", "in": "path", "schema": {"type": "string", "format": "uuid"}}],
                    "get": {"tags": ["pets"], "summary": "One pet", "parameters": [{"name": "fields", "in": "query"}],
                        "responses": {"200": {"description": "The pet", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}},
                    "put": {"tags": ["pets"], "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}},
                        "responses": {"204": {"description": "Saved"}}}
                },
                "/health": {"get": {"responses": {"200": {"description": "ok"}}}}
            },
            "components": {"schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "example": "Rex"},
                "kind": {"type": "string", "enum": ["dog", "cat"]},
                "parent": {"$ref": "#/components/schemas/Pet"},
                "tags": {"type": "array", "items": {"type": "string"}}
            }}}}
        })
    }

    #[test]
    fn operations_are_grouped_with_parameters_schemas_and_examples() {
        let auth = Auth { gateway_url: "https://api.example.com", key_header: "x-api-key" };
        let r = render(&doc(), &auth);
        assert_eq!(r.title, "Pets");
        assert!(r.description.contains("<strong>pets</strong>"));
        assert_eq!(r.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["pets", "Endpoints"]);
        let get = &r.tags[0].operations[0];
        assert_eq!((get.method.as_str(), get.path.as_str()), ("GET", "/pets/{id}"));
        assert_eq!(get.path_params().len(), 1, "path parameters of the path item apply");
        assert_eq!(get.query_params()[0].name, "fields");
        let pet = get.responses[0].content.as_ref().map(|c| c.lines.clone()).unwrap_or_default();
        let names: Vec<&str> = pet.iter().map(|l| l.name.as_str()).collect();
        // (Keys come back sorted: documents are stored as jsonb.)
        assert_eq!(names, ["kind", "name", "parent", "tags"], "the recursive parent is named, not expanded");
        assert!(pet[1].required && pet[0].kind.contains("one of dog, cat"));
        let put = &r.tags[0].operations[1];
        assert!(put.body.as_ref().is_some_and(|b| b.example.contains("\"Rex\"")));
        assert!(put.curl.starts_with("curl -X PUT 'https://api.example.com/pets/{id}'"), "{}", put.curl);
        assert!(put.curl.contains("-H \"x-api-key: $TOLLGATE_KEY\"") && put.curl.contains("-d '{"));
    }

    #[test]
    fn quotes_survive_the_shell() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
