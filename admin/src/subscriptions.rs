//! Subscriptions: a consumer × a plan, one per API per consumer. A subscription to a plan
//! that needs approval starts `pending`; an admin sets it `active` (or `suspended`).
//! Changing `plan_id` moves the subscription to another plan of the same API.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Editor;
use crate::change::{self, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::ops::{Tagged, resource_handlers};
use crate::resource::{self, ColumnWriter, Columns, Filter, Resource, eq};
use crate::state::AppState;
use crate::validate::{Validate, Violations};

/// Where a subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Awaiting approval: calls are refused.
    Pending,
    /// Calls are allowed within the plan.
    Active,
    /// Calls are refused until reactivated.
    Suspended,
}

/// The writable fields of an existing subscription.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"plan_id": "0190f1c2-7a64-7c1e-9f00-3b0c2a1d4e5f", "status": "active"}))]
pub struct SubscriptionInput {
    /// A plan of the same API.
    pub plan_id: Uuid,
    pub status: SubscriptionStatus,
}

impl Validate for SubscriptionInput {
    fn validate(&self, _: &mut Violations) {}
}

impl Columns for SubscriptionInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("plan_id", self.plan_id).col("status", self.status);
    }
}

/// A new subscription.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    pub consumer_id: Uuid,
    pub plan_id: Uuid,
    /// Defaults to `pending` if the plan requires approval, else `active`.
    #[serde(default)]
    pub status: Option<SubscriptionStatus>,
}

struct SubscriptionRow {
    consumer_id: Uuid,
    api_id: Uuid,
    input: SubscriptionInput,
}

impl Columns for SubscriptionRow {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("consumer_id", self.consumer_id).col("api_id", self.api_id);
        self.input.columns(w);
    }
}

/// A subscription as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Subscription {
    pub id: Uuid,
    pub consumer_id: Uuid,
    pub plan_id: Uuid,
    /// The plan's API.
    pub api_id: Uuid,
    pub status: SubscriptionStatus,
    /// When the consumer last called the API (to the minute; from the gateways' usage
    /// writes, so up to a flush interval late).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_call_at: Option<OffsetDateTime>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for Subscription {
    const KIND: &'static str = "subscription";
    const TABLE: &'static str = "subscriptions";
    type Input = SubscriptionInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> SubscriptionInput {
        SubscriptionInput { plan_id: self.plan_id, status: self.status }
    }
}

/// Subscribes a consumer to a plan.
#[utoipa::path(post, path = "/subscriptions", tag = "subscriptions", request_body = NewSubscription,
    responses((status = 201, description = "Created", body = Subscription, headers(("ETag" = String, description = "Version"))), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn create_subscription(
    Editor(who): Editor,
    State(state): State<AppState>,
    Body(new): Body<NewSubscription>,
) -> ApiResult<Tagged<Subscription>> {
    let mut tx = state.db().begin().await?;
    let plan: Option<(Uuid, bool)> =
        sqlx::query_as("SELECT api_id, approval_required FROM plans WHERE id = $1 FOR SHARE")
            .bind(new.plan_id)
            .fetch_optional(&mut *tx)
            .await?;
    let (api_id, approval) =
        plan.ok_or_else(|| ApiError::invalid_field("plan_id", "refers to an entity that does not exist"))?;
    let default = if approval { SubscriptionStatus::Pending } else { SubscriptionStatus::Active };
    let input = SubscriptionInput { plan_id: new.plan_id, status: new.status.unwrap_or(default) };
    let row = SubscriptionRow { consumer_id: new.consumer_id, api_id, input };
    let sub: Subscription = resource::insert::<Subscription>(&mut tx, Uuid::now_v7(), None, &row).await?;
    change::record(&mut tx, &who.actor(), Change::create(Subscription::KIND, sub.id, serde_json::to_value(&sub)?))
        .await?;
    tx.commit().await?;
    let version = sub.version;
    Ok(Tagged::created(sub, version))
}

/// Filters of `GET /subscriptions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionFilter {
    pub consumer_id: Option<Uuid>,
    pub plan_id: Option<Uuid>,
    pub api_id: Option<Uuid>,
    pub status: Option<SubscriptionStatus>,
}

impl Filter for SubscriptionFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "consumer_id", self.consumer_id);
        eq(qb, "plan_id", self.plan_id);
        eq(qb, "api_id", self.api_id);
        eq(qb, "status", self.status);
    }
}

resource_handlers! {
    Subscription, input: SubscriptionInput, filter: SubscriptionFilter, tag: "subscriptions", parent: None,
    collection: "/subscriptions" [], item: "/subscriptions/{id}" [("id" = Uuid, Path, description = "Subscription id"),],
    ops: { list: list_subscriptions, get: get_subscription, patch: patch_subscription, delete: delete_subscription }
}
