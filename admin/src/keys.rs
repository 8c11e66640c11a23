//! API keys of a consumer. The secret (`tg_`, 238 random bits in base62, a CRC-32 checksum;
//! see [`tollgate_gateway::key_format`]) is returned once, at creation; only its SHA-256 and a
//! display prefix are stored. Revoking is permanent; rotating issues a successor and lets the
//! old key work for an overlap the caller chooses. The operations take a transaction and an
//! actor, so the REST API and the portal run the same code.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{self, Editor};
use crate::change::{self, Actor, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, IfMatch, PathIds};
use crate::ops::{self, Parent, Tagged, resource_handlers};
use crate::resource::{self, ColumnWriter, Columns, Filter, Resource};
use crate::state::AppState;
use crate::validate::{Validate, Violations, validate};

/// Prefix of every API key, so leaked keys are recognisable by secret scanners.
pub const KEY_PREFIX: &str = tollgate_gateway::key_format::PREFIX;

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
    /// The key that replaced this one in a rotation; this key works until `expires_at`.
    pub replaced_by: Option<Uuid>,
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

/// How a key is rotated: a new key is issued and the old one keeps working for `overlap_seconds`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"overlap_seconds": 86400}))]
pub struct RotateInput {
    /// How long the old key keeps working, 0 (stops now) to 30 days. An old key that expires
    /// sooner keeps its earlier expiry.
    #[schema(maximum = 2592000)]
    pub overlap_seconds: u32,
    /// The new key's name; absent: the old key's.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// The new key's expiry; absent: never.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// Longest overlap of a rotation: 30 days.
pub const MAX_OVERLAP_SECS: u32 = 30 * 24 * 3600;

impl Validate for RotateInput {
    fn validate(&self, v: &mut Violations) {
        v.check(self.overlap_seconds <= MAX_OVERLAP_SECS, "overlap_seconds", "must be at most 2592000 (30 days)");
        if let Some(name) = &self.name {
            v.max_len("name", name, 100);
        }
    }
}

/// A rotation's outcome: the new key with its secret, and the old key with its new expiry.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    pub new: CreatedKey,
    pub old: ApiKey,
}

/// Issues a new key for `consumer_id` inside `tx` and records it. Validates `input`.
pub async fn issue(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    consumer_id: Uuid,
    input: &KeyInput,
) -> ApiResult<CreatedKey> {
    validate(input)?;
    if input.expires_at.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
        return Err(ApiError::invalid_field("expires_at", "must be in the future"));
    }
    ops::ensure_parent(tx, Some(Parent { kind: "consumer", table: "consumers", id: consumer_id })).await?;
    let new = auth::Issued::api_key(input);
    let key: ApiKey = resource::insert::<ApiKey>(tx, Uuid::now_v7(), Some(consumer_id), &new).await?;
    change::record(tx, who, Change::create(ApiKey::KIND, key.id, serde_json::to_value(&key)?)).await?;
    Ok(CreatedKey { key, secret: new.secret })
}

/// Stores a key known only by its SHA-256 (`tollgate config apply`) for `consumer_id`
/// inside `tx`, recording it: `prefix` is what the admin shows of it.
pub async fn import_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    consumer_id: Uuid,
    id: Uuid,
    hash: [u8; 32],
    input: &KeyInput,
    prefix: &str,
) -> ApiResult<ApiKey> {
    validate(input)?;
    ops::ensure_parent(tx, Some(Parent { kind: "consumer", table: "consumers", id: consumer_id })).await?;
    let imported = Imported { input, prefix, hash };
    let key: ApiKey = resource::insert::<ApiKey>(tx, id, Some(consumer_id), &imported).await?;
    change::record(tx, who, Change::create(ApiKey::KIND, key.id, serde_json::to_value(&key)?)).await?;
    Ok(key)
}

/// A key's columns when only its hash is known.
struct Imported<'a> {
    input: &'a KeyInput,
    prefix: &'a str,
    hash: [u8; 32],
}

impl Columns for Imported<'_> {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        self.input.columns(w);
        w.col("prefix", self.prefix).col("key_hash", &self.hash[..]);
    }
}

async fn lock_key(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, consumer_id: Uuid, id: Uuid) -> ApiResult<ApiKey> {
    ops::ensure_parent(tx, Some(Parent { kind: "consumer", table: "consumers", id: consumer_id })).await?;
    resource::fetch_for_update::<ApiKey>(tx, id, Some(consumer_id))
        .await?
        .ok_or_else(|| ApiError::not_found(ApiKey::KIND))
}

/// Revokes key `id` of `consumer_id` inside `tx`, at once and for good (a no-op when it is
/// already revoked).
pub async fn revoke(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    consumer_id: Uuid,
    id: Uuid,
    if_match: &IfMatch,
) -> ApiResult<ApiKey> {
    let current = lock_key(tx, consumer_id, id).await?;
    if_match.check(current.version)?;
    if current.revoked_at.is_some() {
        return Ok(current);
    }
    let key: ApiKey = sqlx::query_as(
        "UPDATE api_keys SET revoked_at = now(), version = version + 1, updated_at = now() WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let change = Change::update(ApiKey::KIND, id, serde_json::to_value(&current)?, serde_json::to_value(&key)?);
    change::record(tx, who, change.action("revoke")).await?;
    Ok(key)
}

/// Rotates key `id` of `consumer_id` inside `tx`: issues its successor and lets the old key
/// work until the overlap ends. A revoked, expired or already rotated key cannot be rotated.
pub async fn rotate(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    consumer_id: Uuid,
    id: Uuid,
    if_match: &IfMatch,
    input: &RotateInput,
) -> ApiResult<RotatedKey> {
    validate(input)?;
    let current = lock_key(tx, consumer_id, id).await?;
    if_match.check(current.version)?;
    let now = OffsetDateTime::now_utc();
    if current.revoked_at.is_some() || current.expires_at.is_some_and(|t| t <= now) || current.replaced_by.is_some() {
        return Err(ApiError::conflict("only a working key that was not rotated before can be rotated"));
    }
    let name = input.name.clone().unwrap_or_else(|| current.name.clone());
    let new = issue(tx, who, consumer_id, &KeyInput { name, expires_at: input.expires_at }).await?;
    let until = now + time::Duration::seconds(i64::from(input.overlap_seconds));
    let old: ApiKey = sqlx::query_as(
        "UPDATE api_keys SET expires_at = LEAST(coalesce(expires_at, 'infinity'), $2), replaced_by = $3,
                version = version + 1, updated_at = now()
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(until)
    .bind(new.key.id)
    .fetch_one(&mut **tx)
    .await?;
    let change = Change::update(ApiKey::KIND, id, serde_json::to_value(&current)?, serde_json::to_value(&old)?);
    change::record(tx, who, change.action("rotate")).await?;
    Ok(RotatedKey { new, old })
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
    let (parent, _) = consumer(&ids);
    let consumer_id = parent.map(|p| p.id).ok_or_else(|| ApiError::not_found("consumer"))?;
    let mut tx = state.db().begin().await?;
    let created = issue(&mut tx, &who.actor(), consumer_id, &input).await?;
    tx.commit().await?;
    let version = created.key.version;
    Ok(Tagged::created(created, version))
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
    let (consumer_id, id) = key_ids(&ids)?;
    let mut tx = state.db().begin().await?;
    let key = revoke(&mut tx, &who.actor(), consumer_id, id, &if_match).await?;
    tx.commit().await?;
    let version = key.version;
    Ok(Tagged::ok(key, version))
}

/// Rotates a key: issues its successor (secret shown once) and keeps the old key working
/// until the overlap ends, so clients can switch without a failed call.
#[utoipa::path(post, path = "/consumers/{consumer_id}/keys/{id}/rotate", tag = "keys",
    params(("consumer_id" = Uuid, Path, description = "Consumer id"), ("id" = Uuid, Path, description = "Key id"), crate::openapi::IfMatchHeader),
    request_body = RotateInput,
    responses((status = 201, description = "Rotated; `new.secret` is shown only now", body = RotatedKey), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn rotate_key(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    if_match: IfMatch,
    Body(input): Body<RotateInput>,
) -> ApiResult<Tagged<RotatedKey>> {
    let (consumer_id, id) = key_ids(&ids)?;
    let mut tx = state.db().begin().await?;
    let rotated = rotate(&mut tx, &who.actor(), consumer_id, id, &if_match, &input).await?;
    tx.commit().await?;
    let version = rotated.new.key.version;
    Ok(Tagged::created(rotated, version))
}

fn key_ids(ids: &[Uuid]) -> ApiResult<(Uuid, Uuid)> {
    let (parent, id) = consumer(ids);
    match (parent, id) {
        (Some(p), Some(id)) => Ok((p.id, id)),
        _ => Err(ApiError::not_found(ApiKey::KIND)),
    }
}

resource_handlers! {
    ApiKey, input: KeyInput, filter: KeyFilter, tag: "keys", parent: CONSUMER,
    collection: "/consumers/{consumer_id}/keys" [("consumer_id" = Uuid, Path, description = "Consumer id"),],
    item: "/consumers/{consumer_id}/keys/{id}" [("consumer_id" = Uuid, Path, description = "Consumer id"), ("id" = Uuid, Path, description = "Key id"),],
    ops: { list: list_keys, get: get_key, patch: patch_key, delete: delete_key }
}
