//! The change-log contract between the planes: one function writes the audit row, the
//! `config_events` row and the `NOTIFY`, inside the caller's transaction.

use serde_json::Value;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

/// Channel gateways `LISTEN` on; the payload is the event id.
pub const NOTIFY_CHANNEL: &str = "tollgate_config";

/// Advisory lock key ("tollgate" in ASCII) that orders event ids by commit.
const EVENT_LOCK: i64 = 0x746f_6c6c_6761_7465;

/// Who made a change.
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: &'static str,
    pub id: Option<Uuid>,
    pub name: String,
    pub request_id: Option<String>,
    /// Why the actor made the change, when they said (kept in the audit row).
    pub reason: Option<String>,
}

impl Actor {
    /// The platform itself (seeding, migrations).
    pub fn system() -> Self {
        Self { kind: "system", id: None, name: "system".to_owned(), request_id: None, reason: None }
    }

    /// An admin user acting through the admin API.
    pub fn admin(id: Uuid, email: &str, request_id: Option<String>) -> Self {
        Self { kind: "admin", id: Some(id), name: email.to_owned(), request_id, reason: None }
    }

    /// A developer acting through the portal.
    pub fn developer(id: Uuid, email: &str, request_id: Option<String>) -> Self {
        Self { kind: "developer", id: Some(id), name: email.to_owned(), request_id, reason: None }
    }

    /// The same actor under another name (the platform's tools name themselves).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The same actor, stating why (an empty reason states nothing).
    pub fn with_reason(mut self, reason: &str) -> Self {
        let reason = reason.trim();
        self.reason = (!reason.is_empty()).then(|| reason.chars().take(1000).collect());
        self
    }
}

/// One entity change to record.
#[derive(Debug, Clone)]
pub struct Change {
    action: &'static str,
    op: &'static str,
    entity_kind: &'static str,
    entity_id: Uuid,
    before: Option<Value>,
    after: Option<Value>,
    config: bool,
}

impl Change {
    fn new(action: &'static str, op: &'static str, kind: &'static str, id: Uuid) -> Self {
        Self { action, op, entity_kind: kind, entity_id: id, before: None, after: None, config: true }
    }

    /// An entity was created with state `after`.
    pub fn create(kind: &'static str, id: Uuid, after: Value) -> Self {
        Self { after: Some(after), ..Self::new("create", "create", kind, id) }
    }

    /// An entity went from `before` to `after`.
    pub fn update(kind: &'static str, id: Uuid, before: Value, after: Value) -> Self {
        Self { before: Some(before), after: Some(after), ..Self::new("update", "update", kind, id) }
    }

    /// An entity in state `before` was deleted (with whatever cascades from it).
    pub fn delete(kind: &'static str, id: Uuid, before: Value) -> Self {
        Self { before: Some(before), ..Self::new("delete", "delete", kind, id) }
    }

    /// Names the audit action more precisely than create/update/delete (e.g. `revoke`).
    pub fn action(mut self, action: &'static str) -> Self {
        self.action = action;
        self
    }

    /// The change matters to the admin only (users, tokens, logins): no gateway event.
    pub fn audit_only(mut self) -> Self {
        self.config = false;
        self
    }
}

/// Records `change` in the audit log and, if gateways enforce it, in `config_events` with a
/// `NOTIFY`. Returns the event id, if one was written.
///
/// The advisory lock is held until the caller commits, so ids are handed out in commit
/// order and a gateway reading "events after N" can never skip a late-committing change.
pub async fn record(
    tx: &mut Transaction<'_, Postgres>,
    actor: &Actor,
    change: Change,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(EVENT_LOCK).execute(&mut **tx).await?;
    let (audit_id,): (i64,) = sqlx::query_as(
        "INSERT INTO audit_log (actor_kind, actor_id, actor_name, action, entity_kind, entity_id, before, after, request_id, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(actor.kind)
    .bind(actor.id)
    .bind(&actor.name)
    .bind(change.action)
    .bind(change.entity_kind)
    .bind(change.entity_id)
    .bind(&change.before)
    .bind(&change.after)
    .bind(&actor.request_id)
    .bind(&actor.reason)
    .fetch_one(&mut **tx)
    .await?;
    if !change.config {
        return Ok(None);
    }
    let (event_id,): (i64,) = sqlx::query_as(
        "INSERT INTO config_events (entity_kind, entity_id, op, audit_id) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(change.entity_kind)
    .bind(change.entity_id)
    .bind(change.op)
    .bind(audit_id)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(NOTIFY_CHANNEL).bind(event_id.to_string()).execute(&mut **tx).await?;
    Ok(Some(event_id))
}
