//! Organisations: invitations, shared apps, leaving, and the last admin.

use crate::apps::create_app;
use crate::helpers::{Page, Portal};

/// The id of the first organisation on the team page.
fn first_organisation(team: &Page) -> String {
    team.html
        .split("name=\"organisation_id\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_invited_colleague_joins_and_shares_the_apps_and_people_can_leave() {
    let portal = Portal::spawn().await;
    let mut lead = portal.developer("lead@example.com").await;
    let app = create_app(&mut lead, "shared-app").await;
    let team = lead.get("/team").await;
    let org = first_organisation(&team);
    let invited = lead
        .post("/team/invite", &[("organisation_id", &org), ("email", "mate@example.com"), ("role", "member")])
        .await;
    assert!(invited.html.contains("id=\"invite-link\""), "the link can be copied");
    let link = portal.link_in_mail("mate@example.com", "/invite?token=").await;
    assert!(invited.html.contains(&link));
    let mut mate = portal.developer("mate@example.com").await;
    assert_eq!(mate.get(&format!("/apps/{app}")).await.status, 404, "not yet a member");
    let offer = mate.get(&link).await;
    assert!(offer.shows("You are invited to join"));
    let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
    let joined = mate.post("/invite", &[("token", &token)]).await;
    assert!(joined.url.contains("notice=joined"));
    assert_eq!(mate.get(&format!("/apps/{app}")).await.status, 200, "members share the organisation's apps");
    let used = mate.get(&link).await;
    assert!(used.shows("This link does not work"), "an invitation works once");
    // A member cannot delete the app; the last admin cannot leave.
    mate.get(&format!("/apps/{app}")).await;
    assert_eq!(mate.post(&format!("/apps/{app}/delete"), &[]).await.status, 403);
    let (lead_id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM developers WHERE email = 'lead@example.com'")
        .fetch_one(&portal.pool)
        .await
        .unwrap_or_default();
    let (mate_id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM developers WHERE email = 'mate@example.com'")
        .fetch_one(&portal.pool)
        .await
        .unwrap_or_default();
    lead.get("/team").await;
    let last = lead.post("/team/remove", &[("organisation_id", &org), ("developer_id", &lead_id.to_string())]).await;
    assert_eq!(last.status, 409, "{}", last.html);
    mate.get("/team").await;
    let kick = mate.post("/team/remove", &[("organisation_id", &org), ("developer_id", &lead_id.to_string())]).await;
    assert_eq!(kick.status, 403, "members do not remove others");
    let left = mate.post("/team/remove", &[("organisation_id", &org), ("developer_id", &mate_id.to_string())]).await;
    assert!(left.url.contains("notice=left"));
    assert_eq!(mate.get(&format!("/apps/{app}")).await.status, 404);
    assert_eq!(portal.count("consumers").await, 1, "the app stays with the organisation");
}

#[tokio::test]
async fn members_cannot_invite_and_strangers_cannot_use_an_organisation() {
    let portal = Portal::spawn().await;
    let mut lead = portal.developer("lead2@example.com").await;
    let team = lead.get("/team").await;
    let org = first_organisation(&team);
    let mut stranger = portal.developer("str@example.com").await;
    stranger.get("/team").await;
    let page = stranger.post("/team/invite", &[("organisation_id", &org), ("email", "x@example.com")]).await;
    assert_eq!(page.status, 404);
    assert_eq!(portal.count("organisation_invites").await, 0);
    lead.get("/team").await;
    let bad = lead.post("/team/invite", &[("organisation_id", &org), ("email", "not an address")]).await;
    assert!(bad.field_error("email").is_some());
    assert_eq!(portal.count("organisation_invites").await, 0);
}
