//! Token bindings: which consumer a bearer token stands for. Gateways validating a JWT (or
//! introspecting an opaque token) look up its issuer and subject here; a token whose pair is
//! not bound identifies nobody and is refused. One consumer per (issuer, subject); a
//! consumer may have many. Deleted with their consumer.

use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ops::resource_handlers;
use crate::resource::{ColumnWriter, Columns, Filter, Resource, eq};
use crate::validate::{Validate, Violations};

/// Longest issuer and subject, in characters.
const MAX_LEN: usize = 2000;

/// The writable fields of a token binding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"consumer_id": "0190f1c2-7a64-7c1e-9f00-3b0c2a1d4e5f",
    "issuer": "https://idp.example.com/", "subject": "svc-orders"}))]
pub struct TokenBindingInput {
    /// The consumer the token identifies.
    pub consumer_id: Uuid,
    /// The token's issuer: a JWT's `iss`, an introspection answer's `iss` (else the API's
    /// configured `issuer`, else the endpoint URL). Compared exactly.
    #[schema(min_length = 1, max_length = 2000)]
    pub issuer: String,
    /// The value of the API's subject claim (`sub` by default for JWTs, `client_id` for
    /// introspection). Compared exactly.
    #[schema(min_length = 1, max_length = 2000)]
    pub subject: String,
}

impl Validate for TokenBindingInput {
    fn validate(&self, v: &mut Violations) {
        let fits = |s: &str| (1..=MAX_LEN).contains(&s.chars().count());
        v.check(fits(&self.issuer), "issuer", "must be 1-2000 characters").check(
            fits(&self.subject),
            "subject",
            "must be 1-2000 characters",
        );
    }
}

impl Columns for TokenBindingInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("consumer_id", self.consumer_id).col("issuer", &self.issuer).col("subject", &self.subject);
    }
}

/// A token binding as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TokenBinding {
    pub id: Uuid,
    pub consumer_id: Uuid,
    pub issuer: String,
    pub subject: String,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for TokenBinding {
    const KIND: &'static str = "token_binding";
    const TABLE: &'static str = "token_bindings";
    type Input = TokenBindingInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> TokenBindingInput {
        TokenBindingInput { consumer_id: self.consumer_id, issuer: self.issuer.clone(), subject: self.subject.clone() }
    }
}

/// Filters of `GET /token-bindings`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenBindingFilter {
    pub consumer_id: Option<Uuid>,
    /// Exact issuer.
    pub issuer: Option<String>,
    /// Exact subject.
    pub subject: Option<String>,
}

impl Filter for TokenBindingFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "consumer_id", self.consumer_id);
        eq(qb, "issuer", self.issuer.as_deref());
        eq(qb, "subject", self.subject.as_deref());
    }
}

resource_handlers! {
    TokenBinding, input: TokenBindingInput, filter: TokenBindingFilter, tag: "token-bindings", parent: None,
    collection: "/token-bindings" [], item: "/token-bindings/{id}" [("id" = Uuid, Path, description = "Token binding id"),],
    ops: {
        list: list_token_bindings, get: get_token_binding, create: create_token_binding,
        patch: patch_token_binding, delete: delete_token_binding
    }
}
