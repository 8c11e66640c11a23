//! First-run seeding: an owner account so a fresh installation can be logged into.

use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::password;
use crate::change::{self, Actor, Change};
use crate::secret::Secret;

/// The owner account created by [`ensure_first_owner`]; its password is shown once.
#[derive(Debug)]
pub struct SeededOwner {
    pub email: String,
    pub password: Secret,
}

/// Creates an owner `email` with a random password if no admin user exists yet.
/// Returns `None` when the database already has admin users.
pub async fn ensure_first_owner(pool: &PgPool, email: &str) -> anyhow::Result<Option<SeededOwner>> {
    let mut tx = pool.begin().await?;
    // Serialise concurrent first starts (two nodes booting at once) on one lock.
    sqlx::query("SELECT pg_advisory_xact_lock(7465656473)").execute(&mut *tx).await?;
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM admin_users").fetch_one(&mut *tx).await?;
    if count > 0 {
        return Ok(None);
    }
    let plain = crate::auth::random_token("", 18);
    let hash = password::hash(Secret::new(plain.clone())).await?;
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO admin_users (id, email, display_name, password_hash, role) VALUES ($1, $2, 'Owner', $3, 'owner')",
    )
    .bind(id)
    .bind(email)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    let after = serde_json::json!({ "id": id, "email": email, "role": "owner" });
    let change = Change::create("admin_user", id, after).audit_only();
    change::record(&mut tx, &Actor::system(), change).await?;
    tx.commit().await?;
    Ok(Some(SeededOwner { email: email.to_owned(), password: Secret::new(plain) }))
}
