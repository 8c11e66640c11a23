//! Upstream targets of an API: host, port, weight, and whether it is a backup.

use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ops::resource_handlers;
use crate::resource::{ColumnWriter, Columns, Filter, Resource, eq};
use crate::validate::{Validate, Violations};

fn default_weight() -> i32 {
    100
}

/// The writable fields of a target.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"host": "10.0.0.12", "port": 8080, "weight": 100}))]
pub struct TargetInput {
    /// DNS name, IPv4 address or bracketed IPv6 address.
    #[schema(pattern = "^[A-Za-z0-9.:\\[\\]-]{1,253}$", min_length = 1, max_length = 253)]
    pub host: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: i32,
    /// Relative share of traffic; 0 drains the target.
    #[serde(default = "default_weight")]
    #[schema(minimum = 0, maximum = 65535)]
    pub weight: i32,
    /// Used only when every primary target is down.
    #[serde(default)]
    pub backup: bool,
    /// `stable` (default) or `canary`; see the API's `canary_weight`.
    #[serde(default)]
    pub pool: TargetPool,
}

/// Which version of the upstream a target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type, Default)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum TargetPool {
    #[default]
    Stable,
    Canary,
}

fn valid_host(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

impl Validate for TargetInput {
    fn validate(&self, v: &mut Violations) {
        v.check(valid_host(&self.host), "host", "must be a DNS name or an IP address")
            .check((1..=65535).contains(&self.port), "port", "must be 1 to 65535")
            .check((0..=65535).contains(&self.weight), "weight", "must be 0 to 65535");
    }
}

impl Columns for TargetInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("host", &self.host)
            .col("port", self.port)
            .col("weight", self.weight)
            .col("backup", self.backup)
            .col("pool", self.pool);
    }
}

/// A target as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Target {
    pub id: Uuid,
    pub api_id: Uuid,
    pub host: String,
    pub port: i32,
    pub weight: i32,
    pub backup: bool,
    pub pool: TargetPool,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for Target {
    const KIND: &'static str = "target";
    const TABLE: &'static str = "targets";
    const PARENT: Option<&'static str> = Some("api_id");
    type Input = TargetInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> TargetInput {
        TargetInput {
            host: self.host.clone(),
            port: self.port,
            weight: self.weight,
            backup: self.backup,
            pool: self.pool,
        }
    }
}

/// Filters of `GET /apis/{api_id}/targets`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TargetFilter {
    pub backup: Option<bool>,
}

impl Filter for TargetFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "backup", self.backup);
    }
}

resource_handlers! {
    Target, input: TargetInput, filter: TargetFilter, tag: "targets", parent: Some(("api", "apis")),
    collection: "/apis/{api_id}/targets" [("api_id" = Uuid, Path, description = "API id"),],
    item: "/apis/{api_id}/targets/{id}" [("api_id" = Uuid, Path, description = "API id"), ("id" = Uuid, Path, description = "Target id"),],
    ops: { list: list_targets, get: get_target, create: create_target, patch: patch_target, delete: delete_target }
}
