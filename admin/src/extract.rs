//! Request extractors whose rejections are problem+json: JSON bodies (with a JSON pointer
//! to the offending field), query strings, `If-Match` and the request id.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ApiError, FieldError};

/// A JSON request body. Unknown fields and wrong types are rejected by the target type's
/// `Deserialize` impl (all inputs use `deny_unknown_fields`).
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| match rej.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
            _ => ApiError::bad_request("the request body could not be read"),
        })?;
        parse_json(&bytes).map(Body)
    }
}

fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_json = essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json { Ok(()) } else { Err(ApiError::unsupported_media_type("application/json")) }
}

/// Parses a JSON object into `T`, pointing at the field that failed. Every admin body is an
/// object (merge patches included): an array is refused here, since serde would otherwise
/// read `[]` as a struct whose fields all have defaults.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut value: Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))?;
    if !value.is_object() {
        let detail = "the body must be a JSON object".to_owned();
        return Err(ApiError::validation(vec![FieldError { pointer: String::new(), detail }]));
    }
    normalize(&mut value, &mut String::new())?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let pointer = json_pointer(err.path());
        ApiError::validation(vec![FieldError { pointer, detail: err.into_inner().to_string() }])
    })
}

/// Largest integer an `f64` holds exactly (2^53).
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// Prepares a JSON document for typed deserialization: numbers with a zero fraction
/// (`42.0`) become integers, as JSON Schema counts them as integers; strings holding U+0000,
/// which PostgreSQL cannot store, are refused (422) with a pointer to them.
fn normalize(value: &mut Value, pointer: &mut String) -> Result<(), ApiError> {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0 && f.abs() < EXACT_F64_INT) {
                *value = Value::from(f as i64);
            }
        }
        Value::String(s) if s.contains('\0') => {
            let detail = "must not contain NUL (U+0000) characters".to_owned();
            return Err(ApiError::validation(vec![FieldError { pointer: pointer.clone(), detail }]));
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                normalize(item, pointer)?;
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                normalize(item, pointer)?;
                pointer.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Turns a serde path (`targets[0].port`) into a JSON pointer (`/targets/0/port`).
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push('/');
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => out.push_str("/?"),
        }
    }
    out
}

/// A query string parsed into `T`.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(ApiError::bad_request("query values must not contain NUL (U+0000) characters"));
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|rej| ApiError::bad_request(format!("invalid query string: {}", rej.body_text())))
    }
}

/// The UUIDs in the matched route's path, in order (none for top-level collections). A
/// path segment that is not a UUID names no entity: 404, like any unknown path.
pub struct PathIds(pub Vec<uuid::Uuid>);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await else {
            return Ok(PathIds(Vec::new()));
        };
        raw.iter()
            .map(|(_, value)| value.parse().map_err(|_| ApiError::not_found("resource at this path")))
            .collect::<Result<_, _>>()
            .map(PathIds)
    }
}

/// The `If-Match` precondition of a write: absent (or empty), `*`, or a list of entity tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Versions(Vec<i64>),
}

impl IfMatch {
    /// Fails with 412 unless `current` satisfies the precondition.
    pub fn check(&self, current: i64) -> Result<(), ApiError> {
        match self {
            IfMatch::Any => Ok(()),
            IfMatch::Versions(v) if v.contains(&current) => Ok(()),
            IfMatch::Versions(_) => Err(ApiError::precondition_failed(current)),
        }
    }

    fn parse(raw: &str) -> Result<Self, ApiError> {
        // An empty field value is an empty list (RFC 9110 §5.6.1): no precondition.
        if raw.trim() == "*" || raw.trim().is_empty() {
            return Ok(IfMatch::Any);
        }
        let malformed = || ApiError::bad_request("If-Match must hold entity tags such as \"3\"");
        let mut versions = Vec::new();
        let mut rest = raw.trim_start_matches([' ', '\t']);
        while !rest.is_empty() {
            let (tag, after) = entity_tag(rest).ok_or_else(malformed)?;
            // Only a strong tag naming one of our versions can match: If-Match uses strong
            // comparison (RFC 9110 §13.1.1), so a weak tag (`W/"3"`) or one we never issue
            // (`"abc"`, `"+3"`) is well-formed but matches nothing, and the write fails with 412.
            versions.extend(tag);
            rest = after.trim_start_matches([' ', '\t']);
            match rest.strip_prefix(',') {
                Some(next) if !next.trim_start_matches([' ', '\t']).is_empty() => {
                    rest = next.trim_start_matches([' ', '\t']);
                }
                // A comma must be followed by a tag; anything else after a tag is malformed.
                _ if !rest.is_empty() => return Err(malformed()),
                _ => {}
            }
        }
        Ok(IfMatch::Versions(versions))
    }
}

/// Reads one entity tag (RFC 9110 §8.8.3: `[W/] "etagc*"`) from the start of `s`: the
/// version it names if it is a strong tag of ours, and the text after it.
fn entity_tag(s: &str) -> Option<(Option<i64>, &str)> {
    let (weak, s) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let inner = s.strip_prefix('"')?;
    let end = inner.find('"')?;
    let (opaque, after) = (&inner[..end], &inner[end + 1..]);
    // etagc: '!' and '#' to '~' (obs-text never gets here: the header is checked to be ASCII).
    if !opaque.bytes().all(|b| b == b'!' || (b'#'..=b'~').contains(&b)) {
        return None;
    }
    let ours = !weak && (1..=18).contains(&opaque.len()) && opaque.bytes().all(|b| b.is_ascii_digit());
    Some((ours.then(|| opaque.parse::<i64>().ok()).flatten(), after))
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(IfMatch::Any),
            Some(v) => IfMatch::parse(v.to_str().map_err(|_| ApiError::bad_request("If-Match is not ASCII"))?),
        }
    }
}

/// The request id set by the request-id layer, recorded in audit rows.
#[derive(Debug, Clone, Default)]
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(|s| s.chars().take(100).collect());
        Ok(RequestId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_parses_strong_tags_and_star() {
        assert_eq!(IfMatch::parse("*").ok(), Some(IfMatch::Any));
        assert_eq!(IfMatch::parse(" ").ok(), Some(IfMatch::Any));
        assert_eq!(IfMatch::parse("\"3\", \"4\"").ok(), Some(IfMatch::Versions(vec![3, 4])));
        assert_eq!(IfMatch::parse("\"3\",\"4\" ").ok(), Some(IfMatch::Versions(vec![3, 4])));
        // Well-formed tags that match no version of ours: weak ones (strong comparison),
        // and opaque tags we never issue. They are preconditions that fail (412), not 400s.
        for never in ["W/\"3\"", "\"+3\"", "\"-3\"", "\"abc\"", "\"\"", "\"a,b\"", "W/\"3\", \"x\""] {
            assert_eq!(IfMatch::parse(never).ok(), Some(IfMatch::Versions(vec![])), "{never}");
        }
        assert_eq!(IfMatch::parse("W/\"3\", \"3\"").ok(), Some(IfMatch::Versions(vec![3])));
        for bad in ["3", "\"3", "w/\"3\"", "\"3\" \"4\"", "\"3\",, x", "\"a b\""] {
            assert!(IfMatch::parse(bad).is_err(), "{bad}");
        }
        assert!(IfMatch::parse("W/\"3\"").is_ok_and(|m| m.check(3).is_err()), "a weak tag never matches");
    }

    #[test]
    fn if_match_pattern_states_the_rule() {
        use utoipa::IntoParams;
        let params = serde_json::to_value(crate::openapi::IfMatchHeader::into_params(|| None)).unwrap_or_default();
        let pattern = params.pointer("/0/schema/pattern").and_then(Value::as_str).unwrap_or_default();
        assert!(pattern.starts_with('^'), "the document states a pattern: {params}");
        let samples = [
            "*",
            " * ",
            "",
            "\"3\"",
            " \"3\" ,\t\"4\"",
            "W/\"3\"",
            "W/\"3\", \"x\"",
            "\"a,b\"",
            "\"\"",
            "3",
            "\"3",
            "w/\"3\"",
            "\"3\" \"4\"",
            "\"3\",",
            ",\"3\"",
            "\"a b\"",
            "\"é\"",
            "*, \"3\"",
        ];
        crate::validate::tests::agree(pattern, |s| IfMatch::parse(s).is_ok(), &samples);
    }

    #[test]
    fn stale_version_is_412() {
        let err = IfMatch::Versions(vec![1]).check(2).err().map(|e| e.status());
        assert_eq!(err, Some(StatusCode::PRECONDITION_FAILED));
        assert!(IfMatch::Versions(vec![2]).check(2).is_ok());
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        port: u16,
    }

    #[test]
    fn wrong_types_point_at_the_field() {
        let err = parse_json::<Sample>(br#"{"port": "x"}"#).err().map(|e| e.status());
        assert_eq!(err, Some(StatusCode::UNPROCESSABLE_ENTITY));
        let err = parse_json::<Sample>(br#"{"port": 1, "extra": 2}"#).err().map(|e| e.status());
        assert_eq!(err, Some(StatusCode::UNPROCESSABLE_ENTITY));
        let err = parse_json::<Sample>(b"{").err().map(|e| e.status());
        assert_eq!(err, Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn bodies_must_be_objects() {
        for body in [&b"[]"[..], b"[1, 2]", b"\"x\"", b"3", b"null"] {
            let err = parse_json::<Value>(body).err().map(|e| e.status());
            assert_eq!(err, Some(StatusCode::UNPROCESSABLE_ENTITY), "{}", String::from_utf8_lossy(body));
        }
        assert!(parse_json::<Value>(b"{}").is_ok());
    }

    #[test]
    fn integral_floats_are_integers_and_nul_is_refused() {
        assert_eq!(parse_json::<Sample>(br#"{"port": 8080.0}"#).ok().map(|s| s.port), Some(8080));
        let err = parse_json::<Sample>(br#"{"port": 8080.5}"#).err().map(|e| e.status());
        assert_eq!(err, Some(StatusCode::UNPROCESSABLE_ENTITY));
        let err = parse_json::<Value>(br#"{"a": ["ok", "n\u0000l"]}"#).err().map(|e| e.problem().errors);
        assert_eq!(err.and_then(|e| e.first().map(|f| f.pointer.clone())).as_deref(), Some("/a/1"));
    }
}
