//! API references from uploaded OpenAPI documents: checked on upload, rendered inert however
//! hostile, servers replaced by the gateway's URL, and a try-it console that reaches only
//! the gateway.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::apps::create_app;
use crate::catalog::published_api;
use crate::chrome;
use crate::helpers::Portal;

pub const HOSTILE: &str = r##"
openapi: 3.1.0
info:
  title: Weather
  version: "2"
  description: |
    Forecasts. <script>window.pwned = 1; alert(1)</script>
    <img src=x onerror="window.pwned = 2; alert(2)">
    [click me](javascript:alert(3)) and <a href="jAvAsCrIpT:alert(4)">me</a>
servers:
  - url: http://backend.internal:9000
tags:
  - name: forecasts
    description: "<svg onload=alert(5)>"
paths:
  /weather/{city}:
    get:
      tags: [forecasts]
      summary: "Today's forecast <b>bold?</b>"
      description: "**Sunny** days <iframe src=//evil.example></iframe>"
      parameters:
        - {name: city, in: path, required: true, schema: {type: string}}
        - {name: units, in: query, schema: {type: string, enum: [metric, imperial]}}
      responses:
        "200":
          description: The forecast
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Forecast"}
    post:
      tags: [forecasts]
      requestBody:
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Forecast"}
      responses:
        "201": {description: Stored}
components:
  schemas:
    Forecast:
      type: object
      required: [sky]
      properties:
        sky: {type: string, example: "sunny"}
        celsius: {type: integer, description: "</li><script>alert(6)</script>"}
"##;

async fn upload(portal: &Portal, api: &str, label: &str, content: &str, published: bool) -> (u16, Value) {
    portal
        .admin_api(
            Method::POST,
            &format!("/apis/{api}/documents"),
            Some(json!({"label": label, "published": published, "content": content})),
        )
        .await
}

#[tokio::test]
async fn documents_are_checked_on_upload_and_change_nothing_when_refused() {
    let portal = Portal::spawn().await;
    let (api, _, _) = published_api(&portal, "weather").await;
    for bad in [
        "swagger: '2.0'\ninfo: {title: T, version: '1'}\npaths: {}",
        "{ nope",
        "openapi: 3.0.3\ninfo: {version: '1'}\npaths: {}",
    ] {
        let (status, problem) = upload(&portal, &api, "v1", bad, true).await;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(problem["errors"][0]["pointer"], "/content", "{problem}");
    }
    let (status, _) = upload(&portal, &api, "not a label!", HOSTILE, true).await;
    assert_eq!(status, 422);
    assert_eq!(portal.count("api_documents").await, 0);
    let (status, doc) = upload(&portal, &api, "v2", HOSTILE, false).await;
    assert_eq!(status, 201, "{doc}");
    assert_eq!(
        (doc["format"].as_str(), doc["title"].as_str(), doc["openapi"].as_str()),
        (Some("yaml"), Some("Weather"), Some("3.1.0"))
    );
    let (status, _) = upload(&portal, &api, "v2", HOSTILE, false).await;
    assert_eq!(status, 409, "labels are unique per API");
    // Unpublished: no reference yet.
    let mut b = portal.browser();
    assert_eq!(b.get("/apis/weather/reference").await.status, 404);
    let id = doc["id"].as_str().unwrap_or_default();
    let (status, _) =
        portal.admin_api(Method::PATCH, &format!("/apis/{api}/documents/{id}"), Some(json!({"published": true}))).await;
    assert_eq!(status, 200);
    assert_eq!(b.get("/apis/weather/reference").await.status, 200);
    assert!(b.get("/apis/weather").await.html.contains("href=\"/apis/weather/reference\""));
}

#[tokio::test]
async fn a_hostile_document_renders_inert_with_the_gateways_url() {
    let portal = Portal::spawn().await;
    let (api, _, _) = published_api(&portal, "weather").await;
    assert_eq!(upload(&portal, &api, "v2", HOSTILE, true).await.0, 201);
    let page = portal.browser().get("/apis/weather/reference").await;
    assert_eq!(page.status, 200);
    let lower = page.html.to_ascii_lowercase();
    for bad in ["<script>window", "<script>alert", "onerror=", "onload=", "javascript:", "<iframe", "<svg"] {
        assert!(!lower.contains(bad), "{bad} reached the page");
    }
    assert!(page.html.contains("<strong>Sunny</strong>"), "Markdown still renders");
    assert!(!page.html.contains("backend.internal"), "the backend's server is never shown");
    assert!(page.shows("curl 'http://127.0.0.1:9/weather/{city}'"), "curl on the gateway's URL");
    assert!(page.shows("one of metric, imperial") && page.shows("sky") && page.html.contains("&#34;sunny&#34;"));
    let Some(b) = chrome::start(false, 1280, 900).await else { return };
    b.goto(&format!("{}/apis/weather/reference", portal.base)).await;
    b.wait_for("h1", 5).await;
    assert!(b.client.get_alert_text().await.is_err(), "a dialog opened");
    assert_eq!(b.eval("return typeof window.pwned;").await, json!("undefined"), "a script ran");
}

type Seen = Arc<Mutex<Vec<(String, String, Option<String>, String)>>>;

/// A stand-in gateway that records what it is sent and answers with a RateLimit header.
async fn fake_gateway() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let kept = kept.clone();
        async move {
            let key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            if let Ok(mut v) = kept.lock() {
                v.push((
                    parts.method.to_string(),
                    parts.uri.to_string(),
                    key,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
            ([("ratelimit-remaining", "599")], axum::Json(json!({"sky": "sunny"})))
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test]
async fn try_it_calls_only_the_gateway_and_shows_the_answer() {
    let (gw, seen) = fake_gateway().await;
    let portal = Portal::spawn_with(move |c| c.gateway_url = format!("http://{gw}")).await;
    let (api, _, _) = published_api(&portal, "weather").await;
    // The API's routes: `/weather/forecast` (see `published_api`) and this prefix.
    let route = json!({"name": "cities", "paths": ["/weather/*"]});
    assert_eq!(portal.admin_api(Method::POST, &format!("/apis/{api}/routes"), Some(route)).await.0, 201);
    assert_eq!(upload(&portal, &api, "v2", HOSTILE, true).await.0, 201);
    let mut anon = portal.browser();
    assert!(!anon.get("/apis/weather/reference").await.html.contains("name=\"key\""), "no try-it form signed out");
    anon.get("/login").await;
    let refused = anon.post("/apis/weather/reference/try", &[("op", "GET /weather/{city}"), ("p.city", "x")]).await;
    assert!(refused.url.contains("/login"), "try-it is for signed-in developers");
    assert!(seen.lock().map(|v| v.is_empty()).unwrap_or(false));

    let mut b = portal.developer("try@example.com").await;
    create_app(&mut b, "tryer").await;
    let page = b.get("/apis/weather/reference").await;
    assert!(
        page.html.contains("name=\"p.city\"") && page.html.contains("name=\"key\""),
        "the form works without JavaScript"
    );
    let answer = b
        .post(
            "/apis/weather/reference/try",
            &[
                ("op", "GET /weather/{city}"),
                ("p.city", "../../admin x"),
                ("q.units", "metric"),
                ("key", "tg_secret_for_one_call"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.html);
    assert!(answer.html.contains("class=\"status s2\">200<"), "{}", answer.html);
    assert!(answer.html.contains("ratelimit-remaining: 599"));
    assert!(answer.html.contains("&#34;sky&#34;: &#34;sunny&#34;"));
    assert!(!answer.html.contains("tg_secret_for_one_call"), "the key is not shown back");
    let calls = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(calls.len(), 1);
    let (method, uri, key, _) = &calls[0];
    assert_eq!(method, "GET");
    assert_eq!(uri, "/weather/..%2F..%2Fadmin%20x?units=metric", "parameters stay inside their path segment");
    assert_eq!(key.as_deref(), Some("tg_secret_for_one_call"));

    // Operations that are not in the document, or paths no route of the API serves, are not sent.
    for op in ["GET /admin/v1/users", "DELETE /weather/{city}", "GET http://evil.example/"] {
        let page = b.post("/apis/weather/reference/try", &[("op", op), ("p.city", "x")]).await;
        assert!(page.html.contains("This operation is not in the published document."), "{op}");
    }
    let posted = b
        .post(
            "/apis/weather/reference/try",
            &[("op", "POST /weather/{city}"), ("p.city", "oslo"), ("body", "{\"sky\":\"grey\"}")],
        )
        .await;
    assert!(posted.html.contains("class=\"status s2\""), "{}", posted.html);
    let calls = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(calls.len(), 2, "only the two real operations reached the gateway");
    assert_eq!(
        (calls[1].0.as_str(), calls[1].1.as_str(), calls[1].3.as_str()),
        ("POST", "/weather/oslo", "{\"sky\":\"grey\"}")
    );
}
