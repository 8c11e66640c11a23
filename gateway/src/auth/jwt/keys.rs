//! Verification keys, each bound to one algorithm class at load time.
//!
//! The class is what stops key confusion: an HMAC class only ever holds raw secret bytes
//! from the operator, and an RSA/EC/Ed key can only verify algorithms of its own class, so
//! a public key is never fed to HMAC whatever the token's `alg` says.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::JwtError;

/// Key material of a static key.
#[derive(Clone)]
pub enum KeyMaterial {
    /// An HMAC secret (HS256/384/512 only), at least as long as the hash output.
    Secret(Vec<u8>),
    /// A PEM public key (`BEGIN PUBLIC KEY` / `BEGIN RSA PUBLIC KEY`) for RS*/PS*/ES*/EdDSA.
    Pem(String),
    /// A JWK (public key, or `oct` for HMAC).
    Jwk(Box<Jwk>),
}

impl fmt::Debug for KeyMaterial {
    // Secrets never reach logs; public keys are shown only by kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Secret(_) => f.write_str("Secret(<redacted>)"),
            Self::Pem(_) => f.write_str("Pem(..)"),
            Self::Jwk(_) => f.write_str("Jwk(..)"),
        }
    }
}

/// A key from configuration, bound to the algorithm it was issued for.
#[derive(Debug, Clone)]
pub struct StaticKey {
    /// Matches the token's `kid`; a key without one matches any `kid`.
    pub kid: Option<String>,
    /// The algorithm of the key: tokens must use exactly this algorithm (a PS512 key does
    /// not verify PS256, an RSA key never verifies HS256).
    pub alg: Algorithm,
    /// The key itself.
    pub material: KeyMaterial,
}

/// Which token algorithms a key may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyClass {
    Hmac,
    RsaPkcs1,
    RsaPss,
    /// An RSA key from a JWKS without `alg`: RS* and PS*.
    RsaAny,
    P256,
    P384,
    Ed25519,
}

impl KeyClass {
    pub(crate) fn of(alg: Algorithm) -> Self {
        use Algorithm as A;
        match alg {
            A::HS256 | A::HS384 | A::HS512 => Self::Hmac,
            A::RS256 | A::RS384 | A::RS512 => Self::RsaPkcs1,
            A::PS256 | A::PS384 | A::PS512 => Self::RsaPss,
            A::ES256 => Self::P256,
            A::ES384 => Self::P384,
            _ => Self::Ed25519,
        }
    }

    pub(crate) fn accepts(self, alg: Algorithm) -> bool {
        let other = Self::of(alg);
        match self {
            Self::RsaAny => matches!(other, Self::RsaPkcs1 | Self::RsaPss),
            _ => self == other,
        }
    }
}

/// A loaded key: ready to verify the algorithms its class accepts.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    pub class: KeyClass,
    /// The one algorithm this key verifies, when its configuration or JWK names one.
    pub pinned: Option<Algorithm>,
    pub key: DecodingKey,
}

impl VerifyKey {
    /// Whether a token signed with `alg` may be checked with this key.
    pub(crate) fn accepts(&self, alg: Algorithm) -> bool {
        self.pinned.map_or_else(|| self.class.accepts(alg), |pinned| pinned == alg)
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("class", &self.class)
            .field("pinned", &self.pinned)
            .finish()
    }
}

/// Loads a configured key, checking that its material fits its algorithm.
pub(crate) fn load_static(key: &StaticKey) -> Result<VerifyKey, &'static str> {
    let class = KeyClass::of(key.alg);
    let decoding = match (&key.material, class) {
        (KeyMaterial::Secret(s), KeyClass::Hmac) => hmac_secret(s, key.alg)?,
        (KeyMaterial::Secret(_), _) => return Err("a raw secret is only valid for HS*"),
        (KeyMaterial::Pem(_), KeyClass::Hmac) => return Err("HS* keys must be raw secrets"),
        (KeyMaterial::Pem(pem), _) => pem_key(pem.as_bytes(), class)?,
        (KeyMaterial::Jwk(jwk), _) => jwk_key(jwk, key.alg)?,
    };
    Ok(VerifyKey { kid: key.kid.clone(), class, pinned: Some(key.alg), key: decoding })
}

fn hmac_secret(secret: &[u8], alg: Algorithm) -> Result<DecodingKey, &'static str> {
    // RFC 7518 §3.2: the key must be at least as long as the hash output.
    let min = match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    };
    if secret.len() < min {
        return Err("HMAC secret shorter than the hash output");
    }
    // A PEM pasted as a secret is the RS→HS confusion attack set up by configuration.
    if secret.starts_with(b"-----BEGIN") {
        return Err("HMAC secret looks like a PEM key");
    }
    Ok(DecodingKey::from_secret(secret))
}

fn pem_key(pem: &[u8], class: KeyClass) -> Result<DecodingKey, &'static str> {
    let key = match class {
        KeyClass::RsaPkcs1 | KeyClass::RsaPss | KeyClass::RsaAny => DecodingKey::from_rsa_pem(pem),
        KeyClass::P256 | KeyClass::P384 => DecodingKey::from_ec_pem(pem),
        KeyClass::Ed25519 => DecodingKey::from_ed_pem(pem),
        KeyClass::Hmac => return Err("HS* keys must be raw secrets"),
    };
    key.map_err(|_| "PEM key does not parse for this algorithm")
}

fn jwk_key(jwk: &Jwk, alg: Algorithm) -> Result<DecodingKey, &'static str> {
    check_jwk_use(jwk)?;
    if let Some(jwk_alg) = jwk.common.key_algorithm {
        let jwk_alg = Algorithm::try_from(jwk_alg).map_err(|_| "JWK alg is not a JWS algorithm")?;
        if jwk_alg != alg {
            return Err("JWK alg differs from the key's alg");
        }
    }
    if jwk_class(jwk).is_none_or(|c| !c.accepts(alg)) {
        return Err("JWK type or curve does not fit the key's alg");
    }
    if let AlgorithmParameters::OctetKey(p) = &jwk.algorithm {
        let bytes = URL_SAFE_NO_PAD.decode(&p.value).map_err(|_| "JWK k is not base64url")?;
        return hmac_secret(&bytes, alg);
    }
    DecodingKey::from_jwk(jwk).map_err(|_| "JWK does not parse")
}

/// Refuses keys published for encryption only.
fn check_jwk_use(jwk: &Jwk) -> Result<(), &'static str> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("JWK use is not sig");
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("JWK key_ops lacks verify");
    }
    Ok(())
}

/// The class a JWK's type and curve allow, ignoring its `alg`.
fn jwk_class(jwk: &Jwk) -> Option<KeyClass> {
    match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => Some(KeyClass::Hmac),
        AlgorithmParameters::RSA(_) => Some(KeyClass::RsaAny),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(KeyClass::P256),
            EllipticCurve::P384 => Some(KeyClass::P384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Some(KeyClass::Ed25519),
        _ => None,
    }
}

/// Loads a key from a fetched JWKS. Symmetric (`oct`) keys are never taken from a URL; a
/// key's `alg`, when present, pins it to that algorithm, else its type and curve decide.
pub(crate) fn load_jwks_key(jwk: &Jwk) -> Option<VerifyKey> {
    check_jwk_use(jwk).ok()?;
    let class = jwk_class(jwk)?;
    if class == KeyClass::Hmac {
        return None;
    }
    let pinned = match jwk.common.key_algorithm {
        Some(alg) => Some(Algorithm::try_from(alg).ok().filter(|a| class.accepts(*a))?),
        None => None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyKey { kid: jwk.common.key_id.clone(), class, pinned, key })
}

/// The keys a validator may use, with the `kid` and algorithm-class selection rules.
#[derive(Debug, Default)]
pub(crate) struct KeyStore {
    pub keys: Vec<VerifyKey>,
}

impl KeyStore {
    /// The keys that may verify a token with this `kid` and `alg`: a key with a `kid` matches
    /// only that `kid`, a key without one matches any; then the class must accept `alg`.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<&VerifyKey>, JwtError> {
        let mut by_kid = self.keys.iter().filter(|k| match (kid, k.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        });
        let mut found_kid = false;
        let fit: Vec<&VerifyKey> = by_kid.by_ref().inspect(|_| found_kid = true).filter(|k| k.accepts(alg)).collect();
        match (found_kid, fit.is_empty()) {
            (false, _) => Err(JwtError::UnknownKid),
            (true, true) => Err(JwtError::NoMatchingKey),
            (true, false) => Ok(fit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_bind_algorithms() {
        assert!(KeyClass::RsaPss.accepts(Algorithm::PS384));
        assert!(!KeyClass::RsaPss.accepts(Algorithm::RS256));
        assert!(KeyClass::RsaAny.accepts(Algorithm::PS512));
        assert!(!KeyClass::RsaAny.accepts(Algorithm::HS256));
        assert!(!KeyClass::P256.accepts(Algorithm::ES384));
        assert!(!KeyClass::Hmac.accepts(Algorithm::RS256));
    }

    #[test]
    fn material_must_fit_the_algorithm() {
        let key = |alg, material| StaticKey { kid: None, alg, material };
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let secret = KeyMaterial::Secret(vec![7; 32]);
        assert!(load_static(&key(Algorithm::HS256, secret.clone())).is_ok());
        assert!(load_static(&key(Algorithm::HS512, secret.clone())).is_err());
        assert!(load_static(&key(Algorithm::RS256, secret)).is_err());
        assert!(load_static(&key(Algorithm::HS256, KeyMaterial::Pem(pem.into()))).is_err());
        let pem_secret = KeyMaterial::Secret(pem.as_bytes().to_vec());
        assert!(load_static(&key(Algorithm::HS256, pem_secret)).is_err());
        assert!(format!("{:?}", KeyMaterial::Secret(vec![1, 2])).contains("redacted"));
    }

    #[test]
    fn jwks_never_yields_symmetric_or_encryption_keys() {
        let oct: Jwk = serde_json::from_str(r#"{"kty":"oct","k":"AAAA","alg":"HS256"}"#).unwrap();
        assert!(load_jwks_key(&oct).is_none());
        let enc: Jwk = serde_json::from_str(
            r#"{"kty":"EC","crv":"P-256","use":"enc",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#,
        )
        .unwrap();
        assert!(load_jwks_key(&enc).is_none());
    }
}
