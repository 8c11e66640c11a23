//! API keys of a consumer. The secret (`tg_` + 256 random bits, base64url) is returned once,
//! at creation; only its SHA-256 and a display prefix are stored. Revoking is permanent.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{self, Editor};
use crate::change::{self, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, IfMatch, PathIds};
use crate::ops::{self, Parent, Tagged, resource_handlers};
use crate::resource::{self, ColumnWriter, Columns, Filter, Resource};
use crate::state::AppState;
use crate::validate::{Validate, Violations, validate};

/// Prefix of every API key, so leaked keys are recognisable by secret scanners.
pub const KEY_PREFIX: &str = "tg_";

/// The writable fields of an API key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "production", "expires_at": "2027-01-01T00:00:00Z"}))]
pub struct KeyInput {
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: String,
    /// After this instant the key is rejected; absent means never.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl Validate for KeyInput {
    fn validate(&self, v: &mut Violations) {
        v.max_len("name", &self.name, 100);
    }
}

impl Columns for KeyInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("name", &self.name).col("expires_at", self.expires_at);
    }
}

/// An API key as stored: never the secret.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub consumer_id: Uuid,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// When the key was last presented (to the minute; from the gateways' usage writes, so
    /// up to a flush interval late).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for ApiKey {
    const KIND: &'static str = "api_key";
    const TABLE: &'static str = "api_keys";
    const PARENT: Option<&'static str> = Some("consumer_id");
    type Input = KeyInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> KeyInput {
        KeyInput { name: self.name.clone(), expires_at: self.expires_at }
    }
}

/// A newly created key with its secret. The secret is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The API key itself; store it now, it cannot be read again.
    pub secret: String,
}

/// Filters of `GET /consumers/{consumer_id}/keys`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyFilter {
    /// Only revoked (true) or only unrevoked (false) keys.
    pub revoked: Option<bool>,
}

impl Filter for KeyFilter {
    fn apply(&self, qb: &mut sqlx::QueryBuilder<sqlx::Postgres>) {
        match self.revoked {
            Some(true) => qb.push(" AND revoked_at IS NOT NULL"),
            Some(false) => qb.push(" AND revoked_at IS NULL"),
            None => qb,
        };
    }
}

const CONSUMER: Option<(&str, &str)> = Some(("consumer", "consumers"));

fn consumer(ids: &[Uuid]) -> (Option<Parent>, Option<Uuid>) {
    ops::ids(CONSUMER, ids)
}

/// Issues a new API key for a consumer and returns its secret, once.
#[utoipa::path(post, path = "/consumers/{consumer_id}/keys", tag = "keys",
    params(("consumer_id" = Uuid, Path, description = "Consumer id")),
    request_body = KeyInput,
    responses((status = 201, description = "Created; `secret` is shown only now", body = CreatedKey), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn create_key(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    Body(input): Body<KeyInput>,
) -> ApiResult<Tagged<CreatedKey>> {
    validate(&input)?;
    if input.expires_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
        return Err(ApiError::invalid_field("expires_at", "must be in the future"));
    }
    let (parent, _) = consumer(&ids);
    let new = auth::Issued::new(&input, KEY_PREFIX, "key_hash");
    let mut tx = state.db().begin().await?;
    ops::ensure_parent(&mut tx, parent).await?;
    let key: ApiKey = resource::insert::<ApiKey>(&mut tx, Uuid::now_v7(), parent.map(|p| p.id), &new).await?;
    change::record(&mut tx, &who.actor(), Change::create(ApiKey::KIND, key.id, serde_json::to_value(&key)?)).await?;
    tx.commit().await?;
    let version = key.version;
    Ok(Tagged::created(CreatedKey { key, secret: new.secret }, version))
}

/// Revokes a key at once and for good; gateways reject it as soon as the change reaches them.
#[utoipa::path(post, path = "/consumers/{consumer_id}/keys/{id}/revoke", tag = "keys",
    params(("consumer_id" = Uuid, Path, description = "Consumer id"), ("id" = Uuid, Path, description = "Key id"), crate::openapi::IfMatchHeader),
    responses((status = 200, description = "Revoked (or already revoked)", body = ApiKey), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn revoke_key(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    if_match: IfMatch,
) -> ApiResult<Tagged<ApiKey>> {
    let (parent, id) = consumer(&ids);
    let id = id.ok_or_else(|| ApiError::not_found(ApiKey::KIND))?;
    let mut tx = state.db().begin().await?;
    ops::ensure_parent(&mut tx, parent).await?;
    let current: ApiKey = resource::fetch_for_update::<ApiKey>(&mut tx, id, parent.map(|p| p.id))
        .await?
        .ok_or_else(|| ApiError::not_found(ApiKey::KIND))?;
    if_match.check(current.version)?;
    if current.revoked_at.is_some() {
        let version = current.version;
        return Ok(Tagged::ok(current, version));
    }
    let key: ApiKey = sqlx::query_as(
        "UPDATE api_keys SET revoked_at = now(), version = version + 1, updated_at = now() WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let change = Change::update(ApiKey::KIND, id, serde_json::to_value(&current)?, serde_json::to_value(&key)?);
    change::record(&mut tx, &who.actor(), change.action("revoke")).await?;
    tx.commit().await?;
    let version = key.version;
    Ok(Tagged::ok(key, version))
}

resource_handlers! {
    ApiKey, input: KeyInput, filter: KeyFilter, tag: "keys", parent: CONSUMER,
    collection: "/consumers/{consumer_id}/keys" [("consumer_id" = Uuid, Path, description = "Consumer id"),],
    item: "/consumers/{consumer_id}/keys/{id}" [("consumer_id" = Uuid, Path, description = "Consumer id"), ("id" = Uuid, Path, description = "Key id"),],
    ops: { list: list_keys, get: get_key, patch: patch_key, delete: delete_key }
}
