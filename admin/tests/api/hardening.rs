//! Findings of the admin API's security review: weak `If-Match` tags, route patterns the
//! gateways would refuse, and the headers every response carries.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Admin, Resp, assert_problem, read};

#[tokio::test]
async fn a_weak_if_match_never_matches() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("orders").await;
    let path = format!("/apis/{api}");
    for tag in ["W/\"1\"", "W/\"1\", \"7\"", "\"abc\""] {
        assert_problem(&admin.patch(&path, json!({"description": "lost"}), Some(tag)).await, 412, "stale-version");
        assert_problem(&admin.delete(&path, Some(tag)).await, 412, "stale-version");
    }
    assert_problem(&admin.patch(&path, json!({"description": "x"}), Some("1")).await, 400, "bad-request");
    let current = admin.get(&path).await;
    assert_eq!((current.body["description"].as_str(), current.etag.as_deref()), (Some(""), Some("\"1\"")));
    assert_eq!(admin.patch(&path, json!({"description": "v2"}), Some("W/\"1\", \"1\"")).await.status, 200);
}

#[tokio::test]
async fn route_paths_the_gateway_refuses_are_422() {
    let admin = Admin::spawn().await;
    let api = admin.create_api("orders").await;
    let routes = format!("/apis/{api}/routes");
    for (i, path) in ["/{a.b}", "/{m0-}", "/{id}/{id}"].iter().enumerate() {
        let r = admin.post(&routes, json!({"name": format!("r{i}"), "paths": ["/ok", path]})).await;
        assert_problem(&r, 422, "validation");
        let error = &r.body["errors"][0];
        assert!(error["pointer"] == "/paths" || error["pointer"] == "/paths/1", "{path}: {}", r.body);
        assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", r.body);
    }
    let dup = admin.post(&routes, json!({"name": "dup", "paths": ["/{id}/{id}"]})).await;
    assert!(dup.body["errors"][0]["detail"].as_str().is_some_and(|d| d.contains("duplicate")), "{}", dup.body);
    assert_eq!(admin.count("routes").await, 0);
    let ok = admin.post(&routes, json!({"name": "ok", "paths": ["/users/{user_id}/posts/{id}"]})).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let patched = admin.patch(&format!("{routes}/{}", ok.id()), json!({"paths": ["/{x}/{x}"]}), None).await;
    assert_problem(&patched, 422, "validation");
}

fn assert_security_headers(r: &Resp, csp: &str) {
    let header = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(header("x-content-type-options"), "nosniff", "{r:?}");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("cache-control"), "no-store");
    assert_eq!(header("content-security-policy"), csp);
}

const STRICT_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

#[tokio::test]
async fn responses_carry_security_headers() {
    let admin = Admin::spawn().await;
    let json = admin.create_api("orders").await;
    assert!(!json.is_empty());
    let list = admin.get("/apis").await;
    assert_eq!((list.status, list.content_type.as_str()), (200, "application/json"));
    assert_security_headers(&list, STRICT_CSP);
    let login = admin.owner_login_via(&admin.http).await;
    assert_security_headers(&login, STRICT_CSP);

    let unauthorized = admin.send_as(Some(""), Method::GET, "/apis", None, None).await;
    assert_problem(&unauthorized, 401, "unauthorized");
    assert_security_headers(&unauthorized, STRICT_CSP);
    let invalid = admin.post("/apis", json!({"name": "Not A Slug"})).await;
    assert_problem(&invalid, 422, "validation");
    assert_security_headers(&invalid, STRICT_CSP);
    for missing in [admin.url("/no-such-thing"), format!("{}/nowhere", admin.app.base_url)] {
        let r = read(admin.http.get(missing).send().await.expect("sent")).await;
        assert_problem(&r, 404, "not-found");
        assert_security_headers(&r, STRICT_CSP);
    }
    let doc = read(admin.http.get(admin.url("/openapi.json")).send().await.expect("sent")).await;
    assert_security_headers(&doc, STRICT_CSP);
}

#[tokio::test]
async fn the_reference_page_may_load_its_own_assets_only() {
    let admin = Admin::spawn().await;
    let page = read(admin.http.get(format!("{}/admin/docs/", admin.app.base_url)).send().await.expect("sent")).await;
    assert_eq!(page.status, 200);
    let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    for directive in ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.split(';').any(|d| d.trim() == directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-eval") && !csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    assert_eq!(page.headers.get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
    let html = admin.http.get(format!("{}/admin/docs/", admin.app.base_url)).send().await.expect("sent");
    let html = html.text().await.unwrap_or_default();
    // Every script is a file of its own (no inline script for the policy to block), served here.
    assert_eq!(html.matches("<script").count(), html.matches("<script src=\"./").count(), "{html}");
    for asset in ["swagger-ui-bundle.js", "swagger-initializer.js", "swagger-ui.css"] {
        let r = admin.http.get(format!("{}/admin/docs/{asset}", admin.app.base_url)).send().await.expect("sent");
        assert_eq!(r.status(), 200, "{asset}");
    }
}
