//! Certificates for the TLS tests: a throwaway CA issuing leaves for any names, with any
//! validity (expired ones included), as PEM chains and keys the certificate API takes.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use time::{Duration, OffsetDateTime};

/// A certificate authority of a test's own.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM (what a client trusts).
    pub pem: String,
    /// Its certificate, DER.
    pub der: Vec<u8>,
}

/// A leaf certificate and its key.
pub struct TestCert {
    /// The chain to upload: the leaf, then the CA (PEM).
    pub chain_pem: String,
    /// The leaf alone (PEM).
    pub leaf_pem: String,
    /// The leaf's private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The leaf (DER), as a client sees it in the handshake.
    pub der: Vec<u8>,
}

fn fail<T>(what: &str) -> impl FnOnce(rcgen::Error) -> T + '_ {
    move |e| panic!("test certificate: {what}: {e}")
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap_or_else(fail("CA key"));
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(fail("CA params"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap_or_else(fail("CA certificate"));
        Self { pem: cert.pem(), der: cert.der().to_vec(), issuer: Issuer::new(params, key) }
    }

    /// A leaf for `names` (DNS names, wildcards, IP addresses), valid from yesterday for a
    /// year.
    pub fn leaf(&self, names: &[&str]) -> TestCert {
        let now = OffsetDateTime::now_utc();
        self.leaf_valid(names, now - Duration::days(1), now + Duration::days(365))
    }

    /// A leaf for `names` valid from `not_before` to `not_after`.
    pub fn leaf_valid(&self, names: &[&str], not_before: OffsetDateTime, not_after: OffsetDateTime) -> TestCert {
        let key = KeyPair::generate().unwrap_or_else(fail("leaf key"));
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap_or_else(fail("leaf params"));
        params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer).unwrap_or_else(fail("leaf certificate"));
        TestCert {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            leaf_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}
