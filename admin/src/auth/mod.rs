//! Admin authentication and authorisation: login tokens (JWT), personal access tokens
//! (hashed), roles. Handlers state the role they need by the extractor they take:
//! [`Viewer`], [`Editor`] or [`Owner`]; each authenticates and checks the role first.

pub mod jwt;
pub mod login;
pub mod password;
pub mod throttle;

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::change::Actor;
use crate::error::ApiError;
use crate::extract::RequestId;
use crate::resource::{ColumnWriter, Columns};
use crate::state::AppState;

/// Prefix of personal access tokens, so they are recognisable (and scannable) in the wild.
pub const PAT_PREFIX: &str = "tgpat_";

/// What an admin user may do. Ordered: each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also changes APIs, plans, consumers, keys, subscriptions, developers.
    Editor,
    /// Also manages admin users.
    Owner,
}

/// An authenticated admin user.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub email: String,
    pub role: Role,
    pub request_id: Option<String>,
}

impl Principal {
    /// The audit actor for changes made by this principal.
    pub fn actor(&self) -> Actor {
        Actor::admin(self.user_id, &self.email, self.request_id.clone())
    }
}

/// `count` random bytes as unpadded base64url after `prefix`.
pub fn random_token(prefix: &str, count: usize) -> String {
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(count)))
}

/// `count` bytes from the operating system's RNG.
pub fn random_bytes(count: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; count];
    // The OS RNG failing is unrecoverable for a security service; getrandom documents it
    // as practically impossible on Linux after boot.
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::error!(error = %e, "operating system RNG failed");
        std::process::abort();
    }
    bytes
}

/// SHA-256 of a high-entropy secret (API keys, access tokens): fast to look up, and
/// useless to a thief of the database because the secret space cannot be enumerated.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Random bytes in a generated credential (API key, access token): 256 bits.
const SECRET_BYTES: usize = 32;
/// Characters of a credential kept for display, after its type prefix.
const DISPLAY_CHARS: usize = 6;

/// A newly generated credential: the secret (returned once, never stored), and the columns
/// stored for it — the input's, the display prefix and the secret's SHA-256.
pub struct Issued<'a, I> {
    input: &'a I,
    pub secret: String,
    prefix: String,
    hash: Vec<u8>,
    hash_column: &'static str,
}

impl<'a, I: Columns> Issued<'a, I> {
    /// Generates a secret starting with `type_prefix`; its hash goes to `hash_column`.
    pub fn new(input: &'a I, type_prefix: &str, hash_column: &'static str) -> Self {
        Self::with_secret(input, random_token(type_prefix, SECRET_BYTES), type_prefix, hash_column)
    }

    /// An API key in the checksummed format of [`tollgate_gateway::key_format`].
    pub fn api_key(input: &'a I) -> Self {
        use tollgate_gateway::key_format;
        let body: String = random_bytes(key_format::BODY_LEN * 2)
            .into_iter()
            // Below 248 = 4 × 62: every digit equally likely.
            .filter(|&b| b < 248)
            .map(key_format::base62_digit)
            .take(key_format::BODY_LEN)
            .collect();
        // 80 bytes give 40 accepted ones unless the RNG is broken; retry rather than shorten.
        match key_format::assemble(&body) {
            Some(secret) => Self::with_secret(input, secret, key_format::PREFIX, "key_hash"),
            None => Self::api_key(input),
        }
    }

    fn with_secret(input: &'a I, secret: String, type_prefix: &str, hash_column: &'static str) -> Self {
        let prefix = secret.chars().take(type_prefix.len() + DISPLAY_CHARS).collect();
        Self { input, hash: secret_hash(&secret), secret, prefix, hash_column }
    }
}

impl<I: Columns> Columns for Issued<'_, I> {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        self.input.columns(w);
        w.col("prefix", &self.prefix).col(self.hash_column, &self.hash);
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    role: Role,
}

async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
    let RequestId(request_id) = RequestId::from_request_parts(parts, state).await.unwrap_or_default();
    let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let token = header
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
    let user = if token.starts_with(PAT_PREFIX) {
        user_by_pat(state, token).await?
    } else {
        user_by_jwt(state, token).await?
    };
    let user = user.ok_or_else(|| ApiError::unauthorized("the token is invalid, expired or revoked"))?;
    Ok(Principal { user_id: user.id, email: user.email, role: user.role, request_id })
}

async fn user_by_jwt(state: &AppState, token: &str) -> Result<Option<UserRow>, ApiError> {
    let Some(claims) = jwt::verify(state.config().jwt_secret.expose().as_bytes(), token) else {
        return Ok(None);
    };
    // A token of an earlier generation was issued before a password change or before the
    // user was disabled or re-enabled: revoked.
    let row = sqlx::query_as(
        "SELECT id, email, role FROM admin_users WHERE id = $1 AND NOT disabled AND token_generation = $2",
    )
    .bind(claims.sub)
    .bind(claims.tgen)
    .fetch_optional(state.db())
    .await?;
    Ok(row)
}

async fn user_by_pat(state: &AppState, token: &str) -> Result<Option<UserRow>, ApiError> {
    let row = sqlx::query_as(
        "UPDATE admin_tokens t SET last_used_at = now()
         FROM admin_users u
         WHERE t.token_hash = $1 AND u.id = t.admin_user_id AND NOT u.disabled
           AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
         RETURNING u.id, u.email, u.role",
    )
    .bind(secret_hash(token))
    .fetch_optional(state.db())
    .await?;
    Ok(row)
}

async fn require(parts: &mut Parts, state: &AppState, role: Role) -> Result<Principal, ApiError> {
    let p = authenticate(parts, state).await?;
    if p.role < role {
        return Err(ApiError::forbidden(format!("this needs the {role:?} role or higher").to_lowercase()));
    }
    Ok(p)
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                require(parts, state, $role).await.map($name)
            }
        }
    };
}

role_extractor!(
    /// Any authenticated admin user.
    Viewer,
    Role::Viewer
);
role_extractor!(
    /// An editor or owner.
    Editor,
    Role::Editor
);
role_extractor!(
    /// An owner.
    Owner,
    Role::Owner
);
