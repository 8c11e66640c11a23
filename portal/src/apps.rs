//! Apps and their keys. An app belongs to an organisation; every member may create apps
//! and manage keys, only admins delete apps. Keys are shown once, at issue or rotation;
//! afterwards the page shows each key's prefix, dates and state. Every write goes through
//! the admin's operations (`ops::create`, `keys::issue/rotate/revoke`) with the developer
//! as the audited actor.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use time::OffsetDateTime;
use tollgate_admin::consumers::{Consumer, ConsumerInput};
use tollgate_admin::extract::IfMatch;
use tollgate_admin::keys::{self, ApiKey, CreatedKey, KeyInput, RotateInput};
use tollgate_admin::ops;
use uuid::Uuid;

use crate::live::Live;
use crate::state::PortalState;
use crate::team::{self, Membership};
use crate::web::{Chrome, FieldErrors, SignedIn, UiError};

/// An app with its owner and counts, as listed.
#[derive(Debug, sqlx::FromRow)]
pub struct AppRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub organisation: String,
    pub keys: i64,
    pub subscriptions: i64,
}

/// The apps of every organisation of `developer`.
pub async fn my_apps(state: &PortalState, developer: Uuid) -> sqlx::Result<Vec<AppRow>> {
    sqlx::query_as(
        "SELECT c.id, c.name, c.description, o.name AS organisation,
                (SELECT count(*) FROM api_keys k WHERE k.consumer_id = c.id AND k.revoked_at IS NULL
                   AND (k.expires_at IS NULL OR k.expires_at > now())) AS keys,
                (SELECT count(*) FROM subscriptions s WHERE s.consumer_id = c.id) AS subscriptions
         FROM consumers c
         JOIN organisations o ON o.id = c.organisation_id
         JOIN organisation_members m ON m.organisation_id = o.id AND m.developer_id = $1
         ORDER BY o.name, lower(c.name)",
    )
    .bind(developer)
    .fetch_all(state.db())
    .await
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/apps.html")]
struct AppsPage {
    chrome: Chrome,
    apps: Vec<AppRow>,
    orgs: Vec<Membership>,
    form: AppForm,
    errors: FieldErrors,
}

/// The new-app form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AppForm {
    pub name: String,
    pub description: String,
    pub organisation_id: String,
}

/// `?notice=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

async fn apps_page(
    state: &PortalState,
    who: &SignedIn,
    form: AppForm,
    errors: FieldErrors,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let apps = my_apps(state, who.me.id).await?;
    let mut conn = state.db().acquire().await?;
    let orgs = team::memberships(&mut conn, who.me.id).await?;
    let chrome = Chrome::new(&who.visit, "Your apps", "apps").with_notice(notice);
    Ok(AppsPage { chrome, apps, orgs, form, errors }.into_response())
}

/// `GET /apps`.
pub async fn show_apps(
    State(state): State<PortalState>,
    who: SignedIn,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    apps_page(&state, &who, AppForm::default(), FieldErrors::default(), q.notice.as_deref()).await
}

/// `POST /apps`.
pub async fn create_app(
    State(state): State<PortalState>,
    who: SignedIn,
    Form(form): Form<AppForm>,
) -> Result<Response, UiError> {
    let mut conn = state.db().acquire().await?;
    let orgs = team::memberships(&mut conn, who.me.id).await?;
    drop(conn);
    let org =
        orgs.iter().find(|o| o.id.to_string() == form.organisation_id).or(orgs.first()).ok_or(UiError::NotFound)?;
    let input = ConsumerInput {
        name: form.name.trim().to_owned(),
        developer_id: None,
        organisation_id: Some(org.id),
        custom_id: None,
        description: form.description.trim().to_owned(),
        enabled: true,
    };
    match ops::create::<Consumer>(state.ops(), &who.actor(), None, input).await {
        Ok(created) => {
            let app: Consumer = created.into_body();
            Ok(Redirect::to(&format!("/apps/{}?notice=app-created", app.id)).into_response())
        }
        Err(err) => match FieldErrors::from_api(&err, &["name", "description"]) {
            Some(errors) => apps_page(&state, &who, form, errors, None).await,
            None => Err(err.into()),
        },
    }
}

/// The app `id` if it belongs to one of the developer's organisations (else 404), and the
/// developer's membership there.
pub async fn owned_app(state: &PortalState, who: &SignedIn, id: Uuid) -> Result<(Consumer, Membership), UiError> {
    let app: Option<Consumer> =
        sqlx::query_as("SELECT * FROM consumers WHERE id = $1").bind(id).fetch_optional(state.db()).await?;
    let app = app.ok_or(UiError::NotFound)?;
    let org = app.organisation_id.ok_or(UiError::NotFound)?;
    let mut conn = state.db().acquire().await?;
    let membership = team::membership(&mut conn, who.me.id, org).await?;
    Ok((app, membership))
}

/// A key as the app page shows it.
pub struct KeyView {
    pub key: ApiKey,
    pub state: &'static str,
    pub created: String,
    pub last_used: String,
    pub expires: String,
}

fn key_view(key: ApiKey, now: OffsetDateTime) -> KeyView {
    let state = if key.revoked_at.is_some() {
        "revoked"
    } else if key.expires_at.is_some_and(|t| t <= now) {
        "expired"
    } else if key.replaced_by.is_some() {
        "rotating"
    } else {
        "active"
    };
    KeyView {
        state,
        created: tollgate_admin::ui::format::date_time(key.created_at),
        last_used: key.last_used_at.map_or_else(|| "never".to_owned(), tollgate_admin::ui::format::date_time),
        expires: key.expires_at.map_or_else(|| "never".to_owned(), tollgate_admin::ui::format::date_time),
        key,
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/app.html")]
struct AppPage {
    chrome: Chrome,
    app: Consumer,
    organisation: String,
    can_delete: bool,
    keys: Vec<KeyView>,
    subscriptions: Vec<crate::catalog::SubscriptionRow>,
    live: Live,
    errors: FieldErrors,
}

/// `GET /apps/{id}`.
pub async fn show_app(
    State(state): State<PortalState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, UiError> {
    app_page(&state, &who, id, FieldErrors::default(), q.notice.as_deref()).await
}

async fn app_page(
    state: &PortalState,
    who: &SignedIn,
    id: Uuid,
    errors: FieldErrors,
    notice: Option<&str>,
) -> Result<Response, UiError> {
    let (app, membership) = owned_app(state, who, id).await?;
    let keys: Vec<ApiKey> = sqlx::query_as(
        "SELECT * FROM api_keys WHERE consumer_id = $1
         ORDER BY (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) DESC, created_at DESC LIMIT 200",
    )
    .bind(id)
    .fetch_all(state.db())
    .await?;
    let now = OffsetDateTime::now_utc();
    let live = crate::live::of_app(state, id).await?;
    let subscriptions = crate::catalog::subscriptions_of(state, id).await?;
    let chrome = Chrome::new(&who.visit, app.name.clone(), "apps").with_notice(notice);
    Ok(AppPage {
        chrome,
        organisation: membership.name.clone(),
        can_delete: membership.is_admin(),
        keys: keys.into_iter().map(|k| key_view(k, now)).collect(),
        subscriptions,
        live,
        errors,
        app,
    }
    .into_response())
}

/// The new-key form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct KeyForm {
    pub name: String,
    /// Days until the key expires; empty: never.
    pub expires_in_days: String,
}

fn expiry(days: &str, errors: &mut FieldErrors, field: &'static str) -> Option<OffsetDateTime> {
    let days = days.trim();
    if days.is_empty() {
        return None;
    }
    match days.parse::<i64>() {
        Ok(d) if (1..=3650).contains(&d) => Some(OffsetDateTime::now_utc() + time::Duration::days(d)),
        _ => {
            errors
                .add(field, "Enter a number of days from 1 to 3650, or leave it empty for a key that does not expire");
            None
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "portal/key_created.html")]
struct KeyCreatedPage {
    chrome: Chrome,
    app: Consumer,
    created: CreatedKey,
    expires: String,
    /// The key it replaces, still working until `old_until`.
    old_prefix: Option<String>,
    old_until: String,
    live: Live,
    gateway_url: String,
    /// A path to call for each API the app is subscribed to: (API, path).
    calls: Vec<(String, String)>,
}

/// One example path per API the app may call: its first route's path, a wildcard or
/// parameter cut off.
async fn example_calls(state: &PortalState, app: Uuid) -> sqlx::Result<Vec<(String, String)>> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT a.name, (SELECT r.paths[1] FROM routes r WHERE r.api_id = a.id AND cardinality(r.paths) > 0
                          ORDER BY r.priority DESC, r.name LIMIT 1)
         FROM subscriptions s JOIN apis a ON a.id = s.api_id
         WHERE s.consumer_id = $1 AND s.status = 'active' ORDER BY a.name LIMIT 10",
    )
    .bind(app)
    .fetch_all(state.db())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(api, path)| {
            let path = path?;
            let cut = path.find(['*', '{']).map_or(path.as_str(), |i| &path[..i]).to_owned();
            Some((api, cut))
        })
        .collect())
}

async fn key_created(
    state: &PortalState,
    who: &SignedIn,
    app: Consumer,
    created: CreatedKey,
    old: Option<ApiKey>,
) -> Result<Response, UiError> {
    let live = crate::live::of_entity(state, created.key.id).await?;
    let expires = created.key.expires_at.map_or_else(|| "never".to_owned(), tollgate_admin::ui::format::date_time);
    let title = if old.is_some() { "Key rotated" } else { "Key created" };
    let calls = example_calls(state, app.id).await?;
    Ok(KeyCreatedPage {
        calls,
        chrome: Chrome::new(&who.visit, title, "apps"),
        expires,
        old_until: old
            .as_ref()
            .and_then(|k| k.expires_at)
            .map_or_else(String::new, tollgate_admin::ui::format::date_time),
        old_prefix: old.map(|k| k.prefix),
        created,
        app,
        live,
        gateway_url: state.config().gateway_url.clone(),
    }
    .into_response())
}

/// `POST /apps/{id}/keys`: issues a key and shows it, once.
pub async fn create_key(
    State(state): State<PortalState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<KeyForm>,
) -> Result<Response, UiError> {
    let (app, _) = owned_app(&state, &who, id).await?;
    let mut errors = FieldErrors::default();
    let expires_at = expiry(&form.expires_in_days, &mut errors, "expires_in_days");
    errors.check(form.name.chars().count() <= 100, "key_name", "Use at most 100 characters");
    if !errors.is_empty() {
        return app_page(&state, &who, id, errors, None).await;
    }
    let mut tx = state.db().begin().await?;
    let created =
        keys::issue(&mut tx, &who.actor(), id, &KeyInput { name: form.name.trim().to_owned(), expires_at }).await?;
    tx.commit().await?;
    key_created(&state, &who, app, created, None).await
}

/// The rotation form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RotateForm {
    /// Seconds the old key keeps working.
    pub overlap: String,
}

/// `POST /apps/{id}/keys/{key}/rotate`: a successor, shown once; the old key works until the
/// overlap the developer chose ends.
pub async fn rotate_key(
    State(state): State<PortalState>,
    who: SignedIn,
    Path((id, key)): Path<(Uuid, Uuid)>,
    Form(form): Form<RotateForm>,
) -> Result<Response, UiError> {
    let (app, _) = owned_app(&state, &who, id).await?;
    let overlap = match form.overlap.trim().parse::<u32>() {
        Ok(s) if s <= keys::MAX_OVERLAP_SECS => s,
        _ => {
            let mut errors = FieldErrors::default();
            errors.add("overlap", "Choose how long the old key keeps working (at most 30 days)");
            return app_page(&state, &who, id, errors, None).await;
        }
    };
    let mut tx = state.db().begin().await?;
    let input = RotateInput { overlap_seconds: overlap, name: None, expires_at: None };
    let rotated = keys::rotate(&mut tx, &who.actor(), id, key, &IfMatch::Any, &input).await?;
    tx.commit().await?;
    key_created(&state, &who, app, rotated.new, Some(rotated.old)).await
}

/// `POST /apps/{id}/keys/{key}/revoke`: the key stops working at once.
pub async fn revoke_key(
    State(state): State<PortalState>,
    who: SignedIn,
    Path((id, key)): Path<(Uuid, Uuid)>,
) -> Result<Response, UiError> {
    owned_app(&state, &who, id).await?;
    let mut tx = state.db().begin().await?;
    keys::revoke(&mut tx, &who.actor(), id, key, &IfMatch::Any).await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/apps/{id}?notice=key-revoked")).into_response())
}

/// `POST /apps/{id}/delete`: admins of the organisation delete an app and its keys.
pub async fn delete_app(
    State(state): State<PortalState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
) -> Result<Response, UiError> {
    let (_, membership) = owned_app(&state, &who, id).await?;
    if !membership.is_admin() {
        return Err(UiError::Forbidden("Only the organisation's admins delete apps."));
    }
    ops::delete::<Consumer>(state.ops(), &who.actor(), None, id, IfMatch::Any).await?;
    Ok(Redirect::to("/apps?notice=app-deleted").into_response())
}
