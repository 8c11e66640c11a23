//! The admin router: `/admin/v1/*` (REST API), `/admin/v1/openapi.json`, `/admin/docs`
//! (API reference), `/healthz`. Cross-cutting layers: request id, tracing, body limit,
//! security headers.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::openapi::{self, ApiDoc};
use crate::state::AppState;
use crate::{
    apis, audit, auth, certificate_bindings, certificates, consumers, developers, documents, keys, nodes, outbox,
    plans, routes, subscriptions, targets, token_bindings, tokens, usage, users,
};

/// The `/admin/v1` routes and the OpenAPI document describing them.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login::login))
        .routes(routes!(auth::login::me))
        .routes(routes!(apis::list_apis, apis::create_api))
        .routes(routes!(apis::get_api, apis::patch_api, apis::delete_api))
        .routes(routes!(documents::list_documents, documents::create_document))
        .routes(routes!(documents::get_document, documents::patch_document, documents::delete_document))
        .routes(routes!(targets::list_targets, targets::create_target))
        .routes(routes!(targets::get_target, targets::patch_target, targets::delete_target))
        .routes(routes!(routes::list_routes, routes::create_route))
        .routes(routes!(routes::get_route, routes::patch_route, routes::delete_route))
        .routes(routes!(plans::list_plans, plans::create_plan))
        .routes(routes!(plans::get_plan, plans::patch_plan, plans::delete_plan))
        .routes(routes!(developers::list_developers, developers::create_developer))
        .routes(routes!(developers::get_developer, developers::patch_developer, developers::delete_developer))
        .routes(routes!(consumers::list_consumers, consumers::create_consumer))
        .routes(routes!(consumers::get_consumer, consumers::patch_consumer, consumers::delete_consumer))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::get_key, keys::patch_key, keys::delete_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(subscriptions::list_subscriptions, subscriptions::create_subscription))
        .routes(routes!(
            subscriptions::get_subscription,
            subscriptions::patch_subscription,
            subscriptions::delete_subscription
        ))
        .routes(routes!(subscriptions::approve_subscription))
        .routes(routes!(subscriptions::reject_subscription))
        .routes(routes!(outbox::list_outbox))
        .routes(routes!(token_bindings::list_token_bindings, token_bindings::create_token_binding))
        .routes(routes!(
            token_bindings::get_token_binding,
            token_bindings::patch_token_binding,
            token_bindings::delete_token_binding
        ))
        .routes(routes!(
            certificate_bindings::list_certificate_bindings,
            certificate_bindings::create_certificate_binding
        ))
        .routes(routes!(
            certificate_bindings::get_certificate_binding,
            certificate_bindings::patch_certificate_binding,
            certificate_bindings::delete_certificate_binding
        ))
        .routes(routes!(certificates::list_certificates, certificates::create_certificate))
        .routes(routes!(
            certificates::get_certificate,
            certificates::replace_certificate,
            certificates::delete_certificate
        ))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::get_user, users::patch_user, users::delete_user))
        .routes(routes!(users::set_password))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::delete_token))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::list_config_events))
        .routes(routes!(nodes::list_nodes))
        .routes(routes!(nodes::delete_node))
        .routes(routes!(nodes::get_propagation))
        .routes(routes!(usage::api::get_usage))
        .routes(routes!(usage::api::get_top))
        .routes(routes!(usage::quota::get_quota))
}

/// The whole admin HTTP service.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let body_limit = state.config().body_limit;
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .nest("/admin/v1", api.fallback(not_found))
        .merge(SwaggerUi::new(DOCS_PATH).external_url_unchecked("/admin/v1/openapi.json", openapi::document(&doc)))
        .nest(crate::console::web::BASE, crate::console::router(&state))
        .route("/", axum::routing::get(crate::console::home))
        .route("/assets/{name}", axum::routing::get(crate::ui::assets::serve_asset))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(crate::health::routes(state.db().clone()))
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// Where the API reference (Swagger UI) is served.
const DOCS_PATH: &str = "/admin/docs";

/// Content-Security-Policy of every response but the API reference: a JSON document or a
/// problem opened in a browser may load nothing, run nothing and be framed by nobody.
const STRICT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Content-Security-Policy of the API reference: its own scripts, styles and images, all
/// served from here (Swagger UI sets inline styles, and its stylesheet inlines `data:`
/// images), and requests to this origin only ("try it out", the OpenAPI document).
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Adds the headers that keep browsers from sniffing, framing, caching or leaking admin
/// responses (tokens, secrets shown once, the admin directory). A header a handler set
/// itself is left as it is.
async fn security_headers(req: Request, next: Next) -> Response {
    let docs = req.uri().path().starts_with(DOCS_PATH);
    let mut res = next.run(req).await;
    let csp = if docs { DOCS_CSP } else { STRICT_CSP };
    let headers = res.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, csp),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    res
}

async fn not_found() -> ApiError {
    ApiError::not_found("resource at this path")
}
