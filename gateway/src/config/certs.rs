//! Certificates as the configuration holds them: reading a leaf's names and expiry, a
//! declarative file's certificates, and the rustls key of a certificate (its private key
//! opened when sealed). Used by the TLS listener ([`crate::tls`]) and checked the same way
//! by the admin on upload.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use super::model::{CertKey, CertificateDef};
use crate::seal::{self, Keyring};

/// The chain and key of `def` as rustls serves them, its key opened with `keyring` when
/// sealed; refused (with why) when the key does not open or parse, or is not the leaf's.
pub fn certified_key(
    def: &CertificateDef,
    keyring: Option<&Keyring>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    let pem = match &def.key {
        CertKey::Pem(pem) => pem.as_bytes().to_vec(),
        CertKey::Sealed(sealed) => keyring
            .ok_or("no secrets key is configured (--secrets-key), so its private key cannot be opened")?
            .open(sealed, &seal::certificate_key_aad(def.id))
            .map_err(|e| e.to_string())?,
    };
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("the private key does not parse: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(def.cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate chain does not parse: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate chain is empty".into());
    }
    CertifiedKey::from_der(chain, key, provider).map_err(|e| format!("the key does not fit the certificate: {e}"))
}

/// What the configuration needs to know of a certificate chain's leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Its subjectAltName DNS names (wildcards as `*.example.com`) and IP addresses, lower
    /// case, deduplicated, in order: what SNI is matched against.
    pub names: Vec<String>,
    /// When it expires (Unix seconds).
    pub not_after: i64,
}

/// Most names one certificate may carry.
pub const MAX_NAMES: usize = 100;

/// Reads the names and expiry of a server certificate's leaf (DER). Clients no longer read
/// the common name, so a leaf without subjectAltName names is refused.
pub fn leaf(der: &[u8]) -> Result<Leaf, String> {
    let leaf = any_leaf(der)?;
    if leaf.names.is_empty() {
        return Err(
            "it names no DNS name or IP address in its subjectAltName (clients do not read the common name)".to_owned()
        );
    }
    Ok(leaf)
}

/// [`leaf`] without the need for names: a client certificate may identify its holder by
/// its subject alone.
pub fn any_leaf(der: &[u8]) -> Result<Leaf, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("the certificate does not parse: {e}"))?;
    let san = cert.subject_alternative_name().map_err(|e| format!("its subjectAltName is invalid: {e}"))?;
    let mut names = Vec::new();
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        let text = match name {
            GeneralName::DNSName(n) => n.to_ascii_lowercase(),
            GeneralName::IPAddress(raw) => match <[u8; 4]>::try_from(*raw) {
                Ok(v4) => std::net::Ipv4Addr::from(v4).to_string(),
                Err(_) => match <[u8; 16]>::try_from(*raw) {
                    Ok(v6) => std::net::Ipv6Addr::from(v6).to_string(),
                    Err(_) => continue,
                },
            },
            _ => continue,
        };
        if !names.contains(&text) {
            names.push(text);
        }
    }
    if names.len() > MAX_NAMES {
        return Err(format!("it names more than {MAX_NAMES} hosts"));
    }
    Ok(Leaf { names, not_after: cert.validity().not_after.timestamp() })
}

/// A certificate of the declarative file: the chain and key as PEM; its names and expiry
/// read from the leaf. Refused (with why) when the chain does not parse or the key is not
/// the leaf's. Without a key (a sealed one, which the caller sets), only the chain is read.
pub fn from_pem(
    id: uuid::Uuid,
    chain_pem: &str,
    key_pem: Option<&str>,
    is_default: bool,
    client: bool,
) -> Result<CertificateDef, String> {
    let first = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("the chain holds no certificate")?
        .map_err(|e| format!("the chain does not parse: {e}"))?;
    let leaf = if client { any_leaf(&first)? } else { leaf(&first)? };
    let def = CertificateDef {
        id,
        cert_pem: chain_pem.to_owned(),
        key: CertKey::Pem(key_pem.unwrap_or_default().to_owned()),
        names: leaf.names,
        not_after: leaf.not_after,
        is_default,
        client,
    };
    if key_pem.is_some() {
        certified_key(&def, None, &rustls::crypto::aws_lc_rs::default_provider())?;
    }
    Ok(def)
}
