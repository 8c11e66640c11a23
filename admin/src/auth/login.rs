//! `POST /auth/login` (password → short-lived token, with brute-force throttling) and
//! `GET /me`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Role, Viewer, jwt, password};
use crate::change::{self, Actor, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, RequestId};
use crate::secret::Secret;
use crate::state::AppState;

/// Credentials of an admin user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "admin@localhost", "password": "correct horse battery staple"}))]
pub struct LoginRequest {
    #[schema(max_length = 254)]
    pub email: String,
    #[schema(max_length = 1024, format = Password)]
    pub password: String,
}

/// A login token: send it as `Authorization: Bearer <token>`.
#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct Account {
    id: Uuid,
    email: String,
    password_hash: String,
    disabled: bool,
    token_generation: i64,
}

/// Exchanges an e-mail and password for a short-lived token. After repeated failures for
/// an account from one address, or from one address for any accounts, answers 429 with
/// `Retry-After`.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 429, description = "Too many failed attempts", body = crate::error::Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        crate::openapi::ApiErrors))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RequestId(request_id): RequestId,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let ip = peer.ip();
    // The attempt is counted before the (slow) password check, so parallel attempts
    // cannot all be checked before the first failure is counted.
    let reservation = state.throttle().reserve(&req.email, ip).map_err(ApiError::too_many_attempts)?;
    let account: Option<Account> = sqlx::query_as(
        "SELECT id, email, password_hash, disabled, token_generation FROM admin_users WHERE lower(email) = lower($1)",
    )
    .bind(&req.email)
    .fetch_optional(state.db())
    .await?;
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let matches = password::verify(Secret::new(req.password), stored).await.map_err(ApiError::internal)?;
    let account = match account {
        Some(a) if matches && !a.disabled => a,
        _ => {
            tracing::warn!(client = %ip, "admin login failed");
            return Err(ApiError::unauthorized("invalid e-mail or password"));
        }
    };
    state.throttle().succeeded(reservation);
    let ttl = state.config().token_ttl;
    let secret = state.config().jwt_secret.expose().as_bytes();
    let (token, expires_at) =
        jwt::issue(secret, account.id, account.token_generation, ttl).map_err(ApiError::internal)?;
    let mut tx = state.db().begin().await?;
    let actor = Actor::admin(account.id, &account.email, request_id);
    let change = Change::create("session", account.id, serde_json::json!({"client": ip.to_string()}))
        .action("login")
        .audit_only();
    change::record(&mut tx, &actor, change).await?;
    tx.commit().await?;
    Ok(Json(LoginResponse { token, token_type: "Bearer", expires_in: ttl.as_secs() as i64, expires_at }))
}

/// The authenticated admin user.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    pub role: Role,
}

/// Who the bearer token belongs to, and its role.
#[utoipa::path(get, path = "/me", tag = "auth",
    responses((status = 200, description = "The caller", body = Me), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn me(Viewer(p): Viewer) -> Json<Me> {
    Json(Me { id: p.user_id, email: p.email, role: p.role })
}
