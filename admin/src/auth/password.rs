//! Argon2id password hashing, always off the async executor.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};

use crate::secret::Secret;

/// A hash of a random password, verified against when an account does not exist so that
/// "no such user" and "wrong password" take the same time.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$7tKkkw2Ff5xH6L0Fq1c9kR0xT8Vn6Yx8kFQH8Gk0ZlI";

/// Hashes `password` with argon2id (default parameters: m=19 MiB, t=2, p=1).
pub async fn hash(password: Secret) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await?
}

/// Whether `password` matches `stored` (a PHC string). With `stored = None` a dummy hash is
/// checked and `false` returned, costing the same time as a real check.
pub async fn verify(password: Secret, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let real = stored.is_some();
        let phc = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&phc).map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
        let ok = Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok();
        Ok(real && ok)
    })
    .await?
}

/// Password policy: 12 to 1024 characters (long passphrases welcome, no composition rules,
/// as NIST SP 800-63B recommends).
pub fn acceptable(password: &str) -> bool {
    (12..=1024).contains(&password.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_fail() -> anyhow::Result<()> {
        let h = hash(Secret::new("correct horse battery")).await?;
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(Secret::new("correct horse battery"), Some(h.clone())).await?);
        assert!(!verify(Secret::new("wrong horse battery"), Some(h)).await?);
        assert!(!verify(Secret::new("anything"), None).await?);
        Ok(())
    }
}
