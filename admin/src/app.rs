//! The admin router: `/admin/v1/*` (REST API), `/admin/v1/openapi.json`, `/admin/docs`
//! (API reference), `/healthz`. Cross-cutting layers: request id, tracing, body limit.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderName;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;
use crate::{apis, auth};

/// The `/admin/v1` routes and the OpenAPI document describing them.
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::login::login))
        .routes(routes!(auth::login::me))
        .routes(routes!(apis::list_apis, apis::create_api))
        .routes(routes!(apis::get_api, apis::patch_api, apis::delete_api))
}

/// The whole admin HTTP service.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let body_limit = state.config().body_limit;
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .nest("/admin/v1", api.fallback(not_found))
        .merge(SwaggerUi::new("/admin/docs").url("/admin/v1/openapi.json", doc))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("resource at this path")
}
