//! Forms without a valid token, forms from other sites, hostile text and the headers of
//! every page.

use crate::helpers::{PASSWORD, Portal};

const PAGES: &[&str] = &["/", "/signup", "/login", "/forgot", "/apis", "/nope"];

#[tokio::test]
async fn every_page_carries_a_strict_policy_and_the_usual_headers() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("sec@example.com").await;
    for path in PAGES.iter().chain(&["/apps", "/account", "/team"]) {
        let page = b.get(path).await;
        let h = &page.headers;
        let csp = h.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"), "{path}: {csp}");
        assert_eq!(h.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"), "{path}");
        assert_eq!(h.get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"), "{path}");
        assert_eq!(h.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{path}");
        assert!(h.get("referrer-policy").is_some(), "{path}");
    }
}

#[tokio::test]
async fn session_cookies_are_http_only_and_same_site() {
    let portal = Portal::spawn().await;
    portal.developer("cookie@example.com").await;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = http.get(format!("{}/login", portal.base)).send().await.expect("GET");
    let csrf_cookie = page.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(
        csrf_cookie.starts_with("tg_csrf=") && csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Lax"),
        "{csrf_cookie}"
    );
    let html = page.text().await.unwrap_or_default();
    let token =
        html.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned();
    let res = http
        .post(format!("{}/login", portal.base))
        .form(&[("csrf", token.as_str()), ("email", "cookie@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status().as_u16(), 303);
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tg_portal="))
        .unwrap_or_default();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Max-Age="),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain http here; https portals mark it Secure");
}

#[tokio::test]
async fn state_changes_without_a_valid_token_are_refused_and_change_nothing() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("csrf@example.com").await;
    b.get("/apps").await;
    let before = portal.count("consumers").await;
    let missing = b.post_raw("/apps", &[("name", "no-token")], &[]).await;
    assert_eq!(missing.status, 403);
    let wrong = b
        .post_raw("/apps", &[("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), ("name", "wrong-token")], &[])
        .await;
    assert_eq!(wrong.status, 403);
    let token = b.last.as_ref().map(|p| p.csrf()).unwrap_or_default();
    let foreign = b
        .post_raw("/apps", &[("csrf", token.as_str()), ("name", "other-site")], &[("origin", "https://evil.example")])
        .await;
    assert_eq!(foreign.status, 403, "a form posted from another site");
    let cross = b
        .post_raw("/apps", &[("csrf", token.as_str()), ("name", "cross-site")], &[("sec-fetch-site", "cross-site")])
        .await;
    assert_eq!(cross.status, 403);
    assert!(missing.shows("nothing was changed"));
    assert_eq!(portal.count("consumers").await, before);
    // A fresh browser without the session cannot post either.
    let mut stranger = portal.browser();
    stranger.get("/login").await;
    let logout_all = stranger.post_raw("/logout/everywhere", &[], &[]).await;
    assert_eq!(logout_all.status, 403);
    let ok = b.post("/apps", &[("name", "with-token")]).await;
    assert_eq!(ok.status, 200, "the real form works");
    assert_eq!(portal.count("consumers").await, before + 1);
}

#[tokio::test]
async fn sign_up_and_sign_in_forms_need_the_browser_token_too() {
    let portal = Portal::spawn().await;
    let mut b = portal.browser();
    let page = b.post_raw("/signup", &[("name", "x"), ("email", "x@example.com"), ("password", PASSWORD)], &[]).await;
    assert_eq!(page.status, 403);
    assert_eq!(portal.count("developers").await, 0);
}

#[tokio::test]
async fn hostile_text_is_shown_as_text() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("xss@example.com").await;
    b.get("/apps").await;
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let page = b.post("/apps", &[("name", "safe-name"), ("description", hostile)]).await;
    assert!(!page.html.contains("<script>alert"), "raw script in the page");
    assert!(!page.html.contains("<img src=x"), "raw markup in the page");
    assert!(page.shows(hostile), "shown escaped");
    let not_a_name = b.post("/apps", &[("name", "<b>bold</b>")]).await;
    assert!(not_a_name.field_error("name").is_some());
    assert!(!not_a_name.html.contains("<b>bold</b>"));
}

#[tokio::test]
async fn redirects_after_sign_in_stay_on_this_site() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("next@example.com").await;
    b.post("/logout", &[]).await;
    for evil in ["https://evil.example/", "//evil.example/x", "/\\evil.example"] {
        b.get("/login").await;
        let page = b.post("/login", &[("email", "next@example.com"), ("password", PASSWORD), ("next", evil)]).await;
        assert!(page.url.starts_with(&portal.base), "{evil} led to {}", page.url);
        b.post("/logout", &[]).await;
    }
}
