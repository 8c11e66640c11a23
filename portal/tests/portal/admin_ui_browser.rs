//! The admin UI in a real browser: the product owner's path from an OpenAPI file to a
//! developer's first call (import, review, plan with approval, the developer subscribes in
//! the portal, approval in the queue, the call through a real gateway, the dashboard shows
//! it); and every main page light and dark on laptops and phones, over the demo data.
//! `TOLLGATE_SCREENSHOTS=1 cargo test -p tollgate-portal --test portal admin_pages` writes
//! the screenshots to `docs/screenshots/`.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use tokio::net::TcpListener;

use crate::apps::{create_app, issue_key};
use crate::chrome::{self, Chrome};
use crate::helpers::Portal;
use crate::journey::{gateway, upstream};
use crate::pages::{VARIANTS, audit_here, check};

async fn log_in(b: &Chrome, portal: &Portal, email: &str, password: &str) {
    b.goto(&format!("{}/ui/login", portal.admin.base_url)).await;
    b.fill("email", email).await;
    b.fill("password", password).await;
    b.click("form[action='/ui/login'] button[type=submit]", "/ui").await;
    b.wait_for("main h1", 5).await;
}

async fn tick(b: &Chrome, css: &str) {
    let el = b.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
    el.click().await.expect("tick");
}

#[tokio::test]
async fn an_owner_publishes_an_openapi_file_and_approves_the_first_developer() {
    let gw_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
    let gw = format!("http://{}", gw_listener.local_addr().expect("addr"));
    let gw_url = gw.clone();
    let portal = Portal::spawn_with(move |c| c.gateway_url = gw_url).await;
    let up = upstream().await;
    gateway(gw_listener, portal.pool.clone());
    let Some(b) = chrome::start(false, 1280, 900).await else { return };
    let admin = |path: &str| format!("{}{path}", portal.admin.base_url);
    log_in(&b, &portal, &portal.admin.owner_email, &portal.admin.owner_password).await;

    // Import: the file is chosen in the browser's file field.
    let doc = format!(
        "openapi: 3.1.0\ninfo: {{title: Forecasts, version: '2'}}\nservers: [{{url: 'http://{up}'}}]\npaths:\n  /forecast/{{city}}:\n    get:\n      parameters: [{{name: city, in: path, required: true}}]\n      responses: {{'200': {{description: ok}}}}\n  /stations:\n    get: {{responses: {{'200': {{description: ok}}}}}}\n"
    );
    let file = std::env::temp_dir().join(format!("forecasts-{}.yaml", uuid::Uuid::new_v4()));
    std::fs::write(&file, doc).expect("write the document");
    b.goto(&admin("/ui/apis/import")).await;
    let input = b.client.find(Locator::Id("file")).await.expect("file field");
    input.send_keys(&file.display().to_string()).await.expect("choose the file");
    b.click("form[action='/ui/apis/import'] button[type=submit]", "/ui/apis/import").await;
    b.wait_for("input[name='route.1.path']", 5).await;
    assert_eq!(b.text("main h1").await, "Review “Forecasts”");
    let path = b.client.find(Locator::Css("input[name='route.0.path']")).await.expect("route path");
    assert_eq!(path.prop("value").await.expect("value").as_deref(), Some("/forecast/{city}"));
    b.click("form[action='/ui/apis/import/save'] button[type=submit]", "notice=imported").await;
    let saved_at = Instant::now();
    let api_url = b.client.current_url().await.expect("url").to_string();
    // The gateway serves the new routes (a keyless call is refused with 401, no longer 404).
    let keyless = || async {
        let res = reqwest::Client::new().get(format!("{gw}/forecast/oslo")).send().await;
        res.map(|r| r.status().as_u16()).unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while keyless().await != 401 {
        assert!(Instant::now() < deadline, "the imported routes never reached the gateway");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let live_after = saved_at.elapsed();
    b.wait_for(".live.ok", 15).await;

    // A plan that needs approval.
    b.goto(&api_url).await;
    b.click("a[href$='/plans/new']", "/plans/new").await;
    b.fill("name", "partner").await;
    b.fill("rate_limit_per_minute", "600").await;
    tick(&b, "#approval_required").await;
    b.click("button[value='save']", "notice=created").await;
    assert!(b.text(".words").await.contains("600 requests a minute"));

    // The developer subscribes in the portal; the request waits for approval.
    let mut dev = portal.developer("dana@example.com").await;
    let app = create_app(&mut dev, "Farm planner").await;
    let key = issue_key(&mut dev, app).await;
    let (_, plans) = portal.admin_api(reqwest::Method::GET, "/subscriptions", None).await;
    assert_eq!(plans["data"].as_array().map(Vec::len), Some(0));
    let page = dev.get("/apis/forecasts").await;
    let plan_id = page
        .html
        .split("name=\"plan\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_default()
        .to_owned();
    let asked = dev
        .post(
            "/apis/forecasts/subscribe",
            &[("app", &app.to_string()), ("plan", &plan_id), ("comment", "For our farm planner")],
        )
        .await;
    assert!(asked.url.contains("notice=requested"), "{}", asked.html);
    let call = || async {
        let res = reqwest::Client::new().get(format!("{gw}/forecast/oslo")).header("x-api-key", &key).send().await;
        res.map(|r| r.status().as_u16()).unwrap_or(0)
    };
    assert_eq!(call().await, 403, "a pending subscription does not let calls through");

    // The owner approves in the queue.
    b.goto(&admin("/ui/approvals")).await;
    assert!(b.text("main table").await.contains("For our farm planner"));
    tick(&b, "input[name='id']").await;
    b.click("button[value='approve']", "notice=approved").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while call().await != 200 {
        assert!(Instant::now() < deadline, "the approved app's call never succeeded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The call shows on the dashboard (gateways write usage every 250 ms here).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        b.goto(&admin("/ui?range=hour")).await;
        if b.text(".tiles div:first-child dd").await != "0" {
            break;
        }
        assert!(Instant::now() < deadline, "the call never showed on the dashboard");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(b.text("main").await.contains("Farm planner"), "the app is among the busiest consumers");
    assert!(b.text("main").await.contains("in sync"), "the gateway node is listed in sync");
    let _ = std::fs::remove_file(&file);
    eprintln!("imported API served by the gateway {} ms after the save's redirect", live_after.as_millis());
}

#[tokio::test]
async fn admin_pages_work_in_light_and_dark_on_laptops_and_phones() {
    let portal = Portal::spawn().await;
    let outcome = tollgate_admin::demo::ensure(&portal.pool, "127.0.0.1:9".parse().expect("addr"), &Default::default())
        .await
        .expect("demo data");
    assert!(matches!(outcome, tollgate_admin::demo::Outcome::Created(_)));
    let (_, apis) = portal.admin_api(reqwest::Method::GET, "/apis?name=weather", None).await;
    let api = apis["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    let (_, plans) = portal.admin_api(reqwest::Method::GET, &format!("/apis/{api}/plans"), None).await;
    let plan = plans["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    let (_, routes) = portal.admin_api(reqwest::Method::GET, &format!("/apis/{api}/routes"), None).await;
    let route = routes["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    let (_, consumers) = portal.admin_api(reqwest::Method::GET, "/consumers", None).await;
    let consumer = consumers["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    let binding = serde_json::json!({"consumer_id": consumer, "fingerprint": "3f".repeat(32)});
    let (status, made) = portal.admin_api(reqwest::Method::POST, "/certificate-bindings", Some(binding)).await;
    assert_eq!(status, 201, "{made}");
    // Certificates: one served by name (the default), one due for renewal, a client one.
    let ca = tollgate_admin::testkit::certs::TestCa::new("Example CA");
    let now = time::OffsetDateTime::now_utc();
    let soon = ca.leaf_valid(&["legacy.example.com"], now - time::Duration::days(300), now + time::Duration::days(12));
    for (cert, usage, default) in [
        (ca.leaf(&["api.example.com", "*.api.example.com"]), "server", true),
        (soon, "server", false),
        (ca.leaf(&["gateway.internal"]), "client", false),
    ] {
        let body =
            serde_json::json!({"cert": cert.chain_pem, "key": cert.key_pem, "usage": usage, "is_default": default});
        let (status, made) = portal.admin_api(reqwest::Method::POST, "/certificates", Some(body)).await;
        assert_eq!(status, 201, "{made}");
    }
    for (dark, width, height, variant) in VARIANTS {
        let Some(b) = chrome::start(dark, width, height).await else { return };
        let p = |path: &str| format!("{}{path}", portal.admin.base_url);
        check(&b, &p("/ui/login"), "admin-login", variant).await;
        log_in(&b, &portal, &portal.admin.owner_email, &portal.admin.owner_password).await;
        check(&b, &p("/ui?range=month"), "admin-dashboard", variant).await;
        check(&b, &p("/ui/apis"), "admin-apis", variant).await;
        check(&b, &p(&format!("/ui/apis/{api}")), "admin-api", variant).await;
        check(&b, &p(&format!("/ui/apis/{api}/routes/{route}")), "admin-route", variant).await;
        check(&b, &p("/ui/apis/import"), "admin-import", variant).await;
        b.fill("content", crate::admin_ui::PETS).await;
        b.click("form[action='/ui/apis/import'] button[type=submit]", "/ui/apis/import").await;
        b.wait_for("input[name='route.1.path']", 5).await;
        audit_here(&b, "admin-review", variant).await;
        check(&b, &p("/ui/plans"), "admin-plans", variant).await;
        check(&b, &p(&format!("/ui/plans/{plan}")), "admin-plan", variant).await;
        check(&b, &p("/ui/approvals"), "admin-approvals", variant).await;
        check(&b, &p("/ui/developers?q=example"), "admin-developers", variant).await;
        check(&b, &p(&format!("/ui/consumers/{consumer}")), "admin-consumer", variant).await;
        check(&b, &p("/ui/audit"), "admin-audit", variant).await;
        check(&b, &p("/ui/outbox"), "admin-outbox", variant).await;
        check(&b, &p("/ui/users"), "admin-users", variant).await;
        check(&b, &p("/ui/certificates"), "admin-certificates", variant).await;
        // A form with errors: the summary and the messages next to the fields.
        b.goto(&p(&format!("/ui/apis/{api}/plans/new"))).await;
        b.fill("burst", "lots").await;
        b.click("button[value='save']", "/plans/new").await;
        b.wait_for(".error-summary", 5).await;
        audit_here(&b, "admin-form-errors", variant).await;
    }
}
