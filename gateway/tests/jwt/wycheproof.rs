//! The Wycheproof JSON Web Signature vectors (vendored in `testdata/wycheproof/`): every
//! `invalid` case is rejected and every `valid` case of a supported algorithm is accepted,
//! at the signature level ([`JwtValidator::verify_signature`]): their payloads are not JWT
//! claims. Each group's key is configured as a static key bound to its `alg` (or, for keys
//! without one, the token's), with every supported algorithm allowed, so key binding is
//! what rejects the confusion cases.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::Jwk;
use serde_json::Value;
use tollgate_gateway::auth::jwt::{JwtConfig, JwtValidator, KeyMaterial, KeySource, StaticKey};

const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// `valid` in the vectors, rejected here on purpose:
/// - 372, 373: a `?` was inserted into the base64url after signing (the MAC is the one of
///   the unmodified token). Accepting them needs a decoder that skips invalid characters,
///   which is how signature bypasses start; strict base64url rejects them.
/// - 346, 350 (RFC 7520 figure 20): the JWK says `alg: PS256`, the token is PS384. Keys are
///   bound to exactly their algorithm — the same file marks 338/340 (a PS512 key used for
///   PS256/PS384) `invalid` — so the two cannot both pass; we keep the stricter rule.
const REJECTED_ON_PURPOSE: [u64; 4] = [346, 350, 372, 373];

/// `invalid` cases byte-identical to the `valid` case 357 (their padding change is missing
/// from the data): no verifier can both accept and reject them, so they are counted apart.
const IDENTICAL_TO_VALID: [u64; 2] = [367, 370];

fn vectors() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jwt/testdata/wycheproof/json_web_signature_test.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("Wycheproof vectors missing at {} ({e}); see its README", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn header_alg(jws: &str) -> Option<Algorithm> {
    let header = URL_SAFE_NO_PAD.decode(jws.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header["alg"].as_str()?.parse().ok()
}

/// A validator for the group's key, or `None` if the key cannot be configured (an
/// encryption key, an unsupported curve): then every token is necessarily rejected.
fn validator(jwk: &Value, jws: &str) -> Option<JwtValidator> {
    let parsed: Jwk = serde_json::from_value(jwk.clone()).ok()?;
    let alg = jwk["alg"].as_str().and_then(|a| a.parse().ok()).or_else(|| header_alg(jws))?;
    let key =
        StaticKey { kid: jwk["kid"].as_str().map(str::to_owned), alg, material: KeyMaterial::Jwk(Box::new(parsed)) };
    JwtValidator::new(JwtConfig {
        algorithms: ALL.to_vec(),
        keys: KeySource::Static(vec![key]),
        issuers: vec![],
        audiences: vec![],
        leeway: std::time::Duration::ZERO,
        required_claims: vec![],
        required_scopes: vec![],
    })
    .ok()
}

#[derive(Debug, Default)]
struct Tally {
    invalid_rejected: usize,
    valid_accepted: usize,
    valid_unsupported: usize,
    rejected_on_purpose: usize,
    identical_to_valid: usize,
    failures: Vec<String>,
}

#[tokio::test]
async fn wycheproof_jws_vectors() {
    let v = vectors();
    let mut tally = Tally::default();
    for group in v["testGroups"].as_array().unwrap() {
        let jwk = group.get("public").unwrap_or(&group["private"]);
        for test in group["tests"].as_array().unwrap() {
            let (id, jws) = (test["tcId"].as_u64().unwrap(), test["jws"].as_str().unwrap());
            let accepted = match validator(jwk, jws) {
                Some(val) => val.verify_signature(jws).await.map_err(|e| e.reason()),
                None => Err("key not configurable"),
            };
            let result = test["result"].as_str().unwrap();
            match (result, accepted) {
                ("invalid", Err(_)) => tally.invalid_rejected += 1,
                ("invalid", Ok(_)) if IDENTICAL_TO_VALID.contains(&id) => tally.identical_to_valid += 1,
                ("valid", Ok(_)) => tally.valid_accepted += 1,
                ("valid", Err(_)) if REJECTED_ON_PURPOSE.contains(&id) => tally.rejected_on_purpose += 1,
                ("valid", Err(_)) if header_alg(jws).is_none() => tally.valid_unsupported += 1,
                (r, got) => tally.failures.push(format!("tc {id} ({r}): got {got:?}")),
            }
        }
    }
    eprintln!("wycheproof: {tally:?}");
    assert_eq!(tally.rejected_on_purpose, REJECTED_ON_PURPOSE.len());
    assert_eq!(tally.identical_to_valid, IDENTICAL_TO_VALID.len());
    assert!(tally.failures.is_empty(), "{:#?}", tally.failures);
    assert_eq!(tally.invalid_rejected + tally.identical_to_valid, 355);
    assert_eq!(tally.valid_accepted + tally.valid_unsupported + tally.rejected_on_purpose, 46);
}
