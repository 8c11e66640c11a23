//! Every main page in a real browser, light and dark, laptop and phone: nothing scrolls
//! sideways, every field has a label, every image a text alternative, dark mode is dark.
//! `TOLLGATE_SCREENSHOTS=1 cargo test -p tollgate-portal --test portal pages` also writes
//! the screenshots in `docs/screenshots/`.

use std::path::PathBuf;

use serde_json::Value;

use crate::apps::{create_app, issue_key};
use crate::catalog::published_api;
use crate::chrome::{self, Chrome};
use crate::helpers::{PASSWORD, Portal};

/// Checks the page in the browser; returns what failed.
const AUDIT: &str = r#"
const problems = [];
if (document.documentElement.scrollWidth > window.innerWidth + 1) {
  const clipped = e => { for (let a = e.parentElement; a; a = a.parentElement) { if (getComputedStyle(a).overflowX !== 'visible') { return true; } } return false; };
  const wide = [...document.querySelectorAll('body *')].find(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !clipped(e));
  problems.push('scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth +
    (wide ? ' (first: ' + wide.tagName + '.' + wide.className + ' in ' +
      [wide.parentElement, wide.parentElement && wide.parentElement.parentElement].filter(Boolean)
        .map(e => e.tagName + '.' + e.className + ':' + Math.round(e.getBoundingClientRect().width)).join(' < ') + ')' : ''));
}
for (const f of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  if (!f.labels || f.labels.length === 0) { problems.push('unlabelled field ' + (f.name || f.id)); }
}
for (const img of document.querySelectorAll('img')) {
  if (!img.hasAttribute('alt')) { problems.push('image without alt: ' + img.src); }
}
if (!document.querySelector('h1')) { problems.push('no h1'); }
const dark = window.matchMedia('(prefers-color-scheme: dark)').matches;
const bg = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number);
const light = (bg[0] + bg[1] + bg[2]) / 3 > 128;
if (dark === light) { problems.push('colour scheme not applied: dark=' + dark + ' background=' + bg); }
return problems;
"#;

fn shots_dir() -> Option<PathBuf> {
    std::env::var_os("TOLLGATE_SCREENSHOTS")
        .map(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("docs").join("screenshots"))
}

/// Light and dark, laptop and phone.
pub const VARIANTS: [(bool, u32, u32, &str); 4] = [
    (false, 1280, 900, "light-laptop"),
    (true, 1280, 900, "dark-laptop"),
    (false, 390, 844, "light-phone"),
    (true, 390, 844, "dark-phone"),
];

pub async fn check(b: &Chrome, url: &str, name: &str, variant: &str) {
    b.goto(url).await;
    b.wait_for("main", 5).await;
    audit_here(b, name, variant).await;
}

/// Audits the page the browser shows (and takes its screenshot when asked).
pub async fn audit_here(b: &Chrome, name: &str, variant: &str) {
    let problems: Value = b.eval(AUDIT).await;
    let url = b.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
    assert_eq!(problems, Value::Array(vec![]), "{name} ({variant}) at {url}");
    if let Some(dir) = shots_dir() {
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let png = b.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}-{variant}.png")), png).expect("write screenshot");
    }
}

#[tokio::test]
async fn main_pages_work_in_light_and_dark_on_laptops_and_phones() {
    let portal = Portal::spawn().await;
    let (api, _, _) = published_api(&portal, "weather").await;
    let doc = serde_json::json!({"label": "v1", "published": true, "content": crate::reference::HOSTILE});
    let (status, _) = portal.admin_api(reqwest::Method::POST, &format!("/apis/{api}/documents"), Some(doc)).await;
    assert_eq!(status, 201);
    let mut dev = portal.developer("pages@example.com").await;
    let app = create_app(&mut dev, "Weather station").await;
    issue_key(&mut dev, app).await;
    for (dark, width, height, variant) in VARIANTS {
        let Some(b) = chrome::start(dark, width, height).await else { return };
        let p = |path: &str| format!("{}{path}", portal.base);
        check(&b, &p("/"), "portal-home", variant).await;
        check(&b, &p("/signup"), "portal-signup", variant).await;
        check(&b, &p("/apis"), "portal-catalog", variant).await;
        check(&b, &p("/apis/weather"), "portal-api", variant).await;
        check(&b, &p("/login"), "portal-login", variant).await;
        b.fill("email", "pages@example.com").await;
        b.fill("password", PASSWORD).await;
        b.click("form[action='/login'] button[type=submit]", "/apps").await;
        check(&b, &p("/apis/weather/reference"), "portal-reference", variant).await;
        check(&b, &p("/apps"), "portal-apps", variant).await;
        check(&b, &p(&format!("/apps/{app}")), "portal-app", variant).await;
        check(&b, &p(&format!("/apps/{app}/usage")), "portal-usage", variant).await;
        check(&b, &p("/account"), "portal-account", variant).await;
        check(&b, &p("/team"), "portal-team", variant).await;
        // A form with errors: the summary and the messages next to the fields.
        b.goto(&p("/apps")).await;
        b.fill("name", "<no>").await;
        b.click("form[action='/apps'] button[type=submit]", "/apps").await;
        b.wait_for(".error-summary", 5).await;
        audit_here(&b, "portal-form-errors", variant).await;
    }
}
