//! TLS certificates: what the gateways' HTTPS listener serves by name (and the client
//! certificates they present to upstreams), when each expires, and the forms to upload,
//! renew and delete them — through the same operations as `/certificates`.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use time::OffsetDateTime;
use uuid::Uuid;

use super::fields::FormData;
use super::web::{Admin, BASE, Chrome, FieldErrors, UiError};
use crate::auth::Role;
use crate::certificates::{Certificate, CertificateInput, CertificateUsage};
use crate::extract::IfMatch;
use crate::ops;
use crate::resource;
use crate::state::AppState;
use crate::ui::format::date_time;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct NoticeQuery {
    notice: Option<String>,
}

/// Days before expiry from which a certificate is flagged.
const RENEW_WITHIN_DAYS: i64 = 30;

/// A certificate's line.
pub struct CertLine {
    pub id: Uuid,
    /// Its names, or what it is for when it names none.
    pub names: String,
    pub client: bool,
    pub is_default: bool,
    pub subject: String,
    pub issuer: String,
    pub fingerprint: String,
    pub expires: String,
    /// `expired`, `renew` (within 30 days) or empty.
    pub state: &'static str,
    pub days_left: i64,
    pub version: i64,
    /// Its renewal form is open (a refused renewal, shown with its reasons).
    pub open: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/certificates.html")]
struct CertificatesPage {
    chrome: Chrome,
    certs: Vec<CertLine>,
    errors: FieldErrors,
    /// Whether this admin can store private keys (it has a secrets key).
    can_store: bool,
    usages: Vec<(&'static str, &'static str)>,
    /// The upload form as sent, when it was refused.
    form_usage: String,
    form_default: bool,
}

fn line(c: Certificate, now: OffsetDateTime) -> CertLine {
    let days_left = (c.not_after - now).whole_days();
    let client = c.usage == CertificateUsage::Client;
    let names = if c.names.is_empty() { "client certificate".to_owned() } else { c.names.join(", ") };
    CertLine {
        id: c.id,
        names,
        client,
        is_default: c.is_default,
        subject: c.subject,
        issuer: c.issuer,
        fingerprint: c.fingerprint_sha256.chars().take(16).collect(),
        expires: date_time(c.not_after),
        state: if c.not_after <= now {
            "expired"
        } else if days_left < RENEW_WITHIN_DAYS {
            "renew"
        } else {
            ""
        },
        days_left,
        version: c.version,
        open: false,
    }
}

async fn page(state: &AppState, who: &Admin, errors: FieldErrors) -> Result<CertificatesPage, UiError> {
    let rows: Vec<Certificate> =
        sqlx::query_as("SELECT * FROM certificates ORDER BY usage DESC, not_after, id LIMIT 1000")
            .fetch_all(state.db())
            .await?;
    let now = OffsetDateTime::now_utc();
    Ok(CertificatesPage {
        chrome: Chrome::new(&who.visit, "Certificates", "certificates"),
        certs: rows.into_iter().map(|c| line(c, now)).collect(),
        errors,
        can_store: state.config().secrets.is_some(),
        usages: vec![
            ("server", "Server: served by the gateways' HTTPS listener to clients asking for its names"),
            ("client", "Client: presented to upstreams that ask for a certificate"),
        ],
        form_usage: "server".to_owned(),
        form_default: false,
    })
}

/// `GET /ui/certificates`.
pub async fn show_certificates(
    State(state): State<AppState>,
    who: Admin,
    q: Query<NoticeQuery>,
) -> Result<Response, UiError> {
    let p = page(&state, &who, FieldErrors::default()).await?;
    Ok(CertificatesPage { chrome: p.chrome.with_notice(q.0.notice.as_deref()), ..p }.into_response())
}

/// The upload of `form` as the operation takes it.
fn input(form: &FormData) -> CertificateInput {
    CertificateInput {
        cert: form.get("cert").to_owned(),
        key: form.get("key").to_owned(),
        is_default: form.has("is_default"),
        usage: if form.get("usage") == "client" { CertificateUsage::Client } else { CertificateUsage::Server },
    }
}

/// A refused upload or renewal: the page again, with the reasons next to the fields (the
/// PEM is not sent back: a private key does not travel twice).
async fn refuse(
    state: &AppState,
    who: &Admin,
    e: crate::error::ApiError,
    form: &FormData,
    renewing: Option<Uuid>,
) -> Result<Response, UiError> {
    // A renewal's fields are named after its certificate (`cert-<id>`), so the summary
    // links to the form that was sent.
    let field = |name: &str| match renewing {
        Some(id) => format!("{name}-{id}"),
        None => name.to_owned(),
    };
    let mut errors = FieldErrors::default();
    for fe in e.field_errors() {
        errors.add(field(fe.pointer.trim_start_matches('/')), fe.detail.clone());
    }
    if errors.is_empty() {
        errors.add(field("cert"), e.detail().to_owned());
    }
    let mut p = page(state, who, errors).await?;
    p.form_usage = form.get("usage").to_owned();
    p.form_default = form.has("is_default");
    for c in p.certs.iter_mut() {
        c.open = renewing == Some(c.id);
    }
    Ok((StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
}

/// An editor's posted form, and the version of the certificate it was made from.
fn posted(who: &Admin, body: &[u8]) -> Result<(FormData, i64), UiError> {
    who.require(Role::Editor)?;
    let form = FormData::parse(body);
    let version = form.get("version").parse().unwrap_or(-1);
    Ok((form, version))
}

/// Stores `input` as certificate `id` (replacing `current`) and commits, or shows why not.
async fn store(
    state: &AppState,
    who: &Admin,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
    (id, input, current): (Uuid, CertificateInput, Option<&Certificate>),
    form: &FormData,
) -> Result<Response, UiError> {
    match crate::certificates::store_in(&mut tx, state, &who.actor(), id, &input, current).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(Redirect::to(&format!("{BASE}/certificates?notice=certificate-saved")).into_response())
        }
        Err(e) => refuse(state, who, e, form, current.map(|c| c.id)).await,
    }
}

/// `POST /ui/certificates`: uploads a certificate and its key.
pub async fn upload(State(state): State<AppState>, who: Admin, body: Bytes) -> Result<Response, UiError> {
    let (form, _) = posted(&who, &body)?;
    let tx = state.db().begin().await?;
    store(&state, &who, tx, (Uuid::now_v7(), input(&form), None), &form).await
}

/// `POST /ui/certificates/{id}/renew` (a new chain and key, same id) and
/// `POST /ui/certificates/{id}/delete`, with the version the page showed.
pub async fn act(
    State(state): State<AppState>,
    who: Admin,
    Path((id, action)): Path<(Uuid, String)>,
    body: Bytes,
) -> Result<Response, UiError> {
    let (form, version) = posted(&who, &body)?;
    match action.as_str() {
        "renew" => renew(&state, &who, id, version, &form).await,
        "delete" => {
            match ops::delete::<Certificate>(&state, &who.actor(), None, id, IfMatch::Versions(vec![version])).await {
                Ok(_) => Ok(Redirect::to(&format!("{BASE}/certificates?notice=deleted")).into_response()),
                Err(e) => refuse(&state, &who, e, &form, Some(id)).await,
            }
        }
        _ => Err(UiError::NotFound),
    }
}

async fn renew(state: &AppState, who: &Admin, id: Uuid, version: i64, form: &FormData) -> Result<Response, UiError> {
    let mut tx = state.db().begin().await?;
    let current = resource::fetch_for_update::<Certificate>(&mut tx, id, None).await?.ok_or(UiError::NotFound)?;
    if current.version != version {
        let stale = crate::error::ApiError::conflict(
            "Someone else changed this certificate since you opened the page; nothing was changed. Reload and try again.",
        );
        return refuse(state, who, stale, form, Some(id)).await;
    }
    let renewal = CertificateInput {
        cert: form.get(&format!("cert-{id}")).to_owned(),
        key: form.get(&format!("key-{id}")).to_owned(),
        is_default: form.has("is_default"),
        usage: current.usage,
    };
    store(state, who, tx, (id, renewal, Some(&current)), form).await
}
