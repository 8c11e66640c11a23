//! Client-certificate authentication (mTLS). The HTTPS listener asks clients for a
//! certificate while some API uses mTLS and checks at the handshake only that the client
//! holds the leaf's key (see [`crate::tls`]); each API then judges the chain against its
//! own CAs here — as nginx's `ssl_verify_client optional_no_ca` and a per-location check
//! would — and the certificate bindings say which consumer it is.
//!
//! A verdict is remembered on the connection for [`VERDICT_TTL`], so keep-alive requests
//! do not verify the chain again; an API's settings compiled anew get a new judge id, so a
//! changed CA bundle is applied to the next request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::CertificateError;
use rustls::pki_types::UnixTime;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;

use crate::pki::MtlsSettings;
use crate::wire::conn::ClientCert;

/// How long a connection's verdict on its certificate stands (a certificate that expires
/// while the connection is open is refused within this long).
pub const VERDICT_TTL: Duration = Duration::from_secs(60);

/// Judge ids: unique per compiled setting for the life of the process.
static NEXT_JUDGE: AtomicU64 = AtomicU64::new(1);

/// An API's compiled client-certificate check.
pub struct MtlsAuth {
    judge: u64,
    verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for MtlsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsAuth").field("judge", &self.judge).finish_non_exhaustive()
    }
}

impl MtlsAuth {
    /// Compiles `mtls` settings (see [`MtlsSettings`]).
    pub fn new(settings: &serde_json::Value) -> Result<Self, String> {
        let (_, roots) = MtlsSettings::from_value(settings)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("mtls/ca_bundle: {e}"))?;
        Ok(Self { judge: NEXT_JUDGE.fetch_add(1, Ordering::Relaxed), verifier })
    }

    /// Whether `cert`'s chain ends at one of the API's CAs, is valid now and is meant for
    /// client authentication; the error is the client-facing reason.
    pub fn verify(&self, cert: &ClientCert) -> Result<(), &'static str> {
        if let Some(outcome) = cert.verdict(self.judge, VERDICT_TTL) {
            return outcome;
        }
        let outcome = match cert.chain.split_first() {
            Some((leaf, intermediates)) => self
                .verifier
                .verify_client_cert(leaf, intermediates, UnixTime::now())
                .map(|_| ())
                .map_err(|e| reason(&e)),
            None => Err("no client certificate was presented"),
        };
        cert.remember(self.judge, outcome);
        outcome
    }
}

/// What the client is told about a chain the API does not accept.
fn reason(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "the client certificate has expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the client certificate is not valid yet"
            }
            CertificateError::UnknownIssuer => "the client certificate is not issued by a CA this API trusts",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "the client certificate is not meant for client authentication"
            }
            CertificateError::Revoked => "the client certificate is revoked",
            _ => "the client certificate is not valid",
        },
        _ => "the client certificate is not valid",
    }
}
