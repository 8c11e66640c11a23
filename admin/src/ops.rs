//! The five operations every managed entity supports, written once: create, read, list,
//! merge-patch (with `If-Match`) and delete. Each write is one transaction holding the
//! entity change, its audit row and its config event. The [`resource_handlers!`] macro
//! turns these into documented axum handlers per entity.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::change::{self, Actor, Change};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::IfMatch;
use crate::page::{Page, PageQuery};
use crate::resource::{self, Filter, Resource, Write};
use crate::state::AppState;
use crate::validate::validate;

/// The entity a nested resource lives under (`/apis/{api_id}/routes`).
#[derive(Debug, Clone, Copy)]
pub struct Parent {
    pub kind: &'static str,
    pub table: &'static str,
    pub id: Uuid,
}

/// A response carrying one entity and its `ETag` (the entity's version).
pub struct Tagged<T> {
    status: StatusCode,
    body: T,
    version: i64,
}

impl<T: Serialize> Tagged<T> {
    /// `200 OK` with `body`.
    pub fn ok(body: T, version: i64) -> Self {
        Self { status: StatusCode::OK, body, version }
    }

    /// `201 Created` with `body`.
    pub fn created(body: T, version: i64) -> Self {
        Self { status: StatusCode::CREATED, body, version }
    }

    /// The entity, for callers that render it themselves (the portal).
    pub fn into_body(self) -> T {
        self.body
    }
}

impl<T: Serialize> IntoResponse for Tagged<T> {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body)).into_response();
        if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", self.version)) {
            res.headers_mut().insert(header::ETAG, tag);
        }
        res
    }
}

/// 404 unless the parent entity exists.
pub async fn ensure_parent(conn: &mut PgConnection, parent: Option<Parent>) -> ApiResult<()> {
    let Some(p) = parent else { return Ok(()) };
    let found: Option<(i32,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT 1 FROM {} WHERE id = $1", p.table)))
        .bind(p.id)
        .fetch_optional(conn)
        .await?;
    found.map(|_| ()).ok_or_else(|| ApiError::not_found(p.kind))
}

/// Records `change`, audit-only for entities gateways do not enforce.
async fn record<R: Resource>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    change: Change,
) -> ApiResult<()> {
    let change = if R::CONFIG { change } else { change.audit_only() };
    change::record(tx, who, change).await?;
    Ok(())
}

fn json<T: Serialize>(value: &T) -> ApiResult<Value> {
    Ok(serde_json::to_value(value)?)
}

/// Validates and inserts a new entity, recording the change.
pub async fn create<R: Resource>(
    state: &AppState,
    who: &Actor,
    parent: Option<Parent>,
    input: R::Input,
) -> ApiResult<Tagged<R>> {
    let mut tx = state.db().begin().await?;
    let row: R = create_in(&mut tx, state, who, parent, Uuid::now_v7(), input).await?;
    tx.commit().await?;
    let version = row.version();
    Ok(Tagged::created(row, version))
}

/// [`create`] inside the caller's transaction, with the id the caller chose.
pub async fn create_in<R: Resource>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    state: &AppState,
    who: &Actor,
    parent: Option<Parent>,
    id: Uuid,
    mut input: R::Input,
) -> ApiResult<R> {
    R::carry_over(&mut input, None)?;
    validate(&input)?;
    ensure_parent(tx, parent).await?;
    R::check(Write { conn: tx, state, parent: parent.map(|p| p.id), current: None }, &input).await?;
    R::seal_secrets(&mut input, id, state)?;
    let row: R = resource::insert::<R>(tx, id, parent.map(|p| p.id), &input).await?;
    record::<R>(tx, who, Change::create(R::KIND, row.id(), json(&row)?)).await?;
    Ok(row)
}

/// One entity.
pub async fn read<R: Resource>(state: &AppState, parent: Option<Parent>, id: Uuid) -> ApiResult<Tagged<R>> {
    let mut conn = state.db().acquire().await?;
    ensure_parent(&mut conn, parent).await?;
    let row: R =
        resource::fetch::<R>(&mut conn, id, parent.map(|p| p.id)).await?.ok_or_else(|| ApiError::not_found(R::KIND))?;
    let version = row.version();
    Ok(Tagged::ok(row, version))
}

/// One page of entities.
pub async fn list<R: Resource>(
    state: &AppState,
    parent: Option<Parent>,
    filter: &impl Filter,
    page: &PageQuery,
) -> ApiResult<Json<Page<R>>> {
    let mut conn = state.db().acquire().await?;
    ensure_parent(&mut conn, parent).await?;
    Ok(Json(resource::list::<R>(&mut conn, parent.map(|p| p.id), filter, page).await?))
}

/// Applies a JSON merge patch (RFC 7396) to the entity's writable fields.
pub async fn patch<R: Resource>(
    state: &AppState,
    who: &Actor,
    parent: Option<Parent>,
    id: Uuid,
    if_match: IfMatch,
    patch: Value,
) -> ApiResult<Tagged<R>> {
    let mut tx = state.db().begin().await?;
    let (row, changed) = patch_in::<R>(&mut tx, state, who, parent, id, Some(&if_match), patch).await?;
    if !changed.is_empty() {
        tx.commit().await?;
    }
    let version = row.version();
    Ok(Tagged::ok(row, version))
}

/// [`patch`] inside the caller's transaction (with `If-Match` when given): the entity, and
/// the writable fields that changed (an unchanged entity is not written, audited or
/// announced).
pub async fn patch_in<R: Resource>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    state: &AppState,
    who: &Actor,
    parent: Option<Parent>,
    id: Uuid,
    if_match: Option<&IfMatch>,
    patch: Value,
) -> ApiResult<(R, Vec<String>)> {
    if !patch.is_object() {
        return Err(ApiError::validation(vec![FieldError {
            pointer: String::new(),
            detail: "a merge patch must be a JSON object".into(),
        }]));
    }
    ensure_parent(tx, parent).await?;
    let mut current: R = resource::fetch_for_update::<R>(tx, id, parent.map(|p| p.id))
        .await?
        .ok_or_else(|| ApiError::not_found(R::KIND))?;
    current.open_secrets(state)?;
    let base = json(&current.to_input())?;
    if let Some(pointer) = unknown_reset(&base, &patch, String::new()) {
        let detail = "unknown field".to_owned();
        return Err(ApiError::validation(vec![FieldError { pointer, detail }]));
    }
    let mut merged = base.clone();
    merge_patch(&mut merged, &patch);
    let mut input: R::Input = crate::extract::parse_json(&serde_json::to_vec(&merged)?)?;
    R::carry_over(&mut input, Some(&current))?;
    validate(&input)?;
    let write = Write { conn: tx, state, parent: parent.map(|p| p.id), current: Some(&current) };
    R::check(write, &input).await?;
    // Preconditions come after the request itself is known to be acceptable (RFC 9110
    // §13.2.1): an invalid patch is a 422 whatever version it names.
    if let Some(if_match) = if_match {
        if_match.check(current.version())?;
    }
    let after = json(&input)?;
    let changed: Vec<String> = match (&base, &after) {
        (Value::Object(b), Value::Object(a)) => {
            a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect()
        }
        _ if base != after => vec![String::new()],
        _ => Vec::new(),
    };
    if changed.is_empty() {
        return Ok((current, changed));
    }
    R::seal_secrets(&mut input, id, state)?;
    let row: R = resource::update::<R>(tx, id, &input).await?;
    record::<R>(tx, who, Change::update(R::KIND, id, json(&current)?, json(&row)?)).await?;
    Ok((row, changed))
}

/// Deletes the entity (and what cascades from it), recording the change.
pub async fn delete<R: Resource>(
    state: &AppState,
    who: &Actor,
    parent: Option<Parent>,
    id: Uuid,
    if_match: IfMatch,
) -> ApiResult<StatusCode> {
    let mut tx = state.db().begin().await?;
    delete_in::<R>(&mut tx, who, parent, id, Some(&if_match)).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// [`delete`] inside the caller's transaction (with `If-Match` when given).
pub async fn delete_in<R: Resource>(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    who: &Actor,
    parent: Option<Parent>,
    id: Uuid,
    if_match: Option<&IfMatch>,
) -> ApiResult<()> {
    ensure_parent(tx, parent).await?;
    let current: R = resource::fetch_for_update::<R>(tx, id, parent.map(|p| p.id))
        .await?
        .ok_or_else(|| ApiError::not_found(R::KIND))?;
    if let Some(if_match) = if_match {
        if_match.check(current.version())?;
    }
    resource::delete::<R>(tx, id).await.map_err(|e| ApiError::from_delete(e, R::KIND))?;
    record::<R>(tx, who, Change::delete(R::KIND, id, json(&current)?)).await?;
    Ok(())
}

/// The first field `patch` resets (sets to `null`) that `base` does not have. Merging would
/// drop such a field silently, and the merged document would pass; but a patch naming a
/// field the entity does not have is a client error, as it is in a create.
fn unknown_reset(base: &Value, patch: &Value, pointer: String) -> Option<String> {
    let (Value::Object(base), Value::Object(patch)) = (base, patch) else { return None };
    patch.iter().find_map(|(key, value)| {
        let here = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
        match base.get(key) {
            None if value.is_null() => Some(here),
            Some(inner) => unknown_reset(inner, value, here),
            None => None,
        }
    })
}

/// RFC 7396: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Splits path ids into the parent (for nested resources) and the entity id.
pub fn ids(parent: Option<(&'static str, &'static str)>, ids: &[Uuid]) -> (Option<Parent>, Option<Uuid>) {
    match (parent, ids) {
        (Some((kind, table)), [p, rest @ ..]) => (Some(Parent { kind, table, id: *p }), rest.first().copied()),
        (_, ids) => (None, ids.first().copied()),
    }
}

/// Generates the documented axum handlers of one entity. `parent` is `None` for top-level
/// entities or `Some((kind, table))` for nested ones; the bracketed lists are the path
/// parameters documented for the collection and item paths.
macro_rules! resource_handlers {
    (
        $R:ident, input: $I:ident, filter: $F:ty, tag: $tag:tt, parent: $parent:expr,
        collection: $coll:tt $cp:tt, item: $item:tt $ip:tt,
        ops: { $($op:ident: $name:ident),* $(,)? }
    ) => {
        $( $crate::ops::resource_handlers!(@$op $name, $R, $I, $F, $tag, $parent, $coll $cp, $item $ip); )*
    };
    (@list $name:ident, $R:ident, $I:ident, $F:ty, $tag:tt, $parent:expr, $coll:tt [$($cp:tt)*], $item:tt [$($ip:tt)*]) => {
        #[doc = concat!("Lists ", stringify!($R), " entities, one page at a time, in creation order.")]
        #[utoipa::path(get, path = $coll, tag = $tag, params($($cp)* $crate::page::PageQuery, $F),
            responses((status = 200, description = "One page", body = $crate::page::Page<$R>), $crate::openapi::ApiErrors),
            security(("bearer" = [])))]
        pub async fn $name(
            _: $crate::auth::Viewer,
            axum::extract::State(state): axum::extract::State<$crate::state::AppState>,
            $crate::extract::PathIds(ids): $crate::extract::PathIds,
            $crate::extract::Params(page): $crate::extract::Params<$crate::page::PageQuery>,
            $crate::extract::Params(filter): $crate::extract::Params<$F>,
        ) -> $crate::error::ApiResult<axum::Json<$crate::page::Page<$R>>> {
            let (parent, _) = $crate::ops::ids($parent, &ids);
            $crate::ops::list::<$R>(&state, parent, &filter, &page).await
        }
    };
    (@get $name:ident, $R:ident, $I:ident, $F:ty, $tag:tt, $parent:expr, $coll:tt [$($cp:tt)*], $item:tt [$($ip:tt)*]) => {
        #[doc = concat!("Reads one ", stringify!($R), "; the `ETag` header carries its version.")]
        #[utoipa::path(get, path = $item, tag = $tag, params($($ip)*),
            responses((status = 200, description = "The entity", body = $R, headers(("ETag" = String, description = "Version, for If-Match"))), $crate::openapi::ApiErrors),
            security(("bearer" = [])))]
        pub async fn $name(
            _: $crate::auth::Viewer,
            axum::extract::State(state): axum::extract::State<$crate::state::AppState>,
            $crate::extract::PathIds(ids): $crate::extract::PathIds,
        ) -> $crate::error::ApiResult<$crate::ops::Tagged<$R>> {
            let (parent, id) = $crate::ops::ids($parent, &ids);
            let id = id.ok_or_else(|| $crate::error::ApiError::not_found(<$R as $crate::resource::Resource>::KIND))?;
            $crate::ops::read::<$R>(&state, parent, id).await
        }
    };
    (@create $name:ident, $R:ident, $I:ident, $F:ty, $tag:tt, $parent:expr, $coll:tt [$($cp:tt)*], $item:tt [$($ip:tt)*]) => {
        #[doc = concat!("Creates a ", stringify!($R), ".")]
        #[utoipa::path(post, path = $coll, tag = $tag, params($($cp)*),
            request_body = $I,
            responses((status = 201, description = "Created", body = $R, headers(("ETag" = String, description = "Version, for If-Match"))), $crate::openapi::ApiErrors),
            security(("bearer" = [])))]
        pub async fn $name(
            $crate::auth::Editor(who): $crate::auth::Editor,
            axum::extract::State(state): axum::extract::State<$crate::state::AppState>,
            $crate::extract::PathIds(ids): $crate::extract::PathIds,
            $crate::extract::Body(input): $crate::extract::Body<<$R as $crate::resource::Resource>::Input>,
        ) -> $crate::error::ApiResult<$crate::ops::Tagged<$R>> {
            let (parent, _) = $crate::ops::ids($parent, &ids);
            $crate::ops::create::<$R>(&state, &who.actor(), parent, input).await
        }
    };
    (@patch $name:ident, $R:ident, $I:ident, $F:ty, $tag:tt, $parent:expr, $coll:tt [$($cp:tt)*], $item:tt [$($ip:tt)*]) => {
        #[doc = concat!("Changes a ", stringify!($R), " with a JSON merge patch (RFC 7396) of its writable fields; send `If-Match` to guard against lost updates.")]
        #[utoipa::path(patch, path = $item, tag = $tag, params($($ip)* $crate::openapi::IfMatchHeader),
            request_body(content = $I, description = "Any subset of the writable fields; null resets a field to its default", content_type = "application/merge-patch+json"),
            responses((status = 200, description = "Updated", body = $R, headers(("ETag" = String, description = "New version"))), $crate::openapi::ApiErrors),
            security(("bearer" = [])))]
        pub async fn $name(
            $crate::auth::Editor(who): $crate::auth::Editor,
            axum::extract::State(state): axum::extract::State<$crate::state::AppState>,
            $crate::extract::PathIds(ids): $crate::extract::PathIds,
            if_match: $crate::extract::IfMatch,
            $crate::extract::Body(patch): $crate::extract::Body<serde_json::Value>,
        ) -> $crate::error::ApiResult<$crate::ops::Tagged<$R>> {
            let (parent, id) = $crate::ops::ids($parent, &ids);
            let id = id.ok_or_else(|| $crate::error::ApiError::not_found(<$R as $crate::resource::Resource>::KIND))?;
            $crate::ops::patch::<$R>(&state, &who.actor(), parent, id, if_match, patch).await
        }
    };
    (@delete $name:ident, $R:ident, $I:ident, $F:ty, $tag:tt, $parent:expr, $coll:tt [$($cp:tt)*], $item:tt [$($ip:tt)*]) => {
        #[doc = concat!("Deletes a ", stringify!($R), " and what it owns.")]
        #[utoipa::path(delete, path = $item, tag = $tag, params($($ip)* $crate::openapi::IfMatchHeader),
            responses((status = 204, description = "Deleted"), $crate::openapi::ApiErrors),
            security(("bearer" = [])))]
        pub async fn $name(
            $crate::auth::Editor(who): $crate::auth::Editor,
            axum::extract::State(state): axum::extract::State<$crate::state::AppState>,
            $crate::extract::PathIds(ids): $crate::extract::PathIds,
            if_match: $crate::extract::IfMatch,
        ) -> $crate::error::ApiResult<axum::http::StatusCode> {
            let (parent, id) = $crate::ops::ids($parent, &ids);
            let id = id.ok_or_else(|| $crate::error::ApiError::not_found(<$R as $crate::resource::Resource>::KIND))?;
            $crate::ops::delete::<$R>(&state, &who.actor(), parent, id, if_match).await
        }
    };
}
pub(crate) use resource_handlers;

#[cfg(test)]
mod tests {
    use super::merge_patch;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want);
        }
    }

    #[test]
    fn resetting_an_unknown_field_is_found() {
        let base = json!({"name": "a", "health": {"path": "/"}, "hash_on": null});
        assert_eq!(super::unknown_reset(&base, &json!({"hash_on": null, "name": "b"}), String::new()), None);
        assert_eq!(super::unknown_reset(&base, &json!({"": null}), String::new()).as_deref(), Some("/"));
        let nested = json!({"health": {"bogus": null}});
        assert_eq!(super::unknown_reset(&base, &nested, String::new()).as_deref(), Some("/health/bogus"));
    }
}
