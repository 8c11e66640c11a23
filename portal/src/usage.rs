//! An app's usage: requests by outcome and latency over the last hour, day or 30 days, per
//! route, optionally for one key; and a quota meter per subscription. Read through the
//! admin's usage and quota operations, so these are the numbers the admin sees and the
//! gateways enforce.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tollgate_admin::ui::chart::{self, Bucket, RANGES, Totals, Window, ms, percent};
use tollgate_admin::ui::format::{date_time, number};
use tollgate_admin::usage::api::{UsageQuery, UsageReport, report};
use tollgate_admin::usage::quota::quota;
use uuid::Uuid;

use crate::apps::owned_app;
use crate::state::PortalState;
use crate::web::{Chrome, SignedIn, UiError};

/// `?range=hour|day|month&key=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UsageParams {
    pub range: String,
    pub key: String,
}

/// A route's line in the table.
pub struct RouteRow {
    pub route: String,
    pub requests: String,
    pub errors: String,
    pub p95: String,
}

/// One quota meter.
pub struct Meter {
    pub title: String,
    pub used: u64,
    pub limit: u64,
    pub text: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/usage.html")]
struct UsagePage {
    chrome: Chrome,
    app_id: Uuid,
    app_name: String,
    range: &'static str,
    ranges: Vec<(&'static str, &'static str)>,
    key: String,
    keys: Vec<(String, String)>,
    totals: Totals,
    requests_svg: String,
    latency_svg: String,
    buckets: Vec<Bucket>,
    routes: Vec<RouteRow>,
    meters: Vec<Meter>,
}

/// `GET /apps/{id}/usage`.
pub async fn show_usage(
    State(state): State<PortalState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Query(params): Query<UsageParams>,
) -> Result<Response, UiError> {
    let (app, _) = owned_app(&state, &who, id).await?;
    let window = Window::pick(&params.range);
    let keys: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, prefix FROM api_keys WHERE consumer_id = $1 ORDER BY created_at DESC LIMIT 100")
            .bind(id)
            .fetch_all(state.db())
            .await?;
    let key = keys.iter().find(|(k, _)| k.to_string() == params.key).map(|(k, _)| *k);
    let q = |group_by: Option<&str>| UsageQuery {
        consumer_id: Some(id),
        key_id: key,
        group_by: group_by.map(str::to_owned),
        ..window.query()
    };
    let all = report(state.ops(), &q(None)).await?;
    let by_route = report(state.ops(), &q(Some("route"))).await?;
    let buckets = window.buckets(&all);
    let totals = Totals::of(&all.series.first().map(|s| s.total.clone()).unwrap_or_default());
    let routes = route_rows(&state, &by_route).await?;
    let meters = meters(&state, id).await?;
    Ok(UsagePage {
        chrome: Chrome::new(&who.visit, format!("Usage of {}", app.name), "apps"),
        app_id: id,
        app_name: app.name,
        range: window.range,
        ranges: RANGES.iter().map(|r| (r.0, r.1)).collect(),
        key: key.map(|k| k.to_string()).unwrap_or_default(),
        keys: keys.into_iter().map(|(k, p)| (k.to_string(), p)).collect(),
        totals,
        requests_svg: chart::requests(&buckets),
        latency_svg: chart::latency(&buckets),
        buckets,
        routes,
        meters,
    }
    .into_response())
}

async fn route_rows(state: &PortalState, r: &UsageReport) -> Result<Vec<RouteRow>, UiError> {
    let ids: Vec<Uuid> = r.series.iter().filter_map(|s| s.group.get("route_id")?.parse().ok()).collect();
    let names: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT r.id, a.name || ' · ' || r.name FROM routes r JOIN apis a ON a.id = r.api_id WHERE r.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(state.db())
    .await?;
    Ok(r.series
        .iter()
        .map(|s| {
            let id = s.group.get("route_id").cloned().unwrap_or_default();
            let route = names
                .iter()
                .find(|(n, _)| n.to_string() == id)
                .map_or_else(|| "(no route)".to_owned(), |(_, name)| name.clone());
            let t = &s.total;
            RouteRow {
                route,
                requests: number(i64::try_from(t.requests).unwrap_or(i64::MAX)),
                errors: percent(t.client_errors + t.server_errors, t.requests),
                p95: ms(t.p95_ms),
            }
        })
        .collect())
}

async fn meters(state: &PortalState, app: Uuid) -> Result<Vec<Meter>, UiError> {
    let subs = crate::catalog::subscriptions_of(state, app).await?;
    let mut out = Vec::new();
    for s in subs.iter().filter(|s| s.status == "active") {
        let report = quota(state.ops(), s.id).await?;
        for q in report.quotas {
            let period = if q.period == "day" { "today" } else { "this month" };
            let resets = date_time(q.resets_at);
            let text = match (q.used, q.remaining) {
                (Some(used), Some(left)) => format!(
                    "{} of {} {period}; {} left, resets {resets}",
                    number(i64::try_from(used).unwrap_or(i64::MAX)),
                    number(i64::try_from(q.limit).unwrap_or(i64::MAX)),
                    number(i64::try_from(left).unwrap_or(i64::MAX))
                ),
                _ => format!("Not available right now ({}); resets {resets}", q.unavailable.unwrap_or_default()),
            };
            out.push(Meter {
                title: format!("{} · {}", s.api, s.plan),
                used: q.used.unwrap_or(0),
                limit: q.limit,
                text,
            });
        }
    }
    Ok(out)
}
