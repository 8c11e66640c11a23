//! OpenAPI documents of an API: several versions (labels) each, uploaded as JSON or YAML,
//! checked to be OpenAPI 3.0 or 3.1, stored as uploaded and parsed, and published to the
//! developer portal one by one. Changes are audited; gateways do not read them.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{Editor, Viewer};
use crate::change::{self, Actor, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, IfMatch, PathIds};
use crate::ops::{self, Parent, Tagged};
use crate::state::AppState;

/// A document as listed (without its content).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiDocument {
    pub id: Uuid,
    pub api_id: Uuid,
    /// The version label (`v1`, `2026-12`), unique per API.
    pub label: String,
    /// `info.title` of the document.
    pub title: String,
    /// The OpenAPI version it is written in (`3.0.3`, `3.1.0`).
    pub openapi: String,
    /// `json` or `yaml`, as uploaded.
    pub format: String,
    /// Shown in the developer portal.
    pub published: bool,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, api_id, label, title, openapi, format, published, version, created_at, updated_at";

/// A document with its parsed content.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiDocumentWithContent {
    #[serde(flatten)]
    pub meta: ApiDocument,
    /// The parsed document.
    #[schema(value_type = Object)]
    pub document: Value,
}

/// An upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"label": "v1", "published": true, "content": "openapi: 3.1.0\ninfo: {title: Weather, version: '1'}\npaths: {}\n"}))]
pub struct NewDocument {
    /// 1-40 letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
    pub label: String,
    #[serde(default)]
    pub published: bool,
    /// The OpenAPI 3.0 or 3.1 document, JSON or YAML, as text.
    #[schema(max_length = 4194304)]
    pub content: String,
}

/// The writable fields of a stored document.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentPatch {
    pub published: Option<bool>,
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
    pub label: Option<String>,
}

/// A checked document: format, parsed value, title and OpenAPI version.
#[derive(Debug)]
pub struct Checked {
    pub format: &'static str,
    pub document: Value,
    pub title: String,
    pub openapi: String,
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::invalid_field("content", detail)
}

/// Parses `content` (JSON if it starts with `{`, else YAML) and checks the structure the
/// portal relies on: OpenAPI 3.0.x or 3.1.x, `info.title` and `info.version`, paths that
/// start with `/` and hold operation objects, parameters with a name and a valid `in`.
pub fn check(content: &str) -> ApiResult<Checked> {
    let trimmed = content.trim_start();
    let (format, document): (&'static str, Value) = if trimmed.starts_with('{') {
        ("json", serde_json::from_str(trimmed).map_err(|e| bad(format!("is not valid JSON: {e}")))?)
    } else {
        ("yaml", serde_norway::from_str(content).map_err(|e| bad(format!("is not valid YAML or JSON: {e}")))?)
    };
    let doc = document.as_object().ok_or_else(|| bad("must be an OpenAPI document (an object)"))?;
    let openapi = doc.get("openapi").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut parts = openapi.split('.');
    let ok_version = parts.next() == Some("3")
        && matches!(parts.next(), Some("0" | "1"))
        && parts.next().is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none();
    if !ok_version {
        return Err(bad("must declare `openapi: 3.0.x` or `3.1.x` (Swagger 2.0 is not supported; convert it first)"));
    }
    let info = doc.get("info").and_then(Value::as_object).ok_or_else(|| bad("needs an `info` object"))?;
    let title = info.get("title").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if title.is_empty() || title.chars().count() > 300 || info.get("version").and_then(Value::as_str).is_none() {
        return Err(bad("`info` needs a `title` (1-300 characters) and a `version` string"));
    }
    check_paths(doc.get("paths"), openapi.starts_with("3.0"))?;
    Ok(Checked { format, title: title.to_owned(), openapi, document })
}

fn check_paths(paths: Option<&Value>, required: bool) -> ApiResult<()> {
    let paths = match paths {
        None if !required => return Ok(()),
        None => return Err(bad("OpenAPI 3.0 needs a `paths` object")),
        Some(p) => p.as_object().ok_or_else(|| bad("`paths` must be an object"))?,
    };
    for (path, item) in paths {
        if !path.starts_with('/') {
            return Err(bad(format!("path {path:?} must start with /")));
        }
        let item = item.as_object().ok_or_else(|| bad(format!("path {path:?} must be an object")))?;
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let op = op.as_object().ok_or_else(|| bad(format!("{method} {path} must be an object")))?;
                check_parameters(op.get("parameters"), path)?;
            }
        }
        check_parameters(item.get("parameters"), path)?;
    }
    Ok(())
}

fn check_parameters(params: Option<&Value>, path: &str) -> ApiResult<()> {
    let Some(params) = params else { return Ok(()) };
    let list = params.as_array().ok_or_else(|| bad(format!("parameters of {path} must be a list")))?;
    for p in list {
        let p = p.as_object().ok_or_else(|| bad(format!("a parameter of {path} is not an object")))?;
        if p.contains_key("$ref") {
            continue;
        }
        let named = p.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        let place =
            p.get("in").and_then(Value::as_str).is_some_and(|i| matches!(i, "query" | "header" | "path" | "cookie"));
        if !named || !place {
            return Err(bad(format!(
                "every parameter of {path} needs a `name` and an `in` of query, header, path or cookie"
            )));
        }
    }
    Ok(())
}

fn api_parent(ids: &[Uuid]) -> ApiResult<(Parent, Option<Uuid>)> {
    let (parent, id) = ops::ids(Some(("api", "apis")), ids);
    Ok((parent.ok_or_else(|| ApiError::not_found("api"))?, id))
}

fn valid_label(l: &str) -> bool {
    let mut chars = l.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && l.len() <= 40
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Uploads a version of the API's OpenAPI document.
#[utoipa::path(post, path = "/apis/{api_id}/documents", tag = "apis",
    params(("api_id" = Uuid, Path, description = "API id")), request_body = NewDocument,
    responses((status = 201, description = "Stored", body = ApiDocument), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn create_document(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    Body(new): Body<NewDocument>,
) -> ApiResult<Tagged<ApiDocument>> {
    let (parent, _) = api_parent(&ids)?;
    let doc = store(&state, &who.actor(), parent.id, &new).await?;
    let version = doc.version;
    Ok(Tagged::created(doc, version))
}

/// Checks and stores a version of API `api_id`'s document, recording the change (the REST
/// upload and the admin UI's import).
pub async fn store(state: &AppState, who: &Actor, api_id: Uuid, new: &NewDocument) -> ApiResult<ApiDocument> {
    let parent = Parent { kind: "api", table: "apis", id: api_id };
    if !valid_label(&new.label) {
        return Err(ApiError::invalid_field(
            "label",
            "must be 1-40 letters, digits, . _ -, starting with a letter or digit",
        ));
    }
    let checked = check(&new.content)?;
    let mut tx = state.db().begin().await?;
    ops::ensure_parent(&mut tx, Some(parent)).await?;
    let sql = format!(
        "INSERT INTO api_documents (id, api_id, label, title, openapi, format, source, document, published)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    );
    let doc: ApiDocument = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(Uuid::now_v7())
        .bind(parent.id)
        .bind(&new.label)
        .bind(&checked.title)
        .bind(&checked.openapi)
        .bind(checked.format)
        .bind(&new.content)
        .bind(&checked.document)
        .bind(new.published)
        .fetch_one(&mut *tx)
        .await?;
    let change = Change::create("api_document", doc.id, serde_json::to_value(&doc)?).audit_only();
    change::record(&mut tx, who, change).await?;
    tx.commit().await?;
    Ok(doc)
}

/// The documents of an API, newest first (content left out).
#[utoipa::path(get, path = "/apis/{api_id}/documents", tag = "apis",
    params(("api_id" = Uuid, Path, description = "API id")),
    responses((status = 200, description = "The documents", body = Vec<ApiDocument>), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_documents(
    _: Viewer,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
) -> ApiResult<Json<Vec<ApiDocument>>> {
    let (parent, _) = api_parent(&ids)?;
    let mut conn = state.db().acquire().await?;
    ops::ensure_parent(&mut conn, Some(parent)).await?;
    let sql = format!("SELECT {COLUMNS} FROM api_documents WHERE api_id = $1 ORDER BY created_at DESC LIMIT 500");
    Ok(Json(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(parent.id).fetch_all(&mut *conn).await?))
}

async fn fetch(conn: &mut sqlx::PgConnection, ids: &[Uuid], lock: bool) -> ApiResult<ApiDocument> {
    let (parent, id) = api_parent(ids)?;
    let id = id.ok_or_else(|| ApiError::not_found("api_document"))?;
    ops::ensure_parent(conn, Some(parent)).await?;
    let lock = if lock { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {COLUMNS} FROM api_documents WHERE id = $1 AND api_id = $2{lock}");
    let doc: Option<ApiDocument> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(parent.id).fetch_optional(conn).await?;
    doc.ok_or_else(|| ApiError::not_found("api_document"))
}

/// One document with its parsed content.
#[utoipa::path(get, path = "/apis/{api_id}/documents/{id}", tag = "apis",
    params(("api_id" = Uuid, Path, description = "API id"), ("id" = Uuid, Path, description = "Document id")),
    responses((status = 200, description = "The document", body = ApiDocumentWithContent), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn get_document(
    _: Viewer,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
) -> ApiResult<Tagged<ApiDocumentWithContent>> {
    let mut conn = state.db().acquire().await?;
    let meta = fetch(&mut conn, &ids, false).await?;
    let (document,): (Value,) =
        sqlx::query_as("SELECT document FROM api_documents WHERE id = $1").bind(meta.id).fetch_one(&mut *conn).await?;
    let version = meta.version;
    Ok(Tagged::ok(ApiDocumentWithContent { meta, document }, version))
}

/// Publishes or unpublishes a document, or renames its label.
#[utoipa::path(patch, path = "/apis/{api_id}/documents/{id}", tag = "apis",
    params(("api_id" = Uuid, Path, description = "API id"), ("id" = Uuid, Path, description = "Document id"), crate::openapi::IfMatchHeader),
    request_body = DocumentPatch,
    responses((status = 200, description = "Changed", body = ApiDocument), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn patch_document(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    if_match: IfMatch,
    Body(patch): Body<DocumentPatch>,
) -> ApiResult<Tagged<ApiDocument>> {
    if patch.label.as_deref().is_some_and(|l| !valid_label(l)) {
        return Err(ApiError::invalid_field(
            "label",
            "must be 1-40 letters, digits, . _ -, starting with a letter or digit",
        ));
    }
    let mut tx = state.db().begin().await?;
    let current = fetch(&mut tx, &ids, true).await?;
    if_match.check(current.version)?;
    let sql = format!(
        "UPDATE api_documents SET published = coalesce($2, published), label = coalesce($3, label),
                version = version + 1, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    );
    let doc: ApiDocument = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(current.id)
        .bind(patch.published)
        .bind(&patch.label)
        .fetch_one(&mut *tx)
        .await?;
    let change = Change::update("api_document", doc.id, serde_json::to_value(&current)?, serde_json::to_value(&doc)?);
    change::record(&mut tx, &who.actor(), change.audit_only()).await?;
    tx.commit().await?;
    let version = doc.version;
    Ok(Tagged::ok(doc, version))
}

/// Deletes a document.
#[utoipa::path(delete, path = "/apis/{api_id}/documents/{id}", tag = "apis",
    params(("api_id" = Uuid, Path, description = "API id"), ("id" = Uuid, Path, description = "Document id"), crate::openapi::IfMatchHeader),
    responses((status = 204, description = "Deleted"), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn delete_document(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    if_match: IfMatch,
) -> ApiResult<axum::http::StatusCode> {
    let mut tx = state.db().begin().await?;
    let current = fetch(&mut tx, &ids, true).await?;
    if_match.check(current.version)?;
    sqlx::query("DELETE FROM api_documents WHERE id = $1").bind(current.id).execute(&mut *tx).await?;
    change::record(
        &mut tx,
        &who.actor(),
        Change::delete("api_document", current.id, serde_json::to_value(&current)?).audit_only(),
    )
    .await?;
    tx.commit().await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_are_checked() {
        let ok = check("openapi: 3.1.0\ninfo: {title: Weather, version: '1'}\npaths:\n  /a: {get: {responses: {}}}\n");
        assert_eq!(ok.map(|c| (c.format, c.title)).ok(), Some(("yaml", "Weather".to_owned())));
        let json = check(r#"{"openapi":"3.0.3","info":{"title":"T","version":"1"},"paths":{}}"#);
        assert_eq!(json.map(|c| c.format).ok(), Some("json"));
        for bad in [
            "swagger: '2.0'\ninfo: {title: T, version: '1'}\npaths: {}",
            "openapi: 3.2\ninfo: {title: T, version: '1'}",
            "openapi: 3.0.0\ninfo: {version: '1'}\npaths: {}",
            "openapi: 3.0.0\ninfo: {title: T, version: '1'}",
            "openapi: 3.1.0\ninfo: {title: T, version: '1'}\npaths: {a: {}}",
            "openapi: 3.1.0\ninfo: {title: T, version: '1'}\npaths: {/a: {get: {parameters: [{name: x, in: body}]}}}",
            "[1, 2]",
            "{ not json",
            ": : :",
        ] {
            assert!(check(bad).is_err(), "{bad:?} passed");
        }
    }
}
