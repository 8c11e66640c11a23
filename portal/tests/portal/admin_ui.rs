//! The admin UI over HTTP, as a browser without JavaScript uses it: sign-in and roles
//! (viewers get no forms, forged posts are refused and change nothing), the OpenAPI import
//! with its review, forms that refuse bad input next to the field, stale edits, the plan
//! editor, the approval queue, keys revoked with a reason, users, audit and outbox.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Browser, PASSWORD, Page, Portal};

pub const PETS: &str = r#"openapi: 3.0.3
info: {title: Pet Store, version: "1.0", description: Pets for everyone.}
servers: [{url: "http://127.0.0.1:9/v2"}]
paths:
  /pets:
    get: {responses: {"200": {description: ok}}}
    post: {responses: {"201": {description: created}}}
  /pets/{petId}:
    get:
      parameters: [{name: petId, in: path, required: true, schema: {type: string}}]
      responses: {"200": {description: ok}}
"#;

/// The value of input `name` on `page`.
fn value_of(page: &Page, name: &str) -> String {
    let marker = format!("name=\"{name}\"");
    let at = page.html.find(&marker).unwrap_or_else(|| panic!("no field {name}"));
    let tag = page.html[at..].split('>').next().unwrap_or_default();
    let value = tag.split("value=\"").nth(1).unwrap_or_default();
    unescape(value.split('"').next().unwrap_or_default())
}

/// The review form's fields as the page shows them (route rows, API fields, document).
fn review_fields(page: &Page) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in ["name", "upstream", "routes"] {
        out.push((name.to_owned(), value_of(page, name)));
    }
    out.push(("description".into(), between(&page.html, "name=\"description\" rows=\"3\">", "</textarea>")));
    out.push(("portal_visible".into(), "on".into()));
    let n: usize = value_of(page, "routes").parse().unwrap_or(0);
    for i in 0..n {
        for f in ["name", "methods", "path", "rewrite"] {
            let name = format!("route.{i}.{f}");
            out.push((name.clone(), value_of(page, &name)));
        }
        out.push((format!("route.{i}.include"), "on".into()));
    }
    out.push(("content".into(), value_of(page, "content")));
    out
}

fn between(html: &str, start: &str, end: &str) -> String {
    let from = html.find(start).map(|i| i + start.len()).unwrap_or_else(|| panic!("no {start}"));
    html[from..].split(end).next().unwrap_or_default().to_owned()
}

fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"").replace("&#39;", "'").replace("&#60;", "<").replace("&#62;", ">").replace("&#38;", "&")
}

fn set(fields: &mut [(String, String)], name: &str, value: &str) {
    let f = fields.iter_mut().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no field {name}"));
    f.1 = value.to_owned();
}

async fn post_fields(b: &mut Browser, path: &str, fields: &[(String, String)]) -> Page {
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post(path, &refs).await
}

/// The number of POST forms on a page other than those of the user's own session and
/// tokens (log out, log out everywhere, personal access tokens), which every role has.
fn change_forms(page: &Page) -> usize {
    let own = ["action=\"/ui/logout\"", "action=\"/ui/logout/everywhere\"", "action=\"/ui/tokens"];
    page.html.matches("method=\"post\"").count() - own.iter().map(|a| page.html.matches(a).count()).sum::<usize>()
}

async fn api_id(portal: &Portal, name: &str) -> String {
    let (_, list) = portal.admin_api(Method::GET, &format!("/apis?name={name}"), None).await;
    list["data"][0]["id"].as_str().unwrap_or_else(|| panic!("no API {name}: {list}")).to_owned()
}

async fn audit_rows(portal: &Portal) -> i64 {
    portal.count("audit_log").await
}

#[tokio::test]
async fn sign_in_is_checked_throttled_and_ends_everywhere() {
    let portal = Portal::spawn().await;
    let mut anon = Browser::new(&portal.admin.base_url);
    let to_login = anon.get("/ui/apis").await;
    assert!(to_login.url.contains("/ui/login?next=%2Fui%2Fapis"), "{}", to_login.url);
    let root = anon.get("/").await;
    assert!(root.url.contains("/ui/login"), "/ leads to the UI: {}", root.url);
    let wrong =
        anon.post("/ui/login", &[("email", "owner@example.com"), ("password", "not it at all"), ("next", "")]).await;
    assert_eq!(wrong.field_error("email").as_deref(), Some("The e-mail address or the password is not right"));
    assert!(anon.get("/ui").await.url.contains("/ui/login"), "a wrong password opens no session");

    let mut a = portal.owner_ui().await;
    let mut b = portal.owner_ui().await;
    assert!(a.get("/ui/apis").await.shows("Import from OpenAPI"));
    let bye = a.post("/ui/logout/everywhere", &[]).await;
    assert!(bye.url.contains("/ui/login?notice=logged-out-everywhere"), "{}", bye.url);
    assert!(b.get("/ui/apis").await.url.contains("/ui/login"), "the other session ended too");

    // Five failures from one address lock the account out for a while, also with the right password.
    for _ in 0..5 {
        anon.get("/ui/login").await;
        anon.post("/ui/login", &[("email", "owner@example.com"), ("password", "wrong password!"), ("next", "")]).await;
    }
    anon.get("/ui/login").await;
    let owner_password = portal.admin.owner_password.clone();
    let locked =
        anon.post("/ui/login", &[("email", "owner@example.com"), ("password", &owner_password), ("next", "")]).await;
    assert_eq!(locked.status, 429, "{}", locked.html);
}

#[tokio::test]
async fn a_viewer_sees_no_forms_and_forged_posts_change_nothing() {
    let portal = Portal::spawn().await;
    let mut owner = portal.owner_ui().await;
    owner.get("/ui/apis/import").await;
    let review = owner.post_multipart("/ui/apis/import", &[], &[("file", "pets.yaml", PETS)]).await;
    let saved = post_fields(&mut owner, "/ui/apis/import/save", &review_fields(&review)).await;
    assert!(saved.url.contains("notice=imported"), "{}", saved.html);
    let id = api_id(&portal, "pet-store").await;

    let (email, password) = portal.admin_user("viewer").await;
    let mut viewer = portal.admin_ui(&email, &password).await;
    for path in
        [format!("/ui/apis/{id}"), "/ui/apis".into(), "/ui/plans".into(), "/ui/approvals".into(), "/ui/users".into()]
    {
        let page = viewer.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(change_forms(&page), 0, "{path} offers a viewer a form: {}", page.html);
    }
    assert!(viewer.get("/ui/outbox").await.status == 403, "the outbox is for owners");
    let before = audit_rows(&portal).await;
    let (_, api_before) = portal.admin_api(Method::GET, &format!("/apis/{id}"), None).await;
    let forged: [(String, Vec<(&str, &str)>); 5] = [
        (format!("/ui/apis/{id}"), vec![("version", "1"), ("name", "hijacked")]),
        ("/ui/apis/import/save".into(), vec![("name", "evil"), ("upstream", "http://evil.example"), ("routes", "0")]),
        (format!("/ui/apis/{id}/routes"), vec![("route-name", "evil"), ("route-paths", "/evil")]),
        ("/ui/users".into(), vec![("email", "evil@example.com"), ("role", "owner")]),
        (format!("/ui/apis/{id}/plans/new"), vec![("name", "free-for-all"), ("burst", "0")]),
    ];
    for (path, fields) in forged {
        let page = viewer.post(&path, &fields).await;
        assert_eq!(page.status, 403, "{path}: {}", page.html);
    }
    assert_eq!(audit_rows(&portal).await, before, "a refused post records nothing");
    let (_, api_after) = portal.admin_api(Method::GET, &format!("/apis/{id}"), None).await;
    assert_eq!(api_before, api_after, "the API is unchanged");
}

#[tokio::test]
async fn an_editor_cannot_manage_admin_users() {
    let portal = Portal::spawn().await;
    let (email, password) = portal.admin_user("editor").await;
    let mut editor = portal.admin_ui(&email, &password).await;
    let page = editor.get("/ui/users").await;
    assert!(page.shows("Your account") && !page.shows("Add a user"), "{}", page.html);
    let users_before = portal.count("admin_users").await;
    let made =
        editor.post("/ui/users", &[("email", "new@example.com"), ("display_name", "N"), ("role", "owner")]).await;
    assert_eq!(made.status, 403);
    let (_, users) = portal.admin_api(Method::GET, "/users", None).await;
    let owner_id =
        users["data"].as_array().and_then(|u| u.iter().find(|u| u["role"] == "owner")).map(|u| u["id"].clone());
    let owner_id = owner_id.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    assert_eq!(
        editor.post(&format!("/ui/users/{owner_id}"), &[("version", "1"), ("role", "viewer")]).await.status,
        403
    );
    assert_eq!(editor.post(&format!("/ui/users/{owner_id}/password"), &[]).await.status, 403);
    assert_eq!(portal.count("admin_users").await, users_before);
    // Their own tokens they do manage.
    editor.get("/ui/users").await;
    let token = editor.post("/ui/tokens", &[("name", "ci"), ("days", "30")]).await;
    assert!(token.shows("shown once") && token.html.contains("tgpat_"), "{}", token.html);
}

#[tokio::test]
async fn an_owner_manages_users_with_passwords_shown_once() {
    let portal = Portal::spawn().await;
    let mut owner = portal.owner_ui().await;
    owner.get("/ui/users").await;
    let bad = owner.post("/ui/users", &[("email", "not-an-address"), ("display_name", "X"), ("role", "editor")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.field_error("email").is_some(), "{}", bad.html);
    let made =
        owner.post("/ui/users", &[("email", "ops@example.com"), ("display_name", "Ops"), ("role", "viewer")]).await;
    assert!(made.shows("User created"), "{}", made.html);
    let password = between(&made.html, "<code id=\"new-key\">", "</code>");
    assert!(password.len() >= 20, "{password}");
    let mut ops = portal.admin_ui("ops@example.com", &password).await;
    assert!(ops.get("/ui/users").await.shows("Your account"));
    // The owner makes ops an editor; a second save from the same (now stale) page is refused.
    let page = owner.get("/ui/users").await;
    let (_, users) = portal.admin_api(Method::GET, "/users", None).await;
    let ops_id = users["data"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["email"] == "ops@example.com"))
        .map(|u| u["id"].clone());
    let ops_id = ops_id.and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let form_at =
        page.html.find(&format!("action=\"/ui/users/{ops_id}\"")).unwrap_or_else(|| panic!("no form for ops"));
    let version = between(&page.html[form_at..], "name=\"version\" value=\"", "\"");
    let promoted = owner.post(&format!("/ui/users/{ops_id}"), &[("version", &version), ("role", "editor")]).await;
    assert!(promoted.url.contains("notice=saved"), "{}", promoted.html);
    let stale = owner.post(&format!("/ui/users/{ops_id}"), &[("version", &version), ("role", "owner")]).await;
    assert_eq!(stale.status, 422);
    assert!(stale.shows("Someone else changed this user"), "{}", stale.html);
    let (_, ops_user) = portal.admin_api(Method::GET, &format!("/users/{ops_id}"), None).await;
    assert_eq!(ops_user["role"], "editor");
}

#[tokio::test]
async fn an_openapi_import_is_reviewed_then_saved_through_the_operations() {
    let portal = Portal::spawn().await;
    let mut owner = portal.owner_ui().await;
    owner.get("/ui/apis/import").await;
    let not_openapi = owner.post_multipart("/ui/apis/import", &[], &[("file", "x.yaml", "swagger: '2.0'\n")]).await;
    assert!(not_openapi.field_error("file").is_some_and(|m| m.contains("Swagger 2.0")), "{}", not_openapi.html);
    let nothing = owner.post_multipart("/ui/apis/import", &[("content", "")], &[]).await;
    assert!(nothing.field_error("file").is_some());
    let apis_before = portal.count("apis").await;

    let review = owner.post_multipart("/ui/apis/import", &[], &[("file", "pets.yaml", PETS)]).await;
    assert!(review.shows("Review “Pet Store”"), "{}", review.html);
    assert_eq!(value_of(&review, "upstream"), "http://127.0.0.1:9/v2");
    assert_eq!(value_of(&review, "route.1.path"), "/pets/{pet_id}");
    assert_eq!(value_of(&review, "route.1.rewrite"), "/v2/pets/{pet_id}");
    assert_eq!(portal.count("apis").await, apis_before, "a review saves nothing");

    // Bad input comes back next to its field, and nothing is created.
    let mut fields = review_fields(&review);
    set(&mut fields, "route.0.path", "/pets/../admin");
    set(&mut fields, "upstream", "ftp://files");
    let refused = post_fields(&mut owner, "/ui/apis/import/save", &fields).await;
    assert_eq!(refused.status, 200);
    assert!(refused.field_error("upstream").is_some(), "{}", refused.html);
    assert!(refused.shows("Route 1:"), "{}", refused.html);
    assert_eq!(portal.count("apis").await, apis_before);

    // Reviewed: one route renamed, one left out.
    let mut fields = review_fields(&review);
    set(&mut fields, "route.0.name", "list-pets");
    fields.retain(|(k, _)| k != "route.1.include");
    let saved = post_fields(&mut owner, "/ui/apis/import/save", &fields).await;
    assert!(saved.url.contains("notice=imported"), "{}", saved.html);
    let id = api_id(&portal, "pet-store").await;
    let (_, routes) = portal.admin_api(Method::GET, &format!("/apis/{id}/routes"), None).await;
    let names: Vec<&str> = routes["data"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, vec!["list-pets"]);
    assert_eq!(routes["data"][0]["rewrite_path"], "/v2/pets");
    let (_, targets) = portal.admin_api(Method::GET, &format!("/apis/{id}/targets"), None).await;
    assert_eq!(
        (targets["data"][0]["host"].as_str(), targets["data"][0]["port"].as_i64()),
        (Some("127.0.0.1"), Some(9))
    );
    let (_, docs) = portal.admin_api(Method::GET, &format!("/apis/{id}/documents"), None).await;
    assert_eq!(docs[0]["published"], true, "the document is the API's published reference: {docs}");
    let (_, audit) = portal.admin_api(Method::GET, &format!("/audit-log?entity_id={id}"), None).await;
    assert_eq!(audit["data"][0]["actor_name"], "owner@example.com", "the owner is the actor: {audit}");

    // Importing it again fails on the name; nothing half-made is left behind.
    let again = post_fields(&mut owner, "/ui/apis/import/save", &review_fields(&review)).await;
    assert!(again.field_error("name").is_some(), "{}", again.html);
    assert_eq!(portal.count("apis").await, apis_before + 1);
}

#[tokio::test]
async fn settings_forms_refuse_bad_input_and_report_stale_edits() {
    let portal = Portal::spawn().await;
    let (s, api) = portal.admin_api(Method::POST, "/apis", Some(json!({"name": "orders"}))).await;
    assert_eq!(s, 201);
    let id = api["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/ui/apis/{id}");
    let mut a = portal.owner_ui().await;
    let mut b = portal.owner_ui().await;
    let page_a = a.get(&path).await;
    b.get(&path).await;
    let version = value_of(&page_a, "version");
    let base: Vec<(String, String)> = vec![
        ("version".into(), version.clone()),
        ("name".into(), "orders".into()),
        ("description".into(), "".into()),
        ("upstream_protocol".into(), "http".into()),
        ("lb_policy".into(), "round_robin".into()),
        ("connect_timeout_ms".into(), "5000".into()),
        ("read_timeout_ms".into(), "60000".into()),
        ("total_timeout_ms".into(), "0".into()),
        ("retries".into(), "0".into()),
        ("retry_on_statuses".into(), "502, 503, 504".into()),
        ("canary_weight".into(), "0".into()),
        ("auth_methods".into(), "key_auth".into()),
        ("key_header".into(), "x-api-key".into()),
        ("enabled".into(), "on".into()),
    ];
    let before = audit_rows(&portal).await;
    for (field, bad, message) in [
        ("retries", "eleven", "must be a whole number"),
        ("retries", "11", "10"),
        ("health_check", "interval_ms: [", "YAML"),
        ("lb_policy", "fastest", "variant"),
    ] {
        let mut fields = base.clone();
        fields.retain(|(k, _)| k != field);
        fields.push((field.into(), bad.into()));
        let page = post_fields(&mut a, &path, &fields).await;
        assert_eq!(page.status, 422, "{field}={bad}");
        let shown = page.field_error(field).unwrap_or_else(|| panic!("no error next to {field}: {}", page.html));
        assert!(shown.contains(message), "{field}={bad}: {shown}");
    }
    assert_eq!(audit_rows(&portal).await, before, "refused forms change nothing");

    let mut fields = base.clone();
    fields.push(("description".into(), "Orders, v2".into()));
    fields.retain(|(k, v)| !(k == "description" && v.is_empty()));
    let saved = post_fields(&mut a, &path, &fields).await;
    assert!(saved.url.contains("notice=saved"), "{}", saved.html);
    // B still has the page from before A saved.
    let mut stale = base.clone();
    stale.push(("retries".into(), "3".into()));
    stale.retain(|(k, v)| !(k == "retries" && v == "0"));
    let refused = post_fields(&mut b, &path, &stale).await;
    assert_eq!(refused.status, 422);
    assert!(refused.shows("Someone else saved this since you opened it"), "{}", refused.html);
    let (_, now) = portal.admin_api(Method::GET, &format!("/apis/{id}"), None).await;
    assert_eq!((now["description"].as_str(), now["retries"].as_i64()), (Some("Orders, v2"), Some(0)));
}

#[tokio::test]
async fn the_plan_editor_speaks_the_portals_words_and_checks_every_field() {
    let portal = Portal::spawn().await;
    let (_, api) = portal.admin_api(Method::POST, "/apis", Some(json!({"name": "orders"}))).await;
    let id = api["id"].as_str().unwrap_or_default().to_owned();
    let (_, route) = portal
        .admin_api(Method::POST, &format!("/apis/{id}/routes"), Some(json!({"name": "bulk", "paths": ["/bulk"]})))
        .await;
    let route_id = route["id"].as_str().unwrap_or_default().to_owned();
    let mut owner = portal.owner_ui().await;
    let new = owner.get(&format!("/ui/apis/{id}/plans/new")).await;
    assert_eq!(new.status, 200);
    let cost_field = format!("cost.{route_id}");
    let fields = |burst: &str, cost: &str, action: &str| -> Vec<(String, String)> {
        vec![
            ("name".into(), "gold".into()),
            ("rate_limit_per_minute".into(), "600".into()),
            ("burst".into(), burst.into()),
            ("quota_per_day".into(), "10000".into()),
            ("limit_mode".into(), "local".into()),
            ("redis_failure_policy".into(), "fail_open".into()),
            ("approval_required".into(), "on".into()),
            ("portal_visible".into(), "on".into()),
            (cost_field.clone(), cost.into()),
            ("action".into(), action.into()),
        ]
    };
    let plans_before = portal.count("plans").await;
    let bad = post_fields(&mut owner, &format!("/ui/apis/{id}/plans/new"), &fields("lots", "-1", "save")).await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.field_error("burst").as_deref(), Some("must be a whole number"));
    let bad = post_fields(&mut owner, &format!("/ui/apis/{id}/plans/new"), &fields("100", "-1", "save")).await;
    assert!(bad.field_error(&cost_field).is_some(), "{}", bad.html);
    assert_eq!(portal.count("plans").await, plans_before);

    let preview = post_fields(&mut owner, &format!("/ui/apis/{id}/plans/new"), &fields("100", "5", "preview")).await;
    let promise = "600 requests a minute: one every 100 ms, up to 101 at once, never more than 700 in any minute";
    assert!(preview.shows(promise), "{}", preview.html);
    assert!(preview.shows("10,000 requests a day, resets at midnight UTC"));
    assert_eq!(portal.count("plans").await, plans_before, "a preview saves nothing");
    let saved = post_fields(&mut owner, &format!("/ui/apis/{id}/plans/new"), &fields("100", "5", "save")).await;
    assert!(saved.url.contains("notice=created"), "{}", saved.html);
    assert!(saved.shows("Developers read") && saved.shows("600 requests a minute"));
    let (_, plans) = portal.admin_api(Method::GET, &format!("/apis/{id}/plans"), None).await;
    assert_eq!(plans["data"][0]["route_costs"][&route_id], 5);
    assert_eq!(plans["data"][0]["approval_required"], true);
    // The portal shows the same words.
    let mut dev = portal.browser();
    let (_, _) = portal.admin_api(Method::PATCH, &format!("/apis/{id}"), Some(json!({"portal_visible": true}))).await;
    let api_page = dev.get("/apis/orders").await;
    assert!(api_page.shows(promise), "{}", api_page.html);
}

/// A developer's app `app` subscribed (pending) to plan `plan`; returns the app id.
async fn pending_request(portal: &Portal, api: &str, plan: &str, app: &str) -> String {
    let (_, c) = portal.admin_api(Method::POST, "/consumers", Some(json!({"name": app}))).await;
    let consumer = c["id"].as_str().unwrap_or_default().to_owned();
    let body = json!({"consumer_id": consumer, "plan_id": plan, "comment": format!("{app} for {api}")});
    let (s, sub) = portal.admin_api(Method::POST, "/subscriptions", Some(body)).await;
    assert_eq!((s, sub["status"].as_str()), (201, Some("pending")), "{sub}");
    consumer
}

#[tokio::test]
async fn the_queue_decides_several_requests_at_once_and_rejections_need_a_reason() {
    let portal = Portal::spawn().await;
    let (_, api) = portal.admin_api(Method::POST, "/apis", Some(json!({"name": "orders"}))).await;
    let id = api["id"].as_str().unwrap_or_default().to_owned();
    let (_, plan) = portal
        .admin_api(Method::POST, &format!("/apis/{id}/plans"), Some(json!({"name": "gold", "approval_required": true})))
        .await;
    let plan = plan["id"].as_str().unwrap_or_default().to_owned();
    for app in ["first-app", "second-app", "third-app"] {
        pending_request(&portal, "orders", &plan, app).await;
    }
    let (_, subs) = portal.admin_api(Method::GET, "/subscriptions?status=pending", None).await;
    let ids: Vec<String> =
        subs["data"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_str().map(str::to_owned)).collect();
    assert_eq!(ids.len(), 3, "{subs}");
    let mut owner = portal.owner_ui().await;
    let queue = owner.get("/ui/approvals").await;
    let (a, b, c) = (
        queue.html.find("first-app").unwrap_or(usize::MAX),
        queue.html.find("second-app").unwrap_or(usize::MAX),
        queue.html.find("third-app").unwrap_or(usize::MAX),
    );
    assert!(a < b && b < c && c < usize::MAX, "oldest first");
    let no_reason = owner.post("/ui/approvals", &[("id", &ids[0]), ("decision", "reject"), ("reason", "")]).await;
    assert_eq!(no_reason.status, 422);
    assert!(no_reason.field_error("reason").is_some());
    let approved =
        owner.post("/ui/approvals", &[("id", &ids[0]), ("id", &ids[1]), ("decision", "approve"), ("reason", "")]).await;
    assert!(approved.url.contains("notice=decided"), "{}", approved.html);
    let rejected =
        owner.post("/ui/approvals", &[("id", &ids[2]), ("decision", "reject"), ("reason", "Use the free plan")]).await;
    assert!(rejected.url.contains("notice=rejected"), "{}", rejected.html);
    let statuses = |subs: &Value| -> Vec<(String, String)> {
        subs["data"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (s["id"].as_str().unwrap_or_default().to_owned(), s["status"].as_str().unwrap_or_default().to_owned())
            })
            .collect()
    };
    let (_, all) = portal.admin_api(Method::GET, "/subscriptions", None).await;
    let st = statuses(&all);
    for (i, want) in [(0, "active"), (1, "active"), (2, "rejected")] {
        assert!(st.contains(&(ids[i].clone(), want.to_owned())), "{i} {want}: {st:?}");
    }
    // Deciding a decided request again decides nothing, for any of the batch.
    let again = owner.post("/ui/approvals", &[("id", &ids[2]), ("decision", "approve"), ("reason", "")]).await;
    assert_eq!(again.status, 422);
    assert!(again.shows("Nothing was decided"), "{}", again.html);
}

#[tokio::test]
async fn keys_are_found_by_prefix_and_revoked_with_a_reason_the_audit_keeps() {
    let portal = Portal::spawn().await;
    let (_, c) = portal.admin_api(Method::POST, "/consumers", Some(json!({"name": "acme-app"}))).await;
    let consumer = c["id"].as_str().unwrap_or_default().to_owned();
    let (_, key) =
        portal.admin_api(Method::POST, &format!("/consumers/{consumer}/keys"), Some(json!({"name": "prod"}))).await;
    let (key_id, prefix) =
        (key["id"].as_str().unwrap_or_default().to_owned(), key["prefix"].as_str().unwrap_or_default().to_owned());
    let mut owner = portal.owner_ui().await;
    let found = owner.get(&format!("/ui/developers?q={prefix}")).await;
    assert!(
        found.shows(&format!("{prefix}…")) && found.html.contains(&format!("/ui/consumers/{consumer}")),
        "{}",
        found.html
    );
    let app = owner.get(&format!("/ui/consumers/{consumer}")).await;
    assert!(app.shows("acme-app"));
    let revoke = format!("/ui/consumers/{consumer}/keys/{key_id}/revoke");
    let no_reason = owner.post(&revoke, &[("version", "1"), ("reason", ""), ("overlap_hours", "24")]).await;
    assert_eq!(no_reason.status, 422);
    assert!(no_reason.field_error(&format!("reason-{key_id}")).is_some(), "{}", no_reason.html);
    let done =
        owner.post(&revoke, &[("version", "1"), ("reason", "Leaked in a public repo"), ("overlap_hours", "")]).await;
    assert!(done.url.contains("notice=key-revoked"), "{}", done.html);
    let (_, k) = portal.admin_api(Method::GET, &format!("/consumers/{consumer}/keys/{key_id}"), None).await;
    assert!(k["revoked_at"].is_string());
    let (_, audit) = portal.admin_api(Method::GET, &format!("/audit-log?entity_id={key_id}"), None).await;
    let last = audit["data"].as_array().and_then(|a| a.last()).cloned().unwrap_or_default();
    assert_eq!((last["action"].as_str(), last["reason"].as_str()), (Some("revoke"), Some("Leaked in a public repo")));
    let log = owner.get(&format!("/ui/audit?id={key_id}")).await;
    assert!(log.shows("“Leaked in a public repo”") && log.shows("revoked_at"), "{}", log.html);

    // Rotation shows the successor once and keeps the old key for the overlap.
    let (_, key2) =
        portal.admin_api(Method::POST, &format!("/consumers/{consumer}/keys"), Some(json!({"name": "next"}))).await;
    let key2 = key2["id"].as_str().unwrap_or_default().to_owned();
    owner.get(&format!("/ui/consumers/{consumer}")).await;
    let rotated = owner
        .post(
            &format!("/ui/consumers/{consumer}/keys/{key2}/rotate"),
            &[("version", "1"), ("reason", "yearly"), ("overlap_hours", "2")],
        )
        .await;
    assert!(rotated.shows("Key rotated") && rotated.html.contains("<code id=\"new-key\">tg_"), "{}", rotated.html);
}

#[tokio::test]
async fn the_audit_log_filters_and_the_outbox_is_for_owners() {
    let portal = Portal::spawn().await;
    let mut owner = portal.owner_ui().await;
    portal.admin_api(Method::POST, "/apis", Some(json!({"name": "alpha"}))).await;
    portal.admin_api(Method::POST, "/apis", Some(json!({"name": "beta"}))).await;
    let all = owner.get("/ui/audit?entity=api").await;
    assert!(all.shows("alpha") && all.shows("beta"));
    let none = owner.get("/ui/audit?entity=api&who=nobody-like-this").await;
    assert!(none.shows("No changes match"));
    let future = owner.get("/ui/audit?from=2999-01-01").await;
    assert!(future.shows("No changes match"));
    let bad_date = owner.get("/ui/audit?from=yesterday").await;
    assert!(bad_date.shows("Dates are written"));
    // Mail (a portal sign-up) is listed with its link for owners only.
    let _dev = portal.developer("mia@example.com").await;
    let outbox = owner.get("/ui/outbox").await;
    assert!(outbox.shows("mia@example.com") && outbox.html.contains("/verify?token="), "{}", outbox.html);
    let (email, password) = portal.admin_user("editor").await;
    let mut editor = portal.admin_ui(&email, &password).await;
    assert_eq!(editor.get("/ui/outbox").await.status, 403);
    let editor_audit = editor.get("/ui/audit").await;
    assert!(!editor_audit.shows("admin_user"), "editors do not read admin-user rows");
    let _ = PASSWORD;
}

#[tokio::test]
async fn pages_carry_strict_headers_and_refuse_cross_site_posts() {
    let portal = Portal::spawn().await;
    let mut owner = portal.owner_ui().await;
    let page = owner.get("/ui").await;
    let csp = page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let before = audit_rows(&portal).await;
    let csrf = page.csrf();
    let cross =
        owner.post_raw("/ui/tokens", &[("csrf", &csrf), ("name", "x")], &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status, 403);
    let tokenless = owner.post_raw("/ui/tokens", &[("name", "x")], &[]).await;
    assert_eq!(tokenless.status, 403);
    assert_eq!(audit_rows(&portal).await, before);
    let hostile = json!({"name": "xss", "description": "<script>alert(1)</script>"});
    portal.admin_api(Method::POST, "/apis", Some(hostile)).await;
    let list = owner.get("/ui/apis").await;
    assert!(!list.html.contains("<script>alert(1)") && list.shows("<script>alert(1)</script>"));
}

#[tokio::test]
async fn targets_and_routes_are_edited_in_place() {
    let portal = Portal::spawn().await;
    let (_, api) = portal.admin_api(Method::POST, "/apis", Some(json!({"name": "orders"}))).await;
    let id = api["id"].as_str().unwrap_or_default().to_owned();
    let (_, target) = portal
        .admin_api(Method::POST, &format!("/apis/{id}/targets"), Some(json!({"host": "10.0.0.1", "port": 80})))
        .await;
    let target = target["id"].as_str().unwrap_or_default().to_owned();
    let (_, route) = portal
        .admin_api(Method::POST, &format!("/apis/{id}/routes"), Some(json!({"name": "all", "paths": ["/orders/*"]})))
        .await;
    let route = route["id"].as_str().unwrap_or_default().to_owned();
    let mut owner = portal.owner_ui().await;

    owner.get(&format!("/ui/apis/{id}")).await;
    let path = format!("/ui/apis/{id}/targets/{target}");
    let bad = owner.post(&path, &[("version", "1"), ("weight", "-5"), ("pool", "stable")]).await;
    assert_eq!(bad.status, 422);
    assert!(bad.html.contains(&format!("id=\"target-{target}\"")), "{}", bad.html);
    let saved = owner.post(&path, &[("version", "1"), ("weight", "25"), ("backup", "on"), ("pool", "canary")]).await;
    assert!(saved.url.contains("notice=saved"), "{}", saved.html);
    let (_, t) = portal.admin_api(Method::GET, &format!("/apis/{id}/targets/{target}"), None).await;
    assert_eq!(
        (t["weight"].as_i64(), t["backup"].as_bool(), t["pool"].as_str()),
        (Some(25), Some(true), Some("canary"))
    );

    let edit = owner.get(&format!("/ui/apis/{id}/routes/{route}")).await;
    assert_eq!(value_of(&edit, "route-name"), "all");
    let route_path = format!("/ui/apis/{id}/routes/{route}");
    let fields = |paths: &str, version: &str| -> Vec<(String, String)> {
        vec![
            ("version".into(), version.into()),
            ("route-name".into(), "all".into()),
            ("route-paths".into(), paths.into()),
            ("route-methods".into(), "GET".into()),
            ("route-methods".into(), "HEAD".into()),
            ("route-priority".into(), "5".into()),
            ("route-cost".into(), "2".into()),
        ]
    };
    let refused = post_fields(&mut owner, &route_path, &fields("no-slash", "1")).await;
    assert_eq!(refused.status, 422);
    assert!(refused.field_error("route-paths").is_some(), "{}", refused.html);
    let saved = post_fields(&mut owner, &route_path, &fields("/orders/*\n/v2/orders/*", "1")).await;
    assert!(saved.url.contains("notice=saved"), "{}", saved.html);
    let (_, r) = portal.admin_api(Method::GET, &format!("/apis/{id}/routes/{route}"), None).await;
    assert_eq!(r["paths"], json!(["/orders/*", "/v2/orders/*"]));
    assert_eq!(
        (r["methods"].clone(), r["priority"].as_i64(), r["cost"].as_i64()),
        (json!(["GET", "HEAD"]), Some(5), Some(2))
    );
    let stale = post_fields(&mut owner, &route_path, &fields("/stale/*", "1")).await;
    assert!(stale.shows("Someone else saved this since you opened it"), "{}", stale.html);
}

#[tokio::test]
async fn certificates_are_uploaded_renewed_and_deleted_with_reasons_for_refusals() {
    use tollgate_admin::testkit::certs::TestCa;
    let portal = Portal::spawn().await;
    let ca = TestCa::new("UI test CA");
    let mut owner = portal.owner_ui().await;
    let empty = owner.get("/ui/certificates").await;
    assert!(empty.shows("No certificates yet") && empty.shows("Upload a certificate"), "{}", empty.html);

    let first = ca.leaf(&["shop.example", "*.shop.example"]);
    let saved = owner
        .post(
            "/ui/certificates",
            &[("cert", &first.chain_pem), ("key", &first.key_pem), ("usage", "server"), ("is_default", "on")],
        )
        .await;
    assert!(saved.url.contains("notice=certificate-saved"), "{}", saved.html);
    assert!(
        saved.shows("shop.example, *.shop.example") && saved.html.contains("badge active\">default"),
        "{}",
        saved.html
    );
    assert!(!saved.html.contains(&first.key_pem[..40]), "the key is never shown back");

    // Refusals say why, next to the field, and store nothing.
    let now = time::OffsetDateTime::now_utc();
    let expired = ca.leaf_valid(&["old.example"], now - time::Duration::days(60), now - time::Duration::days(1));
    let other = ca.leaf(&["other.example"]);
    let events = portal.count("config_events").await;
    for (cert, key, field, says) in [
        (&expired.chain_pem, &expired.key_pem, "cert", "expired"),
        (&first.chain_pem, &other.key_pem, "key", "does not belong"),
        (&"not a certificate".to_owned(), &first.key_pem, "cert", "holds no certificate"),
    ] {
        let refused = owner.post("/ui/certificates", &[("cert", cert), ("key", key), ("usage", "server")]).await;
        assert_eq!(refused.status, 422, "{}", refused.html);
        let error = refused.field_error(field).unwrap_or_default();
        assert!(error.contains(says), "{field}: {error:?} should say {says:?}");
    }
    assert_eq!(portal.count("config_events").await, events, "a refused upload changes nothing");

    // Renewal with the version the page showed; a stale page is told so.
    let (_, list) = portal.admin_api(Method::GET, "/certificates", None).await;
    let id = list["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    let renewed = ca.leaf(&["shop.example"]);
    let (cf, kf) = (format!("cert-{id}"), format!("key-{id}"));
    let stale = owner
        .post(
            &format!("/ui/certificates/{id}/renew"),
            &[("version", "7"), (&cf, &renewed.chain_pem), (&kf, &renewed.key_pem)],
        )
        .await;
    assert_eq!(stale.status, 422);
    assert!(stale.field_error(&cf).unwrap_or_default().contains("Someone else changed"), "{}", stale.html);
    let done = owner
        .post(
            &format!("/ui/certificates/{id}/renew"),
            &[("version", "1"), (&cf, &renewed.chain_pem), (&kf, &renewed.key_pem)],
        )
        .await;
    assert!(done.url.contains("notice=certificate-saved"), "{}", done.html);
    let (_, after) = portal.admin_api(Method::GET, &format!("/certificates/{id}"), None).await;
    assert_eq!((after["version"].as_i64(), after["names"].clone()), (Some(2), json!(["shop.example"])));

    // A viewer reads the list but changes nothing.
    let (email, password) = portal.admin_user("viewer").await;
    let mut viewer = portal.admin_ui(&email, &password).await;
    let page = viewer.get("/ui/certificates").await;
    assert!(page.shows("shop.example") && change_forms(&page) == 0, "{}", page.html);
    assert_eq!(viewer.post(&format!("/ui/certificates/{id}/delete"), &[("version", "2")]).await.status, 403);

    let gone = owner.post(&format!("/ui/certificates/{id}/delete"), &[("version", "2")]).await;
    assert!(gone.url.contains("notice=deleted") && gone.shows("No certificates yet"), "{}", gone.html);
}

#[tokio::test]
async fn an_apps_client_certificates_are_bound_and_unbound_on_its_page() {
    let portal = Portal::spawn().await;
    let (_, app) = portal.admin_api(Method::POST, "/consumers", Some(json!({"name": "billing"}))).await;
    let (_, other) = portal.admin_api(Method::POST, "/consumers", Some(json!({"name": "other"}))).await;
    let (app, other) = (app["id"].as_str().unwrap_or_default(), other["id"].as_str().unwrap_or_default());
    let mut owner = portal.owner_ui().await;
    let page = owner.get(&format!("/ui/consumers/{app}")).await;
    assert!(page.shows("Client certificates") && page.shows("Bind certificate"), "{}", page.html);

    let printed = vec!["AB"; 32].join(":");
    let bound = owner
        .post(&format!("/ui/consumers/{app}/certificates"), &[("match", "fingerprint"), ("value", &printed)])
        .await;
    assert!(bound.url.contains("notice=created") && bound.shows(&"ab".repeat(32)), "{}", bound.html);
    let named = owner
        .post(
            &format!("/ui/consumers/{app}/certificates"),
            &[("match", "subject"), ("value", "spiffe://example/billing")],
        )
        .await;
    assert!(named.shows("spiffe://example/billing"), "{}", named.html);
    // Refusals: a malformed fingerprint, a fingerprint another app holds.
    let events = portal.count("config_events").await;
    for (value, says) in [("abc", "64 hex digits"), (printed.as_str(), "already taken")] {
        let refused = owner
            .post(&format!("/ui/consumers/{other}/certificates"), &[("match", "fingerprint"), ("value", value)])
            .await;
        assert_eq!(refused.status, 422, "{}", refused.html);
        assert!(refused.field_error("value").unwrap_or_default().contains(says), "{value}: {}", refused.html);
    }
    assert_eq!(portal.count("config_events").await, events, "refusals change nothing");

    let (_, list) = portal.admin_api(Method::GET, &format!("/certificate-bindings?consumer_id={app}"), None).await;
    let binding = list["data"][0]["id"].as_str().unwrap_or_default().to_owned();
    // Not through another app's page.
    let wrong = owner.post(&format!("/ui/consumers/{other}/certificates/{binding}/delete"), &[]).await;
    assert_eq!(wrong.status, 404);
    let unbound = owner.post(&format!("/ui/consumers/{app}/certificates/{binding}/delete"), &[]).await;
    assert!(unbound.url.contains("notice=deleted") && !unbound.shows(&"ab".repeat(32)), "{}", unbound.html);
    let (email, password) = portal.admin_user("viewer").await;
    let mut viewer = portal.admin_ui(&email, &password).await;
    let seen = viewer.get(&format!("/ui/consumers/{app}")).await;
    assert!(seen.shows("spiffe://example/billing") && !seen.shows("Bind certificate"), "{}", seen.html);
    let forged =
        viewer.post(&format!("/ui/consumers/{app}/certificates"), &[("match", "subject"), ("value", "x")]).await;
    assert_eq!(forged.status, 403);
}
