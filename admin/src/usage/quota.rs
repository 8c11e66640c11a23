//! `GET /subscriptions/{id}/quota`: a subscription's quotas in the current calendar
//! windows, read from the counters that enforce them — Redis for `redis` plans (the same
//! keys the gateways' script counts in), the nodes' own counters for `local` plans (as each
//! node last reported them with its usage flush, at most one flush interval old).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use time::OffsetDateTime;
use tollgate_gateway::limits::{LimitKey, QuotaPeriod, quota_window};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathIds;
use crate::nodes::LIVE_SECONDS;
use crate::state::AppState;

/// One node's count of a local quota.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeCount {
    pub node_id: Uuid,
    pub used: u64,
    /// Reported within the last 30 seconds.
    pub live: bool,
}

/// One quota of the plan in its current window.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaState {
    /// `day` or `month` (UTC calendar windows).
    pub period: &'static str,
    pub limit: u64,
    /// Units counted in this window (a route's cost counts as that many); absent when the
    /// counter cannot be read (see `unavailable`).
    pub used: Option<u64>,
    pub remaining: Option<u64>,
    /// Why `used` is absent: the plan counts in Redis and the admin has no `--redis-url`,
    /// or Redis did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub window_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub resets_at: OffsetDateTime,
    /// For a `local` plan, each node's own count (every node enforces the quota on what it
    /// counted itself); `used` is their sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeCount>>,
}

/// A subscription's quotas as the gateways count them.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaReport {
    pub subscription_id: Uuid,
    pub plan_id: Uuid,
    pub consumer_id: Uuid,
    /// `local` or `redis`: where the counts come from.
    pub limit_mode: String,
    /// Empty when the plan has no quota.
    pub quotas: Vec<QuotaState>,
}

#[derive(sqlx::FromRow)]
struct SubPlan {
    consumer_id: Uuid,
    plan_id: Uuid,
    limit_mode: String,
    quota_per_day: Option<i64>,
    quota_per_month: Option<i64>,
}

/// The quota used and left in the current calendar windows, and when they reset.
#[utoipa::path(get, path = "/subscriptions/{id}/quota", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses((status = 200, description = "Quota state", body = QuotaReport), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn get_quota(
    _: Viewer,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
) -> ApiResult<Json<QuotaReport>> {
    let id = ids.first().copied().ok_or_else(|| ApiError::not_found("subscription"))?;
    Ok(Json(quota(&state, id).await?))
}

/// The quota state of subscription `id` (the `GET /subscriptions/{id}/quota` answer).
pub async fn quota(state: &AppState, id: Uuid) -> ApiResult<QuotaReport> {
    let sub: SubPlan = sqlx::query_as(
        "SELECT s.consumer_id, s.plan_id, p.limit_mode, p.quota_per_day, p.quota_per_month
         FROM subscriptions AS s JOIN plans AS p ON p.id = s.plan_id WHERE s.id = $1",
    )
    .bind(id)
    .fetch_optional(state.db())
    .await?
    .ok_or_else(|| ApiError::not_found("subscription"))?;
    let now = OffsetDateTime::now_utc();
    let key = LimitKey::consumer(sub.plan_id, sub.consumer_id);
    let mut quotas = Vec::new();
    for (period, name, limit) in
        [(QuotaPeriod::Day, "day", sub.quota_per_day), (QuotaPeriod::Month, "month", sub.quota_per_month)]
    {
        let Some(limit) = limit.and_then(|l| u64::try_from(l).ok()) else { continue };
        let Some((start, left_ns)) = quota_window(period, now) else { continue };
        let window_start = OffsetDateTime::from_unix_timestamp(start).map_err(ApiError::internal)?;
        let resets_at = now + time::Duration::nanoseconds(i64::try_from(left_ns).unwrap_or(i64::MAX));
        let (used, nodes) = if sub.limit_mode == "redis" {
            let used = match state.redis() {
                None => Err("the plan counts in Redis and the admin has no --redis-url to read it".to_owned()),
                Some(redis) => {
                    redis.quota_used(&key, period, now).await.map_err(|e| format!("Redis could not be read: {e}"))
                }
            };
            (used, None)
        } else {
            let rows: Vec<(Uuid, i64, bool)> = sqlx::query_as(
                "SELECT q.node_id, q.used, coalesce(n.last_seen_at > now() - make_interval(secs => $5), false)
                 FROM usage_local_quotas AS q LEFT JOIN gateway_nodes AS n ON n.id = q.node_id
                 WHERE q.plan_id = $1 AND q.consumer_id = $2 AND q.period = $3 AND q.window_start = $4
                 ORDER BY q.node_id",
            )
            .bind(sub.plan_id)
            .bind(sub.consumer_id)
            .bind(name)
            .bind(window_start)
            .bind(f64::from(LIVE_SECONDS))
            .fetch_all(state.db())
            .await?;
            let nodes: Vec<NodeCount> = rows
                .into_iter()
                .map(|(node_id, used, live)| NodeCount { node_id, used: u64::try_from(used).unwrap_or(0), live })
                .collect();
            (Ok(nodes.iter().map(|n| n.used).sum()), Some(nodes))
        };
        let (used, unavailable) = match used {
            Ok(n) => (Some(n), None),
            Err(why) => (None, Some(why)),
        };
        quotas.push(QuotaState {
            period: name,
            limit,
            used,
            remaining: used.map(|u| limit.saturating_sub(u)),
            unavailable,
            window_start,
            resets_at,
            nodes,
        });
    }
    Ok(QuotaReport {
        subscription_id: id,
        plan_id: sub.plan_id,
        consumer_id: sub.consumer_id,
        limit_mode: sub.limit_mode,
        quotas,
    })
}
