//! The developer's first minute, in a real browser: sign up, confirm from the mail, create an
//! app, issue a key, subscribe, call the API through a real gateway — then rotate the key
//! (both work during the overlap) and revoke it (401).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio::net::TcpListener;
use tollgate_gateway::config::node::NodeInfo;
use tollgate_gateway::{ConfigSource, GatewayOptions};

use crate::chrome;
use crate::helpers::{PASSWORD, Portal};

/// An upstream answering every request with a small JSON forecast.
pub async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(|| async { axum::Json(json!({"forecast": "sunny"})) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A gateway node following the portal's database, on `listener`.
pub fn gateway(listener: TcpListener, pool: sqlx::PgPool) {
    let addr = listener.local_addr().expect("addr");
    let options = GatewayOptions {
        source: ConfigSource::Postgres(pool),
        state_dir: None,
        node: NodeInfo {
            id: uuid::Uuid::new_v4(),
            hostname: "journey".into(),
            listen: addr.to_string(),
            version: "test".into(),
            source: "postgres".into(),
        },
        listener: Default::default(),
        limits: Default::default(),
        initial_load_timeout: Duration::from_secs(5),
        metrics_listener: None,
        edge: Default::default(),
        limiter: Default::default(),
        allow_private_auth_urls: false,
        max_config_staleness: None,
        secrets: None,
        access_log: None,
        allow_insecure_upstream_tls: false,
        tracing: None,
        usage: tollgate_gateway::UsageOptions {
            flush: tollgate_gateway::usage::flush::FlushConfig {
                interval: Duration::from_millis(250),
                ..Default::default()
            },
            ..Default::default()
        },
    };
    tokio::spawn(tollgate_gateway::serve(listener, options, std::future::pending()));
}

/// A published API `weather` in front of `up` with a plan that needs no approval.
async fn publish_weather(portal: &Portal, up: SocketAddr) {
    let api = json!({"name": "weather", "description": "Forecasts", "portal_visible": true});
    let (s, api) = portal.admin_api(Method::POST, "/apis", Some(api)).await;
    assert_eq!(s, 201, "{api}");
    let id = api["id"].as_str().unwrap_or_default();
    let target = json!({"host": "127.0.0.1", "port": up.port()});
    assert_eq!(portal.admin_api(Method::POST, &format!("/apis/{id}/targets"), Some(target)).await.0, 201);
    let route = json!({"name": "forecast", "paths": ["/weather/*"]});
    assert_eq!(portal.admin_api(Method::POST, &format!("/apis/{id}/routes"), Some(route)).await.0, 201);
    let plan = json!({"name": "free", "rate_limit_per_minute": 600, "burst": 100});
    assert_eq!(portal.admin_api(Method::POST, &format!("/apis/{id}/plans"), Some(plan)).await.0, 201);
    let doc = "openapi: 3.1.0\ninfo: {title: Weather, version: '1'}\npaths:\n  /weather/{city}:\n    get:\n      parameters: [{name: city, in: path, required: true}]\n      responses: {'200': {description: ok}}\n";
    let upload = json!({"label": "v1", "published": true, "content": doc});
    assert_eq!(portal.admin_api(Method::POST, &format!("/apis/{id}/documents"), Some(upload)).await.0, 201);
}

async fn call(gateway: &str, key: &str) -> u16 {
    let res = reqwest::Client::new().get(format!("{gateway}/weather/today")).header("x-api-key", key).send().await;
    res.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn a_new_developer_makes_a_first_call_within_a_minute_then_rotates_and_revokes() {
    let gw_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
    let gw = format!("http://{}", gw_listener.local_addr().expect("addr"));
    let gw_url = gw.clone();
    let portal = Portal::spawn_with(move |c| c.gateway_url = gw_url).await;
    publish_weather(&portal, upstream().await).await;
    gateway(gw_listener, portal.pool.clone());
    let Some(b) = chrome::start(false, 1280, 900).await else { return };
    let p = |path: &str| format!("{}{path}", portal.base);

    let started = Instant::now();
    b.goto(&p("/signup")).await;
    b.fill("name", "Grace Hopper").await;
    b.fill("email", "grace@example.com").await;
    b.fill("password", PASSWORD).await;
    b.click("form[action='/signup'] button[type=submit]", "/signup").await;
    b.wait_for("main h1", 5).await;
    assert_eq!(b.text("main h1").await, "Check your inbox");
    let link = portal.link_in_mail("grace@example.com", "/verify?token=").await;
    b.goto(&link).await;
    b.click("form[action='/verify'] button", "/apps?notice=verified").await;
    b.fill("name", "Weather station").await;
    b.click("form[action='/apps'] button[type=submit]", "notice=app-created").await;
    b.click("form[action$='/keys'] button[type=submit]", "/keys").await;
    let key = b.text("#new-key").await;
    assert!(key.starts_with("tg_"), "{key}");
    b.wait_for(".live.ok", 15).await;
    b.goto(&p("/apis/weather")).await;
    b.click("form[action='/apis/weather/subscribe'] button[type=submit]", "notice=subscribed").await;
    b.wait_for(".live.ok", 15).await;
    assert_eq!(call(&gw, &key).await, 200, "the first call succeeds once the page says it is live");
    let first_call = started.elapsed();
    // The call shows on the app's usage page (gateways write usage every 250 ms here).
    let usage = format!("{}{}/usage?range=hour", portal.base, app_page_path(&portal).await);
    let seen = Instant::now() + Duration::from_secs(20);
    loop {
        b.goto(&usage).await;
        if b.text(".tiles div:first-child dd").await == "1" {
            break;
        }
        assert!(Instant::now() < seen, "the call never showed on the usage page");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let page = b.client.source().await.unwrap_or_default();
    assert!(page.contains(": 1 successful</title>"), "the bar of that minute names the call");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(60), "sign-up to the call in the usage chart took {elapsed:?}");
    // The reference fills the key just issued (kept in this tab only) into its curl lines.
    b.goto(&format!("{}/apis/weather/reference", portal.base)).await;
    b.wait_for("code[data-curl]", 5).await;
    let curl = b.text("code[data-curl]").await;
    assert!(curl.contains(&format!("x-api-key: {key}")), "{curl}");
    eprintln!(
        "journey: first successful call after {first_call:?}, in the usage chart after {elapsed:?} (browser, page loads included)"
    );

    // Rotate with a one-hour overlap: both keys work.
    let app_page = portal.base.clone() + &app_page_path(&portal).await;
    b.goto(&app_page).await;
    let select = b.client.find(fantoccini::Locator::Css("select[name=overlap]")).await.expect("overlap");
    select.select_by_value("3600").await.expect("choose overlap");
    b.click("form[action$='/rotate'] button[type=submit]", "/rotate").await;
    let new_key = b.text("#new-key").await;
    assert_ne!(new_key, key);
    b.wait_for(".live.ok", 15).await;
    assert_eq!((call(&gw, &key).await, call(&gw, &new_key).await), (200, 200), "both keys work during the overlap");

    // Revoke both: refused at once.
    for _ in 0..2 {
        b.goto(&app_page).await;
        b.click("form[action$='/revoke'] button[type=submit]", "notice=key-revoked").await;
    }
    b.wait_for(".live.ok", 15).await;
    assert_eq!((call(&gw, &key).await, call(&gw, &new_key).await), (401, 401));
}

async fn app_page_path(portal: &Portal) -> String {
    let (id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM consumers WHERE name = 'Weather station'")
        .fetch_one(&portal.pool)
        .await
        .expect("app");
    format!("/apps/{id}")
}
