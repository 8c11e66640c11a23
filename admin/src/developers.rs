//! Developers: third-party portal accounts that own consumers (apps). Admins can create,
//! disable and delete them; passwords are set by the developer in the portal.

use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ops::resource_handlers;
use crate::resource::{ColumnWriter, Columns, Filter, Resource, eq};
use crate::validate::{NOT_BLANK_PATTERN, Validate, Violations, email_schema, string_schema};

fn name_schema() -> utoipa::openapi::schema::ObjectBuilder {
    string_schema(NOT_BLANK_PATTERN, 200).description(Some("Display name, not blank."))
}

/// Account state of a developer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type, Default)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum DeveloperStatus {
    /// Signed up, awaiting approval or e-mail confirmation.
    Pending,
    #[default]
    Active,
    /// Cannot log in; their apps' credentials stop working.
    Disabled,
}

/// The writable fields of a developer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "dev@example.com", "name": "Ada Lovelace"}))]
pub struct DeveloperInput {
    #[schema(schema_with = email_schema)]
    pub email: String,
    /// Display name, not blank.
    #[schema(schema_with = name_schema)]
    pub name: String,
    #[serde(default)]
    pub status: DeveloperStatus,
}

impl Validate for DeveloperInput {
    fn validate(&self, v: &mut Violations) {
        v.email("email", &self.email).not_blank("name", &self.name, 200);
    }
}

impl Columns for DeveloperInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("email", &self.email).col("name", &self.name).col("status", self.status);
    }
}

/// A developer as stored (never with the password hash).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Developer {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub status: DeveloperStatus,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for Developer {
    const KIND: &'static str = "developer";
    const TABLE: &'static str = "developers";
    type Input = DeveloperInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> DeveloperInput {
        DeveloperInput { email: self.email.clone(), name: self.name.clone(), status: self.status }
    }
}

/// Filters of `GET /developers`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeveloperFilter {
    /// Exact e-mail (case-insensitive).
    pub email: Option<String>,
    pub status: Option<DeveloperStatus>,
}

impl Filter for DeveloperFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        if let Some(email) = &self.email {
            qb.push(" AND lower(email) = lower(").push_bind(email.clone()).push(")");
        }
        eq(qb, "status", self.status);
    }
}

resource_handlers! {
    Developer, input: DeveloperInput, filter: DeveloperFilter, tag: "developers", parent: None,
    collection: "/developers" [], item: "/developers/{id}" [("id" = Uuid, Path, description = "Developer id"),],
    ops: { list: list_developers, get: get_developer, create: create_developer, patch: patch_developer, delete: delete_developer }
}
