//! The dashboard: requests, error rates and latency over the last hour, day or 30 days,
//! the busiest consumers and routes, with drill-down API → consumer → key; and the gateway
//! nodes with the config event each has applied. Read through the usage operations the
//! REST API answers with, so the UI shows the numbers `GET /usage` gives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::web::{Admin, Chrome, UiError};
use crate::state::AppState;
use crate::ui::chart::{self, Bucket, RANGES, Totals, Window, percent};
use crate::ui::format::{date_time, number};
use crate::usage::api::{TopBy, TopEntry, TopQuery, report, top};

/// `?range=&api=&consumer=&key=&notice=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DashboardQuery {
    range: String,
    api: Option<Uuid>,
    consumer: Option<Uuid>,
    key: Option<Uuid>,
    notice: Option<String>,
}

/// One line of a "top" table.
#[derive(Debug, Clone)]
pub struct TopRow {
    pub name: String,
    pub link: String,
    pub requests: String,
    pub errors: String,
}

/// A gateway node's line.
pub struct NodeRow {
    pub hostname: String,
    pub listen: String,
    pub version: String,
    pub source: String,
    pub applied: i64,
    pub behind: i64,
    pub live: bool,
    pub seen: String,
}

/// What the drill-down is narrowed to, broadest first: (label, link to widen to it).
pub struct Crumb {
    pub label: String,
    pub link: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    range: &'static str,
    ranges: Vec<(&'static str, &'static str)>,
    scope: String,
    crumbs: Vec<Crumb>,
    totals: Totals,
    requests_svg: String,
    latency_svg: String,
    buckets: Vec<Bucket>,
    top_title: &'static str,
    top: Vec<TopRow>,
    routes: Vec<TopRow>,
    nodes: Vec<NodeRow>,
    latest_event: i64,
}

impl DashboardPage {
    /// The query string of this view with `range` set.
    fn with_range(&self, range: &str) -> String {
        format!("?range={range}{}", self.scope)
    }
}

/// `GET /ui`.
pub async fn show_dashboard(
    State(state): State<AppState>,
    who: Admin,
    Query(q): Query<DashboardQuery>,
) -> Result<Response, UiError> {
    let window = Window::pick(&q.range);
    let top_by = if q.consumer.is_some() { TopBy::Key } else { TopBy::Consumer };
    let scope = scope(&q);
    let key = format!("{}{scope}", window.range);
    let numbers = match state.dashboard_cache().get(&key) {
        Some(n) => n,
        None => {
            let n = Arc::new(numbers(&state, &q, &window, top_by).await?);
            state.dashboard_cache().put(key, n.clone());
            n
        }
    };
    let crumbs = crumbs(&state, &q, window.range).await?;
    let (nodes, latest_event) = nodes(&state).await?;
    let chrome = Chrome::new(&who.visit, "Dashboard", "dashboard").with_notice(q.notice.as_deref());
    Ok(DashboardPage {
        chrome,
        range: window.range,
        ranges: RANGES.iter().map(|r| (r.0, r.1)).collect(),
        scope,
        crumbs,
        totals: numbers.totals.clone(),
        requests_svg: chart::requests(&numbers.buckets),
        latency_svg: chart::latency(&numbers.buckets),
        buckets: numbers.buckets.clone(),
        top_title: if top_by == TopBy::Key { "Busiest keys" } else { "Busiest consumers" },
        top: numbers.top.clone(),
        routes: numbers.routes.clone(),
        nodes,
        latest_event,
    }
    .into_response())
}

/// The usage numbers of one view of the dashboard.
#[derive(Debug, Clone)]
pub struct Numbers {
    buckets: Vec<Bucket>,
    totals: Totals,
    top: Vec<TopRow>,
    routes: Vec<TopRow>,
}

async fn numbers(state: &AppState, q: &DashboardQuery, window: &Window, top_by: TopBy) -> Result<Numbers, UiError> {
    let base =
        crate::usage::api::UsageQuery { api_id: q.api, consumer_id: q.consumer, key_id: q.key, ..window.query() };
    let ranking = |by| TopQuery {
        by: Some(by),
        limit: Some(10),
        from: base.from.clone(),
        to: base.to.clone(),
        api_id: q.api,
        consumer_id: q.consumer,
        key_id: q.key,
        ..TopQuery::default()
    };
    let drill = |e: &TopEntry| match top_by {
        TopBy::Key => format!("?range={}{}&key={}", window.range, scope_without_key(q), e.id),
        _ => format!("?range={}{}&consumer={}", window.range, api_scope(q), e.id),
    };
    // The three reads at once: the view waits for the slowest, not their sum.
    let (by_top, by_route) = (ranking(top_by), ranking(TopBy::Route));
    let (all, busiest, routes) = tokio::try_join!(report(state, &base), top(state, &by_top), top(state, &by_route))?;
    Ok(Numbers {
        buckets: window.buckets(&all),
        totals: Totals::of(&all.series.first().map(|s| s.total.clone()).unwrap_or_default()),
        top: busiest.data.iter().map(|e| row(e, drill(e))).collect(),
        routes: routes.data.iter().map(|e| row(e, String::new())).collect(),
    })
}

/// How long the dashboard's numbers are reused: gateways report usage every 10 seconds,
/// so a view newer than that would show nothing newer.
const FRESH: Duration = Duration::from_secs(10);
/// Views kept (one per range and drill-down).
const VIEWS: usize = 256;

/// The dashboard's recent numbers by view, so a reload or a second user within
/// [`FRESH`] does not scan the usage tables again.
#[derive(Default)]
pub struct Cache(Mutex<HashMap<String, (Instant, Arc<Numbers>)>>);

impl Cache {
    fn get(&self, key: &str) -> Option<Arc<Numbers>> {
        let map = self.0.lock().ok()?;
        map.get(key).filter(|(at, _)| at.elapsed() < FRESH).map(|(_, n)| n.clone())
    }

    fn put(&self, key: String, numbers: Arc<Numbers>) {
        let Ok(mut map) = self.0.lock() else { return };
        map.retain(|_, (at, _)| at.elapsed() < FRESH);
        if map.len() < VIEWS {
            map.insert(key, (Instant::now(), numbers));
        }
    }
}

fn row(e: &TopEntry, link: String) -> TopRow {
    TopRow {
        name: e.name.clone().unwrap_or_else(|| "(deleted)".to_owned()),
        link,
        requests: number(i64::try_from(e.requests).unwrap_or(i64::MAX)),
        errors: percent(e.client_errors + e.server_errors, e.requests),
    }
}

fn api_scope(q: &DashboardQuery) -> String {
    q.api.map(|a| format!("&api={a}")).unwrap_or_default()
}

fn scope_without_key(q: &DashboardQuery) -> String {
    let consumer = q.consumer.map(|c| format!("&consumer={c}")).unwrap_or_default();
    format!("{}{consumer}", api_scope(q))
}

fn scope(q: &DashboardQuery) -> String {
    let key = q.key.map(|k| format!("&key={k}")).unwrap_or_default();
    format!("{}{key}", scope_without_key(q))
}

/// "All traffic › API orders › consumer acme › key tg_abc…", each a link that widens the view.
async fn crumbs(state: &AppState, q: &DashboardQuery, range: &str) -> Result<Vec<Crumb>, UiError> {
    let mut out = vec![Crumb { label: "All traffic".to_owned(), link: format!("?range={range}") }];
    let name = |sql: &'static str, id: Uuid| async move {
        let n: Option<(String,)> = sqlx::query_as(sql).bind(id).fetch_optional(state.db()).await?;
        Ok::<_, sqlx::Error>(n.map_or_else(|| "(deleted)".to_owned(), |(n,)| n))
    };
    if let Some(api) = q.api {
        let label = format!("API {}", name("SELECT name FROM apis WHERE id = $1", api).await?);
        out.push(Crumb { label, link: format!("?range={range}{}", api_scope(q)) });
    }
    if let Some(c) = q.consumer {
        let label = format!("Consumer {}", name("SELECT name FROM consumers WHERE id = $1", c).await?);
        out.push(Crumb { label, link: format!("?range={range}{}", scope_without_key(q)) });
    }
    if let Some(k) = q.key {
        let label = format!("Key {}…", name("SELECT prefix FROM api_keys WHERE id = $1", k).await?);
        out.push(Crumb { label, link: format!("?range={range}{}", scope(q)) });
    }
    Ok(out)
}

#[derive(sqlx::FromRow)]
struct Node {
    hostname: String,
    listen: String,
    version: String,
    config_source: String,
    applied_event_id: i64,
    last_seen_at: OffsetDateTime,
    live: bool,
}

/// The nodes seen within the retention window (a day by default), live first, and the newest config event.
async fn nodes(state: &AppState) -> Result<(Vec<NodeRow>, i64), UiError> {
    let (latest,): (Option<i64>,) = sqlx::query_as("SELECT max(id) FROM config_events").fetch_one(state.db()).await?;
    let latest = latest.unwrap_or(0);
    let rows: Vec<Node> = sqlx::query_as(
        "SELECT hostname, listen, version, config_source, applied_event_id, last_seen_at,
                last_seen_at > now() - make_interval(secs => $1) AS live
         FROM gateway_nodes WHERE last_seen_at > now() - make_interval(secs => $2)
         ORDER BY live DESC, last_seen_at DESC LIMIT 100",
    )
    .bind(state.config().nodes.live.as_secs_f64())
    .bind(state.config().nodes.retention.as_secs_f64())
    .fetch_all(state.db())
    .await?;
    let nodes = rows
        .into_iter()
        .map(|n| NodeRow {
            hostname: n.hostname,
            listen: n.listen,
            version: n.version,
            source: n.config_source,
            applied: n.applied_event_id,
            behind: (latest - n.applied_event_id).max(0),
            live: n.live,
            seen: date_time(n.last_seen_at),
        })
        .collect();
    Ok((nodes, latest))
}
