//! Developers and their apps: one search over organisations, developers, apps and keys (by
//! e-mail, name or key prefix), an app's page with its subscriptions and keys, and revoking
//! or rotating a key with a reason that the audit log keeps.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::fields::FormData;
use super::web::{Admin, BASE, Chrome, FieldErrors, UiError};
use crate::auth::Role;
use crate::certificate_bindings::{CertificateBinding, CertificateBindingInput};
use crate::extract::IfMatch;
use crate::keys::{self, RotateInput};
use crate::ops;
use crate::state::AppState;
use crate::ui::form::escape_like;
use crate::ui::format::date_time;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    q: String,
    notice: Option<String>,
}

/// One search hit.
#[derive(sqlx::FromRow)]
pub struct Hit {
    pub kind: String,
    pub id: Uuid,
    pub title: String,
    pub detail: String,
    /// The app to open (apps and keys), if any.
    pub app: Option<Uuid>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/developers.html")]
struct SearchPage {
    chrome: Chrome,
    q: String,
    hits: Vec<Hit>,
    recent: Vec<Hit>,
}

/// `GET /ui/developers?q=`: organisations, developers, apps and keys matching `q`; without
/// `q`, the newest developers.
pub async fn show_search(
    State(state): State<AppState>,
    who: Admin,
    Query(q): Query<SearchQuery>,
) -> Result<Response, UiError> {
    let term = q.q.trim().to_owned();
    let hits: Vec<Hit> = if term.is_empty() {
        Vec::new()
    } else if term.starts_with(tollgate_gateway::key_format::PREFIX) {
        // Keys all start with `tg_`: a key prefix, looked up by its index.
        sqlx::query_as(
            "SELECT 'key' AS kind, k.id, k.prefix || '…' AS title,
                    c.name || CASE WHEN k.revoked_at IS NOT NULL THEN ' · revoked' ELSE '' END AS detail, c.id AS app
             FROM api_keys k JOIN consumers c ON c.id = k.consumer_id
             WHERE k.prefix LIKE $1 ORDER BY k.prefix, k.created_at DESC LIMIT 50",
        )
        .bind(format!("{}%", escape_like(&term)))
        .fetch_all(state.db())
        .await?
    } else {
        // Three scans at once on three connections: the page waits for the slowest, not the sum.
        let like = format!("%{}%", escape_like(&term));
        let search = |sql: &'static str| sqlx::query_as::<_, Hit>(sql).bind(like.clone()).fetch_all(state.db());
        let (orgs, devs, apps) = tokio::try_join!(
            search(
                "SELECT 'organisation' AS kind, o.id, o.name AS title,
                        (SELECT count(*) FROM organisation_members m WHERE m.organisation_id = o.id) || ' members' AS detail,
                        NULL::uuid AS app
                 FROM organisations o WHERE o.name ILIKE $1 ORDER BY o.name LIMIT 25"
            ),
            search(
                "SELECT 'developer' AS kind, d.id, d.name AS title, d.email || ' · ' || d.status AS detail, NULL::uuid AS app
                 FROM developers d WHERE d.email ILIKE $1 OR d.name ILIKE $1 ORDER BY d.email LIMIT 25"
            ),
            search(
                "SELECT 'app' AS kind, c.id, c.name AS title, coalesce(o.name, d.email, 'admin-created') AS detail, c.id AS app
                 FROM consumers c LEFT JOIN organisations o ON o.id = c.organisation_id
                      LEFT JOIN developers d ON d.id = c.developer_id
                 WHERE c.name ILIKE $1 ORDER BY c.name LIMIT 25"
            ),
        )?;
        orgs.into_iter().chain(devs).chain(apps).collect()
    };
    let recent: Vec<Hit> = if term.is_empty() {
        sqlx::query_as(
            "SELECT 'developer' AS kind, d.id, d.name AS title, d.email || ' · ' || d.status AS detail, NULL::uuid AS app
             FROM developers d ORDER BY d.created_at DESC LIMIT 20",
        )
        .fetch_all(state.db())
        .await?
    } else {
        Vec::new()
    };
    let chrome = Chrome::new(&who.visit, "Developers", "developers").with_notice(q.notice.as_deref());
    Ok(SearchPage { chrome, q: term, hits, recent }.into_response())
}

/// A developer's page: their organisations and apps.
#[derive(Template, WebTemplate)]
#[template(path = "admin/developer.html")]
struct DeveloperPage {
    chrome: Chrome,
    name: String,
    email: String,
    status: String,
    since: String,
    orgs: Vec<(Uuid, String, String)>,
    apps: Vec<(Uuid, String, String)>,
}

/// `GET /ui/developers/{id}`.
pub async fn show_developer(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
) -> Result<Response, UiError> {
    let dev: Option<(String, String, String, OffsetDateTime)> =
        sqlx::query_as("SELECT name, email, status, created_at FROM developers WHERE id = $1")
            .bind(id)
            .fetch_optional(state.db())
            .await?;
    let (name, email, status, since) = dev.ok_or(UiError::NotFound)?;
    let orgs: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT o.id, o.name, m.role FROM organisation_members m JOIN organisations o ON o.id = m.organisation_id
         WHERE m.developer_id = $1 ORDER BY o.name",
    )
    .bind(id)
    .fetch_all(state.db())
    .await?;
    let apps: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT c.id, c.name, coalesce(o.name, 'personal') FROM consumers c
         LEFT JOIN organisations o ON o.id = c.organisation_id
         WHERE c.developer_id = $1
            OR c.organisation_id IN (SELECT organisation_id FROM organisation_members WHERE developer_id = $1)
         ORDER BY c.name LIMIT 500",
    )
    .bind(id)
    .fetch_all(state.db())
    .await?;
    let chrome = Chrome::new(&who.visit, format!("Developer {name}"), "developers");
    Ok(DeveloperPage { chrome, name, email, status, since: date_time(since), orgs, apps }.into_response())
}

/// A key's line on an app's page.
pub struct KeyLine {
    pub id: Uuid,
    pub prefix: String,
    pub name: String,
    pub created: String,
    pub last_used: String,
    pub state: String,
    pub working: bool,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    prefix: String,
    name: String,
    created_at: OffsetDateTime,
    last_used_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
    replaced_by: Option<Uuid>,
    version: i64,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/consumer.html")]
struct ConsumerPage {
    chrome: Chrome,
    id: Uuid,
    name: String,
    owner: String,
    developer: Option<Uuid>,
    subscriptions: Vec<(String, String, String)>,
    keys: Vec<KeyLine>,
    /// Client certificates bound to the app (mTLS): (binding id, how it matches, what).
    certificates: Vec<(Uuid, &'static str, String)>,
    errors: FieldErrors,
    /// A key just issued by rotation: shown once.
    new_secret: Option<String>,
    /// The certificate binding form as sent, when it was refused.
    binding_match: String,
    binding_value: String,
}

async fn consumer_page(
    state: &AppState,
    who: &Admin,
    id: Uuid,
    errors: FieldErrors,
    new_secret: Option<String>,
) -> Result<ConsumerPage, UiError> {
    let row: Option<(String, Option<String>, Option<Uuid>)> = sqlx::query_as(
        "SELECT c.name, coalesce(o.name, d.email), c.developer_id FROM consumers c
         LEFT JOIN organisations o ON o.id = c.organisation_id LEFT JOIN developers d ON d.id = c.developer_id
         WHERE c.id = $1",
    )
    .bind(id)
    .fetch_optional(state.db())
    .await?;
    let (name, owner, developer) = row.ok_or(UiError::NotFound)?;
    let subscriptions: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT a.name, p.name, s.status FROM subscriptions s JOIN apis a ON a.id = s.api_id JOIN plans p ON p.id = s.plan_id
         WHERE s.consumer_id = $1 ORDER BY a.name",
    )
    .bind(id)
    .fetch_all(state.db())
    .await?;
    let keys: Vec<KeyRow> = sqlx::query_as(
        "SELECT id, prefix, name, created_at, last_used_at, expires_at, revoked_at, replaced_by, version
         FROM api_keys WHERE consumer_id = $1 ORDER BY created_at DESC LIMIT 200",
    )
    .bind(id)
    .fetch_all(state.db())
    .await?;
    let bound: Vec<(Uuid, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, fingerprint, subject FROM certificate_bindings WHERE consumer_id = $1 ORDER BY created_at LIMIT 200",
    )
    .bind(id)
    .fetch_all(state.db())
    .await?;
    let certificates = bound
        .into_iter()
        .map(|(bid, fingerprint, subject)| match (fingerprint, subject) {
            (Some(f), _) => (bid, "SHA-256 fingerprint", f),
            (None, s) => (bid, "Subject name", s.unwrap_or_default()),
        })
        .collect();
    let now = OffsetDateTime::now_utc();
    let keys = keys
        .into_iter()
        .map(|k| {
            let expired = k.expires_at.is_some_and(|t| t <= now);
            let state = match (k.revoked_at, expired, k.expires_at) {
                (Some(t), _, _) => format!("revoked {}", date_time(t)),
                (None, true, _) => "expired".to_owned(),
                (None, false, Some(t)) => format!("works until {}", date_time(t)),
                (None, false, None) => "works".to_owned(),
            };
            KeyLine {
                id: k.id,
                prefix: k.prefix,
                name: k.name,
                created: date_time(k.created_at),
                last_used: k.last_used_at.map_or_else(|| "never".to_owned(), date_time),
                working: k.revoked_at.is_none() && !expired && k.replaced_by.is_none(),
                state,
                version: k.version,
            }
        })
        .collect();
    Ok(ConsumerPage {
        chrome: Chrome::new(&who.visit, format!("App {name}"), "developers"),
        id,
        name,
        owner: owner.unwrap_or_else(|| "admin-created".to_owned()),
        developer,
        subscriptions,
        keys,
        certificates,
        errors,
        new_secret,
        binding_match: "fingerprint".to_owned(),
        binding_value: String::new(),
    })
}

/// `POST /ui/consumers/{id}/certificates`: binds a client certificate (by fingerprint or
/// subject name) to the app; `POST /ui/consumers/{id}/certificates/{binding}/delete`
/// unbinds one (refused on the next request, also on open connections).
pub async fn certificate_binding(
    State(state): State<AppState>,
    who: Admin,
    Path(ids): Path<Vec<String>>,
    body: Bytes,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let parse = |i: usize| ids.get(i).and_then(|s| s.parse::<Uuid>().ok()).ok_or(UiError::NotFound);
    let id = parse(0)?;
    let done = |notice: &str| Ok(Redirect::to(&format!("{BASE}/consumers/{id}?notice={notice}")).into_response());
    if ids.len() == 2 {
        let binding = parse(1)?;
        let held = ops::read::<CertificateBinding>(&state, None, binding).await?.into_body();
        if held.consumer_id != id {
            return Err(UiError::NotFound);
        }
        ops::delete::<CertificateBinding>(&state, &who.actor(), None, binding, IfMatch::Any).await?;
        return done("deleted");
    }
    let form = FormData::parse(&body);
    let (by, value) = (form.get("match"), form.get("value").trim());
    let input = match by {
        "subject" => CertificateBindingInput { consumer_id: id, fingerprint: None, subject: Some(value.to_owned()) },
        _ => CertificateBindingInput { consumer_id: id, fingerprint: Some(value.to_owned()), subject: None },
    };
    match ops::create::<CertificateBinding>(&state, &who.actor(), None, input).await {
        Ok(_) => done("created"),
        Err(e) => {
            let mut errors = FieldErrors::default();
            let detail = e.field_errors().first().map_or_else(|| e.detail().to_owned(), |f| f.detail.clone());
            errors.add("value", detail);
            let mut page = consumer_page(&state, &who, id, errors, None).await?;
            page.binding_match = by.to_owned();
            page.binding_value = value.to_owned();
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoticeQuery {
    notice: Option<String>,
}

/// `GET /ui/consumers/{id}`.
pub async fn show_consumer(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<Uuid>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    let mut page = consumer_page(&state, &who, id, FieldErrors::default(), None).await?;
    page.chrome = page.chrome.with_notice(q.notice.as_deref());
    Ok(page.into_response())
}

/// `POST /ui/consumers/{id}/keys/{key}/revoke|rotate`: with a reason (required), kept in the
/// audit row; rotation keeps the old key working for the overlap chosen and shows the new
/// secret once.
pub async fn key_action(
    State(state): State<AppState>,
    who: Admin,
    Path((id, key, action)): Path<(Uuid, Uuid, String)>,
    body: Bytes,
) -> Result<Response, UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(&body);
    let reason = form.get("reason");
    let version: i64 = form.get("version").parse().unwrap_or(-1);
    let field = |f: &str| format!("{f}-{key}");
    let mut errors = FieldErrors::default();
    if reason.is_empty() {
        errors.add(field("reason"), "Say why; the audit log keeps it.");
    }
    let overlap_hours: u32 = match form.get("overlap_hours") {
        "" => 0,
        h => h.parse().unwrap_or_else(|_| {
            errors.add(field("overlap_hours"), "must be a whole number of hours");
            0
        }),
    };
    let refuse = |errors: FieldErrors| async {
        let page = consumer_page(&state, &who, id, errors, None).await?;
        Ok::<_, UiError>((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
    };
    if !errors.is_empty() {
        return refuse(errors).await;
    }
    let actor = who.actor().with_reason(reason);
    let if_match = IfMatch::Versions(vec![version]);
    let mut tx = state.db().begin().await?;
    let outcome = match action.as_str() {
        "revoke" => keys::revoke(&mut tx, &actor, id, key, &if_match).await.map(|_| None),
        "rotate" => {
            let input =
                RotateInput { overlap_seconds: overlap_hours.saturating_mul(3600), name: None, expires_at: None };
            keys::rotate(&mut tx, &actor, id, key, &if_match, &input).await.map(|r| Some(r.new.secret))
        }
        _ => return Err(UiError::NotFound),
    };
    match outcome {
        Ok(None) => {
            tx.commit().await?;
            Ok(Redirect::to(&format!("{BASE}/consumers/{id}?notice=key-revoked")).into_response())
        }
        Ok(Some(secret)) => {
            tx.commit().await?;
            let mut page = consumer_page(&state, &who, id, FieldErrors::default(), Some(secret)).await?;
            page.chrome = page.chrome.with_notice(Some("key-rotated"));
            Ok(page.into_response())
        }
        Err(e) => {
            drop(tx);
            let mut errors = FieldErrors::default();
            let message = if e.status() == axum::http::StatusCode::PRECONDITION_FAILED {
                "Someone else changed this key since you opened the page; nothing was changed. Reload and try again."
                    .to_owned()
            } else {
                e.field_errors().first().map_or_else(|| e.detail().to_owned(), |f| f.detail.clone())
            };
            errors.add(field(if action == "rotate" { "overlap_hours" } else { "reason" }), message);
            refuse(errors).await
        }
    }
}
