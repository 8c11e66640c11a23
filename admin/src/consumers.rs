//! Consumers ("apps"): the identity a request is attributed to. Owned by a developer
//! (created in the portal) or by nobody (created by an admin). Keys and subscriptions
//! belong to a consumer and are deleted with it.

use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ops::resource_handlers;
use crate::resource::{ColumnWriter, Columns, Filter, Resource, eq};
use crate::validate::{Validate, Violations};

fn default_true() -> bool {
    true
}

/// The writable fields of a consumer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "acme-mobile", "description": "ACME's mobile app"}))]
pub struct ConsumerInput {
    /// Unique per developer (case-insensitive): letters, digits, space, `.`, `_`, `@`, `-`.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$", max_length = 100)]
    pub name: String,
    /// The developer owning this app, if any (apps made in the portal belong to an
    /// organisation instead).
    #[serde(default)]
    pub developer_id: Option<Uuid>,
    /// The organisation owning this app, if any; not together with `developer_id`.
    #[serde(default)]
    pub organisation_id: Option<Uuid>,
    /// An identifier from another system, unique.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub custom_id: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// Disabled consumers' credentials are rejected.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.len() <= 100
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '@' | '-'))
}

impl Validate for ConsumerInput {
    fn validate(&self, v: &mut Violations) {
        v.check(
            valid_name(&self.name),
            "name",
            "must be 1-100 letters, digits, spaces or . _ @ -, starting with a letter or digit",
        )
        .check(
            self.custom_id.as_deref().is_none_or(|c| (1..=200).contains(&c.chars().count())),
            "custom_id",
            "must be 1-200 characters",
        )
        .max_len("description", &self.description, 2000)
        .check(
            self.developer_id.is_none() || self.organisation_id.is_none(),
            "organisation_id",
            "an app belongs to a developer or to an organisation, not both",
        );
    }
}

impl Columns for ConsumerInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("name", &self.name)
            .col("developer_id", self.developer_id)
            .col("organisation_id", self.organisation_id)
            .col("custom_id", self.custom_id.as_deref())
            .col("description", &self.description)
            .col("enabled", self.enabled);
    }
}

/// A consumer as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Consumer {
    pub id: Uuid,
    pub name: String,
    pub developer_id: Option<Uuid>,
    pub organisation_id: Option<Uuid>,
    pub custom_id: Option<String>,
    pub description: String,
    pub enabled: bool,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for Consumer {
    const KIND: &'static str = "consumer";
    const TABLE: &'static str = "consumers";
    type Input = ConsumerInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> ConsumerInput {
        ConsumerInput {
            name: self.name.clone(),
            developer_id: self.developer_id,
            organisation_id: self.organisation_id,
            custom_id: self.custom_id.clone(),
            description: self.description.clone(),
            enabled: self.enabled,
        }
    }
}

/// Filters of `GET /consumers`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsumerFilter {
    pub developer_id: Option<Uuid>,
    pub organisation_id: Option<Uuid>,
    pub custom_id: Option<String>,
    pub name: Option<String>,
    pub enabled: Option<bool>,
}

impl Filter for ConsumerFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "developer_id", self.developer_id);
        eq(qb, "organisation_id", self.organisation_id);
        eq(qb, "custom_id", self.custom_id.as_deref());
        eq(qb, "name", self.name.as_deref());
        eq(qb, "enabled", self.enabled);
    }
}

resource_handlers! {
    Consumer, input: ConsumerInput, filter: ConsumerFilter, tag: "consumers", parent: None,
    collection: "/consumers" [], item: "/consumers/{id}" [("id" = Uuid, Path, description = "Consumer id"),],
    ops: { list: list_consumers, get: get_consumer, create: create_consumer, patch: patch_consumer, delete: delete_consumer }
}
