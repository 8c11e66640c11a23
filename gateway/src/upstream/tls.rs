//! TLS to an API's upstreams (`upstream_protocol: https`), per API: a CA bundle trusted
//! instead of the public roots, the name sent as SNI and verified (instead of the target's
//! host), and verification off — honoured only on a node started with
//! `--allow-insecure-upstream-tls`. The admin checks a setting with the same function
//! ([`UpstreamTls::from_value`]) before storing it.

use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use serde::Deserialize;

use crate::wire::client::TlsSettings;

/// An API's `upstream_tls` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM certificates trusted for this API's upstreams instead of the public roots.
    #[serde(default)]
    pub ca_bundle: Option<String>,
    /// Verify the upstream's certificate (chain and name). Default true.
    #[serde(default = "yes")]
    pub verify: bool,
    /// The name sent as SNI and verified, when not the target's host (e.g. targets given by
    /// IP address behind a certificate for `orders.internal`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// A certificate (of `usage: client`) presented to upstreams that ask for one.
    #[serde(default)]
    pub client_certificate_id: Option<uuid::Uuid>,
}

fn yes() -> bool {
    true
}

/// A setting that cannot be used: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub why: String,
}

impl Invalid {
    fn new(field: &'static str, why: impl Into<String>) -> Self {
        Self { field, why: why.into() }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.field {
            "" => write!(f, "upstream_tls: {}", self.why),
            field => write!(f, "upstream_tls/{field}: {}", self.why),
        }
    }
}

impl std::error::Error for Invalid {}

impl UpstreamTls {
    /// Reads and checks the JSON object stored for an API.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, Invalid> {
        let tls: UpstreamTls = serde_json::from_value(v.clone()).map_err(|e| Invalid::new("", e.to_string()))?;
        tls.roots()?;
        tls.name()?;
        Ok(tls)
    }

    /// The CA bundle as a root store, if one is given.
    fn roots(&self) -> Result<Option<RootCertStore>, Invalid> {
        let Some(pem) = &self.ca_bundle else { return Ok(None) };
        crate::pki::ca_roots(pem).map(Some).map_err(|why| Invalid::new("ca_bundle", why))
    }

    fn name(&self) -> Result<Option<ServerName<'static>>, Invalid> {
        let Some(name) = &self.server_name else { return Ok(None) };
        ServerName::try_from(name.clone())
            .map(Some)
            .map_err(|_| Invalid::new("server_name", "must be a DNS name or an IP address"))
    }

    /// The client settings for these upstreams, presenting `client` when the upstream asks
    /// for a certificate. `verify: false` is honoured only when `allow_insecure`; otherwise
    /// the upstream is verified anyway (and this is logged).
    pub fn settings(
        &self,
        api: &str,
        allow_insecure: bool,
        client: Option<Arc<CertifiedKey>>,
    ) -> Result<TlsSettings, Invalid> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Invalid::new("", e.to_string()))?;
        let roots = self.roots()?;
        let mut config = if !self.verify && allow_insecure {
            tracing::warn!(api, "upstream certificates are not verified for this API (verify: false)");
            let builder = builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)));
            match client {
                Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCert(key))),
                None => builder.with_no_client_auth(),
            }
        } else {
            if !self.verify {
                tracing::warn!(
                    api,
                    "upstream_tls.verify is false but this node was not started with \
                     --allow-insecure-upstream-tls: upstream certificates are verified"
                );
            }
            let builder = match roots {
                Some(roots) => builder.with_root_certificates(roots),
                None => builder.with_webpki_roots(),
            };
            match client {
                Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCert(key))),
                None => builder.with_no_client_auth(),
            }
        };
        // (No ALPN set here: the connector sets `http/1.1` itself and refuses a preset one.)
        config.alpn_protocols.clear();
        Ok(TlsSettings { config: Arc::new(config), server_name: self.name()? })
    }
}

impl UpstreamTls {
    /// Settings under which no upstream certificate verifies (for settings that cannot be
    /// used: the API's TLS upstreams fail instead of going out less protected).
    pub fn trusting_nothing() -> Option<TlsSettings> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().ok()?;
        let config = builder.with_root_certificates(RootCertStore::empty()).with_no_client_auth();
        Some(TlsSettings { config: Arc::new(config), server_name: None })
    }
}

/// Presents one client certificate to every upstream that asks.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any certificate, still checking that the peer holds its key (handshake
/// signatures): for `verify: false` only.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    crate::pki::signature_checks!(0.signature_verification_algorithms);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bad_settings_name_their_field() {
        let field = |v: serde_json::Value| UpstreamTls::from_value(&v).err().map(|e| e.field);
        assert_eq!(field(json!({"ca_bundle": "not pem"})), Some("ca_bundle"));
        assert_eq!(
            field(json!({"ca_bundle": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"})),
            Some("ca_bundle")
        );
        assert_eq!(field(json!({"ca_bundle": "x".repeat(crate::pki::MAX_BUNDLE_BYTES + 1)})), Some("ca_bundle"));
        assert_eq!(field(json!({"server_name": "not a name!"})), Some("server_name"));
        assert_eq!(field(json!({"verify": "no"})), Some(""));
        assert_eq!(field(json!({"sni": "x"})), Some(""), "unknown fields are refused");
        let ok = UpstreamTls::from_value(&json!({"server_name": "orders.internal", "verify": false}));
        assert_eq!(ok.map(|t| (t.verify, t.server_name)), Ok((false, Some("orders.internal".to_owned()))));
        assert_eq!(UpstreamTls::from_value(&json!({})).map(|t| t.verify), Ok(true), "verify by default");
    }
}
