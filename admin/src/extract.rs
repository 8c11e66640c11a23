//! Request extractors whose rejections are problem+json: JSON bodies (with a JSON pointer
//! to the offending field), query strings, `If-Match` and the request id.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde::de::DeserializeOwned;

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

/// Parses JSON into `T`, pointing at the field that failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let pointer = json_pointer(err.path());
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::bad_request(format!("the body is not valid JSON: {inner}"));
        }
        ApiError::validation(vec![FieldError { pointer, detail: inner.to_string() }])
    })
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
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Params(v))
            .map_err(|rej| ApiError::bad_request(format!("invalid query string: {}", rej.body_text())))
    }
}

/// The UUIDs in the matched route's path, in order (none for top-level collections).
pub struct PathIds(pub Vec<uuid::Uuid>);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await else {
            return Ok(PathIds(Vec::new()));
        };
        raw.iter()
            .map(|(name, value)| {
                value.parse().map_err(|_| ApiError::bad_request(format!("path parameter {name} must be a UUID")))
            })
            .collect::<Result<_, _>>()
            .map(PathIds)
    }
}

/// The `If-Match` precondition of a write: absent, `*`, or a list of entity tags.
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
        if raw.trim() == "*" {
            return Ok(IfMatch::Any);
        }
        raw.split(',')
            .map(|tag| {
                let tag = tag.trim();
                // A weak tag never matches under If-Match (RFC 9110 §13.1.1: strong comparison).
                tag.strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .and_then(|t| t.parse::<i64>().ok())
                    .ok_or_else(|| ApiError::bad_request("If-Match must hold entity tags such as \"3\""))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(IfMatch::Versions)
    }
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
        assert_eq!(IfMatch::parse("\"3\", \"4\"").ok(), Some(IfMatch::Versions(vec![3, 4])));
        assert!(IfMatch::parse("W/\"3\"").is_err());
        assert!(IfMatch::parse("3").is_err());
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
}
