//! JWKS over real HTTP: fetched once for concurrent requests, refetched on an unknown `kid`
//! at most once per `MIN_REFETCH`, and refused by the SSRF policy for loopback unless
//! private addresses are allowed.

use std::time::Duration;

use serde_json::json;
use tollgate_gateway::auth::jwt::{JwtError, JwtValidator, KeySource};
use tollgate_gateway::auth::ssrf::UrlPolicy;

use crate::helpers::{JwksServer, minted};
use crate::pyjwt::config;

fn jwks_source(url: &str, allow_private: bool) -> KeySource {
    let policy = UrlPolicy { allow_private };
    KeySource::Jwks { url: url.to_owned(), refresh: Duration::from_secs(300), policy }
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_rejects() {
    let Some(m) = minted() else { return };
    let server = JwksServer::start(json!({"keys": []})).await;
    let validator = JwtValidator::new(config(jwks_source(&server.url, true))).unwrap();
    let rs256 = m["valid"]["rs256"].as_str().unwrap();
    // Empty set: the first fetch finds no key, and the refetch for the unknown `kid` falls
    // inside the rate-limit window of that fetch, so the token is rejected after one hit.
    assert_eq!(validator.validate(rs256).await.err(), Some(JwtError::UnknownKid));
    assert_eq!(server.hits(), 1);
    // The IdP rotates its key in; within MIN_REFETCH the gateway does not ask again.
    server.set_body(json!({"keys": [m["rsa_jwk"]]}));
    let unknown = m["invalid"]["unknown_kid"].as_str().unwrap();
    assert_eq!(validator.validate(unknown).await.err(), Some(JwtError::UnknownKid));
    assert_eq!(server.hits(), 1, "refetch is rate-limited");
}

#[tokio::test]
async fn rotated_key_is_found_by_one_refetch() {
    let Some(m) = minted() else { return };
    let server = JwksServer::start(json!({"keys": [m["rsa_jwk"]]})).await;
    let validator = JwtValidator::new(config(jwks_source(&server.url, true))).unwrap();
    let unknown = m["invalid"]["unknown_kid"].as_str().unwrap();
    // 20 concurrent requests on a cold cache: one fetch, and the unknown `kid` among them
    // does not add a second one inside the rate-limit window.
    let valid = m["valid"]["rs256"].as_str().unwrap();
    let results = futures_util::future::join_all((0..20).map(|_| validator.validate(valid))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(validator.validate(unknown).await.err(), Some(JwtError::UnknownKid));
    assert_eq!(server.hits(), 1, "no stampede, refetch rate-limited");
    let others = ["es256", "eddsa", "hs256"];
    for name in others {
        let token = m["valid"][name].as_str().unwrap();
        assert!(validator.validate(token).await.is_err(), "{name}: not in the JWKS");
    }
}

#[tokio::test]
async fn jwks_on_loopback_needs_allow_private() {
    let Some(m) = minted() else { return };
    let server = JwksServer::start(json!({"keys": [m["rsa_jwk"]]})).await;
    let token = m["valid"]["rs256"].as_str().unwrap();
    // Plain http is refused at configuration time without allow_private…
    assert!(JwtValidator::new(config(jwks_source(&server.url, false))).is_err());
    // …and an https URL on loopback passes the syntax check but is refused before connecting.
    let https = format!("https://127.0.0.1:{}/jwks", server.port);
    let strict = JwtValidator::new(config(jwks_source(&https, false))).unwrap();
    assert_eq!(strict.validate(token).await.err(), Some(JwtError::KeysUnavailable));
    let named = format!("https://localhost:{}/jwks", server.port);
    let strict = JwtValidator::new(config(jwks_source(&named, false))).unwrap();
    assert_eq!(strict.validate(token).await.err(), Some(JwtError::KeysUnavailable));
    assert_eq!(server.hits(), 0, "no connection to a forbidden address");
    // Allowed: by address and by name (connected to the checked, pinned addresses).
    let open = JwtValidator::new(config(jwks_source(&server.url, true))).unwrap();
    assert!(open.validate(token).await.is_ok());
    let by_name = format!("http://localhost:{}/jwks", server.port);
    let open = JwtValidator::new(config(jwks_source(&by_name, true))).unwrap();
    assert!(open.validate(token).await.is_ok());
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn oversized_jwks_is_refused() {
    let Some(m) = minted() else { return };
    let padding = "x".repeat(300 * 1024);
    let server = JwksServer::start(json!({"keys": [m["rsa_jwk"]], "padding": padding})).await;
    let validator = JwtValidator::new(config(jwks_source(&server.url, true))).unwrap();
    let token = m["valid"]["rs256"].as_str().unwrap();
    assert_eq!(validator.validate(token).await.err(), Some(JwtError::KeysUnavailable));
    assert_eq!(server.hits(), 1);
}

/// Past `refresh`, requests keep being served from the stale keys while one background
/// fetch (subject to the `MIN_REFETCH` rate limit) replaces them; nobody waits for the IdP.
#[tokio::test]
async fn stale_keys_are_served_while_refreshing_in_the_background() {
    let Some(m) = minted() else { return };
    let server = JwksServer::start(json!({"keys": [m["rsa_jwk"]]})).await;
    let policy = UrlPolicy { allow_private: true };
    let source = KeySource::Jwks { url: server.url.clone(), refresh: Duration::from_secs(1), policy };
    let validator = JwtValidator::new(config(source)).unwrap();
    let token = m["valid"]["rs256"].as_str().unwrap();
    assert!(validator.validate(token).await.is_ok());
    assert_eq!(server.hits(), 1);
    // The IdP now serves an empty set; once the rate-limit window has passed, the stale
    // keys still validate while the background fetch replaces them.
    server.set_body(json!({"keys": []}));
    tokio::time::sleep(tollgate_gateway::auth::jwt::MIN_REFETCH + Duration::from_millis(100)).await;
    assert!(validator.validate(token).await.is_ok(), "stale keys served without waiting");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.hits() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no background refresh");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The refreshed (empty) set is in force: the key is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while validator.validate(token).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "refreshed keys not used");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.hits(), 2, "one background fetch");
}
