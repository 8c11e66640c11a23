//! The audit log (filters: who, entity, action, time; each change's before/after as a
//! field-by-field diff) and the mail outbox (owners), newest first, paged by id. Audit rows
//! follow the REST API's read rules: kinds a role may not read are never listed.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;

use super::web::{Admin, Chrome, UiError, encode};
use crate::audit::{AuditEntry, hidden_kinds};
use crate::auth::Role;
use crate::outbox::OutboxQuery;
use crate::state::AppState;
use crate::ui::format::date_time;

/// Rows per page.
const PAGE: i64 = 50;

/// `?who=&entity=&action=&from=&to=&before=`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    who: String,
    entity: String,
    id: String,
    action: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    from: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    to: String,
    before: Option<i64>,
}

/// One changed field.
pub struct FieldChange {
    pub field: String,
    pub before: String,
    pub after: String,
}

/// One audit row for the page.
pub struct Entry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub reason: String,
    /// What the entity is called (its name, e-mail or key prefix), if its record says.
    pub label: String,
    pub changes: Vec<FieldChange>,
}

/// The name people know an entity by, from its record after (or before) the change.
fn label(before: Option<&Value>, after: Option<&Value>) -> String {
    ["name", "email", "prefix", "label"]
        .iter()
        .find_map(|k| after.or(before)?.get(*k)?.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
        .unwrap_or_default()
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/audit.html")]
struct AuditPage {
    chrome: Chrome,
    q: AuditQuery,
    kinds: Vec<String>,
    entries: Vec<Entry>,
    /// The query string of the next (older) page.
    older: Option<String>,
    error: String,
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The fields that differ between `before` and `after` (objects), in key order; for a
/// create or delete, every field of the one side.
pub fn diff(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !matches!(k.as_str(), "version" | "updated_at") && b.get(*k) != a.get(*k))
        .map(|k| FieldChange { field: k.clone(), before: show(b.get(k)), after: show(a.get(k)) })
        .collect()
}

fn day(s: &str) -> Option<OffsetDateTime> {
    let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(d.midnight().assume_utc())
}

/// `GET /ui/audit`.
pub async fn show_audit(
    State(state): State<AppState>,
    who: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Response, UiError> {
    let mut error = String::new();
    let from = match q.from.trim() {
        "" => None,
        s => day(s).or_else(|| {
            error = "Dates are written 2026-12-04.".to_owned();
            None
        }),
    };
    let to = match q.to.trim() {
        "" => None,
        s => day(s).map(|d| d + time::Duration::DAY).or_else(|| {
            error = "Dates are written 2026-12-04.".to_owned();
            None
        }),
    };
    let hidden = hidden_kinds(who.me.role);
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new("SELECT * FROM audit_log WHERE id < ");
    qb.push_bind(q.before.unwrap_or(i64::MAX));
    if !hidden.is_empty() {
        qb.push(" AND entity_kind <> ALL(").push_bind(hidden.to_vec()).push(")");
    }
    if !q.who.trim().is_empty() {
        let like = format!("%{}%", crate::ui::form::escape_like(q.who.trim()));
        qb.push(" AND actor_name ILIKE ").push_bind(like);
    }
    if !q.entity.is_empty() {
        qb.push(" AND entity_kind = ").push_bind(q.entity.clone());
    }
    if let Ok(id) = q.id.trim().parse::<uuid::Uuid>() {
        qb.push(" AND entity_id = ").push_bind(id);
    }
    if !q.action.trim().is_empty() {
        qb.push(" AND action = ").push_bind(q.action.trim().to_owned());
    }
    if let Some(f) = from {
        qb.push(" AND at >= ").push_bind(f);
    }
    if let Some(t) = to {
        qb.push(" AND at < ").push_bind(t);
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(PAGE + 1);
    let mut rows: Vec<AuditEntry> = qb.build_query_as().fetch_all(state.db()).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let older = more.then(|| rows.last().map(|r| r.id)).flatten().map(|last| {
        format!(
            "?who={}&entity={}&id={}&action={}&from={}&to={}&before={last}",
            encode(&q.who),
            encode(&q.entity),
            encode(&q.id),
            encode(&q.action),
            encode(&q.from),
            encode(&q.to)
        )
    });
    let entries = rows
        .into_iter()
        .map(|r| Entry {
            changes: diff(r.before.as_ref(), r.after.as_ref()),
            label: label(r.before.as_ref(), r.after.as_ref()),
            id: r.id,
            at: date_time(r.at),
            actor: format!("{} ({})", r.actor_name, r.actor_kind),
            action: r.action,
            entity: r.entity_kind,
            entity_id: r.entity_id.map(|i| i.to_string()).unwrap_or_default(),
            reason: r.reason.unwrap_or_default(),
        })
        .collect();
    let mut kinds: Vec<String> = [
        "api",
        "route",
        "target",
        "plan",
        "consumer",
        "api_key",
        "subscription",
        "developer",
        "api_document",
        "token_binding",
        "certificate_binding",
        "certificate",
        "organisation",
        "organisation_member",
        "organisation_invite",
        "developer_session",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if who.me.role == Role::Owner {
        kinds.extend(["admin_user", "session", "admin_token"].map(str::to_owned));
    }
    let chrome = Chrome::new(&who.visit, "Audit log", "audit");
    Ok(AuditPage { chrome, q, kinds, entries, older, error }.into_response())
}

/// A mail for the page, with the links of its body.
pub struct Mail {
    pub at: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub links: Vec<String>,
    pub status: String,
    pub error: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/outbox.html")]
struct OutboxPage {
    chrome: Chrome,
    recipient: String,
    mails: Vec<Mail>,
    older: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OutboxParams {
    recipient: String,
    before: Option<i64>,
}

/// The `http(s)://` links of a plain-text body.
fn links(body: &str) -> Vec<String> {
    body.split_whitespace()
        .map(|w| w.trim_start_matches(['(', '<']))
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches(['.', ',', ')', '>']).to_owned())
        .collect()
}

/// `GET /ui/outbox` (owners: mails carry one-time links).
pub async fn show_outbox(
    State(state): State<AppState>,
    who: Admin,
    Query(p): Query<OutboxParams>,
) -> Result<Response, UiError> {
    who.require(Role::Owner)?;
    let recipient = p.recipient.trim().to_owned();
    let q = OutboxQuery {
        before: p.before,
        limit: Some(50),
        recipient: (!recipient.is_empty()).then(|| recipient.clone()),
    };
    let page = crate::outbox::page(&state, &q).await?;
    let mails = page
        .data
        .into_iter()
        .map(|m| Mail {
            at: date_time(m.created_at),
            links: links(&m.body),
            recipient: m.recipient,
            subject: m.subject,
            body: m.body,
            status: if m.transport == "log" { "logged (not sent)".to_owned() } else { m.status },
            error: m.error.unwrap_or_default(),
        })
        .collect();
    let chrome = Chrome::new(&who.visit, "Mail outbox", "outbox");
    Ok(OutboxPage { chrome, recipient, mails, older: page.next_after }.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diffs_show_changed_fields_only() {
        let d = diff(
            Some(&json!({"a": 1, "b": "x", "version": 1})),
            Some(&json!({"a": 2, "b": "x", "c": [1], "version": 2})),
        );
        let got: Vec<(&str, &str, &str)> =
            d.iter().map(|c| (c.field.as_str(), c.before.as_str(), c.after.as_str())).collect();
        assert_eq!(got, vec![("a", "1", "2"), ("c", "—", "[1]")]);
        assert_eq!(diff(None, Some(&json!({"name": "n"})))[0].after, "n");
    }

    #[test]
    fn links_are_found_in_mail_bodies() {
        assert_eq!(
            links("Open https://p.example/verify?t=1. Or (http://x.y/z)"),
            vec!["https://p.example/verify?t=1", "http://x.y/z"]
        );
    }
}
