//! The reference pages (`/apis/{name}/reference`) and the try-it console behind them. Try-it
//! is server-side: the form goes to the portal, which sends the call to the gateway's public
//! URL — only on a path of one of this API's published operations, with the path
//! parameters percent-encoded, so no form can make it call another host — and shows the
//! status, headers (RateLimit among them) and body. The key typed in is used for that one
//! call and not kept.

use std::collections::HashMap;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::reference::{self, Auth, Reference};
use crate::state::PortalState;
use crate::web::{Chrome, SignedIn, UiError, Visit};

/// Largest response body shown.
const MAX_BODY: usize = 64 * 1024;
/// How long a try-it call may take.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(10);
/// Path parameter values are encoded but for RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `?version=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct VersionQuery {
    pub version: String,
}

/// The outcome of a try-it call.
pub struct TryResult {
    pub anchor: String,
    pub request: String,
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub truncated: bool,
    pub error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/reference.html")]
struct ReferencePage {
    chrome: Chrome,
    api: String,
    versions: Vec<String>,
    version: String,
    doc: Reference,
    gateway_url: String,
    key_header: String,
    my_keys: Vec<String>,
    signed_in: bool,
    result: Option<TryResult>,
}

struct Loaded {
    api_id: Uuid,
    key_header: String,
    versions: Vec<String>,
    label: String,
    document: Value,
}

async fn load(state: &PortalState, name: &str, wanted: &str) -> Result<Loaded, UiError> {
    let api: Option<(Uuid, String)> =
        sqlx::query_as("SELECT id, key_header FROM apis WHERE name = $1 AND portal_visible AND enabled")
            .bind(name)
            .fetch_optional(state.db())
            .await?;
    let (api_id, key_header) = api.ok_or(UiError::NotFound)?;
    let docs: Vec<(String, Value)> = sqlx::query_as(
        "SELECT label, document FROM api_documents WHERE api_id = $1 AND published ORDER BY created_at DESC LIMIT 50",
    )
    .bind(api_id)
    .fetch_all(state.db())
    .await?;
    let versions: Vec<String> = docs.iter().map(|(l, _)| l.clone()).collect();
    let (label, document) =
        docs.into_iter().find(|(l, _)| wanted.is_empty() || *l == wanted).ok_or(UiError::NotFound)?;
    Ok(Loaded { api_id, key_header, versions, label, document })
}

async fn page(
    state: &PortalState,
    visit: &Visit,
    name: &str,
    version: &str,
    result: Option<TryResult>,
) -> Result<Response, UiError> {
    let loaded = load(state, name, version).await?;
    let gateway_url = state.config().gateway_url.clone();
    let doc = reference::render(&loaded.document, &Auth { gateway_url: &gateway_url, key_header: &loaded.key_header });
    let my_keys = match &visit.me {
        Some(me) => sqlx::query_as::<_, (String,)>(
            "SELECT k.prefix FROM api_keys k JOIN consumers c ON c.id = k.consumer_id
             JOIN subscriptions s ON s.consumer_id = c.id AND s.api_id = $2 AND s.status = 'active'
             JOIN organisation_members m ON m.organisation_id = c.organisation_id AND m.developer_id = $1
             WHERE k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) ORDER BY k.created_at DESC LIMIT 10",
        )
        .bind(me.id)
        .bind(loaded.api_id)
        .fetch_all(state.db())
        .await?
        .into_iter()
        .map(|(p,)| p)
        .collect(),
        None => Vec::new(),
    };
    Ok(ReferencePage {
        chrome: Chrome::new(visit, format!("{} reference", doc.title), "apis"),
        api: name.to_owned(),
        versions: loaded.versions,
        version: loaded.label,
        doc,
        gateway_url,
        key_header: loaded.key_header,
        my_keys,
        signed_in: visit.me.is_some(),
        result,
    }
    .into_response())
}

/// `GET /apis/{name}/reference`.
pub async fn show_reference(
    State(state): State<PortalState>,
    visit: Visit,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response, UiError> {
    page(&state, &visit, &name, &q.version, None).await
}

/// Whether `path` is served by one of the API's routes (a route path is exact, or a prefix
/// up to its first `*` or `{`). An API routed by host only takes any path.
fn routed(path: &str, route_paths: &[String]) -> bool {
    route_paths.is_empty()
        || route_paths.iter().any(|rp| match rp.find(['*', '{']) {
            Some(i) => path.starts_with(&rp[..i]),
            None => path == rp,
        })
}

/// `POST /apis/{name}/reference/try`: calls the gateway as the form says and shows the answer.
pub async fn try_call(
    State(state): State<PortalState>,
    who: SignedIn,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, UiError> {
    let loaded = load(&state, &name, &q.version).await?;
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    let (method, template) = field("op").split_once(' ').unwrap_or_default();
    let method_lower = method.to_ascii_lowercase();
    let op =
        loaded.document.pointer(&format!("/paths/{}/{method_lower}", template.replace('~', "~0").replace('/', "~1")));
    let anchor = reference::anchor(&method_lower, template);
    let result = match op {
        // Shown at the top of the page: there is no operation to show it under.
        None => TryResult::failed(String::new(), String::new(), "This operation is not in the published document."),
        Some(_) => {
            let mut path = template.to_owned();
            for (k, v) in form.iter().filter_map(|(k, v)| Some((k.strip_prefix("p.")?, v))) {
                path = path.replace(&format!("{{{k}}}"), &utf8_percent_encode(v, SEGMENT).to_string());
            }
            let query: Vec<(&str, &str)> = form
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("q.")?, v.as_str())))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            let routes: Vec<(Vec<String>,)> = sqlx::query_as("SELECT paths FROM routes WHERE api_id = $1")
                .bind(loaded.api_id)
                .fetch_all(state.db())
                .await?;
            let route_paths: Vec<String> = routes.into_iter().flat_map(|(p,)| p).collect();
            if path.contains(['{', '}']) {
                TryResult::failed(anchor, path, "Fill in every path parameter.")
            } else if !routed(&path, &route_paths) {
                TryResult::failed(anchor, path, "The gateway has no route of this API for this path.")
            } else {
                send(&state, &loaded.key_header, method, &path, &query, field("key"), field("body"), anchor).await
            }
        }
    };
    page(&state, &who.visit, &name, &loaded.label, Some(result)).await
}

impl TryResult {
    fn failed(anchor: String, request: String, why: &str) -> Self {
        Self {
            anchor,
            request,
            status: None,
            headers: Vec::new(),
            body: String::new(),
            truncated: false,
            error: why.to_owned(),
        }
    }
}

#[expect(clippy::too_many_arguments, reason = "one call's parts, each from a different place of the form")]
async fn send(
    state: &PortalState,
    key_header: &str,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    key: &str,
    body: &str,
    anchor: String,
) -> TryResult {
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return TryResult::failed(anchor, path.to_owned(), "Unknown method.");
    };
    let enc = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
    let qs: Vec<String> = query.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    let url = match qs.is_empty() {
        true => format!("{}{path}", state.config().gateway_url),
        false => format!("{}{path}?{}", state.config().gateway_url, qs.join("&")),
    };
    let shown = format!("{method} {url}");
    let mut req = state.http().request(method, &url).timeout(TRY_TIMEOUT);
    if !key.trim().is_empty() {
        req = req.header(key_header, key.trim());
    }
    if !body.trim().is_empty() {
        req = req.header("content-type", "application/json").body(body.to_owned());
    }
    let res = match req.send().await {
        Ok(r) => r,
        Err(e) => return TryResult::failed(anchor, shown, &format!("The gateway could not be reached: {e}")),
    };
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let bytes = res.bytes().await.unwrap_or_default();
    let truncated = bytes.len() > MAX_BODY;
    let body = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_BODY)]).into_owned();
    let body =
        serde_json::from_str::<Value>(&body).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or(body);
    TryResult { anchor, request: shown, status: Some(status), headers, body, truncated, error: String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_the_apis_routes_are_tried() {
        let routes = vec!["/weather/*".to_owned(), "/v1/orders/{id}".to_owned(), "/exact".to_owned()];
        assert!(routed("/weather/today", &routes));
        assert!(routed("/v1/orders/12", &routes));
        assert!(routed("/exact", &routes));
        assert!(!routed("/exact/more", &routes));
        assert!(!routed("/admin", &routes));
        assert!(routed("/anything", &[]));
    }
}
