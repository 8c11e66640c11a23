//! Reading an RFC 7662 answer: `active` first, then what a token binding, the scope check and
//! the cache need. Types are checked strictly: a member of the wrong type is a malformed
//! answer (an endpoint fault), not a silently missing value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::IntrospectError;

/// What the endpoint said about an active token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Always true: inactive tokens are an [`IntrospectError::Inactive`].
    pub active: bool,
    /// The `subject_claim` member (a string, or an integer written in decimal).
    pub subject: Option<String>,
    /// The answer's `iss`, else the configured `issuer`, else the endpoint URL.
    pub issuer: String,
    /// The space-separated `scope` member, split.
    pub scopes: Vec<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: Option<i64>,
    pub client_id: Option<String>,
    pub username: Option<String>,
}

/// An answer before the route's scope check; what the cache keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    Active(TokenInfo),
    Inactive,
}

/// How to read answers for one API.
#[derive(Debug)]
pub(super) struct Reading {
    pub subject_claim: String,
    /// The issuer of answers without `iss`.
    pub issuer: String,
}

impl Reading {
    /// Parses a 200 body; an active token whose `exp` is not after `now` is inactive.
    pub(super) fn parse(&self, body: &[u8], now: SystemTime) -> Result<Answer, IntrospectError> {
        let map: Map<String, Value> =
            serde_json::from_slice(body).map_err(|_| IntrospectError::Malformed("not a JSON object"))?;
        match map.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Ok(Answer::Inactive),
            _ => return Err(IntrospectError::Malformed("active")),
        }
        let exp = integer(&map, "exp")?;
        if exp.is_some_and(|exp| exp <= unix_secs(now)) {
            return Ok(Answer::Inactive);
        }
        Ok(Answer::Active(TokenInfo {
            active: true,
            subject: self.subject(&map)?,
            issuer: string(&map, "iss")?.unwrap_or_else(|| self.issuer.clone()),
            scopes: scopes(&map)?,
            exp,
            client_id: string(&map, "client_id")?,
            username: string(&map, "username")?,
        }))
    }

    fn subject(&self, map: &Map<String, Value>) -> Result<Option<String>, IntrospectError> {
        match map.get(&self.subject_claim) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Some(_) => Err(IntrospectError::Malformed("subject claim")),
        }
    }
}

/// How long an active answer may be reused: `ttl`, cut at the token's `exp`.
pub(super) fn lifetime(ttl: Duration, exp: Option<i64>, now: SystemTime) -> Duration {
    let Some(exp) = exp else { return ttl };
    let expires = UNIX_EPOCH + Duration::from_secs(u64::try_from(exp).unwrap_or(0));
    ttl.min(expires.duration_since(now).unwrap_or(Duration::ZERO))
}

fn unix_secs(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn string(map: &Map<String, Value>, name: &'static str) -> Result<Option<String>, IntrospectError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(IntrospectError::Malformed(name)),
    }
}

/// The space-separated `scope` member, split (RFC 7662 §2.2).
fn scopes(map: &Map<String, Value>) -> Result<Vec<String>, IntrospectError> {
    let scope = string(map, "scope")?.unwrap_or_default();
    Ok(scope.split_whitespace().map(str::to_owned).collect())
}

fn integer(map: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, IntrospectError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or(IntrospectError::Malformed(name)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn reading(subject_claim: &str) -> Reading {
        Reading { subject_claim: subject_claim.into(), issuer: "https://fallback/".into() }
    }

    fn parse(claim: &str, body: serde_json::Value) -> Result<Answer, IntrospectError> {
        reading(claim).parse(body.to_string().as_bytes(), now())
    }

    fn active(answer: Result<Answer, IntrospectError>) -> TokenInfo {
        match answer {
            Ok(Answer::Active(info)) => info,
            other => panic!("not active: {other:?}"),
        }
    }

    #[test]
    fn active_answers_are_read() {
        let body = json!({"active": true, "sub": "u1", "client_id": "app", "username": "ann",
                          "scope": "read  write", "exp": NOW + 60, "iss": "https://idp/"});
        let info = active(parse("sub", body));
        assert_eq!(info.subject.as_deref(), Some("u1"));
        assert_eq!(info.scopes, ["read", "write"]);
        assert_eq!((info.exp, info.issuer.as_str()), (Some(1_700_000_060), "https://idp/"));
        assert_eq!((info.client_id.as_deref(), info.username.as_deref()), (Some("app"), Some("ann")));
        let bare = active(parse("uid", json!({"active": true, "uid": 42})));
        assert_eq!((bare.subject.as_deref(), bare.issuer.as_str()), (Some("42"), "https://fallback/"));
        assert!(bare.scopes.is_empty() && bare.exp.is_none());
    }

    #[test]
    fn inactive_and_expired_answers() {
        assert_eq!(parse("sub", json!({"active": false, "exp": "junk"})), Ok(Answer::Inactive));
        assert_eq!(parse("sub", json!({"active": true, "exp": NOW})), Ok(Answer::Inactive));
        assert_eq!(parse("sub", json!({"active": true, "exp": NOW - 1})), Ok(Answer::Inactive));
    }

    #[test]
    fn malformed_answers_name_the_part() {
        let malformed = |body: &[u8]| reading("sub").parse(body, now()).err();
        assert_eq!(malformed(b"<html>"), Some(IntrospectError::Malformed("not a JSON object")));
        assert_eq!(malformed(b"[true]"), Some(IntrospectError::Malformed("not a JSON object")));
        let cases = [
            (json!({}), "active"),
            (json!({"active": "true"}), "active"),
            (json!({"active": true, "exp": 1.5}), "exp"),
            (json!({"active": true, "scope": ["a"]}), "scope"),
            (json!({"active": true, "iss": 1}), "iss"),
            (json!({"active": true, "sub": {}}), "subject claim"),
        ];
        for (body, part) in cases {
            assert_eq!(parse("sub", body.clone()), Err(IntrospectError::Malformed(part)), "{body}");
        }
    }

    #[test]
    fn lifetime_never_passes_exp() {
        let ttl = Duration::from_secs(60);
        assert_eq!(lifetime(ttl, None, now()), ttl);
        assert_eq!(lifetime(ttl, Some(1_700_000_005), now()), Duration::from_secs(5));
        assert_eq!(lifetime(ttl, Some(1_700_000_600), now()), ttl);
        assert_eq!(lifetime(ttl, Some(1), now()), Duration::ZERO);
        assert_eq!(lifetime(ttl, Some(-5), now()), Duration::ZERO);
    }
}
