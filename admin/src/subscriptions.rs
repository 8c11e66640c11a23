//! Subscriptions: a consumer × a plan, one per API per consumer. A subscription to a plan
//! that needs approval starts `pending`; an admin approves it (`active`) or rejects it with a
//! reason (`rejected`), and may later suspend it.
//! Changing `plan_id` moves the subscription to another plan of the same API.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Editor;
use crate::change::{self, Actor, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, PathIds};
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
    /// An admin turned the request down (see `decision_reason`); calls are refused.
    Rejected,
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
    /// The requester's note to the approver.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub comment: String,
}

/// Why a request is rejected (the developer reads it).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "Tell us more about your use case"}))]
pub struct Rejection {
    /// Not blank. (The pattern names U+0085 besides `\s`: JSON Schema patterns follow
    /// ECMAScript, whose `\s` lacks it, while the server trims every Unicode space.)
    #[schema(pattern = r"[^\s\u0085]", max_length = 1000)]
    pub reason: String,
}

/// An admin's decision on a subscription request.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"reason": "Welcome aboard"}))]
pub struct Decision {
    /// Shown to the developer; required when rejecting.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub reason: String,
}

struct SubscriptionRow<'a> {
    consumer_id: Uuid,
    api_id: Uuid,
    comment: &'a str,
    input: SubscriptionInput,
}

impl Columns for SubscriptionRow<'_> {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("consumer_id", self.consumer_id).col("api_id", self.api_id).col("comment", self.comment);
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
    /// The requester's note to the approver.
    pub comment: String,
    /// Why an admin approved or rejected the request.
    pub decision_reason: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
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

/// Subscribes a consumer to a plan inside `tx`: `pending` when the plan requires approval
/// (unless `new.status` says otherwise), else `active`. A rejected request of the same
/// consumer for the same API is replaced by the new one.
pub async fn subscribe(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    new: &NewSubscription,
) -> ApiResult<Subscription> {
    if new.comment.chars().count() > 1000 {
        return Err(ApiError::invalid_field("comment", "must be at most 1000 characters"));
    }
    let plan: Option<(Uuid, bool)> =
        sqlx::query_as("SELECT api_id, approval_required FROM plans WHERE id = $1 FOR SHARE")
            .bind(new.plan_id)
            .fetch_optional(&mut **tx)
            .await?;
    let (api_id, approval) =
        plan.ok_or_else(|| ApiError::invalid_field("plan_id", "refers to an entity that does not exist"))?;
    drop_rejected(tx, who, new.consumer_id, api_id).await?;
    let default = if approval { SubscriptionStatus::Pending } else { SubscriptionStatus::Active };
    let input = SubscriptionInput { plan_id: new.plan_id, status: new.status.unwrap_or(default) };
    let row = SubscriptionRow { consumer_id: new.consumer_id, api_id, comment: &new.comment, input };
    let sub: Subscription = resource::insert::<Subscription>(tx, Uuid::now_v7(), None, &row).await?;
    change::record(tx, who, Change::create(Subscription::KIND, sub.id, serde_json::to_value(&sub)?)).await?;
    Ok(sub)
}

async fn drop_rejected(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    consumer_id: Uuid,
    api_id: Uuid,
) -> ApiResult<()> {
    let gone: Option<Subscription> = sqlx::query_as(
        "DELETE FROM subscriptions WHERE consumer_id = $1 AND api_id = $2 AND status = 'rejected' RETURNING *",
    )
    .bind(consumer_id)
    .bind(api_id)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(old) = gone {
        change::record(tx, who, Change::delete(Subscription::KIND, old.id, serde_json::to_value(&old)?)).await?;
    }
    Ok(())
}

/// What a reason is trimmed of: Unicode spaces and what ECMAScript's `\s` adds (U+FEFF),
/// so "blank" means the same here as in the documented pattern.
fn blank(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// Decides a pending request inside `tx`: `active` (approve) or `rejected` (a reason is
/// required). Deciding a request that is no longer pending is a conflict.
pub async fn decide(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    id: Uuid,
    approve: bool,
    decision: &Decision,
) -> ApiResult<Subscription> {
    let reason = decision.reason.trim_matches(blank);
    if reason.chars().count() > 1000 {
        return Err(ApiError::invalid_field("reason", "must be at most 1000 characters"));
    }
    if !approve && reason.is_empty() {
        return Err(ApiError::invalid_field("reason", "say why the request is rejected; the developer reads it"));
    }
    let current: Subscription = resource::fetch_for_update::<Subscription>(tx, id, None)
        .await?
        .ok_or_else(|| ApiError::not_found(Subscription::KIND))?;
    if current.status != SubscriptionStatus::Pending {
        return Err(ApiError::conflict("only a pending subscription request can be approved or rejected"));
    }
    let status = if approve { SubscriptionStatus::Active } else { SubscriptionStatus::Rejected };
    let sub: Subscription = sqlx::query_as(
        "UPDATE subscriptions SET status = $2, decision_reason = $3, decided_at = now(), version = version + 1,
                updated_at = now()
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(status)
    .bind(reason)
    .fetch_one(&mut **tx)
    .await?;
    let change = Change::update(Subscription::KIND, id, serde_json::to_value(&current)?, serde_json::to_value(&sub)?);
    change::record(tx, who, change.action(if approve { "approve" } else { "reject" })).await?;
    Ok(sub)
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
    let sub = subscribe(&mut tx, &who.actor(), &new).await?;
    tx.commit().await?;
    let version = sub.version;
    Ok(Tagged::created(sub, version))
}

async fn decide_one(
    state: &AppState,
    who: &Actor,
    id: Uuid,
    approve: bool,
    d: &Decision,
) -> ApiResult<Tagged<Subscription>> {
    let mut tx = state.db().begin().await?;
    let sub = decide(&mut tx, who, id, approve, d).await?;
    tx.commit().await?;
    let version = sub.version;
    Ok(Tagged::ok(sub, version))
}

/// Approves a pending subscription request: it becomes `active` and calls are allowed.
#[utoipa::path(post, path = "/subscriptions/{id}/approve", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body(content = Decision, description = "An optional note to the developer (`{}` for none)"),
    responses((status = 200, description = "Approved", body = Subscription), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn approve_subscription(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    Body(decision): Body<Decision>,
) -> ApiResult<Tagged<Subscription>> {
    decide_one(&state, &who.actor(), one_id(&ids)?, true, &decision).await
}

/// Rejects a pending subscription request with a reason the developer sees.
#[utoipa::path(post, path = "/subscriptions/{id}/reject", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    request_body = Rejection,
    responses((status = 200, description = "Rejected", body = Subscription), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn reject_subscription(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    Body(rejection): Body<Rejection>,
) -> ApiResult<Tagged<Subscription>> {
    let decision = Decision { reason: rejection.reason };
    decide_one(&state, &who.actor(), one_id(&ids)?, false, &decision).await
}

fn one_id(ids: &[Uuid]) -> ApiResult<Uuid> {
    ids.first().copied().ok_or_else(|| ApiError::not_found(Subscription::KIND))
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
