//! The admin API's one error type. Every failure leaves as `application/problem+json`
//! (RFC 9457) with a stable `type`; database errors are classified once, here, and 500s
//! never carry internals (they are logged instead).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Prefix of every problem `type` URI; the suffix is a stable slug documented in `docs/`.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:tollgate:problem:";

/// An RFC 9457 problem document, as sent on the wire.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:tollgate:problem:validation",
    "title": "Invalid request",
    "status": 422,
    "detail": "2 fields are invalid",
    "errors": [{"pointer": "/name", "detail": "must match ^[a-z0-9][a-z0-9._-]{0,62}$"}]
}))]
pub struct Problem {
    /// Stable identifier of the problem kind.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-level details: a JSON pointer into the request body and what is wrong there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) to the field, e.g. `/targets/0/port`.
    pub pointer: String,
    pub detail: String,
}

impl FieldError {
    /// A detail about the top-level field `field`.
    pub fn new(field: &str, detail: impl Into<String>) -> Self {
        Self { pointer: format!("/{field}"), detail: detail.into() }
    }
}

/// A failed admin request.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    www_authenticate: bool,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            www_authenticate: false,
            retry_after: None,
        }
    }

    /// The human-readable explanation.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Per-field problems (validation, uniqueness), by JSON pointer.
    /// The message of the error at field `/field`, else the problem's detail.
    pub fn detail_of(&self, field: &str) -> String {
        let pointer = format!("/{field}");
        self.field_errors()
            .iter()
            .find(|e| e.pointer == pointer)
            .map_or_else(|| self.detail().to_owned(), |e| e.detail.clone())
    }

    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// 400: the request could not be read (bad JSON, wrong content type, bad query).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Malformed request", detail)
    }

    /// 422: the request was read but some fields are invalid.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.len() {
            1 => "1 field is invalid".to_owned(),
            n => format!("{n} fields are invalid"),
        };
        Self { errors, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request", detail) }
    }

    /// 422 about one field.
    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, detail)])
    }

    /// 404: no such entity (or not visible to the caller).
    pub fn not_found(kind: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", format!("no such {kind}"))
    }

    /// 409: the change conflicts with existing data.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 412: `If-Match` named a version that is no longer current.
    pub fn precondition_failed(current: i64) -> Self {
        let detail = format!("the entity has changed; its current ETag is \"{current}\"");
        Self::new(StatusCode::PRECONDITION_FAILED, "stale-version", "Precondition failed", detail)
    }

    /// 401: no valid credential.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self { www_authenticate: true, ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized", detail) }
    }

    /// 403: authenticated, but the role does not allow this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 413: body over the configured limit.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            "the request body is too large",
        )
    }

    /// 415: body that is not JSON.
    pub fn unsupported_media_type(expected: &str) -> Self {
        let detail = format!("expected Content-Type {expected}");
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type", detail)
    }

    /// 429: too many failed logins; retry after `seconds`.
    pub fn too_many_attempts(seconds: u64) -> Self {
        let detail = "too many failed attempts; try again later";
        Self {
            retry_after: Some(seconds),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "too-many-attempts", "Too many attempts", detail)
        }
    }

    /// 500: logged with its cause, sent without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server could not complete the request",
        )
    }

    /// The HTTP status this error renders with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Maps a failed DELETE: a foreign key then means "still referenced", not "dangling".
    pub fn from_delete(err: sqlx::Error, kind: &str) -> Self {
        match db_code(&err).as_deref() {
            Some("23503") => {
                Self::conflict(format!("this {kind} is still referenced ({}); remove those first", constraint(&err)))
            }
            _ => Self::from(err),
        }
    }

    pub(crate) fn problem(&self) -> Problem {
        Problem {
            kind: format!("{PROBLEM_TYPE_PREFIX}{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.slug, self.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut res = (self.status, body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tollgate-admin\""));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

fn db_code(err: &sqlx::Error) -> Option<String> {
    err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned())
}

fn constraint(err: &sqlx::Error) -> String {
    err.as_database_error().and_then(|e| e.constraint()).unwrap_or("constraint").to_owned()
}

/// What a check constraint (or a trigger raising under its name) means, where the generic
/// "violates a constraint" would leave the client guessing.
fn constraint_detail(name: &str) -> Option<&'static str> {
    match name {
        "apis_anonymous_plan_id_check" => Some("must be a plan of this API"),
        "plans_route_costs_check" => Some("keys must be ids of this API's routes and costs 0 to 1000000"),
        "apis_upstream_tls_check" => Some("client_certificate_id must name a certificate of usage client"),
        "certificates_is_default_check" => Some("a client certificate cannot be the default"),
        _ => None,
    }
}

/// The request field a constraint named `<table>_<field>_<kind>` guards.
fn constraint_field(name: &str, table: Option<&str>) -> String {
    let rest = table.and_then(|t| name.strip_prefix(t)).and_then(|r| r.strip_prefix('_')).unwrap_or(name);
    ["_fkey", "_key", "_check"].iter().find_map(|suffix| rest.strip_suffix(suffix)).unwrap_or(rest).to_owned()
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        let Some(db) = err.as_database_error() else {
            return Self::internal(err);
        };
        if db.constraint() == Some("admin_users_last_owner_check") {
            return Self::conflict("at least one active owner must remain");
        }
        let table = db.table();
        let field = db.constraint().map(|c| constraint_field(c, table));
        match (db.code().as_deref(), field) {
            (Some("23505"), Some(field)) => Self {
                errors: vec![FieldError::new(&field, "already taken")],
                ..Self::conflict(format!("another entity already has this {field}"))
            },
            (Some("23503"), Some(field)) => Self::invalid_field(&field, "refers to an entity that does not exist"),
            (Some("23514"), Some(field)) => {
                let detail =
                    db.constraint().and_then(constraint_detail).unwrap_or("violates a constraint on this field");
                Self::invalid_field(&field, detail)
            }
            // 22021/22P05: text PostgreSQL cannot store (U+0000), should a request get that far.
            (Some("22001" | "22003" | "22P02" | "22007" | "22008" | "22021" | "22P05"), _) => {
                Self::bad_request("a value is out of range or malformed")
            }
            (Some("40001" | "40P01"), _) => Self::conflict("a concurrent change interfered; retry the request"),
            _ => Self::internal(err),
        }
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        Self::internal(err)
    }
}

/// The result type of every admin handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_names_map_to_fields() {
        assert_eq!(constraint_field("apis_name_key", Some("apis")), "name");
        assert_eq!(constraint_field("routes_api_id_fkey", Some("routes")), "api_id");
        assert_eq!(constraint_field("plans_rate_limit_per_second_check", Some("plans")), "rate_limit_per_second");
        assert_eq!(constraint_field("odd", None), "odd");
    }

    #[test]
    fn problem_has_stable_type_and_status() {
        let p = ApiError::invalid_field("name", "too long").problem();
        assert_eq!(p.kind, "urn:tollgate:problem:validation");
        assert_eq!(p.status, 422);
        assert_eq!(p.errors, vec![FieldError { pointer: "/name".into(), detail: "too long".into() }]);
    }
}
