//! Organisations: every developer has one from sign-up and may belong to more. Apps belong
//! to an organisation, so colleagues share them and people can leave without taking keys
//! along. Admins of an organisation invite by e-mail (the link can also be copied), change
//! roles and remove members; an organisation always keeps at least one admin.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Postgres, Transaction};
use time::OffsetDateTime;
use tollgate_admin::auth::{random_token, secret_hash};
use tollgate_admin::change::{self, Actor, Change};
use tollgate_admin::mail::Mail;
use uuid::Uuid;

use crate::accounts::{check_email, link, send_later};
use crate::state::PortalState;
use crate::web::{Chrome, FieldErrors, SignedIn, UiError, Visit, encode};

/// How long an invitation works.
const INVITE_LIFETIME: time::Duration = time::Duration::days(7);

/// An organisation the developer belongs to, with their role in it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Membership {
    pub id: Uuid,
    pub name: String,
    pub role: String,
}

impl Membership {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

#[derive(Serialize)]
struct OrgAudit<'a> {
    id: Uuid,
    name: &'a str,
}

/// Creates an organisation with `actor` (a developer) as its admin.
pub async fn create_organisation(
    tx: &mut Transaction<'_, Postgres>,
    actor: &Actor,
    name: &str,
) -> Result<Uuid, UiError> {
    let id = Uuid::now_v7();
    let developer = actor.id.ok_or_else(|| UiError::internal("an organisation needs a developer"))?;
    sqlx::query("INSERT INTO organisations (id, name) VALUES ($1, $2)").bind(id).bind(name).execute(&mut **tx).await?;
    sqlx::query("INSERT INTO organisation_members (organisation_id, developer_id, role) VALUES ($1, $2, 'admin')")
        .bind(id)
        .bind(developer)
        .execute(&mut **tx)
        .await?;
    let after = serde_json::to_value(OrgAudit { id, name }).map_err(UiError::internal)?;
    change::record(tx, actor, Change::create("organisation", id, after).audit_only()).await?;
    Ok(id)
}

/// The organisations of `developer`, oldest first.
pub async fn memberships(conn: &mut PgConnection, developer: Uuid) -> sqlx::Result<Vec<Membership>> {
    sqlx::query_as(
        "SELECT o.id, o.name, m.role FROM organisation_members m JOIN organisations o ON o.id = m.organisation_id
         WHERE m.developer_id = $1 ORDER BY m.created_at, o.name",
    )
    .bind(developer)
    .fetch_all(conn)
    .await
}

/// The developer's membership of `org`, or 404 (an organisation one is not in does not exist).
pub async fn membership(conn: &mut PgConnection, developer: Uuid, org: Uuid) -> Result<Membership, UiError> {
    let found: Option<Membership> = sqlx::query_as(
        "SELECT o.id, o.name, m.role FROM organisation_members m JOIN organisations o ON o.id = m.organisation_id
         WHERE m.developer_id = $1 AND o.id = $2",
    )
    .bind(developer)
    .bind(org)
    .fetch_optional(conn)
    .await?;
    found.ok_or(UiError::NotFound)
}

#[derive(Debug, sqlx::FromRow)]
struct Member {
    developer_id: Uuid,
    name: String,
    email: String,
    role: String,
}

#[derive(Debug, sqlx::FromRow)]
struct Invite {
    email: String,
    role: String,
    expires_at: OffsetDateTime,
}

struct OrgView {
    org: Membership,
    members: Vec<Member>,
    invites: Vec<(Invite, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/team.html")]
struct TeamPage {
    chrome: Chrome,
    me: Uuid,
    orgs: Vec<OrgView>,
    /// The link of an invitation just made, to copy.
    invite_link: Option<String>,
    invite_org: Option<Uuid>,
    email: String,
    errors: FieldErrors,
}

/// `?notice=&invite=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TeamQuery {
    pub notice: Option<String>,
}

async fn team_page(
    state: &PortalState,
    who: &SignedIn,
    notice: Option<&str>,
    invite: Option<(Uuid, String)>,
    email: String,
    errors: FieldErrors,
) -> Result<Response, UiError> {
    let mut conn = state.db().acquire().await?;
    let mut orgs = Vec::new();
    for org in memberships(&mut conn, who.me.id).await? {
        let members: Vec<Member> = sqlx::query_as(
            "SELECT d.id AS developer_id, d.name, d.email, m.role FROM organisation_members m
             JOIN developers d ON d.id = m.developer_id WHERE m.organisation_id = $1 ORDER BY m.role, d.name",
        )
        .bind(org.id)
        .fetch_all(&mut *conn)
        .await?;
        let invites: Vec<Invite> = if org.is_admin() {
            sqlx::query_as(
                "SELECT email, role, expires_at FROM organisation_invites
                 WHERE organisation_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()
                 ORDER BY created_at",
            )
            .bind(org.id)
            .fetch_all(&mut *conn)
            .await?
        } else {
            Vec::new()
        };
        let invites = invites
            .into_iter()
            .map(|i| {
                let until = tollgate_admin::ui::format::date(i.expires_at);
                (i, until)
            })
            .collect();
        orgs.push(OrgView { org, members, invites });
    }
    let chrome = Chrome::new(&who.visit, "Your team", "team").with_notice(notice);
    let (invite_org, invite_link) = match invite {
        Some((org, link)) => (Some(org), Some(link)),
        None => (None, None),
    };
    Ok(TeamPage { chrome, me: who.me.id, orgs, invite_link, invite_org, email, errors }.into_response())
}

/// `GET /team`.
pub async fn show_team(
    State(state): State<PortalState>,
    who: SignedIn,
    Query(q): Query<TeamQuery>,
) -> Result<Response, UiError> {
    team_page(&state, &who, q.notice.as_deref(), None, String::new(), FieldErrors::default()).await
}

/// The invitation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct InviteForm {
    pub organisation_id: String,
    pub email: String,
    pub role: String,
}

fn org_id(raw: &str) -> Result<Uuid, UiError> {
    raw.parse().map_err(|_| UiError::NotFound)
}

/// `POST /team/invite`: an admin invites someone by e-mail; the page shows the link too.
pub async fn invite(
    State(state): State<PortalState>,
    who: SignedIn,
    Form(form): Form<InviteForm>,
) -> Result<Response, UiError> {
    let org = org_id(&form.organisation_id)?;
    let mut tx = state.db().begin().await?;
    let membership = membership(&mut tx, who.me.id, org).await?;
    if !membership.is_admin() {
        return Err(UiError::Forbidden("Only the organisation's admins invite people."));
    }
    let email = form.email.trim().to_owned();
    let mut errors = FieldErrors::default();
    check_email(&mut errors, "email", &email);
    let role = if form.role == "admin" { "admin" } else { "member" };
    if !errors.is_empty() {
        drop(tx);
        return team_page(&state, &who, None, None, email, errors).await;
    }
    let token = random_token("", 32);
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO organisation_invites (id, organisation_id, email, role, token_hash, invited_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(org)
    .bind(&email)
    .bind(role)
    .bind(secret_hash(&token))
    .bind(who.me.id)
    .bind(OffsetDateTime::now_utc() + INVITE_LIFETIME)
    .execute(&mut *tx)
    .await?;
    let after = serde_json::json!({ "organisation_id": org, "email": email, "role": role });
    change::record(
        &mut tx,
        &who.actor(),
        Change::create("organisation_invite", id, after).action("invite").audit_only(),
    )
    .await?;
    tx.commit().await?;
    let url = link(&state, &format!("/invite?token={token}"));
    let body = format!(
        "{} invited you to join {} on the developer portal, as {role}.\n\nAccept: {url}\n\nThe invitation works for 7 days.\n",
        who.me.name, membership.name
    );
    send_later(&state, Mail { to: email, subject: format!("Join {} on the developer portal", membership.name), body });
    team_page(&state, &who, Some("invited"), Some((org, url)), String::new(), FieldErrors::default()).await
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/invite.html")]
struct InvitePage {
    chrome: Chrome,
    organisation: String,
    role: String,
    token: String,
    signed_in: bool,
    next: String,
}

#[derive(sqlx::FromRow)]
struct OpenInvite {
    id: Uuid,
    organisation_id: Uuid,
    organisation: String,
    role: String,
}

async fn open_invite(conn: &mut PgConnection, token: &str) -> sqlx::Result<Option<OpenInvite>> {
    sqlx::query_as(
        "SELECT i.id, i.organisation_id, o.name AS organisation, i.role FROM organisation_invites i
         JOIN organisations o ON o.id = i.organisation_id
         WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now()",
    )
    .bind(secret_hash(token))
    .fetch_optional(conn)
    .await
}

/// `GET /invite?token=`: who invites to what; accept when signed in, else sign in or up first.
pub async fn show_invite(
    State(state): State<PortalState>,
    visit: Visit,
    Query(q): Query<crate::accounts::signup::TokenQuery>,
) -> Result<Response, UiError> {
    let mut conn = state.db().acquire().await?;
    let Some(inv) = open_invite(&mut conn, &q.token).await? else {
        return Ok(crate::accounts::signup::dead_link(&visit));
    };
    let chrome = Chrome::new(&visit, format!("Join {}", inv.organisation), "team");
    let next = encode(&format!("/invite?token={}", q.token));
    let signed_in = visit.me.is_some();
    Ok(InvitePage { chrome, organisation: inv.organisation, role: inv.role, token: q.token, signed_in, next }
        .into_response())
}

/// `POST /invite`: the signed-in developer joins (whatever address the mail went to: the
/// link is the proof, as with every invitation link).
pub async fn accept_invite(
    State(state): State<PortalState>,
    who: SignedIn,
    Form(q): Form<crate::accounts::signup::TokenQuery>,
) -> Result<Response, UiError> {
    let mut tx = state.db().begin().await?;
    let Some(inv) = open_invite(&mut tx, &q.token).await? else {
        return Ok(crate::accounts::signup::dead_link(&who.visit));
    };
    sqlx::query("UPDATE organisation_invites SET accepted_at = now() WHERE id = $1")
        .bind(inv.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO organisation_members (organisation_id, developer_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (organisation_id, developer_id) DO NOTHING",
    )
    .bind(inv.organisation_id)
    .bind(who.me.id)
    .bind(&inv.role)
    .execute(&mut *tx)
    .await?;
    let after =
        serde_json::json!({ "organisation_id": inv.organisation_id, "developer_id": who.me.id, "role": inv.role });
    change::record(
        &mut tx,
        &who.actor(),
        Change::create("organisation_member", inv.id, after).action("join").audit_only(),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/team?notice=joined").into_response())
}

/// The remove-member form (also used to leave).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RemoveForm {
    pub organisation_id: String,
    pub developer_id: String,
}

/// `POST /team/remove`: an admin removes a member, or a member removes themself (leaves).
/// The last admin cannot go.
pub async fn remove_member(
    State(state): State<PortalState>,
    who: SignedIn,
    Form(form): Form<RemoveForm>,
) -> Result<Response, UiError> {
    let org = org_id(&form.organisation_id)?;
    let target: Uuid = form.developer_id.parse().map_err(|_| UiError::NotFound)?;
    let mut tx = state.db().begin().await?;
    // Serialises membership changes of this organisation (the last-admin rule).
    sqlx::query("SELECT 1 FROM organisations WHERE id = $1 FOR UPDATE").bind(org).execute(&mut *tx).await?;
    let mine = membership(&mut tx, who.me.id, org).await?;
    if target != who.me.id && !mine.is_admin() {
        return Err(UiError::Forbidden("Only the organisation's admins remove members."));
    }
    let (admins,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM organisation_members WHERE organisation_id = $1 AND role = 'admin' AND developer_id <> $2",
    )
    .bind(org)
    .bind(target)
    .fetch_one(&mut *tx)
    .await?;
    if admins == 0 {
        return Err(UiError::Conflict(
            "An organisation needs at least one admin: make someone else admin first.".into(),
        ));
    }
    let gone = sqlx::query("DELETE FROM organisation_members WHERE organisation_id = $1 AND developer_id = $2")
        .bind(org)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    if gone.rows_affected() == 0 {
        return Err(UiError::NotFound);
    }
    let before = serde_json::json!({ "organisation_id": org, "developer_id": target });
    change::record(&mut tx, &who.actor(), Change::delete("organisation_member", org, before).audit_only()).await?;
    tx.commit().await?;
    let notice = if target == who.me.id { "left" } else { "member-removed" };
    Ok(Redirect::to(&format!("/team?notice={notice}")).into_response())
}
