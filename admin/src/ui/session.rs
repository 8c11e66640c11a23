//! Browser sessions of the portal and the admin UI, kept in PostgreSQL (`web_sessions`).
//! The cookie holds 256 random bits; the table holds only their SHA-256, so a copy of the
//! table opens no session. A session ends at its absolute expiry, after `idle` without a
//! request, at logout, or when its account logs out everywhere (or changes its password).
//! A new id is issued at every login (no fixation).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::{random_token, secret_hash};

/// How often `last_seen_at` is written back (a page view within this is not a write).
const TOUCH_EVERY: time::Duration = time::Duration::seconds(60);

/// Who a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Developer(Uuid),
    Admin(Uuid),
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id_hash: Vec<u8>,
    pub subject: Subject,
    /// The synchronizer token every form of this session must carry.
    pub csrf: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Session lifetimes and the cookie's name and attributes.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    pub cookie: &'static str,
    /// Ends a session this long after its last request.
    pub idle: Duration,
    /// Ends a session this long after login, whatever happens.
    pub absolute: Duration,
    /// Mark cookies `Secure` (the face is served over HTTPS).
    pub secure: bool,
}

/// The sessions of one face.
#[derive(Clone)]
pub struct SessionStore {
    db: PgPool,
    policy: SessionPolicy,
}

#[derive(sqlx::FromRow)]
struct Row {
    id_hash: Vec<u8>,
    developer_id: Option<Uuid>,
    admin_user_id: Option<Uuid>,
    csrf_token: String,
    created_at: OffsetDateTime,
    last_seen_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl SessionStore {
    pub fn new(db: PgPool, policy: SessionPolicy) -> Self {
        Self { db, policy }
    }

    /// Starts a session for `subject`; returns the cookie value and the session.
    pub async fn start(&self, subject: Subject, client_ip: &str, user_agent: &str) -> sqlx::Result<(String, Session)> {
        let id = random_token("", 32);
        let csrf = random_token("", 32);
        let now = OffsetDateTime::now_utc();
        let expires_at = now + self.policy.absolute;
        let (developer, admin) = match subject {
            Subject::Developer(d) => (Some(d), None),
            Subject::Admin(a) => (None, Some(a)),
        };
        let ua: String = user_agent.chars().take(300).collect();
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, developer_id, admin_user_id, csrf_token, client_ip, user_agent, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(secret_hash(&id))
        .bind(developer)
        .bind(admin)
        .bind(&csrf)
        .bind(client_ip)
        .bind(ua)
        .bind(expires_at)
        .execute(&self.db)
        .await?;
        let session = Session { id_hash: secret_hash(&id), subject, csrf, created_at: now, expires_at };
        Ok((id, session))
    }

    /// The live session the request's cookie names, if any; refreshes its idle timer.
    pub async fn load(&self, headers: &HeaderMap) -> sqlx::Result<Option<Session>> {
        let Some(id) = cookie(headers, self.policy.cookie) else { return Ok(None) };
        let row: Option<Row> = sqlx::query_as("SELECT * FROM web_sessions WHERE id_hash = $1")
            .bind(secret_hash(id))
            .fetch_optional(&self.db)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let now = OffsetDateTime::now_utc();
        if row.expires_at <= now || row.last_seen_at + self.policy.idle <= now {
            self.end_hash(&row.id_hash).await?;
            return Ok(None);
        }
        if now - row.last_seen_at >= TOUCH_EVERY {
            sqlx::query("UPDATE web_sessions SET last_seen_at = now() WHERE id_hash = $1")
                .bind(&row.id_hash)
                .execute(&self.db)
                .await?;
        }
        let subject = match (row.developer_id, row.admin_user_id) {
            (Some(d), _) => Subject::Developer(d),
            (None, Some(a)) => Subject::Admin(a),
            (None, None) => return Ok(None),
        };
        Ok(Some(Session {
            id_hash: row.id_hash,
            subject,
            csrf: row.csrf_token,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }))
    }

    /// Ends one session.
    pub async fn end(&self, session: &Session) -> sqlx::Result<()> {
        self.end_hash(&session.id_hash).await
    }

    async fn end_hash(&self, id_hash: &[u8]) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1").bind(id_hash).execute(&self.db).await?;
        Ok(())
    }

    /// Ends every session of `subject` but `keep` (logout everywhere, password change).
    /// Runs on `conn` so it can share the caller's transaction.
    pub async fn end_all(conn: &mut sqlx::PgConnection, subject: Subject, keep: Option<&[u8]>) -> sqlx::Result<u64> {
        let (column, id) = match subject {
            Subject::Developer(d) => ("developer_id", d),
            Subject::Admin(a) => ("admin_user_id", a),
        };
        let sql = format!("DELETE FROM web_sessions WHERE {column} = $1 AND ($2::bytea IS NULL OR id_hash <> $2)");
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(keep).execute(conn).await?;
        Ok(done.rows_affected())
    }

    /// Deletes expired sessions (run now and then).
    pub async fn sweep(&self) -> sqlx::Result<u64> {
        let idle = time::Duration::try_from(self.policy.idle).unwrap_or(time::Duration::DAY);
        let done = sqlx::query("DELETE FROM web_sessions WHERE expires_at <= now() OR last_seen_at <= $1")
            .bind(OffsetDateTime::now_utc() - idle)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected())
    }

    /// The `Set-Cookie` value that hands the browser session `id`.
    pub fn set_cookie(&self, id: &str) -> HeaderValue {
        let max_age = self.policy.absolute.as_secs();
        cookie_header(self.policy.cookie, id, Some(max_age), self.policy.secure)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        cookie_header(self.policy.cookie, "", Some(0), self.policy.secure)
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, `Secure` when asked. `value`
/// must be cookie-safe (base64url here); anything else gives an empty cookie.
pub fn cookie_header(name: &str, value: &str, max_age: Option<u64>, secure: bool) -> HeaderValue {
    let value = if value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') { value } else { "" };
    let mut s = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        s.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        s.push_str("; Secure");
    }
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The value of cookie `name` in the request, if present and non-empty.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_written_safely() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; tg_s=abc_-9; b=2"));
        assert_eq!(cookie(&h, "tg_s"), Some("abc_-9"));
        assert_eq!(cookie(&h, "tg"), None);
        let set = cookie_header("tg_s", "x;y", Some(5), true);
        assert_eq!(set.to_str().ok(), Some("tg_s=; Path=/; HttpOnly; SameSite=Lax; Max-Age=5; Secure"));
    }
}
