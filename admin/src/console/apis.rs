//! APIs in the admin UI: the list, import from an OpenAPI document (drafted, reviewed,
//! then saved through the operations), and each API's page: settings, targets, routes and
//! plans, each change followed by how many live gateways have applied it.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::fields::{FormData, Kind, Spec, Values, api_errors, to_json};
use super::import::{self, Draft, RouteDraft};
use super::web::{Admin, BASE, Chrome, FieldErrors, UiError};
use crate::apis::Api;
use crate::auth::Role;
use crate::documents::{self, NewDocument};
use crate::error::ApiError;
use crate::extract::{IfMatch, parse_json};
use crate::nodes::Live;
use crate::ops::{self, Parent};
use crate::page::PageQuery;
use crate::plans::Plan;
use crate::resource::Resource;
use crate::routes::Route;
use crate::state::AppState;
use crate::targets::Target;
use crate::ui::format::date_time;

/// `?q=&notice=&event=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    q: String,
    notice: Option<String>,
    event: i64,
}

#[derive(sqlx::FromRow)]
pub struct ApiRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub portal_visible: bool,
    pub routes: i64,
    pub plans: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/apis.html")]
struct ApisPage {
    chrome: Chrome,
    q: String,
    apis: Vec<ApiRow>,
    total: i64,
}

/// `GET /ui/apis`: every API (by name), searchable by name or description.
pub async fn show_apis(
    State(state): State<AppState>,
    who: Admin,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let pattern = format!("%{}%", crate::ui::form::escape_like(q.q.trim()));
    let apis: Vec<ApiRow> = sqlx::query_as(
        "SELECT a.id, a.name, a.description, a.enabled, a.portal_visible,
                (SELECT count(*) FROM routes r WHERE r.api_id = a.id) AS routes,
                (SELECT count(*) FROM plans p WHERE p.api_id = a.id) AS plans
         FROM apis a WHERE a.name ILIKE $1 OR a.description ILIKE $1 ORDER BY a.name LIMIT 200",
    )
    .bind(&pattern)
    .fetch_all(state.db())
    .await?;
    let (total,): (i64,) = sqlx::query_as("SELECT count(*) FROM apis").fetch_one(state.db()).await?;
    let chrome = Chrome::new(&who.visit, "APIs", "apis").with_notice(q.notice.as_deref());
    Ok(ApisPage { chrome, q: q.q, apis, total }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/import.html")]
struct ImportPage {
    chrome: Chrome,
    errors: FieldErrors,
    content: String,
}

/// `GET /ui/apis/import`.
pub async fn show_import(who: Admin) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let chrome = Chrome::new(&who.visit, "Import an API", "apis");
    Ok(ImportPage { chrome, errors: FieldErrors::default(), content: String::new() }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/review.html")]
struct ReviewPage {
    chrome: Chrome,
    errors: FieldErrors,
    draft: Draft,
    portal_visible: bool,
    title: String,
    content: String,
}

/// `POST /ui/apis/import` (multipart: a file or pasted text): checks the document and
/// shows the drafted API for review. Nothing is saved.
pub async fn upload(who: Admin, mut form: Multipart) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let (mut file, mut pasted) = (String::new(), String::new());
    while let Some(field) = form.next_field().await.map_err(|e| UiError::Conflict(format!("The upload failed: {e}")))? {
        let name = field.name().unwrap_or("").to_owned();
        let bytes = field.bytes().await.map_err(|e| UiError::Conflict(format!("The upload failed: {e}")))?;
        let text = || String::from_utf8(bytes.to_vec());
        match name.as_str() {
            "file" => file = text().map_err(|_| UiError::Conflict("The file is not UTF-8 text.".to_owned()))?,
            "content" => pasted = text().unwrap_or_default(),
            _ => {}
        }
    }
    let content = if file.trim().is_empty() { pasted } else { file };
    let refuse = |message: String, content: String| {
        let mut errors = FieldErrors::default();
        errors.add("file", message);
        let chrome = Chrome::new(&who.visit, "Import an API", "apis");
        Ok(ImportPage { chrome, errors, content }.into_response())
    };
    if content.trim().is_empty() {
        return refuse("Choose an OpenAPI file or paste the document.".to_owned(), content);
    }
    let checked = match documents::check(&content) {
        Ok(c) => c,
        Err(e) => return refuse(format!("This is not a usable OpenAPI document: {}", e.detail_of("content")), content),
    };
    let draft = import::draft(&checked.document);
    let chrome = Chrome::new(&who.visit, "Review the import", "apis");
    Ok(ReviewPage {
        chrome,
        errors: FieldErrors::default(),
        draft,
        portal_visible: true,
        title: checked.title,
        content,
    }
    .into_response())
}

/// The review form's routes, as typed.
fn routes_of(form: &FormData) -> Vec<RouteDraft> {
    let n: usize = form.get("routes").parse().unwrap_or(0);
    (0..n.min(import::MAX_ROUTES))
        .map(|i| RouteDraft {
            include: form.has(&format!("route.{i}.include")),
            name: form.get(&format!("route.{i}.name")).to_owned(),
            methods: form.get(&format!("route.{i}.methods")).to_owned(),
            path: form.get(&format!("route.{i}.path")).to_owned(),
            rewrite: form.get(&format!("route.{i}.rewrite")).to_owned(),
        })
        .collect()
}

/// `http(s)://host[:port][/base]` → (protocol, host, port, base path).
fn parse_upstream(url: &str) -> Result<(&'static str, String, u16, String), String> {
    let bad = || "must be an http:// or https:// URL such as https://api.internal:8443/v1".to_owned();
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let (protocol, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "http" => ("http", 80),
        "https" => ("https", 443),
        _ => return Err(bad()),
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.to_owned(), p.parse::<u16>().map_err(|_| "has a port that is not a number".to_owned())?)
        }
        _ => (authority.to_owned(), default_port),
    };
    if host.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    let base = path.trim_end_matches('/');
    Ok((protocol, host, port, if base.is_empty() { String::new() } else { format!("/{base}") }))
}

/// The inputs of an import, each checked by its operation's own parsing and rules; errors
/// land on the review form's fields.
struct Checked {
    api: crate::apis::ApiInput,
    target: crate::targets::TargetInput,
    routes: Vec<crate::routes::RouteInput>,
}

fn check_import(form: &FormData, draft: &Draft) -> Result<Checked, FieldErrors> {
    let mut errors = FieldErrors::default();
    let upstream = parse_upstream(&draft.upstream);
    if let Err(m) = &upstream {
        errors.add("upstream", format!("The upstream URL {m}"));
    }
    let (protocol, host, port) = upstream.clone().map_or(("http", String::new(), 80), |(p, h, port, _)| (p, h, port));
    let api = json!({
        "name": draft.name, "description": draft.description, "upstream_protocol": protocol,
        "portal_visible": form.has("portal_visible"),
    });
    let api = parse_json::<crate::apis::ApiInput>(api.to_string().as_bytes())
        .and_then(|a| crate::validate::validate(&a).map(|()| a))
        .map_err(|e| errors_into(&mut errors, &e, &[Spec("name", Kind::Text), Spec("description", Kind::Text)]));
    let target = parse_json::<crate::targets::TargetInput>(json!({"host": host, "port": port}).to_string().as_bytes())
        .and_then(|t| crate::validate::validate(&t).map(|()| t))
        .map_err(|e| errors.add("upstream", format!("The upstream URL: {}", e.detail_of("host"))));
    let mut routes = Vec::new();
    for (i, r) in draft.routes.iter().enumerate().filter(|(_, r)| r.include) {
        let methods: Vec<String> =
            r.methods.split([' ', ',']).filter(|m| !m.is_empty()).map(str::to_uppercase).collect();
        let rewrite = if r.rewrite.is_empty() { Value::Null } else { Value::from(r.rewrite.clone()) };
        let body = json!({"name": r.name, "paths": [r.path], "methods": methods, "rewrite_path": rewrite});
        match parse_json::<crate::routes::RouteInput>(body.to_string().as_bytes())
            .and_then(|x| crate::validate::validate(&x).map(|()| x))
        {
            Ok(x) => routes.push(x),
            Err(e) => {
                for fe in e.field_errors() {
                    let field = match fe.pointer.trim_start_matches('/').split('/').next().unwrap_or("") {
                        "paths" => "path",
                        "methods" => "methods",
                        "rewrite_path" => "rewrite",
                        _ => "name",
                    };
                    errors.add(format!("route.{i}.{field}"), format!("Route {}: {}", i + 1, fe.detail));
                }
            }
        }
    }
    match (api, target, errors.is_empty()) {
        (Ok(api), Ok(target), true) => Ok(Checked { api, target, routes }),
        _ => Err(errors),
    }
}

fn errors_into(errors: &mut FieldErrors, e: &ApiError, specs: &[Spec]) {
    for (f, m) in api_errors(e, specs).0 {
        errors.add(f, m);
    }
}

/// `POST /ui/apis/import/save`: creates the API, its target, its routes and its published
/// document through the operations (each audited, each a change event). When a later step
/// is refused (a route another API already serves), the API is deleted again and the review
/// shown with the reason.
pub async fn save_import(State(state): State<AppState>, who: Admin, body: Bytes) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(&body);
    let content = form.0.iter().find(|(k, _)| k == "content").map(|(_, v)| v.clone()).unwrap_or_default();
    let checked = documents::check(&content).map_err(|e| UiError::Conflict(e.detail_of("content")))?;
    let draft = Draft {
        name: form.get("name").to_owned(),
        description: form.get("description").to_owned(),
        upstream: form.get("upstream").to_owned(),
        routes: routes_of(&form),
        notes: Vec::new(),
    };
    let review = |errors: FieldErrors, draft: Draft| {
        let chrome = Chrome::new(&who.visit, "Review the import", "apis");
        let title = checked.title.clone();
        ReviewPage {
            chrome,
            errors,
            draft,
            portal_visible: form.has("portal_visible"),
            title,
            content: content.clone(),
        }
        .into_response()
    };
    let plan = match check_import(&form, &draft) {
        Ok(p) => p,
        Err(errors) => return Ok(review(errors, draft)),
    };
    let actor = who.actor();
    let api: Api = match ops::create::<Api>(&state, &actor, None, plan.api).await {
        Ok(t) => t.into_body(),
        Err(e) => {
            let mut errors = FieldErrors::default();
            errors_into(&mut errors, &e, &[Spec("name", Kind::Text), Spec("description", Kind::Text)]);
            return Ok(review(errors, draft));
        }
    };
    let parent = Some(Parent { kind: "api", table: "apis", id: api.id });
    let mut failure: Option<(String, String)> = None;
    if let Err(e) = ops::create::<Target>(&state, &actor, parent, plan.target).await {
        failure = Some(("upstream".to_owned(), e.detail().to_owned()));
    }
    let included: Vec<usize> = draft.routes.iter().enumerate().filter(|(_, r)| r.include).map(|(i, _)| i).collect();
    for (i, input) in included.into_iter().zip(plan.routes) {
        if failure.is_some() {
            break;
        }
        if let Err(e) = ops::create::<Route>(&state, &actor, parent, input).await {
            let detail = e.field_errors().first().map_or_else(|| e.detail().to_owned(), |f| f.detail.clone());
            failure = Some((format!("route.{i}.path"), format!("Route {}: {detail}", i + 1)));
        }
    }
    if failure.is_none() {
        let doc = NewDocument { label: "v1".to_owned(), published: true, content: content.clone() };
        if let Err(e) = documents::store(&state, &actor, api.id, &doc).await {
            failure = Some(("".to_owned(), e.detail().to_owned()));
        }
    }
    if let Some((field, message)) = failure {
        ops::delete::<Api>(&state, &actor, None, api.id, IfMatch::Any).await?;
        let mut errors = FieldErrors::default();
        errors.add(field, format!("{message} Nothing was saved."));
        return Ok(review(errors, draft));
    }
    let event = crate::nodes::latest_event(state.db(), api.id).await?.unwrap_or(0);
    let (last,): (Option<i64>,) = sqlx::query_as(
        "SELECT max(id) FROM config_events WHERE entity_id = $1 OR entity_id IN (SELECT id FROM routes WHERE api_id = $1)",
    )
    .bind(api.id)
    .fetch_one(state.db())
    .await?;
    let event = last.unwrap_or(event);
    Ok(Redirect::to(&format!("{BASE}/apis/{}?notice=imported&event={event}", api.id)).into_response())
}

/// The API settings the edit form holds (every writable field but the document).
pub const SETTINGS: [Spec; 26] = [
    Spec("name", Kind::Text),
    Spec("description", Kind::Text),
    Spec("tags", Kind::List),
    Spec("enabled", Kind::Bool),
    Spec("portal_visible", Kind::Bool),
    Spec("upstream_protocol", Kind::Text),
    Spec("lb_policy", Kind::Text),
    Spec("hash_on", Kind::OptText),
    Spec("connect_timeout_ms", Kind::Int),
    Spec("read_timeout_ms", Kind::Int),
    Spec("total_timeout_ms", Kind::Int),
    Spec("retries", Kind::Int),
    Spec("retry_on_statuses", Kind::IntList),
    Spec("canary_weight", Kind::Int),
    Spec("canary_header", Kind::OptText),
    Spec("health_check", Kind::Yaml),
    Spec("passive_health", Kind::Yaml),
    Spec("circuit_breaker", Kind::Yaml),
    Spec("auth_methods", Kind::Choices),
    Spec("key_header", Kind::Text),
    Spec("key_query_param", Kind::OptText),
    Spec("hide_credentials", Kind::Bool),
    Spec("anonymous_plan_id", Kind::OptText),
    Spec("jwt", Kind::Yaml),
    Spec("introspection", Kind::Yaml),
    Spec("mtls", Kind::Yaml),
];

/// A target's line on the API page.
pub struct TargetLine {
    pub id: Uuid,
    pub host: String,
    pub port: i32,
    pub weight: i32,
    pub backup: bool,
    /// `stable` or `canary`.
    pub pool: String,
    pub role: String,
    pub version: i64,
}

/// A route's line on the API page.
pub struct RouteLine {
    pub id: Uuid,
    pub name: String,
    pub methods: String,
    pub paths: String,
    pub rewrite: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/api.html")]
struct ApiPage {
    chrome: Chrome,
    api: Api,
    version: i64,
    values: Values,
    errors: FieldErrors,
    live: Live,
    targets: Vec<TargetLine>,
    routes: Vec<RouteLine>,
    methods: Vec<&'static str>,
    auth_choices: Vec<(&'static str, &'static str)>,
    plans: Vec<(Uuid, String, String)>,
    documents: Vec<(String, String, bool, String)>,
    lb_policies: Vec<(&'static str, &'static str)>,
    protocols: Vec<(&'static str, &'static str)>,
    pools: Vec<(&'static str, &'static str)>,
    plan_options: Vec<(String, String)>,
    /// The "add a route" form's values.
    rv: Values,
}

/// `?notice=&event=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShowQuery {
    notice: Option<String>,
    event: i64,
}

async fn api_page(
    state: &AppState,
    who: &Admin,
    api: Api,
    values: Option<Values>,
    errors: FieldErrors,
    event: i64,
) -> Result<ApiPage, UiError> {
    let id = api.id;
    let parent = Some(Parent { kind: "api", table: "apis", id });
    let targets = ops::list::<Target>(state, parent, &crate::targets::TargetFilter::default(), &page()).await?.0.data;
    let routes = ops::list::<Route>(state, parent, &crate::routes::RouteFilter::default(), &page()).await?.0.data;
    let plans = ops::list::<Plan>(state, parent, &crate::plans::PlanFilter::default(), &page()).await?.0.data;
    let documents: Vec<(String, String, bool, time::OffsetDateTime)> = sqlx::query_as(
        "SELECT label, title, published, created_at FROM api_documents WHERE api_id = $1 ORDER BY created_at DESC LIMIT 20",
    )
    .bind(id)
    .fetch_all(state.db())
    .await?;
    let event = if event > 0 { event } else { crate::nodes::latest_event(state.db(), id).await?.unwrap_or(0) };
    let live = Live::of_event(state.db(), &state.config().nodes, event).await?;
    let json = serde_json::to_value(&api).map_err(UiError::internal)?;
    let values = values.unwrap_or_else(|| Values::from_json(&SETTINGS, &json));
    let mut plan_options = vec![(String::new(), "None: anonymous calls are refused".to_owned())];
    plan_options.extend(plans.iter().map(|p| (p.id.to_string(), p.name.clone())));
    Ok(ApiPage {
        chrome: Chrome::new(&who.visit, format!("API {}", api.name), "apis"),
        version: api.version,
        values,
        errors,
        live,
        targets: targets
            .into_iter()
            .map(|t| {
                let pool =
                    serde_json::to_value(t.pool).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
                let role = format!("{}, {pool} pool", if t.backup { "backup" } else { "primary" });
                let pool = pool.to_owned();
                TargetLine {
                    id: t.id,
                    host: t.host,
                    port: t.port,
                    weight: t.weight,
                    backup: t.backup,
                    pool,
                    role,
                    version: t.version,
                }
            })
            .collect(),
        methods: vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        auth_choices: vec![
            ("key_auth", "API key"),
            ("jwt", "JWT"),
            ("introspection", "OAuth token introspection"),
            ("mtls", "Client certificate (mTLS)"),
            ("anonymous", "Anonymous"),
        ],
        routes: routes
            .into_iter()
            .map(|r| RouteLine {
                id: r.id,
                name: r.name,
                methods: if r.methods.is_empty() { "any".to_owned() } else { r.methods.join(" ") },
                paths: [r.hosts.join(" "), r.paths.join(" ")].join(" ").trim().to_owned(),
                rewrite: r.rewrite_path.unwrap_or_default(),
            })
            .collect(),
        plans: plans.iter().map(|p| (p.id, p.name.clone(), crate::words::plan(&p.to_input()).join(" "))).collect(),
        documents: documents.into_iter().map(|(l, t, p, c)| (l, t, p, date_time(c))).collect(),
        lb_policies: vec![
            ("round_robin", "Weighted round-robin"),
            ("least_requests", "Least outstanding requests"),
            ("consistent_hash", "Consistent hashing (sticky)"),
        ],
        protocols: vec![("http", "HTTP"), ("https", "HTTPS")],
        pools: vec![("stable", "Stable"), ("canary", "Canary")],
        plan_options,
        rv: route_defaults(),
        api,
    })
}

fn page() -> PageQuery {
    PageQuery { limit: Some(200), ..PageQuery::default() }
}

/// `GET /ui/apis/{id}`.
pub async fn show_api(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
    Query(q): Query<ShowQuery>,
) -> Result<Response, UiError> {
    let api = ops::read::<Api>(&state, None, id).await?.into_body();
    let mut page = api_page(&state, &who, api, None, FieldErrors::default(), q.event).await?;
    page.chrome = page.chrome.with_notice(q.notice.as_deref());
    Ok(page.into_response())
}

/// `POST /ui/apis/{id}`: saves the settings form as a merge patch of its fields, with the
/// version the form was rendered from (someone else's save in between is reported).
pub async fn save_api(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(&body);
    let version: i64 = form.get("version").parse().unwrap_or(-1);
    let outcome = match to_json(&SETTINGS, &form) {
        Ok(patch) => {
            ops::patch::<Api>(&state, &who.actor(), None, id, IfMatch::Versions(vec![version]), Value::Object(patch))
                .await
                .map_err(|e| stale_or_fields(&e, &SETTINGS))
        }
        Err(errors) => Err(errors),
    };
    match outcome {
        Ok(_) => {
            let event = crate::nodes::latest_event(state.db(), id).await?.unwrap_or(0);
            Ok(Redirect::to(&format!("{BASE}/apis/{id}?notice=saved&event={event}")).into_response())
        }
        Err(errors) => {
            let api = ops::read::<Api>(&state, None, id).await?.into_body();
            let values = Values::from_form(&SETTINGS, &form);
            let mut page = api_page(&state, &who, api, Some(values), errors, 0).await?;
            // Saving again over someone else's change needs the user to have seen it.
            page.version = version;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// An operation's refusal for a form: a stale version says so plainly.
pub fn stale_or_fields(e: &ApiError, specs: &[Spec]) -> FieldErrors {
    if e.status() == axum::http::StatusCode::PRECONDITION_FAILED {
        let mut errors = FieldErrors::default();
        errors.add(
            "",
            "Someone else saved this since you opened it; nothing was changed. Reload the page to see their version, then make your change again.",
        );
        return errors;
    }
    api_errors(e, specs)
}

/// Target fields.
const TARGET: [Spec; 5] = [
    Spec("host", Kind::Text),
    Spec("port", Kind::Int),
    Spec("weight", Kind::Int),
    Spec("backup", Kind::Bool),
    Spec("pool", Kind::Text),
];

/// Route fields.
pub const ROUTE: [Spec; 10] = [
    Spec("name", Kind::Text),
    Spec("hosts", Kind::List),
    Spec("paths", Kind::List),
    Spec("methods", Kind::Choices),
    Spec("headers", Kind::Pairs),
    Spec("query", Kind::Pairs),
    Spec("strip_path", Kind::Bool),
    Spec("rewrite_path", Kind::OptText),
    Spec("priority", Kind::Int),
    Spec("cost", Kind::Int),
];

/// Creates a child entity of API `id` from a form through the create operation; returns
/// where to go, or the errors for the form.
async fn create_child<R: Resource>(
    state: &AppState,
    who: &Admin,
    id: Uuid,
    specs: &[Spec],
    form: &FormData,
) -> Result<i64, FieldErrors> {
    let body = Value::Object(to_json(specs, form)?);
    let input: R::Input = parse_json(body.to_string().as_bytes()).map_err(|e| api_errors(&e, specs))?;
    let parent = Some(Parent { kind: "api", table: "apis", id });
    let row = ops::create::<R>(state, &who.actor(), parent, input).await.map_err(|e| api_errors(&e, specs))?;
    let created = row.into_body();
    Ok(crate::nodes::latest_event(state.db(), created.id()).await.ok().flatten().unwrap_or(0))
}

/// `POST /ui/apis/{id}/targets` and `POST /ui/apis/{id}/routes`: the "add" forms of the
/// API page (their fields are prefixed `target-` and `route-`).
pub async fn add_child(
    State(state): State<AppState>,
    who: Admin,
    Path((id, kind)): Path<(Uuid, String)>,
    body: Bytes,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(&body);
    let (outcome, prefix) = match kind.as_str() {
        "targets" => (create_child::<Target>(&state, &who, id, &TARGET, &form.within("target-")).await, "target"),
        "routes" => (create_child::<Route>(&state, &who, id, &ROUTE, &form.within("route-")).await, "route"),
        _ => return Err(UiError::NotFound),
    };
    child_outcome(&state, &who, id, outcome, prefix).await
}

async fn child_outcome(
    state: &AppState,
    who: &Admin,
    id: Uuid,
    outcome: Result<i64, FieldErrors>,
    prefix: &str,
) -> Result<Response, UiError> {
    match outcome {
        Ok(event) => Ok(Redirect::to(&format!("{BASE}/apis/{id}?notice=created&event={event}")).into_response()),
        Err(errors) => {
            let api = ops::read::<Api>(state, None, id).await?.into_body();
            let mut prefixed = FieldErrors::default();
            for (f, m) in errors.0 {
                let field = if f.is_empty() { f } else { format!("{prefix}-{f}") };
                prefixed.add(field, m);
            }
            let page = api_page(state, who, api, None, prefixed, 0).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// `POST /ui/apis/{id}/targets/{target}/delete` and `…/routes/{route}/delete`.
pub async fn delete_child(
    State(state): State<AppState>,
    who: Admin,
    Path((id, kind, child)): Path<(Uuid, String, Uuid)>,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let parent = Some(Parent { kind: "api", table: "apis", id });
    let actor = who.actor();
    match kind.as_str() {
        "targets" => ops::delete::<Target>(&state, &actor, parent, child, IfMatch::Any).await?,
        "routes" => ops::delete::<Route>(&state, &actor, parent, child, IfMatch::Any).await?,
        _ => return Err(UiError::NotFound),
    };
    let event = crate::nodes::latest_event(state.db(), child).await?.unwrap_or(0);
    Ok(Redirect::to(&format!("{BASE}/apis/{id}?notice=deleted&event={event}")).into_response())
}

/// What a new route's form starts with.
fn route_defaults() -> Values {
    let mut v = Values::default();
    v.set("priority", "0");
    v.set("cost", "1");
    v
}

/// `POST /ui/apis/{id}/targets/{target}`: weight, backup and pool of a target, as a merge
/// patch with the version the row showed.
pub async fn save_target(
    State(state): State<AppState>,
    who: Admin,
    Path((id, target)): Path<(Uuid, Uuid)>,
    body: Bytes,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(&body);
    let version: i64 = form.get("version").parse().unwrap_or(-1);
    let specs = [Spec("weight", Kind::Int), Spec("backup", Kind::Bool), Spec("pool", Kind::Text)];
    let parent = Some(Parent { kind: "api", table: "apis", id });
    let outcome = match to_json(&specs, &form) {
        Ok(patch) => ops::patch::<Target>(
            &state,
            &who.actor(),
            parent,
            target,
            IfMatch::Versions(vec![version]),
            Value::Object(patch),
        )
        .await
        .map_err(|e| stale_or_fields(&e, &specs)),
        Err(errors) => Err(errors),
    };
    match outcome {
        Ok(_) => {
            let event = crate::nodes::latest_event(state.db(), target).await?.unwrap_or(0);
            Ok(Redirect::to(&format!("{BASE}/apis/{id}?notice=saved&event={event}")).into_response())
        }
        Err(errors) => {
            let mut shown = FieldErrors::default();
            for (f, m) in errors.0 {
                shown.add(format!("target-{target}"), if f.is_empty() { m } else { format!("{f}: {m}") });
            }
            let api = ops::read::<Api>(&state, None, id).await?.into_body();
            let page = api_page(&state, &who, api, None, shown, 0).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/route.html")]
struct RoutePage {
    chrome: Chrome,
    api: Api,
    route: Route,
    version: i64,
    rv: Values,
    errors: FieldErrors,
    methods: Vec<&'static str>,
    live: Live,
}

async fn route_page(
    state: &AppState,
    who: &Admin,
    id: Uuid,
    route: Uuid,
    form: Option<(&FormData, i64)>,
    errors: FieldErrors,
) -> Result<RoutePage, UiError> {
    let api = ops::read::<Api>(state, None, id).await?.into_body();
    let parent = Some(Parent { kind: "api", table: "apis", id });
    let current = ops::read::<Route>(state, parent, route).await?.into_body();
    let (rv, version) = match form {
        Some((f, v)) => (Values::from_form(&ROUTE, f), v),
        None => {
            (Values::from_json(&ROUTE, &serde_json::to_value(&current).map_err(UiError::internal)?), current.version)
        }
    };
    let event = crate::nodes::latest_event(state.db(), route).await?.unwrap_or(0);
    Ok(RoutePage {
        chrome: Chrome::new(&who.visit, format!("Route {}", current.name), "apis"),
        api,
        route: current,
        version,
        rv,
        errors,
        methods: vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        live: Live::of_event(state.db(), &state.config().nodes, event).await?,
    })
}

/// `GET /ui/apis/{id}/routes/{route}`.
pub async fn show_route(
    State(state): State<AppState>,
    who: Admin,
    Path((id, route)): Path<(Uuid, Uuid)>,
    Query(q): Query<ShowQuery>,
) -> Result<Response, UiError> {
    let mut page = route_page(&state, &who, id, route, None, FieldErrors::default()).await?;
    page.chrome = page.chrome.with_notice(q.notice.as_deref());
    Ok(page.into_response())
}

/// `POST /ui/apis/{id}/routes/{route}`: the route's fields as a merge patch with the version
/// the form was rendered from.
pub async fn save_route(
    State(state): State<AppState>,
    who: Admin,
    Path((id, route)): Path<(Uuid, Uuid)>,
    body: Bytes,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(&body).within("route-");
    let version: i64 = FormData::parse(&body).get("version").parse().unwrap_or(-1);
    let parent = Some(Parent { kind: "api", table: "apis", id });
    let outcome = match to_json(&ROUTE, &form) {
        Ok(patch) => ops::patch::<Route>(
            &state,
            &who.actor(),
            parent,
            route,
            IfMatch::Versions(vec![version]),
            Value::Object(patch),
        )
        .await
        .map_err(|e| stale_or_fields(&e, &ROUTE)),
        Err(errors) => Err(errors),
    };
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("{BASE}/apis/{id}/routes/{route}?notice=saved")).into_response()),
        Err(errors) => {
            let mut prefixed = FieldErrors::default();
            for (f, m) in errors.0 {
                prefixed.add(if f.is_empty() { f } else { format!("route-{f}") }, m);
            }
            let page = route_page(&state, &who, id, route, Some((&form, version)), prefixed).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}
