//! Certificate bindings: which consumer a client certificate stands for (mTLS, an API's
//! `auth_methods` listing `mtls`). Gateways look up the leaf's SHA-256 fingerprint first,
//! then each of its subject names (SAN DNS names, e-mail addresses and URIs, then the
//! subject common name); a certificate that chains to the API's CAs but is not bound
//! identifies nobody and is refused. One consumer per fingerprint and per subject; a consumer
//! may have many. Deleted with their consumer; deleting a binding refuses the certificate on
//! the next request, also on connections already open.

use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::ops::resource_handlers;
use crate::resource::{ColumnWriter, Columns, Filter, Resource, eq};
use crate::validate::{Validate, Violations};
use tollgate_gateway::pki::{parse_fingerprint, valid_subject};

/// The writable fields of a certificate binding: exactly one of `fingerprint` and `subject`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"consumer_id": "0190f1c2-7a64-7c1e-9f00-3b0c2a1d4e5f",
    "fingerprint": "3f:a1:0c:9b:5e:11:02:7d:88:4c:21:aa:90:6e:f3:12:45:b0:7c:de:19:2a:6b:f0:33:8e:51:c4:07:9d:e2:6a"}))]
pub struct CertificateBindingInput {
    /// The consumer the certificate identifies.
    pub consumer_id: Uuid,
    /// SHA-256 of the leaf certificate's DER bytes, in hex (either case, `:` between bytes
    /// allowed, as `openssl x509 -noout -fingerprint -sha256` prints it); stored lower-case.
    /// Binds exactly one certificate: a renewed certificate needs a new binding.
    #[serde(default)]
    #[schema(pattern = "^[0-9A-Fa-f:]{64,95}$", max_length = 95)]
    pub fingerprint: Option<String>,
    /// A name of the certificate: a SAN DNS name, e-mail address or URI (e.g. a SPIFFE ID),
    /// or the subject common name; compared exactly. Binds every certificate the API's CAs
    /// issue with that name, renewals included.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1000)]
    pub subject: Option<String>,
}

impl Validate for CertificateBindingInput {
    fn validate(&self, v: &mut Violations) {
        v.check(
            self.fingerprint.is_some() != self.subject.is_some(),
            "fingerprint",
            "exactly one of fingerprint and subject is required",
        );
        if let Some(f) = &self.fingerprint {
            v.check(parse_fingerprint(f).is_some(), "fingerprint", "must be 64 hex digits (':' between bytes allowed)");
        }
        if let Some(s) = &self.subject {
            v.check(valid_subject(s), "subject", "must be 1-1000 characters, no control characters");
        }
    }
}

impl Columns for CertificateBindingInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("consumer_id", self.consumer_id)
            .col("fingerprint", self.fingerprint.as_deref().and_then(parse_fingerprint))
            .col("subject", self.subject.as_deref());
    }
}

/// A certificate binding as stored.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct CertificateBinding {
    pub id: Uuid,
    pub consumer_id: Uuid,
    /// Lower-case hex, no separators.
    pub fingerprint: Option<String>,
    pub subject: Option<String>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for CertificateBinding {
    const KIND: &'static str = "certificate_binding";
    const TABLE: &'static str = "certificate_bindings";
    type Input = CertificateBindingInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> CertificateBindingInput {
        CertificateBindingInput {
            consumer_id: self.consumer_id,
            fingerprint: self.fingerprint.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// Filters of `GET /certificate-bindings`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificateBindingFilter {
    pub consumer_id: Option<Uuid>,
    /// A fingerprint, in any form `fingerprint` accepts.
    pub fingerprint: Option<String>,
    /// Exact subject.
    pub subject: Option<String>,
}

impl Filter for CertificateBindingFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        eq(qb, "consumer_id", self.consumer_id);
        // (A malformed fingerprint matches nothing rather than everything.)
        let fingerprint = self.fingerprint.as_deref().map(|f| parse_fingerprint(f).unwrap_or_default());
        eq(qb, "fingerprint", fingerprint.as_deref());
        eq(qb, "subject", self.subject.as_deref());
    }
}

resource_handlers! {
    CertificateBinding, input: CertificateBindingInput, filter: CertificateBindingFilter,
    tag: "certificate-bindings", parent: None,
    collection: "/certificate-bindings" [],
    item: "/certificate-bindings/{id}" [("id" = Uuid, Path, description = "Certificate binding id"),],
    ops: {
        list: list_certificate_bindings, get: get_certificate_binding, create: create_certificate_binding,
        patch: patch_certificate_binding, delete: delete_certificate_binding
    }
}
