//! Personal access tokens: long-lived bearer tokens for automation (CI, GitOps), owned by
//! the admin user who creates them, with that user's role. Shown once; stored hashed.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{self, PAT_PREFIX, Principal, Viewer};
use crate::change::{self, Actor, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, IfMatch, Params, PathIds};
use crate::ops::{self, Parent, Tagged};
use crate::page::{Page, PageQuery};
use crate::resource::{self, ColumnWriter, Columns, Resource};
use crate::state::AppState;
use crate::validate::{NOT_BLANK_PATTERN, Validate, Violations, string_schema, validate};

fn name_schema() -> utoipa::openapi::schema::ObjectBuilder {
    string_schema(NOT_BLANK_PATTERN, 100).description(Some("What the token is for; not blank."))
}

/// The writable fields of a token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ci-deploy", "expires_at": "2027-06-01T00:00:00Z"}))]
pub struct TokenInput {
    /// What the token is for; not blank.
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl Validate for TokenInput {
    fn validate(&self, v: &mut Violations) {
        v.not_blank("name", &self.name, 100).check(
            self.expires_at.is_none_or(|t| t > OffsetDateTime::now_utc()),
            "expires_at",
            "must be in the future",
        );
    }
}

impl Columns for TokenInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("name", &self.name).col("expires_at", self.expires_at);
    }
}

/// A personal access token as shown (never the secret).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct AccessToken {
    pub id: Uuid,
    pub admin_user_id: Uuid,
    pub name: String,
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for AccessToken {
    const KIND: &'static str = "admin_token";
    const TABLE: &'static str = "admin_tokens";
    const PARENT: Option<&'static str> = Some("admin_user_id");
    const CONFIG: bool = false;
    type Input = TokenInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> TokenInput {
        TokenInput { name: self.name.clone(), expires_at: self.expires_at }
    }
}

/// A new token with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: AccessToken,
    /// The bearer token; store it now, it cannot be read again.
    pub secret: String,
}

fn mine(p: &Principal) -> Option<Parent> {
    Some(Parent { kind: "admin_user", table: "admin_users", id: p.user_id })
}

/// Creates a personal access token for the caller, with the caller's role.
#[utoipa::path(post, path = "/tokens", tag = "auth", request_body = TokenInput,
    responses((status = 201, description = "Created; `secret` is shown only now", body = CreatedToken), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn create_token(
    Viewer(who): Viewer,
    State(state): State<AppState>,
    Body(input): Body<TokenInput>,
) -> ApiResult<Tagged<CreatedToken>> {
    let created = issue(&state, &who.actor(), who.user_id, &input).await?;
    let version = created.token.version;
    Ok(Tagged::created(created, version))
}

/// Issues a personal access token for admin user `user_id` (REST and UI).
pub async fn issue(state: &AppState, who: &Actor, user_id: Uuid, input: &TokenInput) -> ApiResult<CreatedToken> {
    validate(input)?;
    let new = auth::Issued::new(input, PAT_PREFIX, "token_hash");
    let mut tx = state.db().begin().await?;
    let token: AccessToken = resource::insert::<AccessToken>(&mut tx, Uuid::now_v7(), Some(user_id), &new).await?;
    let change = Change::create(AccessToken::KIND, token.id, serde_json::to_value(&token)?).audit_only();
    change::record(&mut tx, who, change).await?;
    tx.commit().await?;
    Ok(CreatedToken { token, secret: new.secret })
}

/// Lists the caller's unrevoked tokens.
#[utoipa::path(get, path = "/tokens", tag = "auth", params(PageQuery),
    responses((status = 200, description = "One page", body = Page<AccessToken>), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_tokens(
    Viewer(who): Viewer,
    State(state): State<AppState>,
    Params(page): Params<PageQuery>,
) -> ApiResult<Json<Page<AccessToken>>> {
    ops::list::<AccessToken>(&state, mine(&who), &(), &page).await
}

/// Deletes (revokes) one of the caller's tokens.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "auth", params(("id" = Uuid, Path, description = "Token id"), crate::openapi::IfMatchHeader),
    responses((status = 204, description = "Deleted"), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn delete_token(
    Viewer(who): Viewer,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    if_match: IfMatch,
) -> ApiResult<axum::http::StatusCode> {
    let id = ids.first().copied().ok_or_else(|| ApiError::not_found(AccessToken::KIND))?;
    ops::delete::<AccessToken>(&state, &who.actor(), mine(&who), id, if_match).await
}
