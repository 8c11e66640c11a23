//! TLS certificates the gateways serve, chosen by SNI (`gateway/src/tls.rs`).
//!
//! An upload is a PEM chain (leaf first, then its intermediates) and the leaf's private key.
//! It is refused, with a problem document, unless every certificate parses, each one is
//! issued by the next, the leaf names at least one DNS name or IP address, it has not
//! expired, and the key is the leaf's. The names, subject, issuer, serial, fingerprint and
//! validity are read from the leaf and shown; the private key is sealed under the secrets
//! key (`gateway/src/seal.rs`) before it reaches the database and never leaves it through
//! the API. Replacing a certificate (`PUT`) keeps its id; gateways serve the new one on new
//! connections once the change reaches them.

use axum::extract::State;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::auth::Editor;
use crate::change::{self, Change};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, IfMatch, PathIds};
use crate::ops::{Tagged, resource_handlers};
use crate::resource::{self, ColumnWriter, Columns, Filter, Resource};
use crate::state::AppState;
use crate::validate::{Validate, Violations, validate};

/// Largest PEM chain and key accepted, in bytes.
const MAX_CHAIN_BYTES: usize = 64 * 1024;
const MAX_KEY_BYTES: usize = 16 * 1024;
/// Most certificates in one chain.
const MAX_CHAIN: usize = 10;

/// A certificate upload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cert": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
    "key": "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n", "is_default": false}))]
pub struct CertificateInput {
    /// The chain as PEM: the server's certificate first, then each intermediate in order.
    #[schema(min_length = 1, max_length = 65536)]
    pub cert: String,
    /// The server certificate's private key as PEM (PKCS#8, PKCS#1 or SEC1; not
    /// passphrase-protected). Stored sealed; never returned.
    #[schema(min_length = 1, max_length = 16384, write_only)]
    pub key: String,
    /// Serve this certificate to clients that send no server name, or a name no
    /// certificate has (server certificates only).
    #[serde(default)]
    pub is_default: bool,
    /// `server`: served by the gateways' HTTPS listener by SNI (its leaf must name hosts).
    /// `client`: presented to upstreams that ask for a certificate (an API's
    /// `upstream_tls.client_certificate_id`); never served.
    #[serde(default)]
    pub usage: CertificateUsage,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum CertificateUsage {
    #[default]
    Server,
    Client,
}

impl Validate for CertificateInput {
    fn validate(&self, v: &mut Violations) {
        v.check(!self.cert.trim().is_empty(), "cert", "must not be empty")
            .check(self.cert.len() <= MAX_CHAIN_BYTES, "cert", "must be at most 64 KiB")
            .check(!self.key.trim().is_empty(), "key", "must not be empty")
            .check(self.key.len() <= MAX_KEY_BYTES, "key", "must be at most 16 KiB")
            .check(
                !(self.is_default && self.usage == CertificateUsage::Client),
                "is_default",
                "a client certificate cannot be the default",
            );
    }
}

/// The generic operations never write a certificate from its input (uploads go through
/// [`prepare`], which seals the key and reads the leaf); only the flag is a plain column.
impl Columns for CertificateInput {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        w.col("is_default", self.is_default).col("usage", self.usage);
    }
}

/// A certificate as stored and shown: never its private key.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Certificate {
    pub id: Uuid,
    /// The chain as uploaded (PEM, public).
    #[sqlx(rename = "cert_pem")]
    pub cert: String,
    /// The leaf's DNS names and IP addresses (subjectAltName), lower case; what SNI matches.
    pub names: Vec<String>,
    pub subject: String,
    pub issuer: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// SHA-256 of the leaf (DER), hex.
    pub fingerprint_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Certificates in the chain, the leaf included.
    pub chain_length: i32,
    pub is_default: bool,
    pub usage: CertificateUsage,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Resource for Certificate {
    const KIND: &'static str = "certificate";
    const TABLE: &'static str = "certificates";
    type Input = CertificateInput;

    crate::resource::id_and_version!();
    fn to_input(&self) -> CertificateInput {
        CertificateInput { cert: self.cert.clone(), key: String::new(), is_default: self.is_default, usage: self.usage }
    }
}

/// Filters of `GET /certificates`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CertificateFilter {
    /// Certificates naming this host (exactly as listed, e.g. `*.example.com`).
    pub name: Option<String>,
    /// Certificates that expire before this instant (RFC 3339), to find the ones to renew.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub expires_before: Option<OffsetDateTime>,
}

impl Filter for CertificateFilter {
    fn apply(&self, qb: &mut QueryBuilder<Postgres>) {
        if let Some(name) = &self.name {
            qb.push(" AND ").push_bind(name.to_ascii_lowercase()).push(" = ANY(names)");
        }
        if let Some(t) = self.expires_before {
            qb.push(" AND not_after < ").push_bind(t);
        }
    }
}

resource_handlers! {
    Certificate, input: CertificateInput, filter: CertificateFilter, tag: "certificates", parent: None,
    collection: "/certificates" [], item: "/certificates/{id}" [("id" = Uuid, Path, description = "Certificate id"),],
    ops: { list: list_certificates, get: get_certificate, delete: delete_certificate }
}

/// What an upload becomes: the chain, its leaf described, and the sealed key.
struct Prepared<'a> {
    input: &'a CertificateInput,
    leaf: Described,
    key_sealed: String,
}

impl Columns for Prepared<'_> {
    fn columns(&self, w: &mut ColumnWriter<'_>) {
        let d = &self.leaf;
        w.col("cert_pem", &self.input.cert)
            .col("key_sealed", &self.key_sealed)
            .col("names", &d.names)
            .col("subject", &d.subject)
            .col("issuer", &d.issuer)
            .col("serial", &d.serial)
            .col("fingerprint_sha256", &d.fingerprint)
            .col("not_before", d.not_before)
            .col("not_after", d.not_after)
            .col("chain_length", i32::try_from(d.chain_length).unwrap_or(i32::MAX))
            .col("is_default", self.input.is_default)
            .col("usage", self.input.usage);
    }
}

/// The leaf of a parsed chain, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub names: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub fingerprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub chain_length: usize,
}

/// Checks an upload at `now`: the chain, its order, the leaf's names and validity, and that
/// the key is the leaf's. Every refusal names the field and says why.
pub fn inspect(input: &CertificateInput, now: OffsetDateTime) -> ApiResult<Described> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(input.cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::invalid_field("cert", format!("is not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(ApiError::invalid_field("cert", "holds no certificate (expected -----BEGIN CERTIFICATE-----)"));
    }
    if chain.len() > MAX_CHAIN {
        return Err(ApiError::invalid_field("cert", format!("holds more than {MAX_CHAIN} certificates")));
    }
    let mut parsed = Vec::with_capacity(chain.len());
    for (i, der) in chain.iter().enumerate() {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| ApiError::invalid_field("cert", format!("certificate {} does not parse: {e}", i + 1)))?;
        if !rest.is_empty() {
            return Err(ApiError::invalid_field("cert", format!("certificate {} has trailing bytes", i + 1)));
        }
        parsed.push(cert);
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        if pair[0].issuer().as_raw() != pair[1].subject().as_raw() {
            return Err(ApiError::invalid_field(
                "cert",
                format!(
                    "certificate {} is not issued by certificate {} (the chain must go leaf first, then each issuer: \
                     \"{}\" is issued by \"{}\", not \"{}\")",
                    i + 1,
                    i + 2,
                    pair[0].subject(),
                    pair[0].issuer(),
                    pair[1].subject()
                ),
            ));
        }
    }
    let leaf = &parsed[0];
    // The gateway's own reading of the names, so both index the same ones. A client
    // certificate needs none (its holder may be named by the subject alone).
    let read = match input.usage {
        CertificateUsage::Server => tollgate_gateway::config::certs::leaf(&chain[0]),
        CertificateUsage::Client => tollgate_gateway::config::certs::any_leaf(&chain[0]),
    };
    let names = read.map_err(|why| ApiError::invalid_field("cert", why))?.names;
    let not_before = OffsetDateTime::from_unix_timestamp(leaf.validity().not_before.timestamp())
        .map_err(|_| ApiError::invalid_field("cert", "has a start date out of range"))?;
    let not_after = OffsetDateTime::from_unix_timestamp(leaf.validity().not_after.timestamp())
        .map_err(|_| ApiError::invalid_field("cert", "has an expiry date out of range"))?;
    if not_after <= now {
        return Err(ApiError::invalid_field("cert", format!("expired at {}", rfc3339(not_after))));
    }
    check_key(input, chain.clone())?;
    Ok(Described {
        names,
        subject: leaf.subject().to_string(),
        issuer: leaf.issuer().to_string(),
        serial: leaf.raw_serial_as_string().replace(':', ""),
        fingerprint: hex::encode(Sha256::digest(leaf.as_raw())),
        not_before,
        not_after,
        chain_length: parsed.len(),
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The key parses and is the leaf's.
fn check_key(input: &CertificateInput, chain: Vec<CertificateDer<'static>>) -> ApiResult<()> {
    if input.key.contains("ENCRYPTED PRIVATE KEY") || input.key.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(ApiError::invalid_field("key", "is passphrase-protected; upload it decrypted"));
    }
    let key = PrivateKeyDer::from_pem_slice(input.key.as_bytes())
        .map_err(|_| ApiError::invalid_field("key", "is not a PEM private key (PKCS#8, PKCS#1 or SEC1)"))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, key, &provider).map(drop).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            ApiError::invalid_field("key", "does not belong to the certificate (the public keys differ)")
        }
        other => ApiError::invalid_field("key", format!("cannot be used: {other}")),
    })
}

fn prepare<'a>(state: &AppState, id: Uuid, input: &'a CertificateInput) -> ApiResult<Prepared<'a>> {
    validate(input)?;
    let leaf = inspect(input, OffsetDateTime::now_utc())?;
    let keyring = state.config().secrets.as_ref().ok_or_else(|| {
        ApiError::conflict(
            "this admin has no secrets key (--secrets-key / TOLLGATE_SECRETS_KEY), so it cannot store private keys",
        )
    })?;
    let key_sealed = keyring
        .seal(input.key.as_bytes(), &tollgate_gateway::seal::certificate_key_aad(id))
        .map_err(ApiError::internal)?;
    Ok(Prepared { input, leaf, key_sealed })
}

/// Uploads a certificate and its private key.
#[utoipa::path(post, path = "/certificates", tag = "certificates",
    request_body = CertificateInput,
    responses((status = 201, description = "Stored; gateways serve it once the change reaches them", body = Certificate,
        headers(("ETag" = String, description = "Version, for If-Match"))), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn create_certificate(
    Editor(who): Editor,
    State(state): State<AppState>,
    Body(input): Body<CertificateInput>,
) -> ApiResult<Tagged<Certificate>> {
    let mut tx = state.db().begin().await?;
    let row = store_in(&mut tx, &state, &who.actor(), Uuid::now_v7(), &input, None).await?;
    tx.commit().await?;
    let version = row.version;
    Ok(Tagged::created(row, version))
}

/// Stores certificate `id` from `input` inside the caller's transaction: a new one, or a
/// replacement of `current` (which the caller fetched for update), recording the change.
pub async fn store_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    state: &AppState,
    who: &crate::change::Actor,
    id: Uuid,
    input: &CertificateInput,
    current: Option<&Certificate>,
) -> ApiResult<Certificate> {
    let prepared = prepare(state, id, input)?;
    let (row, change) = match current {
        None => {
            let row: Certificate = resource::insert::<Certificate>(tx, id, None, &prepared).await?;
            let change = Change::create(Certificate::KIND, id, serde_json::to_value(&row)?);
            (row, change)
        }
        Some(current) => {
            let row: Certificate = resource::update::<Certificate>(tx, id, &prepared).await?;
            let before = serde_json::to_value(current)?;
            (row.clone(), Change::update(Certificate::KIND, id, before, serde_json::to_value(&row)?))
        }
    };
    change::record(tx, who, change).await?;
    Ok(row)
}

/// Replaces a certificate and its key (a renewal): same id, new version; gateways serve the
/// new one on new connections once the change reaches them.
#[utoipa::path(put, path = "/certificates/{id}", tag = "certificates",
    params(("id" = Uuid, Path, description = "Certificate id"), crate::openapi::IfMatchHeader),
    request_body = CertificateInput,
    responses((status = 200, description = "Replaced", body = Certificate,
        headers(("ETag" = String, description = "New version"))), crate::openapi::ApiErrors),
    security(("bearer" = [])))]
pub async fn replace_certificate(
    Editor(who): Editor,
    State(state): State<AppState>,
    PathIds(ids): PathIds,
    if_match: IfMatch,
    Body(input): Body<CertificateInput>,
) -> ApiResult<Tagged<Certificate>> {
    let id = *ids.first().ok_or_else(|| ApiError::not_found(Certificate::KIND))?;
    prepare(&state, id, &input)?;
    let mut tx = state.db().begin().await?;
    let current: Certificate = resource::fetch_for_update::<Certificate>(&mut tx, id, None)
        .await?
        .ok_or_else(|| ApiError::not_found(Certificate::KIND))?;
    if_match.check(current.version)?;
    let row = store_in(&mut tx, &state, &who.actor(), id, &input, Some(&current)).await?;
    tx.commit().await?;
    let version = row.version;
    Ok(Tagged::ok(row, version))
}

/// Reseals every certificate key sealed by an older secrets key with the current one (after
/// a key rotation), as one audited change per certificate, so gateways (and their
/// last-known-good copies) pick up the new ciphertext; returns how many were resealed.
pub async fn reseal_all(db: &sqlx::PgPool, keyring: &tollgate_gateway::seal::Keyring) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, key_sealed FROM certificates ORDER BY id FOR UPDATE").fetch_all(&mut *tx).await?;
    let mut who = crate::change::Actor::system();
    who.reason = Some("secrets key rotation".to_owned());
    let mut resealed = 0;
    for (id, sealed) in rows.into_iter().filter(|(_, s)| !keyring.is_current(s)) {
        let aad = tollgate_gateway::seal::certificate_key_aad(id);
        let plain = keyring.open(&sealed, &aad).map_err(|e| anyhow::anyhow!("certificate {id}: {e}"))?;
        let again = keyring.seal(&plain, &aad).map_err(|e| anyhow::anyhow!("certificate {id}: {e}"))?;
        let before: Certificate = resource::fetch::<Certificate>(&mut tx, id, None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("certificate {id} vanished"))?;
        let after: Certificate = sqlx::query_as(
            "UPDATE certificates SET key_sealed = $2, version = version + 1, updated_at = now() WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(again)
        .fetch_one(&mut *tx)
        .await?;
        let change =
            Change::update(Certificate::KIND, id, serde_json::to_value(&before)?, serde_json::to_value(&after)?);
        change::record(&mut tx, &who, change).await.map_err(|e| anyhow::anyhow!("certificate {id}: {e:?}"))?;
        resealed += 1;
    }
    resealed += crate::apis::reseal_secrets(&mut tx, keyring, &who).await?;
    tx.commit().await?;
    Ok(resealed)
}
