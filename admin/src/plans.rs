//! Plans of an API: rate limits (per second/minute/hour with burst), quotas (per UTC day and
//! month), how counters are shared, and whether subscribing needs approval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::ops::resource_handlers;
use crate::resource::{ColumnWriter, Columns, Filter, Resource, Write, eq};
use crate::routes::MAX_COST;
use crate::validate::{Validate, Violations};

/// At most this many route cost overrides per plan.
const MAX_ROUTE_COSTS: usize = 1000;

fn route_costs_schema() -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let cost = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)).maximum(Some(MAX_COST));
    let id = ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(id))
        .additional_properties(Some(cost))
        .max_properties(Some(MAX_ROUTE_COSTS))
        .description(Some("Route id (a route of this API) → cost of one request, overriding the route's `cost`."))
}

/// Where rate-limit counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type, Default)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum LimitMode {
    /// Per gateway node, in memory.
    #[default]
    Local,
    /// Shared by all nodes through Redis.
    Redis,
}

/// What a gateway does when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type, Default)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Count locally with the node's share of the limit.
    #[default]
    FailOpen,
    /// Reject requests.
    FailClosed,
}

fn default_true() -> bool {
    true
}

/// The writable fields of a plan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "free", "rate_limit_per_minute": 60, "burst": 10, "quota_per_month": 10000}))]
pub struct PlanInput {
    /// Slug, unique within the API.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$", max_length = 63)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub rate_limit_per_second: Option<i32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub rate_limit_per_minute: Option<i32>,
    #[serde(default)]
    #[schema(minimum = 1)]
    pub rate_limit_per_hour: Option<i32>,
    /// Requests allowed at once beyond one. The promise of a rate of N per window with burst
    /// B: one request every window / N, up to B + 1 at once, and never more than N + B in
    /// any interval of the window's length.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub burst: i32,
    /// Requests per UTC calendar day.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub quota_per_day: Option<i64>,
    /// Requests per UTC calendar month.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub quota_per_month: Option<i64>,
    #[serde(default)]
    pub limit_mode: LimitMode,
    #[serde(default)]
    pub redis_failure_policy: FailurePolicy,
    /// Subscriptions start `pending` until an admin approves them.
    #[serde(default)]
    pub approval_required: bool,
    #[serde(default = "default_true")]
    pub portal_visible: bool,
    /// Route id (a route of this API) → cost of one request, overriding the route's `cost`.
    #[serde(default)]
    #[schema(schema_with = route_costs_schema)]
    pub route_costs: BTreeMap<Uuid, i32>,
}

impl Validate for PlanInput {
    fn validate(&self, v: &mut Violations) {
        let positive = |x: Option<i32>| x.is_none_or(|n| n > 0);
        v.slug("name", &self.name)
            .max_len("description", &self.description, 2000)
            .check(positive(self.rate_limit_per_second), "rate_limit_per_second", "must be positive")
            .check(positive(self.rate_limit_per_minute), "rate_limit_per_minute", "must be positive")
            .check(positive(self.rate_limit_per_hour), "rate_limit_per_hour", "must be positive")
            .check((0..=1_000_000).contains(&self.burst), "burst", "must be 0 to 1000000")
            .check(self.quota_per_day.is_none_or(|n| n > 0), "quota_per_day", "must be positive")
            .check(self.quota_per_month.is_none_or(|n| n > 0), "quota_per_month", "must be positive")
            .check(self.route_costs.len() <= MAX_ROUTE_COSTS, "route_costs", "must have at most 1000 routes");
        for (route, cost) in &self.route_costs {
            v.check((0..=MAX_COST).contains(cost), &format!("route_costs/{route}"), "must be 0 to 1000000");
        }
    }
}

impl Columns for PlanInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("name", &self.name)
            .col("description", &self.description)
            .col("rate_limit_per_second", self.rate_limit_per_second)
            .col("rate_limit_per_minute", self.rate_limit_per_minute)
            .col("rate_limit_per_hour", self.rate_limit_per_hour)
            .col("burst", self.burst)
            .col("quota_per_day", self.quota_per_day)
            .col("quota_per_month", self.quota_per_month)
            .col("limit_mode", self.limit_mode)
            .col("redis_failure_policy", self.redis_failure_policy)
            .col("approval_required", self.approval_required)
            .col("portal_visible", self.portal_visible)
            .col("route_costs", Json(&self.route_costs));
    }
}

/// A plan as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Plan {
    pub id: Uuid,
    pub api_id: Uuid,
    pub name: String,
    pub description: String,
    pub rate_limit_per_second: Option<i32>,
    pub rate_limit_per_minute: Option<i32>,
    pub rate_limit_per_hour: Option<i32>,
    pub burst: i32,
    pub quota_per_day: Option<i64>,
    pub quota_per_month: Option<i64>,
    pub limit_mode: LimitMode,
    pub redis_failure_policy: FailurePolicy,
    pub approval_required: bool,
    pub portal_visible: bool,
    #[schema(schema_with = route_costs_schema)]
    pub route_costs: Json<BTreeMap<Uuid, i32>>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for Plan {
    const KIND: &'static str = "plan";
    const TABLE: &'static str = "plans";
    const PARENT: Option<&'static str> = Some("api_id");
    type Input = PlanInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> PlanInput {
        PlanInput {
            name: self.name.clone(),
            description: self.description.clone(),
            rate_limit_per_second: self.rate_limit_per_second,
            rate_limit_per_minute: self.rate_limit_per_minute,
            rate_limit_per_hour: self.rate_limit_per_hour,
            burst: self.burst,
            quota_per_day: self.quota_per_day,
            quota_per_month: self.quota_per_month,
            limit_mode: self.limit_mode,
            redis_failure_policy: self.redis_failure_policy,
            approval_required: self.approval_required,
            portal_visible: self.portal_visible,
            route_costs: self.route_costs.0.clone(),
        }
    }

    async fn check<'a>(w: Write<'a, Self>, input: &'a PlanInput) -> Result<(), ApiError> {
        let Some(api) = w.parent.filter(|_| !input.route_costs.is_empty()) else { return Ok(()) };
        let ids: Vec<Uuid> = input.route_costs.keys().copied().collect();
        let found: Vec<(Uuid,)> = sqlx::query_as("SELECT id FROM routes WHERE api_id = $1 AND id = ANY($2)")
            .bind(api)
            .bind(&ids)
            .fetch_all(&mut *w.conn)
            .await?;
        let errors: Vec<FieldError> = ids
            .iter()
            .filter(|id| !found.iter().any(|(f,)| f == *id))
            .map(|id| FieldError::new(&format!("route_costs/{id}"), "is not a route of this API"))
            .collect();
        if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
    }
}

/// Filters of `GET /apis/{api_id}/plans`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanFilter {
    pub name: Option<String>,
    pub portal_visible: Option<bool>,
}

impl Filter for PlanFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "name", self.name.as_deref());
        eq(qb, "portal_visible", self.portal_visible);
    }
}

resource_handlers! {
    Plan, input: PlanInput, filter: PlanFilter, tag: "plans", parent: Some(("api", "apis")),
    collection: "/apis/{api_id}/plans" [("api_id" = Uuid, Path, description = "API id"),],
    item: "/apis/{api_id}/plans/{id}" [("api_id" = Uuid, Path, description = "API id"), ("id" = Uuid, Path, description = "Plan id"),],
    ops: { list: list_plans, get: get_plan, create: create_plan, patch: patch_plan, delete: delete_plan }
}
