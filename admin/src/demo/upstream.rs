//! The demo APIs' upstream: a small HTTP server in the dev process answering plausible
//! JSON for every demo route, with latencies that vary (a few slow answers) and about one
//! answer in fifty a 500, so latency and error charts have something to show.

use std::future::Future;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;

/// Serves the demo upstream on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    axum::serve(listener, router()).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// The routes of the demo APIs (see `demo/*.yaml`).
pub fn router() -> Router {
    Router::new()
        .route("/weather/current", get(current_weather))
        .route("/weather/forecast/{city}", get(forecast))
        .route("/books", get(list_books))
        .route("/books/{isbn}", get(get_book))
        .route("/books/{isbn}/reviews", post(review_book))
        .route("/payments", post(create_payment))
        .route("/payments/{id}", get(get_payment))
        .layer(middleware::from_fn(like_a_real_service))
}

/// Delays each answer by a varying latency and fails about one in fifty.
async fn like_a_real_service(request: Request, next: Next) -> Response {
    let slow = fastrand::u8(..100) < 3;
    let ms = if slow { fastrand::u64(250..600) } else { fastrand::u64(3..60) };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    if fastrand::u8(..100) < 2 {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "temporarily unavailable"}))).into_response();
    }
    next.run(request).await
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

const CONDITIONS: [&str; 5] = ["sunny", "partly cloudy", "overcast", "light rain", "windy"];

fn conditions() -> &'static str {
    CONDITIONS[fastrand::usize(..CONDITIONS.len())]
}

#[derive(Deserialize)]
struct CityQuery {
    city: Option<String>,
}

async fn current_weather(Query(q): Query<CityQuery>) -> Response {
    let Some(city) = q.city.filter(|c| !c.trim().is_empty()) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "the query parameter city is required"})))
            .into_response();
    };
    Json(json!({
        "city": city,
        "temperature_c": f64::from(fastrand::i32(-50..350)) / 10.0,
        "humidity": fastrand::u8(20..100),
        "conditions": conditions(),
        "observed_at": now(),
    }))
    .into_response()
}

async fn forecast(Path(city): Path<String>) -> Json<Value> {
    let today = OffsetDateTime::now_utc().date();
    let days: Vec<Value> = (0..5i64)
        .map(|d| {
            let low = fastrand::i32(-10..20);
            json!({
                "date": (today + time::Duration::days(d)).to_string(),
                "high_c": low + fastrand::i32(3..12),
                "low_c": low,
                "conditions": conditions(),
            })
        })
        .collect();
    Json(json!({"city": city, "days": days}))
}

const BOOKS: [(&str, &str, &str, i32, f64); 4] = [
    ("9780141439518", "Pride and Prejudice", "Jane Austen", 1813, 4.3),
    ("9780451524935", "Nineteen Eighty-Four", "George Orwell", 1949, 4.2),
    ("9780142437230", "Don Quixote", "Miguel de Cervantes", 1605, 3.9),
    ("9780140449266", "The Count of Monte Cristo", "Alexandre Dumas", 1844, 4.3),
];

fn book(b: &(&str, &str, &str, i32, f64)) -> Value {
    json!({"isbn": b.0, "title": b.1, "author": b.2, "year": b.3, "rating": b.4})
}

#[derive(Deserialize)]
struct BookQuery {
    q: Option<String>,
}

async fn list_books(Query(q): Query<BookQuery>) -> Json<Value> {
    let words = q.q.unwrap_or_default().to_lowercase();
    let found: Vec<Value> = BOOKS
        .iter()
        .filter(|b| words.is_empty() || b.1.to_lowercase().contains(&words) || b.2.to_lowercase().contains(&words))
        .map(book)
        .collect();
    Json(json!({"books": found}))
}

async fn get_book(Path(isbn): Path<String>) -> Response {
    match BOOKS.iter().find(|b| b.0 == isbn) {
        Some(b) => Json(book(b)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "no book has this ISBN"}))).into_response(),
    }
}

async fn review_book(Path(isbn): Path<String>, body: Result<Json<Value>, JsonRejection>) -> Response {
    let rating = body.ok().and_then(|Json(b)| b["rating"].as_i64()).filter(|r| (1..=5).contains(r));
    match rating {
        Some(rating) => {
            let review = json!({"id": format!("rev_{}", fastrand::u32(..)), "isbn": isbn, "rating": rating, "created_at": now()});
            (StatusCode::CREATED, Json(review)).into_response()
        }
        None => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "rating must be 1 to 5"}))).into_response(),
    }
}

async fn create_payment(body: Result<Json<Value>, JsonRejection>) -> Response {
    let Ok(Json(body)) = body else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "send a JSON body with amount and currency"})))
            .into_response();
    };
    let payment = json!({
        "id": format!("pay_{}", fastrand::u32(..)),
        "amount": body["amount"].as_i64().unwrap_or(0),
        "currency": body["currency"].as_str().unwrap_or("EUR"),
        "status": "succeeded",
        "created_at": now(),
    });
    (StatusCode::CREATED, Json(payment)).into_response()
}

async fn get_payment(Path(id): Path<String>) -> Json<Value> {
    Json(json!({"id": id, "amount": 1999, "currency": "EUR", "status": "succeeded", "created_at": now()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every example path of the demo catalog is answered (not 404/405) by this server.
    #[tokio::test]
    async fn every_demo_route_is_served() -> anyhow::Result<()> {
        use tower::ServiceExt;
        for api in &super::super::APIS {
            for route in api.routes {
                for path in route.examples {
                    let body = route.body.map_or_else(axum::body::Body::empty, axum::body::Body::from);
                    let request = axum::http::Request::builder()
                        .method(route.method)
                        .uri(*path)
                        .header("content-type", "application/json")
                        .body(body)?;
                    let status = router().oneshot(request).await?.status();
                    let known_missing = path.ends_with("0000000000000");
                    assert!(
                        status.is_success() || status == StatusCode::INTERNAL_SERVER_ERROR || known_missing,
                        "{} {path}: {status}",
                        route.method
                    );
                }
            }
        }
        Ok(())
    }
}
