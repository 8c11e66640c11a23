//! `tollgate dev --demo`: on a fresh database a newcomer finds example APIs and plans in the
//! admin API and the portal's catalog, signs in to the portal with the printed login, calls a
//! demo route with a demo key, and sees 30 days of (synthetic) history and live traffic in
//! the usage API. A second start on the same database adds nothing.

use std::time::Duration;

use anyhow::Context;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tollgate_admin::testkit::{install_crypto_provider, test_database};

use crate::support::{DevProcess, ScratchDir, eventually, wait_healthy};

/// Usage is flushed every second here; the live calls start once the gateway is up.
const LIVE: Duration = Duration::from_secs(30);

/// The configuration rows `--demo` creates, counted.
const COUNTS: &str = "SELECT (SELECT count(*) FROM apis), (SELECT count(*) FROM routes), (SELECT count(*) FROM plans),
        (SELECT count(*) FROM developers), (SELECT count(*) FROM consumers), (SELECT count(*) FROM api_keys),
        (SELECT count(*) FROM subscriptions), (SELECT count(*) FROM api_documents)";

type Counts = (i64, i64, i64, i64, i64, i64, i64, i64);

/// The admin API, logged in as the owner dev mode created.
struct AdminApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl AdminApi {
    async fn login(dev: &DevProcess) -> anyhow::Result<Self> {
        let base = format!("{}/admin/v1", dev.field("admin API").context("no admin URL")?);
        let password = dev.field("owner password").context("no owner password in the banner")?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let body = json!({"email": "admin@localhost", "password": password});
        let session: Value = http.post(format!("{base}/auth/login")).json(&body).send().await?.json().await?;
        let token = session["token"].as_str().context("no token")?.to_owned();
        Ok(Self { base, token, http })
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        anyhow::ensure!(res.status().is_success(), "GET {path}: {}", res.status());
        Ok(res.json().await?)
    }

    /// Requests of all APIs between `ago` before now and now, at `granularity`.
    async fn requests(&self, ago: time::Duration, granularity: &str) -> anyhow::Result<(u64, usize)> {
        let now = OffsetDateTime::now_utc();
        let (from, to) = ((now - ago).format(&Rfc3339)?, now.format(&Rfc3339)?);
        let report = self.get(&format!("/usage?from={from}&to={to}&granularity={granularity}")).await?;
        let series = &report["series"][0];
        Ok((series["total"]["requests"].as_u64().unwrap_or(0), series["points"].as_array().map_or(0, Vec::len)))
    }
}

fn names(page: &Value) -> Vec<String> {
    let items = page["data"].as_array().cloned().unwrap_or_default();
    items.iter().filter_map(|i| i["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn demo_fills_an_empty_database_once_and_sends_live_traffic() -> anyhow::Result<()> {
    install_crypto_provider();
    let db = test_database().await;
    let scratch = ScratchDir::new()?;
    let state = scratch.path().join("state");
    let start = || {
        DevProcess::start(|cmd| {
            cmd.arg("--demo").arg("--database-url").arg(&db.url).arg("--state-dir").arg(&state);
            cmd.args(["--usage-flush-interval-secs", "1"]).env_remove("TOLLGATE_USAGE");
        })
    };
    let started = OffsetDateTime::now_utc();
    let dev = start().await?;
    let data = dev.field("demo data").context("no demo line in the banner")?;
    assert!(data.contains("SYNTHETIC"), "the banner says the history is made up: {data}");
    let portal_password = dev.field("portal password").context("no portal password in the banner")?;
    assert_eq!(std::fs::read_to_string(state.join("demo-password"))?, portal_password);
    for url in [
        format!("{}/healthz", dev.field("admin API").context("admin")?),
        format!("{}/healthz", dev.field("developer portal").context("portal")?),
    ] {
        wait_healthy(&reqwest::Client::new(), &url).await?;
    }
    let admin = AdminApi::login(&dev).await?;

    // The admin API: the demo APIs and their plans, one subscription awaiting approval.
    let mut apis = names(&admin.get("/apis").await?);
    apis.sort();
    assert_eq!(apis, ["books", "payments", "weather"], "the sample API is not added next to the demo");
    let payments = admin.get("/apis?name=payments").await?;
    let payments_id = payments["data"][0]["id"].as_str().context("payments id")?.to_owned();
    let plans = admin.get(&format!("/apis/{payments_id}/plans")).await?;
    let partner = plans["data"].as_array().and_then(|p| p.iter().find(|p| p["name"] == "partner")).cloned();
    assert_eq!(partner.map(|p| p["approval_required"].clone()), Some(json!(true)), "{plans}");
    let pending = admin.get("/subscriptions?status=pending").await?;
    assert_eq!(pending["data"].as_array().map(Vec::len), Some(1), "{pending}");

    portal_checks(&dev, &portal_password).await?;
    let key = gateway_call(&dev, &state).await?;

    // 30 days of history, daily points, and live calls recorded by the gateway.
    let (month, days) = admin.requests(time::Duration::days(31), "day").await?;
    assert!(month > 100_000 && days >= 30, "30-day history: {month} requests in {days} points");
    let (_, hours) = admin.requests(time::Duration::hours(24), "hour").await?;
    assert!(hours >= 23, "24-hour history: {hours} hourly points");
    let live = eventually("live demo traffic in the usage API", LIVE, || async {
        match admin.requests(time::Duration::minutes(10), "minute").await {
            Ok((n, _)) if n >= 10 => Ok(n),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;
    assert!(live >= 10);
    dashboard_shows_live_traffic(&dev).await?;

    let before: Counts = sqlx::query_as(COUNTS).fetch_one(&db.pool).await?;
    let history = history_before(&db.pool, started).await?;
    let status = dev.stop("TERM").await?;
    assert!(status.success(), "first run exited with {status:?}");

    // A second start adds nothing, and the stored keys still call through the gateway.
    let again = start().await?;
    let data = again.field("demo data").context("no demo line on the second start")?;
    assert!(data.contains("nothing added"), "{}", again.banner());
    assert_eq!(again.field("portal password"), None, "the password is shown once");
    let after: Counts = sqlx::query_as(COUNTS).fetch_one(&db.pool).await?;
    assert_eq!(after, before, "(apis, routes, plans, developers, apps, keys, subscriptions, documents)");
    assert_eq!(history_before(&db.pool, started).await?, history, "no second history");
    assert_eq!(gateway_call(&again, &state).await?, key, "the demo upstream moved; its targets followed");
    let status = again.stop("TERM").await?;
    assert!(status.success(), "second run exited with {status:?}");
    Ok(())
}

/// Requests in the hour tier before the hour `started` fell in (live traffic adds later).
async fn history_before(pool: &sqlx::PgPool, started: OffsetDateTime) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(requests), 0)::bigint FROM usage_hours WHERE bucket < date_trunc('hour', $1::timestamptz)",
    )
    .bind(started)
    .fetch_one(pool)
    .await?)
}

/// The catalog lists the demo APIs, and the printed login signs in and sees the apps.
async fn portal_checks(dev: &DevProcess, password: &str) -> anyhow::Result<()> {
    let portal = dev.field("developer portal").context("no portal URL")?;
    let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build()?;
    let catalog = http.get(format!("{portal}/apis")).send().await?.text().await?;
    for api in ["weather", "books", "payments"] {
        assert!(catalog.contains(&format!("href=\"/apis/{api}\"")), "{api} in the catalog:\n{catalog}");
    }
    let reference = http.get(format!("{portal}/apis/payments/reference")).send().await?;
    assert_eq!(reference.status(), reqwest::StatusCode::OK);

    let form = http.get(format!("{portal}/login")).send().await?;
    let cookies = cookie_header(&form);
    let html = form.text().await?;
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).context("no csrf")?;
    let body = format!("csrf={csrf}&email=dev%40example.com&password={password}&next=%2Fapps");
    let signed_in = http
        .post(format!("{portal}/login"))
        .header(COOKIE, cookies)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    let to = signed_in.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(signed_in.status().is_redirection() && to.starts_with("/apps"), "{}: {to}", signed_in.status());
    let apps = http.get(format!("{portal}/apps")).header(COOKIE, cookie_header(&signed_in)).send().await?;
    let apps = apps.text().await?;
    assert!(apps.contains("weather-widget") && apps.contains("checkout"), "the demo developer's apps:\n{apps}");
    Ok(())
}

/// `name=value; …` of a response's cookies.
fn cookie_header(res: &reqwest::Response) -> String {
    let pairs = res.headers().get_all(SET_COOKIE).iter().filter_map(|v| v.to_str().ok()?.split(';').next());
    pairs.collect::<Vec<_>>().join("; ")
}

/// Calls a demo route with the stored key of `weather-widget` until it answers 200 (the
/// demo upstream fails one call in fifty on purpose); returns the key.
async fn gateway_call(dev: &DevProcess, state: &std::path::Path) -> anyhow::Result<String> {
    let gateway = dev.field("gateway").context("no gateway URL")?;
    let keys = std::fs::read_to_string(state.join("demo-keys"))?;
    let key = keys.lines().find_map(|l| l.strip_prefix("weather-widget ")).context("no weather-widget key")?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("{gateway}/weather/current?city=Lisbon");
    let body = eventually("a demo call to answer 200", Duration::from_secs(10), || async {
        match http.get(&url).header("x-api-key", key).send().await {
            Ok(res) if res.status() == reqwest::StatusCode::OK => res.json::<Value>().await.map_err(|e| e.to_string()),
            Ok(res) => Err(res.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await?;
    assert_eq!(body["city"], "Lisbon", "{body}");
    Ok(key.to_owned())
}

/// The owner logs in to the admin UI the banner names; the dashboard's last hour shows the
/// live demo calls and the dev process's gateway node in sync.
async fn dashboard_shows_live_traffic(dev: &DevProcess) -> anyhow::Result<()> {
    let ui = dev.field("admin UI").context("no admin UI in the banner")?;
    let password = dev.field("owner password").context("no owner password")?;
    let http = reqwest::Client::builder().cookie_store(true).build()?;
    let login = http.get(format!("{ui}/login")).send().await?.text().await?;
    let csrf = login.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
    let form = [("csrf", csrf), ("email", "admin@localhost"), ("password", password.as_str()), ("next", "")];
    let res = http.post(format!("{ui}/login")).form(&form).send().await?;
    anyhow::ensure!(res.url().path() == "/ui", "not logged in: {}", res.url());
    let page = http.get(format!("{ui}?range=hour")).send().await?.text().await?;
    let requests = page.split("<dt>Requests</dt><dd>").nth(1).and_then(|r| r.split('<').next()).unwrap_or("0");
    anyhow::ensure!(requests != "0", "the dashboard shows no live traffic");
    anyhow::ensure!(page.contains("in sync"), "the dev gateway is not listed in sync");
    Ok(())
}
