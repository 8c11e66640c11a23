//! Tokens minted by PyJWT: the valid ones are accepted, every attack vector is rejected.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use tollgate_gateway::auth::jwt::{JwtConfig, JwtError, JwtValidator, KeyMaterial, KeySource, StaticKey};

use crate::helpers::minted;

fn key(kid: &str, alg: Algorithm, material: KeyMaterial) -> StaticKey {
    StaticKey { kid: Some(kid.into()), alg, material }
}

/// A route accepting RS256, ES256, EdDSA and HS256 with one static key each.
pub fn config(keys: KeySource) -> JwtConfig {
    JwtConfig {
        algorithms: vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256],
        keys,
        issuers: vec!["https://idp.test".into()],
        audiences: vec!["tollgate".into()],
        leeway: Duration::from_secs(5),
        required_claims: vec!["sub".into()],
        required_scopes: vec!["read".into()],
    }
}

fn static_keys(m: &Value) -> KeySource {
    let pem = |k: &str| KeyMaterial::Pem(m[k].as_str().unwrap().to_owned());
    let secret = URL_SAFE_NO_PAD.decode(m["hs_secret"].as_str().unwrap()).unwrap();
    KeySource::Static(vec![
        key("rsa-1", Algorithm::RS256, pem("rsa_pem")),
        key("ec-1", Algorithm::ES256, pem("ec_pem")),
        key("ed-1", Algorithm::EdDSA, pem("ed_pem")),
        key("hs-1", Algorithm::HS256, KeyMaterial::Secret(secret)),
    ])
}

fn tokens<'m>(m: &'m Value, kind: &str) -> impl Iterator<Item = (&'m str, &'m str)> {
    m[kind].as_object().unwrap().iter().map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
}

#[tokio::test]
async fn pyjwt_valid_tokens_are_accepted() {
    let Some(m) = minted() else { return };
    let validator = JwtValidator::new(config(static_keys(m))).unwrap();
    for (name, token) in tokens(m, "valid") {
        let claims = validator.validate(token).await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(claims.sub.as_deref(), Some("user-1"), "{name}");
        assert_eq!(claims.scopes, ["read", "write"], "{name}");
    }
}

#[tokio::test]
async fn pyjwt_attack_vectors_are_rejected() {
    let Some(m) = minted() else { return };
    let validator = JwtValidator::new(config(static_keys(m))).unwrap();
    let expected = |name: &str| match name {
        "alg_none" | "alg_none_with_kid" => JwtError::AlgNone,
        "rs_public_key_as_hs_secret" => JwtError::NoMatchingKey,
        "rs_public_key_as_hs_secret_no_kid" => JwtError::BadSignature,
        "expired" => JwtError::Expired,
        "not_yet_valid" => JwtError::NotYetValid,
        "wrong_iss" => JwtError::BadIssuer,
        "wrong_aud" => JwtError::BadAudience,
        "missing_scope" => JwtError::MissingScope,
        "missing_exp" => JwtError::MissingClaim,
        "unknown_kid" => JwtError::UnknownKid,
        "tampered_signature" | "signed_by_other_key" => JwtError::BadSignature,
        "jku_injection" | "x5u_injection" | "embedded_jwk" => JwtError::ForbiddenHeader,
        other => panic!("no expectation for {other}"),
    };
    for (name, token) in tokens(m, "invalid") {
        assert_eq!(validator.validate(token).await.err(), Some(expected(name)), "{name}");
    }
}

/// The classic confusion setup: HS256 allowed next to RS256, but the only key is the RSA
/// public key. The HMAC-with-public-key token must still fail.
#[tokio::test]
async fn rsa_key_is_never_an_hmac_secret() {
    let Some(m) = minted() else { return };
    let pem = KeyMaterial::Pem(m["rsa_pem"].as_str().unwrap().to_owned());
    let only_rsa = KeySource::Static(vec![key("rsa-1", Algorithm::RS256, pem)]);
    let validator = JwtValidator::new(config(only_rsa)).unwrap();
    for name in ["rs_public_key_as_hs_secret", "rs_public_key_as_hs_secret_no_kid"] {
        let token = m["invalid"][name].as_str().unwrap();
        assert_eq!(validator.validate(token).await.err(), Some(JwtError::NoMatchingKey), "{name}");
    }
    assert!(validator.validate(m["valid"]["rs256"].as_str().unwrap()).await.is_ok());
}
