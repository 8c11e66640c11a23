//! Certificates for the TLS tests: private CAs (and intermediates) issuing client
//! certificates, with their keys.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use sha2::Digest;

/// A certificate authority that issues client certificates.
pub struct Ca {
    pub pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// An intermediate CA under this one, and its certificate (DER).
    pub fn intermediate(&self, name: &str) -> (Ca, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }, cert.der().clone())
    }

    /// A client certificate for common name `cn`, shaped by `tweak`.
    pub fn client(&self, cn: &str, tweak: impl FnOnce(&mut CertificateParams)) -> ClientId {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        tweak(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientId { chain: vec![cert.der().clone()], key: key.serialize_der() }
    }
}

/// A client's certificate chain (leaf first) and private key (PKCS#8 DER).
#[derive(Clone)]
pub struct ClientId {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Vec<u8>,
}

impl ClientId {
    pub fn fingerprint(&self) -> String {
        sha2::Sha256::digest(self.chain[0].as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    pub fn certified(&self) -> Arc<CertifiedKey> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()));
        let signer = provider.key_provider.load_private_key(key).unwrap();
        Arc::new(CertifiedKey::new(self.chain.clone(), signer))
    }
}
