//! The OpenAPI 3.1 document: shared error responses, the security scheme, the merge-patch
//! request schemas, and the interactive reference page (Swagger UI, assets embedded in the
//! binary).

use std::collections::BTreeSet;

use serde_json::{Value, json};
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
    /// `ETag`s from earlier reads (e.g. `"3"`, or `"3", "4"`), or `*`; a stale one fails with 412,
    /// and so does a weak tag (`W/"3"`), which never matches under If-Match's strong comparison.
    #[param(
        required = false,
        pattern = "^[ \t]*(?:\\*|(?:W/)?\"[!#-~]*\"(?:[ \t]*,[ \t]*(?:W/)?\"[!#-~]*\")*)?[ \t]*$"
    )]
    String,
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

/// The document as served: utoipa's, with each `application/merge-patch+json` request body
/// pointing at a patch schema derived from the entity's input schema (see [`patch_schema`]).
pub fn document(doc: &utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(doc).unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot serialise the OpenAPI document");
        Value::Null
    });
    let mut inputs = BTreeSet::new();
    for item in doc["paths"].as_object_mut().into_iter().flat_map(|paths| paths.values_mut()) {
        let body = item.pointer_mut("/patch/requestBody/content/application~1merge-patch+json/schema");
        let Some(schema) = body else { continue };
        let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) else {
            continue;
        };
        inputs.insert(name.to_owned());
        *schema = json!({ "$ref": format!("#/components/schemas/{name}Patch") });
    }
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for name in inputs {
            let patch = patch_schema(schemas.get(&name).cloned().unwrap_or(Value::Null), &name);
            schemas.insert(format!("{name}Patch"), patch);
        }
    }
    doc
}

/// A JSON merge patch (RFC 7396) of an input: every field optional; fields with a default
/// may be `null`, which resets them. Fields without a default cannot be reset (a null there
/// is a 422), so they stay non-nullable; nested objects are as in the input.
pub fn patch_schema(mut input: Value, name: &str) -> Value {
    let required: Vec<Value> = input
        .as_object_mut()
        .and_then(|o| o.remove("required"))
        .map_or_else(Vec::new, |r| r.as_array().cloned().unwrap_or_default());
    for (field, schema) in input["properties"].as_object_mut().into_iter().flatten() {
        if !required.iter().any(|r| r == field) {
            let description = schema.as_object_mut().and_then(|o| o.remove("description"));
            *schema = json!({ "anyOf": [schema.take(), { "type": "null" }] });
            if let Some(description) = description {
                schema["description"] = description;
            }
        }
    }
    input["description"] = json!(format!(
        "A JSON merge patch (RFC 7396) of {name}: only the fields to change; null resets a field to its default."
    ));
    input
}

/// Document-level metadata; paths are collected from the handlers by `utoipa-axum`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate Admin API",
        description = "Manage APIs, routes, upstream targets, plans, developers, consumers, API keys, token bindings, subscriptions and TLS certificates. \
Every change is audited and reaches the gateways through the config change log. Errors are RFC 9457 problem documents.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    servers((url = "/admin/v1", description = "This admin server")),
    modifiers(&BearerAuth),
    components(schemas(Problem))
)]
pub struct ApiDoc;
