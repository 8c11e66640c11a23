//! Short-lived admin login tokens: HS256 JWTs with every validation field set explicitly.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

const ISSUER: &str = "tollgate-admin";
const AUDIENCE: &str = "tollgate-admin-api";

/// Claims of an admin login token. The role is not in the token: it is read from the
/// database on every request, so demotions and disabling take effect at once.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: Uuid,
    /// The user's token generation when the token was issued; a password change and
    /// disabling or re-enabling the user move it on, which revokes every older token.
    /// Tokens from before generations existed read as 0, the column's starting value.
    #[serde(default)]
    pub tgen: i64,
}

/// Issues a token for `user` at token generation `generation`, valid for `ttl`; returns it
/// with its expiry.
pub fn issue(
    secret: &[u8],
    user: Uuid,
    generation: i64,
    ttl: std::time::Duration,
) -> anyhow::Result<(String, OffsetDateTime)> {
    let now = OffsetDateTime::now_utc();
    let exp = now + ttl;
    let claims = Claims {
        sub: user,
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        iat: now.unix_timestamp(),
        nbf: now.unix_timestamp(),
        exp: exp.unix_timestamp(),
        jti: Uuid::new_v4(),
        tgen: generation,
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))?;
    Ok((token, exp))
}

/// Verifies signature (HS256 only), issuer, audience, `exp` and `nbf` (30 s leeway).
pub fn verify(secret: &[u8], token: &str) -> Option<Claims> {
    let mut v = Validation::new(Algorithm::HS256);
    v.algorithms = vec![Algorithm::HS256];
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.leeway = 30;
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &v).ok().map(|d| d.claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_rejections() -> anyhow::Result<()> {
        let user = Uuid::now_v7();
        let (token, _) = issue(KEY, user, 7, std::time::Duration::from_secs(60))?;
        assert_eq!(verify(KEY, &token).map(|c| (c.sub, c.tgen)), Some((user, 7)));
        assert!(verify(b"another-key-another-key-another-k", &token).is_none());
        let mut tampered = token.clone();
        tampered.push('x');
        assert!(verify(KEY, &tampered).is_none());
        // alg=none with the same claims
        let parts: Vec<&str> = token.split('.').collect();
        let none_header =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts.get(1).copied().unwrap_or_default());
        assert!(verify(KEY, &unsigned).is_none());
        Ok(())
    }
}
