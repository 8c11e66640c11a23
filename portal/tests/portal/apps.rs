//! Apps and keys: shown once, rotated with the chosen overlap, revoked, and only ever
//! reachable by the owning organisation's members.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{Browser, Page, Portal};

/// Creates an app and returns its id.
pub async fn create_app(b: &mut Browser, name: &str) -> Uuid {
    b.get("/apps").await;
    let page = b.post("/apps", &[("name", name), ("description", "made by a test")]).await;
    assert!(page.url.contains("notice=app-created"), "{}", page.html);
    page.url.split("/apps/").nth(1).and_then(|r| r.split('?').next()).and_then(|id| id.parse().ok()).unwrap_or_default()
}

/// The key shown on a key page.
pub fn shown_key(page: &Page) -> String {
    page.html.split("id=\"new-key\">").nth(1).and_then(|r| r.split('<').next()).unwrap_or_default().to_owned()
}

pub async fn issue_key(b: &mut Browser, app: Uuid) -> String {
    b.get(&format!("/apps/{app}")).await;
    let page = b.post(&format!("/apps/{app}/keys"), &[("key_name", "ci"), ("expires_in_days", "")]).await;
    assert_eq!(page.status, 200, "{}", page.html);
    shown_key(&page)
}

#[derive(sqlx::FromRow, Debug)]
struct KeyRow {
    id: Uuid,
    prefix: String,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    replaced_by: Option<Uuid>,
}

async fn keys(portal: &Portal, app: Uuid) -> Vec<KeyRow> {
    sqlx::query_as("SELECT id, prefix, expires_at, revoked_at, replaced_by FROM api_keys WHERE consumer_id = $1 ORDER BY created_at")
        .bind(app)
        .fetch_all(&portal.pool)
        .await
        .unwrap_or_default()
}

#[tokio::test]
async fn a_key_is_shown_once_with_a_checksum_and_then_only_by_prefix() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("keys@example.com").await;
    let app = create_app(&mut b, "Acme mobile").await;
    let key = issue_key(&mut b, app).await;
    assert_eq!(key.len(), tollgate_gateway::key_format::KEY_LEN, "{key}");
    assert!(key.starts_with("tg_"));
    assert!(!tollgate_gateway::key_format::is_mistyped(key.as_bytes()));
    let page = b.get(&format!("/apps/{app}")).await;
    assert!(!page.html.contains(&key), "the secret is never shown again");
    let stored = keys(&portal, app).await;
    assert_eq!(stored.len(), 1);
    assert!(key.starts_with(&stored[0].prefix) && page.html.contains(&stored[0].prefix));
    let (actor,): (String,) = sqlx::query_as("SELECT actor_kind FROM audit_log WHERE entity_kind = 'api_key'")
        .fetch_one(&portal.pool)
        .await
        .unwrap_or_default();
    assert_eq!(actor, "developer", "audited as the developer");
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_chosen_overlap_and_revocation_is_at_once() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("rot@example.com").await;
    let app = create_app(&mut b, "rotator").await;
    let old_secret = issue_key(&mut b, app).await;
    let old = &keys(&portal, app).await[0];
    b.get(&format!("/apps/{app}")).await;
    let before = OffsetDateTime::now_utc();
    let page = b.post(&format!("/apps/{app}/keys/{}/rotate", old.id), &[("overlap", "604800")]).await;
    let new_secret = shown_key(&page);
    assert!(!new_secret.is_empty() && new_secret != old_secret);
    assert!(
        page.html.contains(&format!("The old key <code>{}…</code> keeps working until", old.prefix)),
        "{}",
        page.html
    );
    let rows = keys(&portal, app).await;
    assert_eq!(rows.len(), 2);
    let (old, new) = (&rows[0], &rows[1]);
    assert_eq!(old.replaced_by, Some(new.id));
    let until = old.expires_at.unwrap_or(before);
    let overlap = (until - before).whole_seconds();
    assert!((604_790..=604_810).contains(&overlap), "the old key works 7 more days, not {overlap} s");
    assert!(old.revoked_at.is_none() && new.expires_at.is_none());
    // A rotated key cannot be rotated again; its successor can.
    b.get(&format!("/apps/{app}")).await;
    let again = b.post(&format!("/apps/{app}/keys/{}/rotate", old.id), &[("overlap", "0")]).await;
    assert_eq!(again.status, 409);
    b.get(&format!("/apps/{app}")).await;
    let bad = b.post(&format!("/apps/{app}/keys/{}/rotate", new.id), &[("overlap", "99999999")]).await;
    assert!(bad.field_error("overlap").is_some());
    b.get(&format!("/apps/{app}")).await;
    let revoked = b.post(&format!("/apps/{app}/keys/{}/revoke", new.id), &[]).await;
    assert!(revoked.url.contains("notice=key-revoked"));
    assert!(keys(&portal, app).await[1].revoked_at.is_some());
}

#[tokio::test]
async fn other_developers_cannot_see_or_touch_an_app() {
    let portal = Portal::spawn().await;
    let mut owner = portal.developer("owner@example.com").await;
    let app = create_app(&mut owner, "private-app").await;
    issue_key(&mut owner, app).await;
    let key = keys(&portal, app).await.remove(0);
    let mut other = portal.developer("other@example.com").await;
    assert_eq!(other.get(&format!("/apps/{app}")).await.status, 404);
    assert!(!other.get("/apps").await.html.contains("private-app"));
    other.get("/apps").await;
    for path in [
        format!("/apps/{app}/keys"),
        format!("/apps/{app}/keys/{}/revoke", key.id),
        format!("/apps/{app}/keys/{}/rotate", key.id),
        format!("/apps/{app}/delete"),
    ] {
        let page = other.post(&path, &[("overlap", "0")]).await;
        assert_eq!(page.status, 404, "{path}");
    }
    let after = keys(&portal, app).await;
    assert_eq!(after.len(), 1);
    assert!(after[0].revoked_at.is_none() && after[0].replaced_by.is_none());
    assert_eq!(portal.count("consumers").await, 1);
}

#[tokio::test]
async fn bad_app_and_key_input_is_shown_next_to_the_field() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("bad@example.com").await;
    let app = create_app(&mut b, "taken").await;
    b.get("/apps").await;
    let dup = b.post("/apps", &[("name", "TAKEN")]).await;
    assert_eq!(dup.field_error("name").as_deref(), Some("already taken"));
    let empty = b.post("/apps", &[("name", "")]).await;
    assert!(empty.field_error("name").is_some());
    assert_eq!(portal.count("consumers").await, 1);
    b.get(&format!("/apps/{app}")).await;
    let expiry = b.post(&format!("/apps/{app}/keys"), &[("expires_in_days", "0")]).await;
    assert!(expiry.field_error("expires_in_days").is_some());
    assert_eq!(portal.count("api_keys").await, 0);
}

#[tokio::test]
async fn only_organisation_admins_delete_apps() {
    let portal = Portal::spawn().await;
    let mut b = portal.developer("del@example.com").await;
    let app = create_app(&mut b, "doomed").await;
    issue_key(&mut b, app).await;
    b.get(&format!("/apps/{app}")).await;
    let gone = b.post(&format!("/apps/{app}/delete"), &[]).await;
    assert!(gone.url.contains("notice=app-deleted"));
    assert_eq!(portal.count("consumers").await, 0);
    assert_eq!(portal.count("api_keys").await, 0);
}
