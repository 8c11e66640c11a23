//! The catalog, plans in words, and subscribing: at once, or after an admin's decision.

use reqwest::Method;
use serde_json::{Value, json};

use crate::apps::create_app;
use crate::helpers::Portal;

/// A published API `name` with plans `free` (600 a minute, burst 100, 10,000 a month) and
/// `gold` (approval required); returns (api id, free id, gold id).
pub async fn published_api(portal: &Portal, name: &str) -> (String, String, String) {
    let (s, api) = portal
        .admin_api(Method::POST, "/apis", Some(json!({"name": name, "description": "Forecasts for any place", "portal_visible": true, "tags": ["geo", "weather"]})))
        .await;
    assert_eq!(s, 201, "{api}");
    let api = api["id"].as_str().unwrap_or_default().to_owned();
    let route = json!({"name": "forecast", "paths": [format!("/{name}/forecast")]});
    assert_eq!(portal.admin_api(Method::POST, &format!("/apis/{api}/routes"), Some(route)).await.0, 201);
    let free = json!({"name": "free", "rate_limit_per_minute": 600, "burst": 100, "quota_per_month": 10000});
    let (_, free) = portal.admin_api(Method::POST, &format!("/apis/{api}/plans"), Some(free)).await;
    let gold =
        json!({"name": "gold", "rate_limit_per_second": 50, "quota_per_day": 1000000, "approval_required": true});
    let (_, gold) = portal.admin_api(Method::POST, &format!("/apis/{api}/plans"), Some(gold)).await;
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    (api, id(&free), id(&gold))
}

#[tokio::test]
async fn the_catalog_lists_published_apis_with_search_and_tags() {
    let portal = Portal::spawn().await;
    published_api(&portal, "weather").await;
    let (s, _) = portal.admin_api(Method::POST, "/apis", Some(json!({"name": "internal-billing"}))).await;
    assert_eq!(s, 201);
    let mut b = portal.browser();
    let all = b.get("/apis").await;
    assert!(all.shows("weather") && !all.shows("internal-billing"), "unpublished APIs stay hidden");
    assert!(b.get("/apis/internal-billing").await.status == 404);
    assert!(b.get("/apis?q=FORECAST").await.shows("/apis/weather"), "search matches descriptions, any case");
    assert!(!b.get("/apis?q=nothing-like-it").await.html.contains("/apis/weather"));
    assert!(b.get("/apis?tag=geo").await.html.contains("/apis/weather"));
    assert!(!b.get("/apis?tag=finance").await.html.contains("href=\"/apis/weather\""));
    let hostile = b.get("/apis?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert!(!hostile.html.contains("<script>alert"));
}

#[tokio::test]
async fn plans_are_described_in_words() {
    let portal = Portal::spawn().await;
    published_api(&portal, "weather").await;
    let page = portal.browser().get("/apis/weather").await;
    let promise = "600 requests a minute: one every 100 ms, up to 101 at once, never more than 700 in any minute";
    assert!(page.shows(promise), "{}", page.html);
    assert!(page.shows("10,000 requests a month, resets on the 1st, UTC"));
    assert!(page.shows("50 requests a second"));
    assert!(page.shows("1,000,000 requests a day, resets at midnight UTC"));
    assert!(page.shows("Needs an administrator's approval") && page.shows("Active at once"));
    assert!(page.shows("http://127.0.0.1:9/weather/forecast"), "paths on the gateway's public URL");
}

#[tokio::test]
async fn subscribing_is_immediate_or_waits_for_approval_and_the_decision_is_shown() {
    let portal = Portal::spawn().await;
    let (_, free, gold) = published_api(&portal, "weather").await;
    let mut b = portal.developer("sub@example.com").await;
    let app = create_app(&mut b, "subscriber").await;
    let app_s = app.to_string();
    b.get("/apis/weather").await;
    let done = b.post("/apis/weather/subscribe", &[("app", &app_s), ("plan", &free), ("comment", "")]).await;
    assert!(done.url.contains("notice=subscribed"), "{}", done.url);
    assert!(done.html.contains("badge active"));
    b.get(&format!("/apps/{app}")).await;
    let key_page = b.post(&format!("/apps/{app}/keys"), &[("key_name", "")]).await;
    let key = crate::apps::shown_key(&key_page);
    assert!(
        key_page.html.contains(&format!("curl -H \"x-api-key: {key}\" http://127.0.0.1:9/weather/forecast")),
        "{}",
        key_page.html
    );
    let usage = b.get(&format!("/apps/{app}/usage")).await;
    assert!(
        usage.shows("weather · free") && usage.shows("0 of 10,000 this month; 10,000 left, resets"),
        "{}",
        usage.html
    );
    b.get("/apis/weather").await;
    let twice = b.post("/apis/weather/subscribe", &[("app", &app_s), ("plan", &gold), ("comment", "")]).await;
    assert!(twice.field_error("app").is_some(), "one plan per API and app");

    let other = create_app(&mut b, "second").await;
    let other_s = other.to_string();
    b.get("/apis/weather").await;
    let asked = b
        .post("/apis/weather/subscribe", &[("app", &other_s), ("plan", &gold), ("comment", "We build a farming app")])
        .await;
    assert!(asked.url.contains("notice=requested"));
    let (_, subs) = portal.admin_api(Method::GET, &format!("/subscriptions?consumer_id={other}"), None).await;
    let sub = &subs["data"][0];
    assert_eq!(sub["status"], "pending");
    assert_eq!(sub["comment"], "We build a farming app");
    let id = sub["id"].as_str().unwrap_or_default();
    // Blank is blank by either side's rules: Unicode spaces (U+0085 included, which
    // ECMAScript's `\s` lacks) and U+FEFF (which only ECMAScript counts).
    for blank in ["", " \t", "\u{85}", "\u{feff}", "\u{3000}\u{85}"] {
        let (s, no_reason) = portal
            .admin_api(Method::POST, &format!("/subscriptions/{id}/reject"), Some(json!({"reason": blank})))
            .await;
        assert_eq!(s, 422, "{blank:?}: {no_reason}");
    }
    let (s, _) = portal
        .admin_api(
            Method::POST,
            &format!("/subscriptions/{id}/reject"),
            Some(json!({"reason": "Tell us more about the farm"})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = portal.admin_api(Method::POST, &format!("/subscriptions/{id}/approve"), Some(json!({}))).await;
    assert_eq!(s, 409, "only pending requests are decided");
    let app_page = b.get(&format!("/apps/{other}")).await;
    assert!(
        app_page.html.contains("badge rejected") && app_page.shows("Tell us more about the farm"),
        "{}",
        app_page.html
    );
    // Asking again replaces the rejected request.
    b.get("/apis/weather").await;
    let again =
        b.post("/apis/weather/subscribe", &[("app", &other_s), ("plan", &gold), ("comment", "It is a big farm")]).await;
    assert!(again.url.contains("notice=requested"), "{}", again.html);
    let (_, subs) = portal.admin_api(Method::GET, &format!("/subscriptions?consumer_id={other}"), None).await;
    let id = subs["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    let (s, approved) = portal
        .admin_api(Method::POST, &format!("/subscriptions/{id}/approve"), Some(json!({"reason": "Welcome"})))
        .await;
    assert_eq!((s, approved["status"].as_str()), (200, Some("active")));
    assert!(b.get(&format!("/apps/{other}")).await.html.contains("badge active"));
}

#[tokio::test]
async fn a_plan_of_another_api_or_an_app_of_another_team_is_refused() {
    let portal = Portal::spawn().await;
    let (_, free, _) = published_api(&portal, "weather").await;
    let (_, maps_free, _) = published_api(&portal, "maps").await;
    let mut b = portal.developer("mix@example.com").await;
    let app = create_app(&mut b, "mine").await.to_string();
    b.get("/apis/weather").await;
    let wrong_plan = b.post("/apis/weather/subscribe", &[("app", &app), ("plan", &maps_free)]).await;
    assert!(wrong_plan.field_error("plan").is_some(), "{}", wrong_plan.html);
    let mut stranger = portal.developer("stranger@example.com").await;
    stranger.get("/apis/weather").await;
    let foreign = stranger.post("/apis/weather/subscribe", &[("app", &app), ("plan", &free)]).await;
    assert_eq!(foreign.status, 404);
    assert_eq!(portal.count("subscriptions").await, 0);
}
