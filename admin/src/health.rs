//! Liveness and readiness of the admin and portal processes, for orchestrators and load
//! balancers: `GET /health/live` answers 200 while the process serves HTTP; `GET
//! /health/ready` answers 200 when PostgreSQL answers `SELECT 1` within [`DB_TIMEOUT`], else
//! 503 with the reason (neither service is of any use without its database). JSON bodies,
//! never cached, no authentication (they say nothing but up or down).

use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sqlx::PgPool;

/// Longest wait for the database's answer before the process is reported not ready.
pub const DB_TIMEOUT: Duration = Duration::from_secs(2);

/// The two endpoints, for a service whose database is `db`.
pub fn routes<S: Clone + Send + Sync + 'static>(db: PgPool) -> Router<S> {
    Router::new()
        .route("/health/live", get(|| async { json(StatusCode::OK, r#"{"status":"live"}"#.to_owned()) }))
        .route("/health/ready", get(move || async move { ready(&db).await }))
}

/// 200 when the database answers within [`DB_TIMEOUT`], 503 with the reason otherwise.
pub async fn ready(db: &PgPool) -> Response {
    let probe = sqlx::query("SELECT 1").execute(db);
    let failure = match tokio::time::timeout(DB_TIMEOUT, probe).await {
        Ok(Ok(_)) => return json(StatusCode::OK, r#"{"status":"ready"}"#.to_owned()),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: the database is unreachable");
            "the database is unreachable".to_owned()
        }
        Err(_) => format!("the database did not answer within {} s", DB_TIMEOUT.as_secs()),
    };
    let body = serde_json::json!({"status": "unavailable", "reason": failure});
    json(StatusCode::SERVICE_UNAVAILABLE, body.to_string())
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, serde_json::Value) {
        let res = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let bytes = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// A database nobody listens for: live, not ready, and it says why.
    #[tokio::test]
    async fn an_unreachable_database_is_live_but_not_ready() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let db = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(1))
            .connect_lazy(&format!("postgres://nobody@127.0.0.1:{port}/none"))
            .unwrap();
        let app: Router = routes(db);
        assert_eq!(get(&app, "/health/live").await, (StatusCode::OK, serde_json::json!({"status": "live"})));
        let (status, body) = get(&app, "/health/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "unavailable");
        assert!(body["reason"].as_str().is_some_and(|r| r.contains("database")), "{body}");
    }
}
