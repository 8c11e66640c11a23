//! Sign-up, confirmation, sign-in, resets and account changes, as a developer meets them.

use crate::helpers::{PASSWORD, Portal};

#[tokio::test]
async fn a_developer_signs_up_confirms_and_signs_in_and_out() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("ada@example.com").await;
    let apps = b.get("/apps").await;
    assert_eq!(apps.status, 200);
    let out = b.post("/logout", &[]).await;
    assert!(out.url.contains("/login?notice=logged-out"));
    let apps = b.get("/apps").await;
    assert!(apps.url.contains("/login?next=%2Fapps"), "signed out: sent to sign in, got {}", apps.url);
    let signed_in = b.post("/login", &[("email", "ADA@example.com"), ("password", PASSWORD), ("next", "/apps")]).await;
    assert!(signed_in.url.ends_with("/apps"), "{}", signed_in.url);
    // Each developer starts with an organisation of their own, which they administer.
    let (orgs,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM organisation_members m JOIN developers d ON d.id = m.developer_id
         WHERE d.email = 'ada@example.com' AND m.role = 'admin'",
    )
    .fetch_one(&portal.pool)
    .await
    .unwrap_or((0,));
    assert_eq!(orgs, 1);
}

#[tokio::test]
async fn an_unconfirmed_account_cannot_sign_in_and_can_get_a_new_link() {
    let portal = Portal::spawn().await;
    let mut b = portal.browser();
    b.get("/signup").await;
    b.post("/signup", &[("name", "Bo"), ("email", "bo@example.com"), ("password", PASSWORD)]).await;
    let first = portal.link_in_mail("bo@example.com", "/verify?token=").await;
    b.get("/login").await;
    let page = b.post("/login", &[("email", "bo@example.com"), ("password", PASSWORD)]).await;
    assert!(page.field_error("email").is_some_and(|e| e.contains("Confirm your e-mail")), "{}", page.html);
    let again = b.post("/verify/resend", &[("email", "bo@example.com")]).await;
    assert!(again.shows("Check your inbox"));
    let mails = portal.mails_to("bo@example.com", 2).await;
    assert_eq!(mails.len(), 2, "a second confirmation mail");
    // The new link replaced the old one.
    b.get(&first).await;
    let token = first.split("token=").nth(1).unwrap_or_default().to_owned();
    let dead = b.post("/verify", &[("token", &token)]).await;
    assert!(dead.shows("This link does not work"), "{}", dead.html);
}

#[tokio::test]
async fn unknown_accounts_and_wrong_passwords_get_the_same_answer() {
    let portal = Portal::spawn().await;
    let mut known = portal.developer("cy@example.com").await;
    known.post("/logout", &[]).await;
    let mut b = portal.browser();
    b.get("/login").await;
    let wrong = b.post("/login", &[("email", "cy@example.com"), ("password", "not the password at all")]).await;
    let unknown = b.post("/login", &[("email", "nobody@example.com"), ("password", "not the password at all")]).await;
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.field_error("email"), unknown.field_error("email"));
    assert_eq!(wrong.field_error("email").as_deref(), Some("The e-mail address or the password is not right"));
    let strip = |p: &crate::helpers::Page| {
        p.html.replace(&p.csrf(), "").replace("cy@example.com", "").replace("nobody@example.com", "")
    };
    assert_eq!(strip(&wrong), strip(&unknown), "the two pages differ only in the address typed");
}

#[tokio::test]
async fn signing_up_with_a_taken_address_reveals_nothing_and_creates_nothing() {
    let portal = Portal::spawn().await;
    portal.developer("dee@example.com").await;
    let before = portal.count("developers").await;
    let mut b = portal.browser();
    b.get("/signup").await;
    let page = b.post("/signup", &[("name", "Mallory"), ("email", "DEE@example.com"), ("password", PASSWORD)]).await;
    assert!(page.shows("We sent a confirmation link to DEE@example.com"), "{}", page.html);
    assert_eq!(portal.count("developers").await, before);
    let mails = portal.mails_to("dee@example.com", 3).await;
    assert!(mails.iter().any(|(s, _)| s == "You already have an account"), "{mails:?}");
}

#[tokio::test]
async fn bad_sign_up_input_is_shown_next_to_each_field_and_changes_nothing() {
    let portal = Portal::spawn().await;
    let mut b = portal.browser();
    b.get("/signup").await;
    let page = b
        .post(
            "/signup",
            &[("name", " "), ("email", "not-an-address"), ("password", "short"), ("organisation", &"x".repeat(101))],
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("There is a problem"), "the error summary");
    for field in ["name", "email", "password", "organisation"] {
        assert!(page.field_error(field).is_some(), "no message next to {field}");
    }
    assert!(page.html.contains("value=\"not-an-address\""), "what was typed is kept");
    assert!(!page.html.contains("value=\"short\""), "a password is never sent back");
    assert_eq!(portal.count("developers").await, 0);
    assert_eq!(portal.count("organisations").await, 0);
}

#[tokio::test]
async fn a_password_reset_sets_the_password_and_ends_every_session() {
    let portal = Portal::spawn().await;
    let mut old_session = portal.developer("eve@example.com").await;
    let mut b = portal.browser();
    b.get("/forgot").await;
    let asked = b.post("/forgot", &[("email", "eve@example.com")]).await;
    let unknown = b.post("/forgot", &[("email", "nobody@example.com")]).await;
    assert_eq!(asked.status, unknown.status);
    assert!(asked.shows("If eve@example.com has an account"));
    let link = portal.link_in_mail("eve@example.com", "/reset?token=").await;
    let form = b.get(&link).await;
    assert!(form.shows("Choose a new password"));
    let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
    let short = b.post("/reset", &[("token", &token), ("password", "short")]).await;
    assert!(short.field_error("password").is_some());
    let done = b.post("/reset", &[("token", &token), ("password", "a brand new passphrase")]).await;
    assert!(done.url.contains("/login?notice=password-reset"), "{}", done.url);
    let reused = b.post("/reset", &[("token", &token), ("password", "another new passphrase")]).await;
    assert!(reused.shows("This link does not work"), "a reset link works once");
    let kicked = old_session.get("/apps").await;
    assert!(kicked.url.contains("/login"), "the earlier session ended");
    b.get("/login").await;
    let old = b.post("/login", &[("email", "eve@example.com"), ("password", PASSWORD)]).await;
    assert!(old.field_error("email").is_some());
    let new = b.post("/login", &[("email", "eve@example.com"), ("password", "a brand new passphrase")]).await;
    assert!(new.url.ends_with("/apps"), "{}", new.url);
}

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_ends_the_others() {
    let portal = Portal::spawn().await;
    let mut here = portal.developer("fay@example.com").await;
    let mut there = portal.browser();
    there.get("/login").await;
    there.post("/login", &[("email", "fay@example.com"), ("password", PASSWORD)]).await;
    assert!(there.get("/apps").await.url.ends_with("/apps"));
    here.get("/account").await;
    let wrong = here
        .post("/account/password", &[("current_password", "wrong wrong wrong"), ("password", "the next passphrase")])
        .await;
    assert_eq!(wrong.field_error("current_password").as_deref(), Some("This is not your current password"));
    let changed =
        here.post("/account/password", &[("current_password", PASSWORD), ("password", "the next passphrase")]).await;
    assert!(changed.url.contains("notice=password-changed"), "{}", changed.url);
    assert!(here.get("/apps").await.url.ends_with("/apps"), "this session stays");
    assert!(there.get("/apps").await.url.contains("/login"), "the other session ended");
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session() {
    let portal = Portal::spawn().await;
    let mut here = portal.developer("gus@example.com").await;
    let mut there = portal.browser();
    there.get("/login").await;
    there.post("/login", &[("email", "gus@example.com"), ("password", PASSWORD)]).await;
    here.get("/account").await;
    here.post("/logout/everywhere", &[]).await;
    assert!(here.get("/apps").await.url.contains("/login"));
    assert!(there.get("/apps").await.url.contains("/login"));
}

#[tokio::test]
async fn a_new_session_id_is_issued_at_every_sign_in() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("hal@example.com").await;
    let first: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT id_hash FROM web_sessions").fetch_all(&portal.pool).await.unwrap_or_default();
    b.get("/login").await;
    b.post("/login", &[("email", "hal@example.com"), ("password", PASSWORD)]).await;
    let second: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT id_hash FROM web_sessions").fetch_all(&portal.pool).await.unwrap_or_default();
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1, "signing in again replaced the session");
    assert_ne!(first[0].0, second[0].0);
}

#[tokio::test]
async fn parallel_wrong_passwords_are_cut_at_the_limit() {
    let portal = Portal::spawn_with(|c| c.login_max_failures = 3).await;
    portal.developer("ivy@example.com").await;
    let mut b = portal.browser();
    let page = b.get("/login").await;
    let csrf = page.csrf();
    let attempts = (0..12).map(|_| {
        let http = b.http.clone();
        let url = format!("{}/login", portal.base);
        let csrf = csrf.clone();
        async move {
            let form = [("csrf", csrf.as_str()), ("email", "ivy@example.com"), ("password", "wrong guess number")];
            http.post(url).form(&form).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(checked, 3, "only the allowed number of guesses were checked: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let right = b.post("/login", &[("email", "ivy@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(right.status, 429, "the account is throttled from this address");
}

#[tokio::test]
async fn with_sign_up_approval_accounts_wait_for_an_admin() {
    let portal = Portal::spawn_with(|c| c.signup_approval = true).await;
    let mut b = portal.browser();
    let form = b.get("/signup").await;
    assert!(form.shows("reviewed by an administrator"));
    b.post("/signup", &[("name", "Jo"), ("email", "jo@example.com"), ("password", PASSWORD)]).await;
    let link = portal.link_in_mail("jo@example.com", "/verify?token=").await;
    b.get(&link).await;
    let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
    let page = b.post("/verify", &[("token", &token)]).await;
    assert!(page.shows("An administrator reviews new accounts"), "{}", page.html);
    b.get("/login").await;
    let refused = b.post("/login", &[("email", "jo@example.com"), ("password", PASSWORD)]).await;
    assert!(refused.field_error("email").is_some_and(|e| e.contains("approval")));
    let (id,): (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM developers").fetch_one(&portal.pool).await.unwrap_or_default();
    let (status, _) = portal
        .admin_api(reqwest::Method::PATCH, &format!("/developers/{id}"), Some(serde_json::json!({"status": "active"})))
        .await;
    assert_eq!(status, 200);
    let admitted = b.post("/login", &[("email", "jo@example.com"), ("password", PASSWORD)]).await;
    assert!(admitted.url.ends_with("/apps"), "{}", admitted.url);
}

#[tokio::test]
async fn an_email_change_is_confirmed_from_the_new_address() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("kim@example.com").await;
    b.get("/account").await;
    let taken_by_self =
        b.post("/account/email", &[("new_email", "kim@example.com"), ("email_password", PASSWORD)]).await;
    assert!(taken_by_self.field_error("new_email").is_some());
    let sent = b.post("/account/email", &[("new_email", "kim@new.example"), ("email_password", PASSWORD)]).await;
    assert!(sent.url.contains("notice=email-change-sent"));
    let link = portal.link_in_mail("kim@new.example", "/email/confirm?token=").await;
    b.get(&link).await;
    let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
    let done = b.post("/email/confirm", &[("token", &token)]).await;
    assert!(done.url.contains("notice=email-changed"), "{}", done.url);
    let (email,): (String,) =
        sqlx::query_as("SELECT email FROM developers").fetch_one(&portal.pool).await.unwrap_or_default();
    assert_eq!(email, "kim@new.example");
    let old_note = portal.mails_to("kim@example.com", 2).await;
    assert!(old_note.iter().any(|(s, _)| s == "Your e-mail address is changing"));
}
