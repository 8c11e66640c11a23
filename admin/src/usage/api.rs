//! `GET /usage` (series over a range, filtered and grouped) and `GET /usage/top` (the
//! busiest consumers, routes, keys, APIs or plans). Points are read from the tier matching
//! the granularity; percentiles come from the merged latency histograms, never averaged.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder, Row};
use time::{Duration, OffsetDateTime};
use tollgate_gateway::usage::{Histogram, StatusClass};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::state::AppState;

/// Most points a series may have.
const MAX_POINTS: i64 = 1_500;
/// Most series one answer holds.
const MAX_SERIES: usize = 500;

/// Width of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    /// The tier's table: per series, or per API and status class only.
    fn table(self, per_api: bool) -> &'static str {
        match (self, per_api) {
            (Granularity::Minute, false) => "usage_minutes",
            (Granularity::Hour, false) => "usage_hours",
            (Granularity::Day, false) => "usage_days",
            (Granularity::Minute, true) => "usage_api_minutes",
            (Granularity::Hour, true) => "usage_api_hours",
            (Granularity::Day, true) => "usage_api_days",
        }
    }

    fn width(self) -> Duration {
        match self {
            Granularity::Minute => Duration::MINUTE,
            Granularity::Hour => Duration::HOUR,
            Granularity::Day => Duration::DAY,
        }
    }

    /// Minutes up to 6 hours, hours up to 14 days, days beyond.
    fn for_range(range: Duration) -> Self {
        if range <= Duration::hours(6) {
            Granularity::Minute
        } else if range <= Duration::days(14) {
            Granularity::Hour
        } else {
            Granularity::Day
        }
    }

    /// `t` rounded down to a point boundary (UTC).
    fn floor(self, t: OffsetDateTime) -> OffsetDateTime {
        let secs = t.unix_timestamp();
        let w = self.width().whole_seconds();
        OffsetDateTime::from_unix_timestamp(secs - secs.rem_euclid(w)).unwrap_or(t)
    }
}

/// A dimension usage is filtered, grouped or ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Api,
    Route,
    Consumer,
    Key,
    Plan,
    StatusClass,
}

impl Dimension {
    fn column(self) -> &'static str {
        match self {
            Dimension::Api => "api_id",
            Dimension::Route => "route_id",
            Dimension::Consumer => "consumer_id",
            Dimension::Key => "credential_id",
            Dimension::Plan => "plan_id",
            Dimension::StatusClass => "status_class",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dimension::Api => "api_id",
            Dimension::Route => "route_id",
            Dimension::Consumer => "consumer_id",
            Dimension::Key => "key_id",
            Dimension::Plan => "plan_id",
            Dimension::StatusClass => "status_class",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "api" => Dimension::Api,
            "route" => Dimension::Route,
            "consumer" => Dimension::Consumer,
            "key" => Dimension::Key,
            "plan" => Dimension::Plan,
            "status_class" => Dimension::StatusClass,
            _ => return None,
        })
    }
}

/// A status class, as queries name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum ClassName {
    #[serde(rename = "1xx")]
    Informational,
    #[serde(rename = "2xx")]
    Success,
    #[serde(rename = "3xx")]
    Redirection,
    #[serde(rename = "4xx")]
    ClientError,
    #[serde(rename = "401")]
    Unauthorized,
    #[serde(rename = "403")]
    Forbidden,
    #[serde(rename = "429")]
    TooManyRequests,
    #[serde(rename = "5xx_upstream")]
    UpstreamError,
    #[serde(rename = "5xx_gateway")]
    GatewayError,
}

impl ClassName {
    fn code(self) -> i16 {
        match self {
            ClassName::Informational => 1,
            ClassName::Success => 2,
            ClassName::Redirection => 3,
            ClassName::ClientError => 4,
            ClassName::Unauthorized => 401,
            ClassName::Forbidden => 403,
            ClassName::TooManyRequests => 429,
            ClassName::UpstreamError => 5,
            ClassName::GatewayError => 500,
        }
    }
}

/// Range, granularity, filters and grouping of a usage query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start of the range (RFC 3339; default: 24 hours before `to`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// End of the range, exclusive (RFC 3339; default: now).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    /// `minute`, `hour` or `day`; by default minutes up to 6 hours, hours up to 14 days,
    /// days beyond. Minutes are kept 48 hours, hours 90 days, days 13 months (defaults).
    #[param(inline)]
    pub granularity: Option<Granularity>,
    pub api_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub consumer_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub plan_id: Option<Uuid>,
    /// `4xx` means a 4xx other than 401, 403 and 429; `5xx_gateway` a 5xx the gateway made.
    #[param(inline)]
    pub status_class: Option<ClassName>,
    /// Comma-separated dimensions to split series by: `api`, `route`, `consumer`, `key`,
    /// `plan`, `status_class`. Absent: one series for everything matched.
    #[param(pattern = r"^(api|route|consumer|key|plan|status_class)(,(api|route|consumer|key|plan|status_class))*$")]
    pub group_by: Option<String>,
}

/// Requests, outcomes, latency and bytes of one point or one whole series.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Stats {
    pub requests: u64,
    /// Requests by status class (see `status_class`); classes without requests are left out.
    pub by_class: BTreeMap<String, u64>,
    /// 4xx answers, refusals (401, 403, 429) included.
    pub client_errors: u64,
    /// 5xx answers, the upstream's and the gateway's.
    pub server_errors: u64,
    /// Latency until the response head, in milliseconds, from the merged histograms
    /// (within 3.2 %). Absent without requests.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// One point of a series.
#[derive(Debug, Serialize, ToSchema)]
pub struct Point {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(flatten)]
    pub stats: Stats,
}

/// The usage of one group.
#[derive(Debug, Serialize, ToSchema)]
pub struct Series {
    /// The group's dimension values (`api_id`, `consumer_id`, `key_id`, …); the nil UUID
    /// for "none" (e.g. an anonymous call's consumer), the max UUID for the overflow series
    /// of a gateway that saw more distinct series than its cap.
    #[schema(value_type = Object)]
    pub group: BTreeMap<&'static str, String>,
    /// The whole range.
    pub total: Stats,
    /// Points with requests, oldest first (points without requests are left out).
    pub points: Vec<Point>,
}

/// Usage over a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub granularity: Granularity,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub series: Vec<Series>,
}

/// A checked query: range, table and SQL filters.
struct Plan {
    granularity: Granularity,
    from: OffsetDateTime,
    to: OffsetDateTime,
    filters: Vec<(&'static str, Uuid)>,
    class: Option<i16>,
    /// Read the per-API tables (nothing asked of route, consumer, key or plan).
    per_api: bool,
}

fn parse_time(field: &str, value: Option<&str>) -> ApiResult<Option<OffsetDateTime>> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map_err(|_| ApiError::invalid_field(field, "must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"))
        })
        .transpose()
}

fn checked_range(from: Option<&str>, to: Option<&str>) -> ApiResult<(OffsetDateTime, OffsetDateTime)> {
    let to = parse_time("to", to)?.unwrap_or_else(OffsetDateTime::now_utc);
    let from = match parse_time("from", from)? {
        Some(from) => from,
        None => to.checked_sub(Duration::DAY).ok_or_else(|| ApiError::invalid_field("to", "is too early"))?,
    };
    if from >= to {
        return Err(ApiError::invalid_field("from", "must be before `to`"));
    }
    if to - from > Duration::days(800) {
        return Err(ApiError::invalid_field("from", "the range may span at most 800 days"));
    }
    Ok((from, to))
}

/// The given dimension filters as (column, id), in the order of the columns.
fn filters(
    api: Option<Uuid>,
    route: Option<Uuid>,
    consumer: Option<Uuid>,
    key: Option<Uuid>,
    plan: Option<Uuid>,
) -> Vec<(&'static str, Uuid)> {
    [("api_id", api), ("route_id", route), ("consumer_id", consumer), ("credential_id", key), ("plan_id", plan)]
        .into_iter()
        .filter_map(|(c, v)| Some((c, v?)))
        .collect()
}

impl Plan {
    fn of(q: &UsageQuery) -> ApiResult<Self> {
        let (from, to) = checked_range(q.from.as_deref(), q.to.as_deref())?;
        let granularity = q.granularity.unwrap_or_else(|| Granularity::for_range(to - from));
        let from = granularity.floor(from);
        let points = (to - from).whole_seconds() / granularity.width().whole_seconds();
        if points > MAX_POINTS {
            return Err(ApiError::invalid_field(
                "granularity",
                format!("the range holds {points} points at this granularity; at most {MAX_POINTS}"),
            ));
        }
        Ok(Plan {
            granularity,
            from,
            to,
            filters: filters(q.api_id, q.route_id, q.consumer_id, q.key_id, q.plan_id),
            class: q.status_class.map(ClassName::code),
            per_api: false,
        })
    }

    /// ` FROM <table> AS u<join> WHERE …` with the range and filters bound.
    fn push_from(&self, qb: &mut QueryBuilder<Postgres>, join: &str) {
        qb.push(" FROM ")
            .push(self.granularity.table(self.per_api))
            .push(" AS u")
            .push(join)
            .push(" WHERE u.bucket >= ");
        qb.push_bind(self.from).push(" AND u.bucket < ").push_bind(self.to);
        for (column, id) in &self.filters {
            qb.push(" AND u.").push(*column).push(" = ").push_bind(*id);
        }
        if let Some(class) = self.class {
            qb.push(" AND u.status_class = ").push_bind(class);
        }
    }
}

fn group_by(value: Option<&str>) -> ApiResult<Vec<Dimension>> {
    let mut dims = Vec::new();
    let Some(value) = value else { return Ok(dims) };
    for part in value.split(',') {
        let d = Dimension::parse(part).ok_or_else(|| {
            ApiError::bad_request(format!(
                "group_by: {part:?} is not one of api, route, consumer, key, plan, status_class (comma-separated, no spaces)"
            ))
        })?;
        if !dims.contains(&d) {
            dims.push(d);
        }
    }
    Ok(dims)
}

/// `ARRAY[<uuid columns>]::text[]` naming a row's group (the status class as text).
fn group_expr(dims: &[Dimension]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| format!("u.{}::text", d.column())).collect();
    format!("ARRAY[{}]::text[]", parts.join(", "))
}

/// Counts of one (point, group) being assembled.
#[derive(Default)]
struct Acc {
    stats: Stats,
    hist: Histogram,
}

impl Acc {
    fn add_class(&mut self, class: i16, requests: u64, req_bytes: u64, res_bytes: u64) {
        let s = &mut self.stats;
        s.requests += requests;
        s.request_bytes += req_bytes;
        s.response_bytes += res_bytes;
        *s.by_class.entry(StatusClass(class).name().to_owned()).or_default() += requests;
        match class {
            4 | 401 | 403 | 429 => s.client_errors += requests,
            5 | 500 => s.server_errors += requests,
            _ => {}
        }
    }

    fn merge(&mut self, other: &Acc) {
        for (class, n) in &other.stats.by_class {
            *self.stats.by_class.entry(class.clone()).or_default() += n;
        }
        let (s, o) = (&mut self.stats, &other.stats);
        s.requests += o.requests;
        s.client_errors += o.client_errors;
        s.server_errors += o.server_errors;
        s.request_bytes += o.request_bytes;
        s.response_bytes += o.response_bytes;
        self.hist.merge(&other.hist);
    }

    fn finish(mut self) -> Stats {
        let ms = |q: f64| self.hist.quantile(q).map(|us| (us / 10.0).round() / 100.0);
        (self.stats.p50_ms, self.stats.p95_ms, self.stats.p99_ms) = (ms(0.5), ms(0.95), ms(0.99));
        self.stats
    }
}

/// Rolls up what gateways wrote since the last roll-up before hours or days are read, so
/// they are as fresh as the minutes (the background job does the same every minute). When
/// another admin instance is rolling up, the answer may lag by that run.
async fn freshen(state: &AppState, granularity: Granularity) {
    if granularity == Granularity::Minute {
        return;
    }
    if let Err(error) = super::rollup::roll_up(state.db(), &state.config().usage_retention).await {
        tracing::warn!(%error, "rolling up usage before a query failed; answering from what is rolled up");
    }
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Usage series over a time range.
#[utoipa::path(get, path = "/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, description = "Usage series", body = UsageReport), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn get_usage(
    _: Viewer,
    State(state): State<AppState>,
    Params(q): Params<UsageQuery>,
) -> ApiResult<Json<UsageReport>> {
    Ok(Json(report(&state, &q).await?))
}

/// Usage series over a time range (the `GET /usage` answer), for every face that shows usage.
pub async fn report(state: &AppState, q: &UsageQuery) -> ApiResult<UsageReport> {
    let mut plan = Plan::of(q)?;
    let dims = group_by(q.group_by.as_deref())?;
    plan.per_api = plan.filters.iter().all(|(column, _)| *column == "api_id")
        && dims.iter().all(|d| matches!(d, Dimension::Api | Dimension::StatusClass));
    freshen(state, plan.granularity).await;
    let group = group_expr(&dims);

    let mut qb = QueryBuilder::new(format!(
        "SELECT u.bucket, {group} AS g, u.status_class, sum(u.requests)::bigint, sum(u.request_bytes)::bigint, \
         sum(u.response_bytes)::bigint"
    ));
    plan.push_from(&mut qb, "");
    qb.push(" GROUP BY 1, 2, 3");
    let rows = qb.build().fetch_all(state.db()).await?;
    let mut points: BTreeMap<(Vec<String>, OffsetDateTime), Acc> = BTreeMap::new();
    for row in &rows {
        let (at, g, class): (OffsetDateTime, Vec<String>, i16) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let (n, qb_, rb): (i64, i64, i64) = (row.try_get(3)?, row.try_get(4)?, row.try_get(5)?);
        points.entry((g, at)).or_default().add_class(class, as_u64(n), as_u64(qb_), as_u64(rb));
    }
    let groups: std::collections::BTreeSet<&Vec<String>> = points.keys().map(|(g, _)| g).collect();
    if groups.len() > MAX_SERIES {
        return Err(ApiError::invalid_field(
            "group_by",
            format!(
                "the query makes {} series; at most {MAX_SERIES}: filter more or group by fewer dimensions",
                groups.len()
            ),
        ));
    }

    let mut qb = QueryBuilder::new(format!("SELECT u.bucket, {group} AS g, p.i, sum(p.n)::bigint"));
    plan.push_from(&mut qb, " CROSS JOIN LATERAL usage_hist_pairs(u.hist) AS p");
    qb.push(" GROUP BY 1, 2, 3");
    let hist_rows = qb.build().fetch_all(state.db()).await?;
    for row in &hist_rows {
        let (at, g, i, n): (OffsetDateTime, Vec<String>, i64, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        if let (Some(acc), Ok(i)) = (points.get_mut(&(g, at)), u16::try_from(i)) {
            acc.hist.add(i, as_u64(n));
        }
    }

    let mut series: Vec<Series> = Vec::new();
    let mut current: Option<(Vec<String>, Acc, Vec<Point>)> = None;
    for ((g, at), acc) in points {
        if current.as_ref().is_some_and(|(cg, _, _)| *cg != g)
            && let Some(done) = current.take()
        {
            series.push(finish_series(&dims, done));
        }
        let (_, total, list) = current.get_or_insert_with(|| (g, Acc::default(), Vec::new()));
        total.merge(&acc);
        list.push(Point { at, stats: acc.finish() });
    }
    if let Some(done) = current.take() {
        series.push(finish_series(&dims, done));
    }
    series.sort_by_key(|s| std::cmp::Reverse(s.total.requests));
    Ok(UsageReport { granularity: plan.granularity, from: plan.from, to: plan.to, series })
}

fn finish_series(dims: &[Dimension], (g, total, points): (Vec<String>, Acc, Vec<Point>)) -> Series {
    let group = dims
        .iter()
        .zip(g)
        .map(|(d, v)| {
            let v = match d {
                Dimension::StatusClass => v.parse().map(|c| StatusClass(c).name().to_owned()).unwrap_or(v),
                _ => v,
            };
            (d.name(), v)
        })
        .collect();
    Series { group, total: total.finish(), points }
}

/// What `/usage/top` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopBy {
    Consumer,
    Route,
    Key,
    Api,
    Plan,
}

/// What `/usage/top` ranks.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopQuery {
    /// What to rank (default `consumer`).
    #[param(inline)]
    pub by: Option<TopBy>,
    /// 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Start of the range (RFC 3339; default: 24 hours before `to`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<String>,
    /// End of the range, exclusive (RFC 3339; default: now).
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<String>,
    pub api_id: Option<Uuid>,
    pub route_id: Option<Uuid>,
    pub consumer_id: Option<Uuid>,
    pub key_id: Option<Uuid>,
    pub plan_id: Option<Uuid>,
}

/// One ranked entity.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopEntry {
    pub id: Uuid,
    /// Its name (a key's prefix); absent when it was deleted since.
    pub name: Option<String>,
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// The busiest entities of a range.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopReport {
    pub by: Dimension,
    pub granularity: Granularity,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub data: Vec<TopEntry>,
}

/// The busiest consumers, routes, keys, APIs or plans over a range, most requests first.
/// Anonymous calls, unrouted requests and overflow series are not ranked.
#[utoipa::path(get, path = "/usage/top", tag = "usage", params(TopQuery),
    responses((status = 200, description = "Ranking", body = TopReport), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn get_top(
    _: Viewer,
    State(state): State<AppState>,
    Params(q): Params<TopQuery>,
) -> ApiResult<Json<TopReport>> {
    top(&state, &q).await.map(Json)
}

/// The ranking `GET /usage/top` answers (also read by the admin UI's dashboard).
pub async fn top(state: &AppState, q: &TopQuery) -> ApiResult<TopReport> {
    let by = match q.by.unwrap_or(TopBy::Consumer) {
        TopBy::Consumer => Dimension::Consumer,
        TopBy::Route => Dimension::Route,
        TopBy::Key => Dimension::Key,
        TopBy::Api => Dimension::Api,
        TopBy::Plan => Dimension::Plan,
    };
    let limit = match q.limit.unwrap_or(10) {
        n @ 1..=100 => n,
        _ => return Err(ApiError::bad_request("limit must be 1 to 100")),
    };
    let (from, to) = checked_range(q.from.as_deref(), q.to.as_deref())?;
    // The coarsest tier whose points fit the range's boundaries.
    let granularity = [Granularity::Day, Granularity::Hour, Granularity::Minute]
        .into_iter()
        .find(|g| g.floor(from) == from && g.floor(to) == to)
        .unwrap_or(Granularity::Minute);
    let filters = filters(q.api_id, q.route_id, q.consumer_id, q.key_id, q.plan_id);
    let per_api = by == Dimension::Api && filters.iter().all(|(column, _)| *column == "api_id");
    let plan = Plan { granularity, from, to, filters, class: None, per_api };
    freshen(state, granularity).await;
    let (names, name_col) = match by {
        Dimension::Consumer => ("consumers", "name"),
        Dimension::Route => ("routes", "name"),
        Dimension::Key => ("api_keys", "prefix"),
        Dimension::Api => ("apis", "name"),
        Dimension::Plan | Dimension::StatusClass => ("plans", "name"),
    };
    let col = by.column();
    let mut qb = QueryBuilder::new(format!(
        "SELECT t.id, n.{name_col}, t.requests, t.client_errors, t.server_errors, t.request_bytes, t.response_bytes FROM (
           SELECT u.{col} AS id, sum(u.requests)::bigint AS requests,
                  coalesce(sum(u.requests) FILTER (WHERE u.status_class IN (4, 401, 403, 429)), 0)::bigint AS client_errors,
                  coalesce(sum(u.requests) FILTER (WHERE u.status_class IN (5, 500)), 0)::bigint AS server_errors,
                  sum(u.request_bytes)::bigint AS request_bytes, sum(u.response_bytes)::bigint AS response_bytes"
    ));
    plan.push_from(&mut qb, "");
    qb.push(format!(
        " AND u.{col} <> '00000000-0000-0000-0000-000000000000' AND u.{col} <> 'ffffffff-ffff-ffff-ffff-ffffffffffff'"
    ));
    qb.push(" GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ");
    qb.push_bind(i64::from(limit));
    qb.push(format!(") AS t LEFT JOIN {names} AS n ON n.id = t.id ORDER BY t.requests DESC, t.id"));
    let rows = qb.build().fetch_all(state.db()).await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in &rows {
        data.push(TopEntry {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            requests: as_u64(row.try_get(2)?),
            client_errors: as_u64(row.try_get(3)?),
            server_errors: as_u64(row.try_get(4)?),
            request_bytes: as_u64(row.try_get(5)?),
            response_bytes: as_u64(row.try_get(6)?),
        });
    }
    Ok(TopReport { by, granularity, from, to, data })
}
