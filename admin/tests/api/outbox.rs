//! The mail outbox: owners read it (it holds one-time links); nobody else does.

use tollgate_admin::mail::{Mail, Mailer, Transport};

use crate::helpers::Admin;

#[tokio::test]
async fn owners_read_logged_mail_and_others_may_not() {
    let admin = Admin::spawn().await;
    let mailer =
        Mailer::new(admin.app.pool.clone(), "Tollgate <no-reply@example.com>", &Transport::Log).expect("mailer");
    assert!(mailer.logs_only());
    for n in 0..3 {
        let mail = Mail { to: format!("dev{n}@example.com"), subject: "Confirm".into(), body: format!("link {n}") };
        mailer.send(mail).await.expect("logged");
    }
    let page = admin.get("/outbox?limit=2").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["data"][0]["recipient"], "dev2@example.com", "newest first");
    assert_eq!(page.body["data"][0]["status"], "logged");
    let before = page.body["next_after"].as_i64().unwrap_or_default();
    let rest = admin.get(&format!("/outbox?before={before}")).await;
    assert_eq!(rest.body["data"].as_array().map(Vec::len), Some(1));
    let one = admin.get("/outbox?recipient=DEV1@example.com").await;
    assert_eq!(one.body["data"][0]["body"], "link 1");
    for role in ["editor", "viewer"] {
        let token = admin.user_token(&format!("{role}@example.com"), role).await;
        let denied = admin.send_as(Some(&token), reqwest::Method::GET, "/outbox", None, None).await;
        assert_eq!(denied.status, 403, "{role}");
    }
    assert!(Mailer::new(admin.app.pool.clone(), "not an address", &Transport::Log).is_err());
}
