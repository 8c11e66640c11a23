//! Tollgate developer portal. For now a placeholder page and a health check; sign-up, the API
//! catalog and app management come with the portal work.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use sqlx::PgPool;
use tokio::net::TcpListener;

/// The landing page until the real portal exists.
const COMING_SOON: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tollgate developer portal</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem">
<h1>Tollgate developer portal</h1>
<p>Tollgate developer portal — coming soon.</p>
</body>
</html>
"#;

/// How long the health check waits for a database connection.
const HEALTH_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves the portal on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(pool)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// The portal's routes.
pub fn router(pool: PgPool) -> Router {
    Router::new().route("/", get(show_home)).route("/healthz", get(check_health)).with_state(pool)
}

async fn show_home() -> Html<&'static str> {
    Html(COMING_SOON)
}

/// 200 when the portal can reach its database, 503 otherwise: the portal is of no use without it.
async fn check_health(State(pool): State<PgPool>) -> impl IntoResponse {
    let probe = sqlx::query("SELECT 1").execute(&pool);
    let status = match tokio::time::timeout(HEALTH_DB_TIMEOUT, probe).await {
        Ok(Ok(_)) => StatusCode::OK,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "portal health check: database unreachable");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = if status.is_success() { r#"{"status":"ok"}"# } else { r#"{"status":"unavailable"}"# };
    (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body)
}
