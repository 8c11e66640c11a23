//! One-time links mailed to developers (e-mail confirmation, password reset, e-mail change):
//! 256 random bits in the link, their SHA-256 in `developer_tokens`, used at most once and
//! only before they expire.

use sqlx::PgConnection;
use time::OffsetDateTime;
use tollgate_admin::auth::{random_token, secret_hash};
use uuid::Uuid;

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
    ChangeEmail,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
            Purpose::ChangeEmail => "change_email",
        }
    }

    /// How long a link works.
    fn lifetime(self) -> time::Duration {
        match self {
            Purpose::VerifyEmail => time::Duration::days(2),
            Purpose::ResetPassword => time::Duration::hours(1),
            Purpose::ChangeEmail => time::Duration::days(1),
        }
    }
}

/// Issues a link token for `developer`; earlier unused tokens of the same purpose stop working.
pub async fn issue(
    conn: &mut PgConnection,
    developer: Uuid,
    purpose: Purpose,
    new_email: Option<&str>,
) -> sqlx::Result<String> {
    sqlx::query("DELETE FROM developer_tokens WHERE developer_id = $1 AND purpose = $2")
        .bind(developer)
        .bind(purpose.as_str())
        .execute(&mut *conn)
        .await?;
    let token = random_token("", 32);
    sqlx::query(
        "INSERT INTO developer_tokens (token_hash, developer_id, purpose, new_email, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(secret_hash(&token))
    .bind(developer)
    .bind(purpose.as_str())
    .bind(new_email)
    .bind(OffsetDateTime::now_utc() + purpose.lifetime())
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

/// Uses `token` for `purpose`: the developer and the new e-mail it carries, or `None` when
/// the token is unknown, used, expired or for something else.
pub async fn consume(
    conn: &mut PgConnection,
    token: &str,
    purpose: Purpose,
) -> sqlx::Result<Option<(Uuid, Option<String>)>> {
    sqlx::query_as(
        "UPDATE developer_tokens SET used_at = now()
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
         RETURNING developer_id, new_email",
    )
    .bind(secret_hash(token))
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await
}

/// Whether `token` would be accepted for `purpose` (to show its form), without using it.
pub async fn valid(conn: &mut PgConnection, token: &str, purpose: Purpose) -> sqlx::Result<bool> {
    let row: Option<(i32,)> = sqlx::query_as(
        "SELECT 1 FROM developer_tokens WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()",
    )
    .bind(secret_hash(token))
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}
