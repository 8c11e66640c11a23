//! Tollgate developer portal: sign-up, the API catalog and plans, apps, keys and
//! subscriptions, server-rendered from `web/templates` with every page usable without
//! JavaScript. Writes go through the admin's operations with the developer as the actor.

pub mod accounts;
pub mod apps;
pub mod catalog;
pub mod config;
pub mod docs;
pub mod live;
pub mod markdown;
pub mod reference;
pub mod state;
pub mod team;
pub mod tokens;
pub mod usage;
pub mod views;
pub mod web;

pub use config::PortalConfig;
pub use state::PortalState;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Router, middleware};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tollgate_admin::ui::{FORM_LIMIT, assets, headers};

use crate::web::{Chrome, Visit};

/// How often expired sessions are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Serves the portal on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    config: PortalConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = PortalState::new(pool, config)?;
    let sweeper = spawn_sweeper(state.clone());
    let served = axum::serve(listener, router(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    served?;
    Ok(())
}

fn spawn_sweeper(state: PortalState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            every.tick().await;
            if let Err(e) = state.sessions().sweep().await {
                tracing::warn!(error = %e, "expired portal sessions not swept");
            }
        }
    })
}

/// The portal's routes, in front of which the guard (session, CSRF) and the security
/// headers run.
pub fn router(state: PortalState) -> Router {
    use accounts::{login, recovery, settings, signup};
    let pages = Router::new()
        .route("/", get(show_home))
        .route("/signup", get(signup::show_signup).post(signup::signup))
        .route("/verify", get(signup::show_verify).post(signup::verify))
        .route("/verify/resend", post(signup::resend))
        .route("/login", get(login::show_login).post(login::login))
        .route("/logout", post(login::logout))
        .route("/logout/everywhere", post(login::logout_everywhere))
        .route("/forgot", get(recovery::show_forgot).post(recovery::forgot))
        .route("/reset", get(recovery::show_reset).post(recovery::reset))
        .route("/account", get(settings::show_account))
        .route("/account/password", post(settings::change_password))
        .route("/account/email", post(settings::change_email))
        .route("/email/confirm", get(settings::show_confirm_email).post(settings::confirm_email))
        .route("/team", get(team::show_team))
        .route("/team/invite", post(team::invite))
        .route("/team/remove", post(team::remove_member))
        .route("/invite", get(team::show_invite).post(team::accept_invite))
        .route("/apps", get(apps::show_apps).post(apps::create_app))
        .route("/apps/{id}", get(apps::show_app))
        .route("/apps/{id}/usage", get(usage::show_usage))
        .route("/apps/{id}/delete", post(apps::delete_app))
        .route("/apps/{id}/keys", post(apps::create_key))
        .route("/apps/{id}/keys/{key}/rotate", post(apps::rotate_key))
        .route("/apps/{id}/keys/{key}/revoke", post(apps::revoke_key))
        .route("/apis", get(catalog::show_catalog))
        .route("/apis/{name}", get(catalog::show_api))
        .route("/apis/{name}/subscribe", post(catalog::subscribe))
        .route("/apis/{name}/reference", get(docs::show_reference))
        .route("/apis/{name}/reference/try", post(docs::try_call))
        .route("/subscriptions/{id}/cancel", post(catalog::cancel))
        .route("/live/{event}", get(live::get_live))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), web::guard));
    let hsts = state.config().secure();
    Router::new()
        .route("/assets/{name}", get(assets::serve_asset))
        .route("/healthz", get(check_health))
        .merge(tollgate_admin::health::routes(state.db().clone()))
        .merge(pages)
        .layer(middleware::from_fn(move |req, next| headers::apply(hsts, req, next)))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .with_state(state)
}

async fn not_found() -> Response {
    web::error_page(StatusCode::NOT_FOUND, "There is nothing here.".to_owned())
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/home.html")]
struct HomePage {
    chrome: Chrome,
}

async fn show_home(visit: Visit) -> HomePage {
    HomePage { chrome: Chrome::new(&visit, "Build with our APIs", "home") }
}

/// `/healthz` (older name of `/health/ready`): 200 when the portal can reach its database, 503
/// otherwise — the portal is of no use without it.
async fn check_health(State(state): State<PortalState>) -> Response {
    tollgate_admin::health::ready(state.db()).await
}
