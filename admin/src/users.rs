//! Admin users (owner only). The database guarantees at least one active owner remains
//! (`admin_users_last_owner_check`), so no sequence of requests can lock everyone out.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Owner, Role, password};
use crate::change::{self, Actor, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, IfMatch, Params, PathIds};
use crate::ops::{self, Tagged};
use crate::page::{Page, PageQuery};
use crate::resource::{self, ColumnWriter, Columns, Filter, Resource, eq};
use crate::secret::Secret;
use crate::state::AppState;
use crate::validate::{Validate, Violations, email_schema, validate};

/// The writable fields of an admin user (the password has its own endpoint).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminUserInput {
    #[schema(schema_with = email_schema)]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub display_name: String,
    pub role: Role,
    /// Disabled users cannot log in; their tokens stop working at once.
    #[serde(default)]
    pub disabled: bool,
}

impl Validate for AdminUserInput {
    fn validate(&self, v: &mut Violations) {
        v.email("email", &self.email).max_len("display_name", &self.display_name, 200);
    }
}

impl Columns for AdminUserInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("email", &self.email)
            .col("display_name", &self.display_name)
            .col("role", self.role)
            .col("disabled", self.disabled);
    }
}

/// A new admin user with an initial password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ops@example.com", "display_name": "Ops", "role": "editor", "password": "a long passphrase here"}))]
pub struct NewAdminUser {
    #[schema(schema_with = email_schema)]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 200)]
    pub display_name: String,
    pub role: Role,
    #[serde(default)]
    pub disabled: bool,
    /// 12 to 1024 characters.
    #[schema(min_length = 12, max_length = 1024, format = Password)]
    pub password: String,
}

impl NewAdminUser {
    /// The user's writable fields (all but the password).
    fn user(&self) -> AdminUserInput {
        let Self { email, display_name, role, disabled, .. } = self;
        AdminUserInput { email: email.clone(), display_name: display_name.clone(), role: *role, disabled: *disabled }
    }
}

struct UserWithHash<'a> {
    user: &'a AdminUserInput,
    hash: String,
}

impl Columns for UserWithHash<'_> {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        self.user.columns(w);
        w.col("password_hash", &self.hash);
    }
}

/// An admin user as shown (never the password hash).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct AdminUser {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for AdminUser {
    const KIND: &'static str = "admin_user";
    const TABLE: &'static str = "admin_users";
    const CONFIG: bool = false;
    type Input = AdminUserInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> AdminUserInput {
        AdminUserInput {
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role,
            disabled: self.disabled,
        }
    }
}

/// Filters of `GET /users`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminUserFilter {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

impl Filter for AdminUserFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "role", self.role);
        eq(qb, "disabled", self.disabled);
    }
}

/// Creates an admin user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewAdminUser,
    responses((status = 201, description = "Created", body = AdminUser), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn create_user(
    Owner(who): Owner,
    State(state): State<AppState>,
    Body(new): Body<NewAdminUser>,
) -> ApiResult<Tagged<AdminUser>> {
    let user = create(&state, &who.actor(), new).await?;
    let version = user.version;
    Ok(Tagged::created(user, version))
}

/// Creates an admin user with its initial password, recording the change (REST and UI).
pub async fn create(state: &AppState, who: &Actor, new: NewAdminUser) -> ApiResult<AdminUser> {
    let user = new.user();
    validate(&user)?;
    if !password::acceptable(&new.password) {
        return Err(ApiError::invalid_field("password", "must be 12 to 1024 characters"));
    }
    let hash = password::hash(Secret::new(new.password)).await.map_err(ApiError::internal)?;
    let mut tx = state.db().begin().await?;
    let row = UserWithHash { user: &user, hash };
    let user: AdminUser = resource::insert::<AdminUser>(&mut tx, Uuid::now_v7(), None, &row).await?;
    let change = Change::create(AdminUser::KIND, user.id, serde_json::to_value(&user)?).audit_only();
    change::record(&mut tx, who, change).await?;
    tx.commit().await?;
    Ok(user)
}

/// Lists admin users.
#[utoipa::path(get, path = "/users", tag = "users", params(PageQuery, AdminUserFilter),
    responses((status = 200, description = "One page", body = Page<AdminUser>), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn list_users(
    _: Owner,
    State(state): State<AppState>,
    Params(page): Params<PageQuery>,
    Params(filter): Params<AdminUserFilter>,
) -> ApiResult<Json<Page<AdminUser>>> {
    ops::list::<AdminUser>(&state, None, &filter, &page).await
}

fn user_id(ids: &[Uuid]) -> ApiResult<Uuid> {
    ids.first().copied().ok_or_else(|| ApiError::not_found(AdminUser::KIND))
}

/// Reads an admin user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "User id")),
    responses((status = 200, description = "The user", body = AdminUser), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn get_user(_: Owner, State(state): State<AppState>, PathIds(ids): PathIds) -> ApiResult<Tagged<AdminUser>> {
    ops::read::<AdminUser>(&state, None, user_id(&ids)?).await
}

/// Changes an admin user with a JSON merge patch (role, e-mail, name, disabled).
#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "User id"), crate::openapi::IfMatchHeader),
    request_body(content = AdminUserInput, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "Updated", body = AdminUser), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn patch_user(
    Owner(who): Owner,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    if_match: IfMatch,
    Body(patch): Body<serde_json::Value>,
) -> ApiResult<Tagged<AdminUser>> {
    ops::patch::<AdminUser>(&state, &who.actor(), None, user_id(&ids)?, if_match, patch).await
}

/// Deletes an admin user (not the last active owner).
#[utoipa::path(delete, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "User id"), crate::openapi::IfMatchHeader),
    responses((status = 204, description = "Deleted"), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn delete_user(
    Owner(who): Owner,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    if_match: IfMatch,
) -> ApiResult<axum::http::StatusCode> {
    ops::delete::<AdminUser>(&state, &who.actor(), None, user_id(&ids)?, if_match).await
}

/// A new password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    #[schema(min_length = 12, max_length = 1024, format = Password)]
    pub password: String,
}

/// Sets an admin user's password.
#[utoipa::path(post, path = "/users/{id}/password", tag = "users", params(("id" = Uuid, Path, description = "User id")),
    request_body = SetPassword,
    responses((status = 204, description = "Password changed"), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn set_password(
    Owner(who): Owner,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    Body(body): Body<SetPassword>,
) -> ApiResult<axum::http::StatusCode> {
    change_password(&state, &who.actor(), user_id(&ids)?, body).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Sets user `id`'s password, recording the change (REST and UI).
pub async fn change_password(state: &AppState, who: &Actor, id: Uuid, body: SetPassword) -> ApiResult<()> {
    if !password::acceptable(&body.password) {
        return Err(ApiError::invalid_field("password", "must be 12 to 1024 characters"));
    }
    let hash = password::hash(Secret::new(body.password)).await.map_err(ApiError::internal)?;
    let mut tx = state.db().begin().await?;
    let done = sqlx::query(
        "UPDATE admin_users SET password_hash = $2, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::not_found(AdminUser::KIND));
    }
    let change = Change::update(AdminUser::KIND, id, serde_json::Value::Null, serde_json::Value::Null);
    change::record(&mut tx, who, change.action("set_password").audit_only()).await?;
    tx.commit().await?;
    Ok(())
}
