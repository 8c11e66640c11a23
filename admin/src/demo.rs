//! `tollgate dev --demo`: example data for an empty database, so a newcomer's dashboard and
//! portal are not empty. Three APIs (weather, books, payments) served by a small upstream in
//! the dev process ([`upstream`]), their plans and published references, three developers
//! with apps, keys and subscriptions (one waiting for approval), 30 days of *synthetic*
//! usage history ([`history`]) and live calls through the real gateway ([`traffic`]).
//!
//! Every configuration entity goes through the admin's operations with the system actor,
//! as the sample API does: validated, audited, one change event each. The history is the
//! only thing written straight into tables, because no operation writes usage.

pub mod history;
pub mod traffic;
pub mod upstream;

use std::net::SocketAddr;

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::apis::Api;
use crate::change::{self, Actor, Change};
use crate::consumers::Consumer;
use crate::developers::Developer;
use crate::error::ApiResult;
use crate::extract::IfMatch;
use crate::keys::{self, KeyInput};
use crate::ops::{self, Parent};
use crate::plans::Plan;
use crate::routes::Route;
use crate::secret::Secret;
use crate::state::AppState;
use crate::subscriptions::{self, NewSubscription, SubscriptionStatus};
use crate::targets::Target;
use crate::usage::Retention;

/// The tag every demo API carries; a database whose APIs have it holds the demo already.
pub const TAG: &str = "demo";

/// A route of a demo API and what the generated calls send to it.
pub struct RouteSpec {
    pub name: &'static str,
    pub method: &'static str,
    /// The route's path pattern.
    pub path: &'static str,
    /// Concrete paths (with query) the traffic calls.
    pub examples: &'static [&'static str],
    pub body: Option<&'static str>,
    /// Share of the API's calls, relative to its other routes.
    pub weight: u32,
    /// Typical upstream latency, for the synthetic history.
    pub latency_ms: f64,
}

impl RouteSpec {
    const fn get(
        name: &'static str,
        path: &'static str,
        examples: &'static [&'static str],
        weight: u32,
        latency_ms: f64,
    ) -> Self {
        Self { name, method: "GET", path, examples, body: None, weight, latency_ms }
    }

    const fn post(
        name: &'static str,
        path: &'static str,
        examples: &'static [&'static str],
        body: &'static str,
        weight: u32,
        latency_ms: f64,
    ) -> Self {
        Self { name, method: "POST", path, examples, body: Some(body), weight, latency_ms }
    }
}

/// A demo API: its name, catalog entry, reference and routes.
pub struct ApiSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub tags: [&'static str; 2],
    pub document: &'static str,
    pub routes: &'static [RouteSpec],
}

/// The demo APIs.
pub const APIS: [ApiSpec; 3] = [
    ApiSpec {
        name: "weather",
        description: "Current conditions and five-day forecasts for cities worldwide (demo data).",
        tags: [TAG, "weather"],
        document: include_str!("demo/weather.yaml"),
        routes: &[
            RouteSpec::get(
                "current",
                "/weather/current",
                &["/weather/current?city=Lisbon", "/weather/current?city=Oslo", "/weather/current?city=Lagos"],
                3,
                18.0,
            ),
            RouteSpec::get(
                "forecast",
                "/weather/forecast/{city}",
                &["/weather/forecast/Lisbon", "/weather/forecast/Tokyo"],
                1,
                45.0,
            ),
        ],
    },
    ApiSpec {
        name: "books",
        description: "A book catalog with reader reviews (demo data).",
        tags: [TAG, "catalog"],
        document: include_str!("demo/books.yaml"),
        routes: &[
            RouteSpec::get("list-books", "/books", &["/books", "/books?q=austen"], 3, 30.0),
            RouteSpec::get(
                "get-book",
                "/books/{isbn}",
                &[
                    "/books/9780141439518",
                    "/books/9780451524935",
                    "/books/9780142437230",
                    "/books/9780140449266",
                    "/books/0000000000000",
                ],
                4,
                12.0,
            ),
            RouteSpec::post(
                "review-book",
                "/books/{isbn}/reviews",
                &["/books/9780141439518/reviews"],
                r#"{"rating": 5, "text": "Still sharp after two centuries."}"#,
                1,
                60.0,
            ),
        ],
    },
    ApiSpec {
        name: "payments",
        description: "Take card payments and look them up; no money moves (demo data).",
        tags: [TAG, "finance"],
        document: include_str!("demo/payments.yaml"),
        routes: &[
            RouteSpec::post(
                "create-payment",
                "/payments",
                &["/payments"],
                r#"{"amount": 1999, "currency": "EUR", "description": "Order 1042"}"#,
                1,
                140.0,
            ),
            RouteSpec::get("get-payment", "/payments/{id}", &["/payments/pay_42", "/payments/pay_7"], 2, 25.0),
        ],
    },
];

/// The plans of the demo API `api`, as the admin API takes them.
fn plans(api: &str) -> Vec<Value> {
    let free = |per_minute: i32| {
        json!({"name": "free", "description": "For trying things out.", "rate_limit_per_minute": per_minute,
               "burst": 5, "quota_per_day": 5000})
    };
    let pro = json!({"name": "pro", "description": "For production apps.", "rate_limit_per_second": 20,
                     "burst": 50, "quota_per_month": 1_000_000});
    match api {
        "payments" => vec![
            json!({"name": "sandbox", "description": "Test payments only.", "rate_limit_per_minute": 60, "burst": 10}),
            json!({"name": "partner", "description": "Live payments for vetted partners; an administrator approves each request.",
                   "rate_limit_per_second": 50, "burst": 100, "quota_per_month": 5_000_000, "approval_required": true}),
        ],
        // Low enough that the demo traffic of the `bookworm` app runs into it.
        "books" => vec![free(30), pro],
        _ => vec![free(60), pro],
    }
}

/// A portal account of the demo.
struct DeveloperSpec {
    email: &'static str,
    name: &'static str,
    organisation: &'static str,
}

/// The developer whose password is printed, so a newcomer can sign in to the portal.
pub const LOGIN_EMAIL: &str = "dev@example.com";

const DEVELOPERS: [DeveloperSpec; 3] = [
    DeveloperSpec { email: LOGIN_EMAIL, name: "Dana Demo", organisation: "Demo Labs" },
    DeveloperSpec { email: "sam@example.com", name: "Sam Rivera", organisation: "Shipwright Books" },
    DeveloperSpec { email: "kim@example.com", name: "Kim Lee", organisation: "Ledgerly" },
];

/// An app of the demo: its owner, subscriptions (API, plan) and how busy it is.
pub struct AppSpec {
    pub name: &'static str,
    developer: usize,
    description: &'static str,
    pub subscriptions: &'static [(&'static str, &'static str)],
    /// Calls per hour at the busiest time of day in the synthetic history (about what the
    /// live traffic sends), and the app's share of the live traffic.
    pub per_hour: f64,
}

/// The demo apps. `ledger-sync`'s request for the `partner` plan waits for approval.
pub const APPS: [AppSpec; 5] = [
    AppSpec {
        name: "weather-widget",
        developer: 0,
        description: "A home-screen weather widget.",
        subscriptions: &[("weather", "pro"), ("books", "free")],
        per_hour: 7200.0,
    },
    AppSpec {
        name: "checkout",
        developer: 0,
        description: "The web shop's checkout.",
        subscriptions: &[("payments", "sandbox")],
        per_hour: 1500.0,
    },
    AppSpec {
        name: "bookworm",
        developer: 1,
        description: "Reading lists for book clubs.",
        subscriptions: &[("books", "free"), ("weather", "free")],
        per_hour: 4500.0,
    },
    AppSpec {
        name: "ledger-sync",
        developer: 2,
        description: "Reconciles payments with the ledger.",
        subscriptions: &[("books", "pro"), ("payments", "partner")],
        per_hour: 2700.0,
    },
    AppSpec {
        name: "ledgerly-reports",
        developer: 2,
        description: "Monthly reports.",
        subscriptions: &[("weather", "free")],
        per_hour: 450.0,
    },
];

/// A demo app's API key (the secret is kept in the dev state directory for the traffic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoKey {
    pub app: String,
    pub secret: String,
}

/// The keys as one `app secret` pair per line, for the state directory.
pub fn keys_to_text(keys: &[DemoKey]) -> String {
    keys.iter().map(|k| format!("{} {}\n", k.app, k.secret)).collect()
}

/// The keys written by [`keys_to_text`]; malformed lines are left out.
pub fn keys_from_text(text: &str) -> Vec<DemoKey> {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(app, secret)| DemoKey { app: app.to_owned(), secret: secret.trim().to_owned() })
        .collect()
}

/// What [`ensure`] found and did.
#[derive(Debug)]
pub enum Outcome {
    /// The database had no APIs: the demo data was created.
    Created(Created),
    /// The demo data of an earlier start is there; its targets now point at `upstream`.
    Existing,
    /// The database holds other APIs: nothing was added.
    Skipped,
}

/// What a first demo start created.
#[derive(Debug)]
pub struct Created {
    pub login_password: Secret,
    pub keys: Vec<DemoKey>,
    /// Requests in the synthetic history.
    pub history_requests: u64,
}

impl Created {
    /// What was created, in one line; says that the history is made up.
    pub fn summary(&self) -> String {
        format!(
            "{} APIs, {} developers, {} apps; 30 days of SYNTHETIC usage history ({} made-up requests)",
            APIS.len(),
            DEVELOPERS.len(),
            APPS.len(),
            self.history_requests
        )
    }
}

/// Fills an empty database with the demo data, its APIs' targets at `upstream`; on a
/// database that has the demo already, points its targets at `upstream` (the port changes
/// between starts) and adds nothing; on any other database with APIs does nothing.
pub async fn ensure(pool: &PgPool, upstream: SocketAddr, retention: &Retention) -> anyhow::Result<Outcome> {
    let (apis, demo): (i64, i64) = sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE $1 = ANY(tags)) FROM apis")
        .bind(TAG)
        .fetch_one(pool)
        .await?;
    let state = AppState::for_operations(pool.clone(), None);
    if demo > 0 {
        repoint(&state, upstream).await?;
        return Ok(Outcome::Existing);
    }
    if apis > 0 {
        return Ok(Outcome::Skipped);
    }
    let mut created = Vec::new();
    for spec in &APIS {
        created.push(create_api(&state, spec, upstream).await?);
    }
    let (login_password, organisations) = create_developers(pool).await?;
    let mut keys = Vec::new();
    let mut streams = Vec::new();
    for app in &APPS {
        let (key, app_streams) = create_app(&state, app, organisations[app.developer], &created).await?;
        keys.push(key);
        streams.extend(app_streams);
    }
    streams.extend(created.iter().flat_map(history::Stream::keyless));
    let history_requests = history::write(pool, &streams, retention).await?;
    Ok(Outcome::Created(Created { login_password, keys, history_requests }))
}

fn op<T>(result: ApiResult<T>) -> anyhow::Result<T> {
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

/// A demo API as created: ids of its routes and plans by name.
pub struct CreatedApi {
    pub spec: &'static ApiSpec,
    pub id: Uuid,
    pub routes: Vec<Uuid>,
    pub plans: Vec<(String, Uuid)>,
}

async fn create_api(state: &AppState, spec: &'static ApiSpec, upstream: SocketAddr) -> anyhow::Result<CreatedApi> {
    let who = Actor::system();
    let input = json!({"name": spec.name, "description": spec.description, "portal_visible": true, "tags": spec.tags});
    let api: Api = op(ops::create::<Api>(state, &who, None, serde_json::from_value(input)?).await)?.into_body();
    let parent = Some(Parent { kind: "api", table: "apis", id: api.id });
    let target = json!({"host": upstream.ip().to_string(), "port": upstream.port()});
    op(ops::create::<Target>(state, &who, parent, serde_json::from_value(target)?).await)?;
    let mut routes = Vec::new();
    for r in spec.routes {
        let input = json!({"name": r.name, "paths": [r.path], "methods": [r.method]});
        let route: Route =
            op(ops::create::<Route>(state, &who, parent, serde_json::from_value(input)?).await)?.into_body();
        routes.push(route.id);
    }
    let mut plans_made = Vec::new();
    for input in plans(spec.name) {
        let plan: Plan =
            op(ops::create::<Plan>(state, &who, parent, serde_json::from_value(input)?).await)?.into_body();
        plans_made.push((plan.name, plan.id));
    }
    crate::sample::publish_document(state.db(), &who, api.id, spec.document).await?;
    Ok(CreatedApi { spec, id: api.id, routes, plans: plans_made })
}

/// Creates the demo developers, verified and active, each in an organisation of their own;
/// returns the login developer's new password and the organisations' ids.
async fn create_developers(pool: &PgPool) -> anyhow::Result<(Secret, Vec<Uuid>)> {
    let state = AppState::for_operations(pool.clone(), None);
    let who = Actor::system();
    let password = crate::auth::random_token("", 18);
    let hash = crate::auth::password::hash(Secret::new(password.clone())).await?;
    let mut organisations = Vec::new();
    for spec in &DEVELOPERS {
        let input = json!({"email": spec.email, "name": spec.name});
        let dev: Developer =
            op(ops::create::<Developer>(&state, &who, None, serde_json::from_value(input)?).await)?.into_body();
        let mut tx = pool.begin().await?;
        // Only the login developer gets a password; the others cannot sign in.
        let hash = (spec.email == LOGIN_EMAIL).then_some(hash.as_str());
        sqlx::query("UPDATE developers SET email_verified_at = now(), password_hash = $2 WHERE id = $1")
            .bind(dev.id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        let verified = Change::update("developer", dev.id, json!({}), json!({"email_verified": true}));
        change::record(&mut tx, &who, verified.action("verify_email").audit_only()).await?;
        organisations.push(create_organisation(&mut tx, &who, spec, dev.id).await?);
        tx.commit().await?;
    }
    Ok((Secret::new(password), organisations))
}

/// An organisation with `developer` as its admin (the portal makes one at sign-up).
async fn create_organisation(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    spec: &DeveloperSpec,
    developer: Uuid,
) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    sqlx::query("INSERT INTO organisations (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(spec.organisation)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO organisation_members (organisation_id, developer_id, role) VALUES ($1, $2, 'admin')")
        .bind(id)
        .bind(developer)
        .execute(&mut **tx)
        .await?;
    let after = json!({"id": id, "name": spec.organisation, "admin": developer});
    change::record(tx, who, Change::create("organisation", id, after).audit_only()).await?;
    Ok(id)
}

/// Creates an app of `organisation` with one key and its subscriptions; returns the key and
/// the history streams of its active subscriptions.
async fn create_app(
    state: &AppState,
    spec: &AppSpec,
    organisation: Uuid,
    apis: &[CreatedApi],
) -> anyhow::Result<(DemoKey, Vec<history::Stream>)> {
    let who = Actor::system();
    let input = json!({"name": spec.name, "description": spec.description, "organisation_id": organisation});
    let app: Consumer =
        op(ops::create::<Consumer>(state, &who, None, serde_json::from_value(input)?).await)?.into_body();
    let mut tx = state.db().begin().await?;
    let key = op(keys::issue(&mut tx, &who, app.id, &KeyInput { name: "default".into(), expires_at: None }).await)?;
    let mut streams = Vec::new();
    for (api_name, plan_name) in spec.subscriptions {
        let api = apis.iter().find(|a| a.spec.name == *api_name).ok_or_else(|| anyhow::anyhow!("no API {api_name}"))?;
        let plan = api.plans.iter().find(|(n, _)| n == plan_name).map(|(_, id)| *id);
        let plan = plan.ok_or_else(|| anyhow::anyhow!("no plan {plan_name} of {api_name}"))?;
        let new = NewSubscription {
            consumer_id: app.id,
            plan_id: plan,
            status: None,
            comment: "Created by tollgate dev --demo.".into(),
        };
        let sub = op(subscriptions::subscribe(&mut tx, &who, &new).await)?;
        if sub.status == SubscriptionStatus::Active {
            let share = spec.per_hour / spec.subscriptions.len() as f64;
            let limited = if *plan_name == "free" { 0.12 } else { 0.0 };
            streams.extend(history::Stream::for_subscription(api, app.id, key.key.id, plan, share, limited));
        }
    }
    tx.commit().await?;
    Ok((DemoKey { app: spec.name.to_owned(), secret: key.secret }, streams))
}

/// Points the targets of the demo APIs at `upstream` (a no-op where they do already).
async fn repoint(state: &AppState, upstream: SocketAddr) -> anyhow::Result<()> {
    let targets: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT t.api_id, t.id FROM targets t JOIN apis a ON a.id = t.api_id WHERE $1 = ANY(a.tags)")
            .bind(TAG)
            .fetch_all(state.db())
            .await?;
    let address = json!({"host": upstream.ip().to_string(), "port": upstream.port()});
    for (api, id) in targets {
        let parent = Some(Parent { kind: "api", table: "apis", id: api });
        op(ops::patch::<Target>(state, &Actor::system(), parent, id, IfMatch::Any, address.clone()).await)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_the_state_file() {
        let keys = vec![
            DemoKey { app: "checkout".into(), secret: "tg_abc".into() },
            DemoKey { app: "bookworm".into(), secret: "tg_def".into() },
        ];
        assert_eq!(keys_from_text(&keys_to_text(&keys)), keys);
        assert_eq!(keys_from_text("garbage\n\n"), vec![]);
    }

    #[test]
    fn every_subscription_names_a_demo_plan() {
        for app in &APPS {
            for (api, plan) in app.subscriptions {
                let names: Vec<Value> = plans(api).into_iter().map(|p| p["name"].clone()).collect();
                assert!(APIS.iter().any(|a| a.name == *api), "{} subscribes to unknown API {api}", app.name);
                assert!(names.contains(&json!(plan)), "{} subscribes to unknown plan {api}/{plan}", app.name);
            }
        }
    }

    #[test]
    fn documents_are_valid_references() {
        for api in &APIS {
            let checked = crate::documents::check(api.document);
            assert!(checked.is_ok(), "{}: {:?}", api.name, checked.err().map(|e| e.to_string()));
        }
    }
}
