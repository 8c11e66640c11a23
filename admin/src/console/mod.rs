//! The admin UI, served by the admin service under `/ui`: server-rendered from
//! `web/templates/admin`, every page usable without JavaScript, behind the same session,
//! CSRF and header machinery as the portal. Its handlers call the very operations the REST
//! handlers call (`ops`, `keys`, `subscriptions`, `documents`, usage reads), with the
//! signed-in user as the audit actor: one validation, one transaction per change.

pub mod apis;
pub mod approvals;
pub mod audit;
pub mod certificates;
pub mod dashboard;
pub mod fields;
pub mod import;
pub mod login;
pub mod people;
pub mod plans;
pub mod users;
pub mod views;
pub mod web;

use axum::response::Redirect;
use axum::routing::{get, post};
use axum::{Router, middleware};

use crate::state::AppState;
use crate::ui::headers;

/// The UI's routes (to be nested under [`web::BASE`]), with the guard and security headers.
pub fn router(state: &AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(dashboard::show_dashboard))
        .route("/login", get(login::show_login).post(login::login))
        .route("/logout", post(login::logout))
        .route("/logout/everywhere", post(login::logout_everywhere))
        .route("/apis", get(apis::show_apis))
        .route("/apis/import", get(apis::show_import).post(apis::upload))
        .route("/apis/import/save", post(apis::save_import))
        .route("/apis/{id}", get(apis::show_api).post(apis::save_api))
        .route("/apis/{id}/{kind}", post(apis::add_child))
        .route("/apis/{id}/targets/{target}", post(apis::save_target))
        .route("/apis/{id}/routes/{route}", get(apis::show_route).post(apis::save_route))
        .route("/apis/{id}/{kind}/{child}/delete", post(apis::delete_child))
        .route("/apis/{id}/plans/new", get(plans::show_new).post(plans::create_plan))
        .route("/plans", get(plans::show_plans))
        .route("/plans/new", get(plans::pick_api))
        .route("/plans/{id}", get(plans::show_plan).post(plans::update_plan))
        .route("/approvals", get(approvals::show_approvals).post(approvals::decide))
        .route("/developers", get(people::show_search))
        .route("/developers/{id}", get(people::show_developer))
        .route("/developers/{id}/approve", post(approvals::approve_developer))
        .route("/consumers/{id}", get(people::show_consumer))
        .route("/consumers/{id}/keys/{key}/{action}", post(people::key_action))
        .route("/consumers/{id}/certificates", post(people::certificate_binding))
        .route("/consumers/{id}/certificates/{binding}/delete", post(people::certificate_binding))
        .route("/certificates", get(certificates::show_certificates).post(certificates::upload))
        .route("/certificates/{id}/{action}", post(certificates::act))
        .route("/users", get(users::show_users).post(users::create_user))
        .route("/users/{id}", post(users::update_user))
        .route("/users/{id}/password", post(users::reset_password))
        .route("/tokens", post(users::create_token))
        .route("/tokens/{id}/delete", post(users::delete_token))
        .route("/audit", get(audit::show_audit))
        .route("/outbox", get(audit::show_outbox))
        .route("/live/{event}", get(live))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), web::guard));
    let hsts = state.config().ui_https;
    Router::new().merge(pages).layer(middleware::from_fn(move |req, next| headers::apply(hsts, req, next)))
}

/// `GET /`: the UI.
pub async fn home() -> Redirect {
    Redirect::to(web::BASE)
}

async fn not_found() -> axum::response::Response {
    web::error_page(axum::http::StatusCode::NOT_FOUND, "There is nothing here.".to_owned())
}

/// `GET /ui/live/{event}`: how far a change has propagated, for the page's script.
async fn live(
    axum::extract::State(state): axum::extract::State<AppState>,
    _: web::Admin,
    axum::extract::Path(event): axum::extract::Path<i64>,
) -> Result<axum::Json<crate::nodes::Live>, web::UiError> {
    Ok(axum::Json(crate::nodes::Live::of_event(state.db(), &state.config().nodes, event).await?))
}
