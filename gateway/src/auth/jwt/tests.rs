//! Unit tests of the validator with HS256 tokens built in-process (the cross-library and
//! Wycheproof tests live in `tests/jwt/`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn config() -> JwtConfig {
    JwtConfig {
        algorithms: vec![Algorithm::HS256],
        keys: KeySource::Static(vec![StaticKey {
            kid: Some("k1".into()),
            alg: Algorithm::HS256,
            material: KeyMaterial::Secret(SECRET.to_vec()),
        }]),
        issuers: vec!["https://idp".into()],
        audiences: vec!["api".into()],
        leeway: Duration::from_secs(30),
        required_claims: vec![],
        required_scopes: vec!["read".into()],
    }
}

fn mint(header: Value, claims: Value) -> String {
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &EncodingKey::from_secret(SECRET), Algorithm::HS256).unwrap();
    format!("{input}.{sig}")
}

fn good_claims() -> Value {
    json!({"sub": "u1", "iss": "https://idp", "aud": ["x", "api"], "exp": now() + 60,
           "scope": "read write"})
}

fn hs_header() -> Value {
    json!({"alg": "HS256", "kid": "k1", "typ": "JWT"})
}

async fn check(token: &str) -> Result<Claims, JwtError> {
    JwtValidator::new(config()).unwrap().validate(token).await
}

#[tokio::test]
async fn accepts_a_valid_token() {
    let claims = check(&mint(hs_header(), good_claims())).await.unwrap();
    assert_eq!(claims.sub.as_deref(), Some("u1"));
    assert_eq!(claims.aud, ["x", "api"]);
    assert_eq!(claims.scopes, ["read", "write"]);
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &good_claims(), &EncodingKey::from_secret(SECRET))
        .unwrap();
    assert!(check(&token).await.is_ok(), "no kid: any key of the class");
}

#[tokio::test]
async fn header_policy_rejects() {
    let cases = [
        (json!({"alg": "none"}), JwtError::AlgNone),
        (json!({"alg": "nOnE"}), JwtError::AlgNone),
        (json!({"alg": "HS384"}), JwtError::AlgorithmNotAllowed),
        (json!({"alg": "ES512"}), JwtError::UnsupportedAlgorithm),
        (json!({"alg": "HS256", "jku": "https://evil/jwks"}), JwtError::ForbiddenHeader),
        (json!({"alg": "HS256", "x5u": "https://evil/cert"}), JwtError::ForbiddenHeader),
        (json!({"alg": "HS256", "jwk": {"kty": "oct", "k": "AA"}}), JwtError::ForbiddenHeader),
        (json!({"alg": "HS256", "crit": ["exp"]}), JwtError::ForbiddenHeader),
        (json!({"alg": "HS256", "kid": "other"}), JwtError::UnknownKid),
        (json!({"alg": "HS256", "kid": 7}), JwtError::Malformed),
        (json!({"kid": "k1"}), JwtError::Malformed),
    ];
    for (header, want) in cases {
        assert_eq!(check(&mint(header.clone(), good_claims())).await.err(), Some(want), "{header}");
    }
}

#[tokio::test]
async fn claim_checks_reject() {
    let with = |k: &str, v: Value| {
        let mut c = good_claims();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let cases = [
        (with("exp", json!(now() - 120)), JwtError::Expired),
        (with("nbf", json!(now() + 120)), JwtError::NotYetValid),
        (with("iss", json!("https://evil")), JwtError::BadIssuer),
        (with("aud", json!("other")), JwtError::BadAudience),
        (with("scope", json!("write")), JwtError::MissingScope),
        (without("exp"), JwtError::MissingClaim),
        (without("aud"), JwtError::MissingClaim),
    ];
    for (claims, want) in cases {
        assert_eq!(check(&mint(hs_header(), claims.clone())).await.err(), Some(want), "{claims}");
    }
    // Within leeway both ways.
    let skewed = with("exp", json!(now() - 10));
    assert!(check(&mint(hs_header(), with("nbf", json!(now() + 10)))).await.is_ok());
    assert!(check(&mint(hs_header(), skewed)).await.is_ok());
}

#[tokio::test]
async fn malformed_and_tampered_tokens_are_rejected() {
    let token = mint(hs_header(), good_claims());
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(check(&tampered).await.is_err());
    for bad in ["", "a.b", "a.b.c.d", &format!("{token}."), &format!(" {token}")] {
        assert_eq!(check(bad).await.err(), Some(JwtError::Malformed), "{bad}");
    }
}

#[test]
fn config_errors() {
    let mut cfg = config();
    cfg.algorithms.clear();
    assert_eq!(JwtValidator::new(cfg).err(), Some(ConfigError::NoAlgorithms));
    let mut cfg = config();
    cfg.keys = KeySource::Static(vec![]);
    assert_eq!(JwtValidator::new(cfg).err(), Some(ConfigError::NoKeys));
    let mut cfg = config();
    let policy = UrlPolicy { allow_private: false };
    cfg.keys = KeySource::Jwks { url: "http://idp/jwks".into(), refresh: MIN_REFETCH, policy };
    assert!(matches!(JwtValidator::new(cfg), Err(ConfigError::JwksUrl(_))));
}
