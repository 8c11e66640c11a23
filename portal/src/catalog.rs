//! The API catalog: published APIs with search and tags, each API's public plans in words,
//! and subscribing an app to a plan (active at once, or pending until an admin approves,
//! as the plan says) through the admin's `subscriptions::subscribe` operation.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tollgate_admin::extract::IfMatch;
use tollgate_admin::ops;
use tollgate_admin::plans::Plan;
use tollgate_admin::resource::Resource;
use tollgate_admin::subscriptions::{self, NewSubscription, Subscription};
use uuid::Uuid;

use crate::apps::{AppRow, my_apps, owned_app};
use crate::state::PortalState;
use crate::web::{Chrome, FieldErrors, SignedIn, UiError, Visit};

/// A published API as the catalog lists it.
#[derive(Debug, sqlx::FromRow)]
pub struct ApiCard {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub plans: i64,
}

/// `?q=&tag=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CatalogQuery {
    pub q: String,
    pub tag: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/catalog.html")]
struct CatalogPage {
    chrome: Chrome,
    apis: Vec<ApiCard>,
    tags: Vec<String>,
    q: String,
    tag: String,
}

const PUBLISHED: &str = "a.portal_visible AND a.enabled";

/// `GET /apis`.
pub async fn show_catalog(
    State(state): State<PortalState>,
    visit: Visit,
    Query(q): Query<CatalogQuery>,
) -> Result<Response, UiError> {
    let pattern = format!("%{}%", q.q.trim().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    let sql = format!(
        "SELECT a.id, a.name, a.description, a.tags,
                (SELECT count(*) FROM plans p WHERE p.api_id = a.id AND p.portal_visible) AS plans
         FROM apis a
         WHERE {PUBLISHED} AND (a.name ILIKE $1 OR a.description ILIKE $1) AND ($2 = '' OR $2 = ANY(a.tags))
         ORDER BY a.name LIMIT 500"
    );
    let apis: Vec<ApiCard> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(&pattern).bind(q.tag.trim()).fetch_all(state.db()).await?;
    let tags_sql = format!("SELECT DISTINCT unnest(a.tags) AS t FROM apis a WHERE {PUBLISHED} ORDER BY t LIMIT 200");
    let tags: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(tags_sql)).fetch_all(state.db()).await?;
    let chrome = Chrome::new(&visit, "APIs", "apis");
    Ok(CatalogPage { chrome, apis, tags: tags.into_iter().map(|(t,)| t).collect(), q: q.q, tag: q.tag }.into_response())
}

/// A plan with its description in words.
pub struct PlanView {
    pub plan: Plan,
    pub words: Vec<String>,
}

/// A subscription of one of the developer's apps, for display.
#[derive(Debug, sqlx::FromRow)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub consumer_id: Uuid,
    pub app: String,
    pub api: String,
    pub plan: String,
    pub status: String,
    pub comment: String,
    pub decision_reason: String,
}

const SUBSCRIPTION_ROWS: &str = "SELECT s.id, s.consumer_id, c.name AS app, a.name AS api, p.name AS plan, s.status,
        s.comment, s.decision_reason
    FROM subscriptions s JOIN consumers c ON c.id = s.consumer_id JOIN apis a ON a.id = s.api_id
    JOIN plans p ON p.id = s.plan_id";

/// The subscriptions of app `app`.
pub async fn subscriptions_of(state: &PortalState, app: Uuid) -> sqlx::Result<Vec<SubscriptionRow>> {
    let sql = format!("{SUBSCRIPTION_ROWS} WHERE s.consumer_id = $1 ORDER BY a.name");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(app).fetch_all(state.db()).await
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/api.html")]
struct ApiPage {
    chrome: Chrome,
    api: ApiCard,
    plans: Vec<PlanView>,
    apps: Vec<AppRow>,
    mine: Vec<SubscriptionRow>,
    /// A published OpenAPI document exists.
    has_reference: bool,
    /// Propagation of the newest change of those subscriptions.
    live: crate::live::Live,
    gateway_url: String,
    paths: Vec<String>,
    form: SubscribeForm,
    errors: FieldErrors,
}

/// The subscribe form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SubscribeForm {
    pub app: String,
    pub plan: String,
    pub comment: String,
}

async fn published(state: &PortalState, name: &str) -> Result<ApiCard, UiError> {
    let sql = format!(
        "SELECT a.id, a.name, a.description, a.tags, 0::bigint AS plans FROM apis a WHERE {PUBLISHED} AND a.name = $1"
    );
    let api: Option<ApiCard> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(state.db()).await?;
    api.ok_or(UiError::NotFound)
}

async fn api_page(
    state: &PortalState,
    visit: &Visit,
    name: &str,
    form: SubscribeForm,
    errors: FieldErrors,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let api = published(state, name).await?;
    let plans: Vec<Plan> = sqlx::query_as("SELECT * FROM plans WHERE api_id = $1 AND portal_visible ORDER BY name")
        .bind(api.id)
        .fetch_all(state.db())
        .await?;
    let plans =
        plans.into_iter().map(|plan| PlanView { words: tollgate_admin::words::plan(&plan.to_input()), plan }).collect();
    let (apps, mine) = match &visit.me {
        Some(me) => {
            let sql = format!(
                "{SUBSCRIPTION_ROWS} JOIN organisation_members m ON m.organisation_id = c.organisation_id AND m.developer_id = $1
                 WHERE s.api_id = $2 ORDER BY c.name"
            );
            let mine = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(me.id).bind(api.id).fetch_all(state.db()).await?;
            (my_apps(state, me.id).await?, mine)
        }
        None => (Vec::new(), Vec::new()),
    };
    let paths: Vec<(Vec<String>,)> =
        sqlx::query_as("SELECT paths FROM routes WHERE api_id = $1 ORDER BY priority DESC, name LIMIT 50")
            .bind(api.id)
            .fetch_all(state.db())
            .await?;
    let mut paths: Vec<String> = paths.into_iter().flat_map(|(p,)| p).collect();
    paths.dedup();
    let chrome = Chrome::new(visit, api.name.clone(), "apis").with_notice(notice);
    let gateway_url = state.config().gateway_url.clone();
    let ids: Vec<Uuid> = mine.iter().map(|s: &SubscriptionRow| s.id).collect();
    let live = crate::live::of_entities(state, &ids).await?;
    let (has_reference,): (bool,) =
        sqlx::query_as("SELECT EXISTS (SELECT 1 FROM api_documents WHERE api_id = $1 AND published)")
            .bind(api.id)
            .fetch_one(state.db())
            .await?;
    Ok(ApiPage { chrome, api, plans, apps, mine, has_reference, live, gateway_url, paths, form, errors }
        .into_response())
}

/// `?notice=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

/// `GET /apis/{name}`.
pub async fn show_api(
    State(state): State<PortalState>,
    visit: Visit,
    Path(name): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    api_page(&state, &visit, &name, SubscribeForm::default(), FieldErrors::default(), q.notice.as_deref()).await
}

/// `POST /apis/{name}/subscribe`.
pub async fn subscribe(
    State(state): State<PortalState>,
    who: SignedIn,
    Path(name): Path<String>,
    Form(form): Form<SubscribeForm>,
) -> Result<Response, UiError> {
    let api = published(&state, &name).await?;
    let mut errors = FieldErrors::default();
    let app = form.app.parse::<Uuid>().ok();
    let plan = form.plan.parse::<Uuid>().ok();
    errors.check(app.is_some(), "app", "Choose one of your apps");
    errors.check(plan.is_some(), "plan", "Choose a plan");
    errors.check(form.comment.chars().count() <= 1000, "comment", "Use at most 1000 characters");
    let (Some(app), Some(plan), true) = (app, plan, errors.is_empty()) else {
        return api_page(&state, &who.visit, &name, form, errors, None).await;
    };
    owned_app(&state, &who, app).await?;
    let visible: Option<(bool,)> =
        sqlx::query_as("SELECT approval_required FROM plans WHERE id = $1 AND api_id = $2 AND portal_visible")
            .bind(plan)
            .bind(api.id)
            .fetch_optional(state.db())
            .await?;
    let Some((approval,)) = visible else {
        errors.add("plan", "Choose one of this API's plans");
        return api_page(&state, &who.visit, &name, form, errors, None).await;
    };
    let new =
        NewSubscription { consumer_id: app, plan_id: plan, status: None, comment: form.comment.trim().to_owned() };
    let mut tx = state.db().begin().await?;
    let outcome = subscriptions::subscribe(&mut tx, &who.actor(), &new).await;
    match outcome {
        Ok(_) => tx.commit().await?,
        Err(err) if err.status() == axum::http::StatusCode::CONFLICT => {
            errors.add("app", "This app already has a subscription to this API; cancel it first to change plans");
            return api_page(&state, &who.visit, &name, form, errors, None).await;
        }
        Err(err) => return Err(err.into()),
    }
    let notice = if approval { "requested" } else { "subscribed" };
    Ok(Redirect::to(&format!("/apis/{name}?notice={notice}")).into_response())
}

/// `POST /subscriptions/{id}/cancel`: an app's member ends its subscription.
pub async fn cancel(
    State(state): State<PortalState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<Response, UiError> {
    let sub: Option<Subscription> =
        sqlx::query_as("SELECT * FROM subscriptions WHERE id = $1").bind(id).fetch_optional(state.db()).await?;
    let sub = sub.ok_or(UiError::NotFound)?;
    owned_app(&state, &who, sub.consumer_id).await?;
    ops::delete::<Subscription>(state.ops(), &who.actor(), None, id, IfMatch::Any).await?;
    Ok(Redirect::to(&format!("/apps/{}?notice=unsubscribed", sub.consumer_id)).into_response())
}
