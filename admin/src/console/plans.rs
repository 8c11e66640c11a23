//! Plans in the admin UI: every plan by API, and an editor for rates, burst, quotas,
//! per-route costs, limit mode, failure policy, visibility and approval, which shows the
//! plan in the words the portal uses (also as a preview before saving).

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::apis::stale_or_fields;
use super::fields::{FormData, Kind, Spec, Values, to_json};
use super::web::{Admin, BASE, Chrome, FieldErrors, UiError};
use crate::apis::Api;
use crate::auth::Role;
use crate::extract::{IfMatch, parse_json};
use crate::ops::{self, Parent};
use crate::plans::{Plan, PlanInput};
use crate::resource::Resource;
use crate::routes::Route;
use crate::state::AppState;

/// The plan editor's fields (route costs are read separately, one field per route).
const PLAN: [Spec; 12] = [
    Spec("name", Kind::Text),
    Spec("description", Kind::Text),
    Spec("rate_limit_per_second", Kind::OptInt),
    Spec("rate_limit_per_minute", Kind::OptInt),
    Spec("rate_limit_per_hour", Kind::OptInt),
    Spec("burst", Kind::Int),
    Spec("quota_per_day", Kind::OptInt),
    Spec("quota_per_month", Kind::OptInt),
    Spec("limit_mode", Kind::Text),
    Spec("redis_failure_policy", Kind::Text),
    Spec("approval_required", Kind::Bool),
    Spec("portal_visible", Kind::Bool),
];

/// A plan's line in the list.
pub struct PlanRow {
    pub id: Uuid,
    pub api_id: Uuid,
    pub api: String,
    pub name: String,
    pub approval_required: bool,
    pub portal_visible: bool,
    pub subscriptions: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/plans.html")]
struct PlansPage {
    chrome: Chrome,
    plans: Vec<(PlanRow, String)>,
    apis: Vec<(Uuid, String)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoticeQuery {
    notice: Option<String>,
    event: i64,
}

/// `GET /ui/plans`.
pub async fn show_plans(
    State(state): State<AppState>,
    who: Admin,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    let full: Vec<Plan> =
        sqlx::query_as("SELECT * FROM plans ORDER BY api_id, name LIMIT 1000").fetch_all(state.db()).await?;
    let names: HashMap<Uuid, String> =
        sqlx::query_as("SELECT id, name FROM apis").fetch_all(state.db()).await?.into_iter().collect();
    let counts: HashMap<Uuid, i64> =
        sqlx::query_as("SELECT plan_id, count(*) FROM subscriptions WHERE status = 'active' GROUP BY plan_id")
            .fetch_all(state.db())
            .await?
            .into_iter()
            .collect();
    let mut plans: Vec<(PlanRow, String)> = full
        .iter()
        .map(|p| {
            let row = PlanRow {
                id: p.id,
                api_id: p.api_id,
                api: names.get(&p.api_id).cloned().unwrap_or_default(),
                name: p.name.clone(),
                approval_required: p.approval_required,
                portal_visible: p.portal_visible,
                subscriptions: counts.get(&p.id).copied().unwrap_or(0),
            };
            (row, crate::words::plan(&p.to_input()).join("; "))
        })
        .collect();
    plans.sort_by(|a, b| (&a.0.api, &a.0.name).cmp(&(&b.0.api, &b.0.name)));
    let apis: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, name FROM apis ORDER BY name LIMIT 1000").fetch_all(state.db()).await?;
    let chrome = Chrome::new(&who.visit, "Plans", "plans").with_notice(q.notice.as_deref());
    Ok(PlansPage { chrome, plans, apis }.into_response())
}

/// A route's cost field.
pub struct CostField {
    pub id: Uuid,
    pub name: String,
    pub value: String,
    pub error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/plan.html")]
struct PlanPage {
    chrome: Chrome,
    api: Api,
    /// `None` for a new plan.
    plan: Option<(Uuid, i64)>,
    values: Values,
    errors: FieldErrors,
    costs: Vec<CostField>,
    words: Vec<String>,
    previewed: bool,
    live: crate::nodes::Live,
    modes: Vec<(&'static str, &'static str)>,
    policies: Vec<(&'static str, &'static str)>,
}

async fn routes_of(state: &AppState, api: Uuid) -> Result<Vec<Route>, UiError> {
    let parent = Some(Parent { kind: "api", table: "apis", id: api });
    let page = crate::page::PageQuery { limit: Some(500), ..Default::default() };
    Ok(ops::list::<Route>(state, parent, &crate::routes::RouteFilter::default(), &page).await?.0.data)
}

#[expect(clippy::too_many_arguments, reason = "one page, its parts named")]
async fn plan_page(
    state: &AppState,
    who: &Admin,
    api: Api,
    plan: Option<(Uuid, i64)>,
    values: Values,
    costs: &BTreeMap<String, String>,
    errors: FieldErrors,
    words: Vec<String>,
    previewed: bool,
    event: i64,
) -> Result<PlanPage, UiError> {
    let routes = routes_of(state, api.id).await?;
    let costs = routes
        .into_iter()
        .map(|r| {
            let key = format!("cost.{}", r.id);
            CostField {
                value: costs.get(&r.id.to_string()).cloned().unwrap_or_default(),
                error: errors.of(&key).to_owned(),
                id: r.id,
                name: format!("{} ({}; default cost {})", r.name, r.paths.join(" "), r.cost),
            }
        })
        .collect();
    let title = match plan {
        Some(_) => format!("Plan {}", values.of("name")),
        None => format!("New plan for {}", api.name),
    };
    let event = match (event, plan) {
        (0, Some((id, _))) => crate::nodes::latest_event(state.db(), id).await?.unwrap_or(0),
        (e, _) => e,
    };
    Ok(PlanPage {
        chrome: Chrome::new(&who.visit, title, "plans"),
        api,
        plan,
        values,
        errors,
        costs,
        words,
        previewed,
        live: crate::nodes::Live::of_event(state.db(), &state.config().nodes, event).await?,
        modes: vec![("local", "Per gateway node (in memory)"), ("redis", "Shared by all nodes (Redis)")],
        policies: vec![("fail_open", "Fail open: count locally"), ("fail_closed", "Fail closed: refuse calls")],
    })
}

/// `GET /ui/apis/{api}/plans/new`.
pub async fn show_new(State(state): State<AppState>, who: Admin, Path(api): Path<Uuid>) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let api = ops::read::<Api>(&state, None, api).await?.into_body();
    let mut values = Values::default();
    for (k, v) in
        [("burst", "0"), ("limit_mode", "local"), ("redis_failure_policy", "fail_open"), ("portal_visible", "true")]
    {
        values.set(k, v);
    }
    let page =
        plan_page(&state, &who, api, None, values, &BTreeMap::new(), FieldErrors::default(), vec![], false, 0).await?;
    Ok(page.into_response())
}

/// `GET /ui/plans/{id}`.
pub async fn show_plan(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    let plan: Plan = sqlx::query_as("SELECT * FROM plans WHERE id = $1")
        .bind(id)
        .fetch_optional(state.db())
        .await?
        .ok_or(UiError::NotFound)?;
    let api = ops::read::<Api>(&state, None, plan.api_id).await?.into_body();
    let json = serde_json::to_value(&plan).map_err(UiError::internal)?;
    let values = Values::from_json(&PLAN, &json);
    let costs = plan.route_costs.0.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let words = crate::words::plan(&plan.to_input());
    let mut page = plan_page(
        &state,
        &who,
        api,
        Some((id, plan.version)),
        values,
        &costs,
        FieldErrors::default(),
        words,
        false,
        q.event,
    )
    .await?;
    page.chrome = page.chrome.with_notice(q.notice.as_deref());
    Ok(page.into_response())
}

/// The form's JSON: the plan fields and the route costs that were filled in.
fn plan_json(form: &FormData) -> Result<(Value, BTreeMap<String, String>), FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut costs = BTreeMap::new();
    let mut cost_json = serde_json::Map::new();
    for (k, v) in &form.0 {
        let Some(route) = k.strip_prefix("cost.") else { continue };
        let v = v.trim();
        costs.insert(route.to_owned(), v.to_owned());
        if v.is_empty() {
            continue;
        }
        match v.parse::<i64>() {
            Ok(n) => {
                cost_json.insert(route.to_owned(), Value::from(n));
            }
            Err(_) => errors.add(k.clone(), "must be a whole number"),
        }
    }
    let mut body = match to_json(&PLAN, form) {
        Ok(b) => b,
        Err(e) => {
            for (f, m) in e.0 {
                errors.add(f, m);
            }
            serde_json::Map::new()
        }
    };
    body.insert("route_costs".to_owned(), Value::Object(cost_json));
    if errors.is_empty() { Ok((Value::Object(body), costs)) } else { Err(errors) }
}

/// Route-cost errors (`/route_costs/{id}`) land on their route's field.
fn plan_errors(e: &crate::error::ApiError) -> FieldErrors {
    let mut out = FieldErrors::default();
    for fe in e.field_errors() {
        if let Some(route) = fe.pointer.strip_prefix("/route_costs/") {
            out.add(format!("cost.{route}"), fe.detail.clone());
        }
    }
    for (f, m) in stale_or_fields(e, &PLAN).0 {
        if !f.is_empty() || out.is_empty() {
            out.add(f, m);
        }
    }
    out
}

/// `POST /ui/apis/{api}/plans/new` and `POST /ui/plans/{id}`: preview (the plan in words,
/// nothing saved) or save through the create / merge-patch operation.
async fn save_plan(
    state: AppState,
    who: Admin,
    api_id: Option<Uuid>,
    id: Option<Uuid>,
    body: Bytes,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(&body);
    let current: Option<Plan> = match id {
        Some(id) => Some(
            sqlx::query_as("SELECT * FROM plans WHERE id = $1")
                .bind(id)
                .fetch_optional(state.db())
                .await?
                .ok_or(UiError::NotFound)?,
        ),
        None => None,
    };
    let api_id = current.as_ref().map(|p| p.api_id).or(api_id).ok_or(UiError::NotFound)?;
    let api = ops::read::<Api>(&state, None, api_id).await?.into_body();
    let version: i64 = form.get("version").parse().unwrap_or(-1);
    let values = Values::from_form(&PLAN, &form);
    let preview = form.get("action") == "preview";
    let parsed = plan_json(&form);
    let costs = match &parsed {
        Ok((_, c)) => c.clone(),
        Err(_) => form.0.iter().filter_map(|(k, v)| Some((k.strip_prefix("cost.")?.to_owned(), v.clone()))).collect(),
    };
    let plan_ref = id.map(|id| (id, version));
    let show = |errors: FieldErrors, words: Vec<String>, previewed: bool| {
        plan_page(&state, &who, api.clone(), plan_ref, values.clone(), &costs, errors, words, previewed, 0)
    };
    let body = match parsed {
        Ok((b, _)) => b,
        Err(errors) => {
            return Ok(
                (axum::http::StatusCode::UNPROCESSABLE_ENTITY, show(errors, vec![], false).await?).into_response()
            );
        }
    };
    let input = match parse_json::<PlanInput>(body.to_string().as_bytes())
        .and_then(|i| crate::validate::validate(&i).map(|()| i))
    {
        Ok(i) => i,
        Err(e) => {
            return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, show(plan_errors(&e), vec![], false).await?)
                .into_response());
        }
    };
    if preview {
        return Ok(show(FieldErrors::default(), crate::words::plan(&input), true).await?.into_response());
    }
    let parent = Some(Parent { kind: "api", table: "apis", id: api_id });
    let actor = who.actor();
    let saved = match id {
        Some(id) => ops::patch::<Plan>(&state, &actor, parent, id, IfMatch::Versions(vec![version]), body).await,
        None => ops::create::<Plan>(&state, &actor, parent, input).await,
    };
    match saved {
        Ok(p) => {
            let p = p.into_body();
            let event = crate::nodes::latest_event(state.db(), p.id).await?.unwrap_or(0);
            let notice = if id.is_some() { "saved" } else { "created" };
            Ok(Redirect::to(&format!("{BASE}/plans/{}?notice={notice}&event={event}", p.id)).into_response())
        }
        Err(e) => {
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, show(plan_errors(&e), vec![], false).await?)
                .into_response())
        }
    }
}

/// `POST /ui/apis/{api}/plans/new`.
pub async fn create_plan(
    State(state): State<AppState>,
    who: Admin,
    Path(api): Path<Uuid>,
    body: Bytes,
) -> Result<Response, UiError> {
    save_plan(state, who, Some(api), None, body).await
}

/// `POST /ui/plans/{id}`.
pub async fn update_plan(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
    body: Bytes,
) -> Result<Response, UiError> {
    save_plan(state, who, None, Some(id), body).await
}

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    api: Uuid,
}

/// `GET /ui/plans/new?api=`: the list's "new plan for" picker.
pub async fn pick_api(Query(q): Query<NewQuery>) -> Redirect {
    Redirect::to(&format!("{BASE}/apis/{}/plans/new", q.api))
}
