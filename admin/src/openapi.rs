//! The OpenAPI 3.1 document: shared error responses, the security scheme, and the
//! interactive reference page (Swagger UI, assets embedded in the binary).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi};

use crate::error::Problem;

/// Error responses every admin endpoint may return, all `application/problem+json`.
#[derive(IntoResponses)]
#[allow(dead_code, reason = "documentation only: the variants describe responses ApiError renders")]
pub enum ApiErrors {
    /// The request could not be read (malformed JSON, bad query or path parameter, bad If-Match).
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// No valid bearer token.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(Problem),
    /// The caller's role does not allow this.
    #[response(status = 403, content_type = "application/problem+json")]
    Forbidden(Problem),
    /// No such entity.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// A unique field is taken, or the entity is still referenced.
    #[response(status = 409, content_type = "application/problem+json")]
    Conflict(Problem),
    /// `If-Match` does not name the current version.
    #[response(status = 412, content_type = "application/problem+json")]
    PreconditionFailed(Problem),
    /// The body is over the size limit.
    #[response(status = 413, content_type = "application/problem+json")]
    PayloadTooLarge(Problem),
    /// The body is not JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(Problem),
    /// Some fields are invalid; `errors` points at each.
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// Unexpected failure; details are in the server log, not here.
    #[response(status = 500, content_type = "application/problem+json")]
    Internal(Problem),
}

/// The optional `If-Match` request header of writes.
#[derive(IntoParams)]
#[into_params(names("If-Match"), parameter_in = Header)]
#[allow(dead_code, reason = "documentation only: read by the IfMatch extractor")]
pub struct IfMatchHeader(
    /// An `ETag` from an earlier read (e.g. `"3"`), or `*`; a stale one fails with 412.
    Option<String>,
);

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = Http::builder()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("A login token from POST /admin/v1/auth/login, or a personal access token (tgpat_...)"))
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Document-level metadata; paths are collected from the handlers by `utoipa-axum`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate Admin API",
        description = "Manage APIs, routes, upstream targets, plans, developers, consumers, API keys and subscriptions. \
Every change is audited and reaches the gateways through the config change log. Errors are RFC 9457 problem documents.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = "/admin/v1", description = "This admin server")),
    modifiers(&BearerAuth),
    components(schemas(Problem))
)]
pub struct ApiDoc;
