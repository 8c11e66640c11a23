//! Certificates from operators and clients: CA bundles (PEM) as trust anchors, an API's
//! client-certificate settings (`mtls`), and what identifies a client certificate — the
//! SHA-256 fingerprint of its DER bytes and its subject names. The admin checks settings
//! with the same functions before storing them.

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// The handshake-signature methods of a rustls certificate verifier (server or client
/// side), checked by rustls with the algorithms in the field `self.$field`. Exported for the
/// benchmark drivers' verifiers (`tollgate_gateway::pki::signature_checks!`); the expansion
/// names `rustls`, which the calling crate must depend on.
#[doc(hidden)]
#[macro_export]
macro_rules! signature_checks {
    ($($field:tt)+) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.$($field)+)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.$($field)+)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$($field)+.supported_schemes()
        }
    };
}
pub use crate::signature_checks;

/// Largest CA bundle accepted.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// Most certificates in a CA bundle.
pub const MAX_BUNDLE_CERTS: usize = 200;
/// Longest subject name a certificate binding may name, in characters.
pub const MAX_SUBJECT_CHARS: usize = 1000;

/// The certificates of a PEM bundle as trust anchors. The error says why, to follow the
/// field's name.
pub fn ca_roots(pem: &str) -> Result<RootCertStore, String> {
    if pem.len() > MAX_BUNDLE_BYTES {
        return Err(format!("is over {} KiB", MAX_BUNDLE_BYTES / 1024));
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    if certs.len() > MAX_BUNDLE_CERTS {
        return Err(format!("holds more than {MAX_BUNDLE_CERTS} certificates"));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| format!("certificate {} cannot be a trust anchor: {e}", i + 1))?;
    }
    Ok(roots)
}

/// An API's `mtls` settings: the CAs whose client certificates it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsSettings {
    /// PEM CA certificates (roots or intermediates) that issue the API's client
    /// certificates. A client's chain must end at one of them.
    pub ca_bundle: String,
}

impl MtlsSettings {
    /// Reads and checks `mtls` settings, giving the trust anchors. Errors read
    /// `mtls/<field>: why` (or `mtls: why`).
    pub fn from_value(v: &serde_json::Value) -> Result<(Self, RootCertStore), String> {
        let settings: MtlsSettings = serde_json::from_value(v.clone()).map_err(|e| format!("mtls: {e}"))?;
        let roots = ca_roots(&settings.ca_bundle).map_err(|why| format!("mtls/ca_bundle: {why}"))?;
        Ok((settings, roots))
    }
}

/// A fingerprint as bindings store it (lower-case hex of 32 bytes), from hex in either case
/// with or without `:` between bytes (as `openssl x509 -fingerprint -sha256` prints it).
pub fn parse_fingerprint(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != ':').map(|c| c.to_ascii_lowercase()).collect();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Lower-case hex of a SHA-256 digest.
pub fn fingerprint_hex(digest: &[u8; 32]) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether `subject` can be a binding's subject name: 1 to 1000 characters, no control
/// characters.
pub fn valid_subject(subject: &str) -> bool {
    (1..=MAX_SUBJECT_CHARS).contains(&subject.chars().count()) && !subject.chars().any(char::is_control)
}

/// The names a certificate binding's `subject` is compared with, in order: the leaf's SAN
/// DNS names, e-mail addresses and URIs, then its subject common names. Empty when the
/// certificate does not parse.
pub fn subject_names(leaf: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else { return Vec::new() };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                    names.push((*n).to_owned());
                }
                _ => {}
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(text) = cn.as_str() {
            names.push(text.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().ok();
        key.and_then(|k| params.self_signed(&k).ok()).map(|c| c.pem()).unwrap_or_default()
    }

    #[test]
    fn bundles_are_checked_with_the_reason() {
        let pem = ca_pem();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(ca_roots(&format!("{pem}{pem}")).map(|r| r.len()), Ok(2));
        for (bad, why) in [
            ("", "holds no PEM certificate"),
            ("hello", "holds no PEM certificate"),
            ("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n", "is not PEM"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cannot be a trust anchor"),
        ] {
            let err = ca_roots(bad).err().unwrap_or_default();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(ca_roots(&"x".repeat(MAX_BUNDLE_BYTES + 1)).err().unwrap_or_default().contains("KiB"));
        assert!(ca_roots(&pem.repeat(MAX_BUNDLE_CERTS + 1)).is_err());
    }

    #[test]
    fn settings_errors_name_their_field() {
        let err = |v| MtlsSettings::from_value(&v).err().unwrap_or_default();
        assert!(err(serde_json::json!({"ca_bundle": "x"})).starts_with("mtls/ca_bundle: "));
        assert!(err(serde_json::json!({})).starts_with("mtls: missing field"));
        assert!(err(serde_json::json!({"ca_bundle": ca_pem(), "other": 1})).contains("unknown field"));
        assert!(MtlsSettings::from_value(&serde_json::json!({"ca_bundle": ca_pem()})).is_ok());
    }

    #[test]
    fn fingerprints_read_as_openssl_prints_them() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).as_deref(), Some(hex.as_str()));
        assert_eq!(parse_fingerprint(&format!(" {hex} ")).as_deref(), Some(hex.as_str()));
        for bad in ["", "ab", &"ab".repeat(33), &"zz".repeat(32)] {
            assert_eq!(parse_fingerprint(bad), None, "{bad}");
        }
        assert_eq!(fingerprint_hex(&[0xab; 32]), hex);
        assert!(valid_subject("svc-orders") && !valid_subject("") && !valid_subject("a\nb"));
        assert!(!valid_subject(&"é".repeat(MAX_SUBJECT_CHARS + 1)) && valid_subject(&"é".repeat(MAX_SUBJECT_CHARS)));
    }

    #[test]
    fn subject_names_are_the_sans_then_the_common_name() -> Result<(), rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(vec!["orders.example".to_owned()])?;
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name("ops@example.com".try_into()?));
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://example/orders".try_into()?));
        params.distinguished_name.push(rcgen::DnType::CommonName, "svc-orders");
        let cert = params.self_signed(&rcgen::KeyPair::generate()?)?;
        assert_eq!(
            subject_names(cert.der()),
            ["orders.example", "ops@example.com", "spiffe://example/orders", "svc-orders"]
        );
        assert!(subject_names(b"not a certificate").is_empty());
        Ok(())
    }
}
