//! TLS termination: the certificates of the configuration, chosen by the name the client asks
//! for (SNI), and the listener's rustls settings.
//!
//! The certificate index is rebuilt whenever the configuration's certificates change and
//! swapped in atomically; the handshake asks the current index, so a replaced certificate is
//! served on the next new connection, with no restart and no effect on open connections.
//! A name matches a certificate's exact name first, then a wildcard one level up
//! (`*.example.com` covers `api.example.com`, not `example.com` or `a.b.example.com`), then
//! the default certificate. Where several certificates claim one name, the one valid longest
//! wins (an expired one only serves when nothing else does).
//!
//! Client certificates: while some API has `mtls` settings, the handshake asks the client
//! for a certificate, optionally and naming no CA (which API a request is for is known only
//! once its head is read). A certificate the client sends must parse, and the client must
//! prove it holds the leaf's key, or the handshake fails; whether the chain is trusted is
//! judged per request by the API's own CAs ([`crate::auth::mtls`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DistinguishedName, ServerConfig};

use crate::config::certs::certified_key;
use crate::config::model::{CertificateDef, ConfigData};
use crate::seal::Keyring;

/// The configuration's certificates, by name.
#[derive(Default)]
pub struct CertIndex {
    exact: HashMap<String, Entry>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Entry>,
    default: Option<Entry>,
    /// Certificates in the index.
    pub loaded: usize,
}

#[derive(Clone)]
struct Entry {
    not_after: i64,
    key: Arc<CertifiedKey>,
}

impl Entry {
    /// Takes `other`'s place when it is valid longer.
    fn keep_longer(&mut self, other: &Entry) {
        if self.not_after < other.not_after {
            *self = other.clone();
        }
    }
}

impl CertIndex {
    /// Indexes `data`'s certificates, opening their keys with `keyring`.
    pub fn build(data: &ConfigData, keyring: Option<&Keyring>, provider: &CryptoProvider) -> Self {
        let mut index = Self::default();
        for def in data.certificates.values().filter(|d| !d.client) {
            match certified_key(def, keyring, provider) {
                Ok(key) => index.add(def, Entry { not_after: def.not_after, key: Arc::new(key) }),
                Err(why) => {
                    tracing::error!(certificate = %def.id, error = %why, "certificate left out of the TLS listener")
                }
            }
        }
        index
    }

    fn add(&mut self, def: &CertificateDef, entry: Entry) {
        self.loaded += 1;
        if def.is_default {
            match &mut self.default {
                Some(old) => old.keep_longer(&entry),
                None => self.default = Some(entry.clone()),
            }
        }
        for name in &def.names {
            let name = name.to_ascii_lowercase();
            let (map, key) = match name.strip_prefix("*.") {
                Some(parent) => (&mut self.wildcard, parent.to_owned()),
                None => (&mut self.exact, name),
            };
            map.entry(key).and_modify(|old| old.keep_longer(&entry)).or_insert_with(|| entry.clone());
        }
    }

    /// The certificate for a client asking for `name` (none: the default).
    pub fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let found = name.and_then(|n| {
            let n = n.trim_end_matches('.').to_ascii_lowercase();
            self.exact.get(&n).or_else(|| n.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)))
        });
        found.or(self.default.as_ref()).map(|e| e.key.clone())
    }
}

/// The current [`CertIndex`], shared by the store (which replaces it) and the listener's
/// settings (which pick from it per handshake).
type SharedIndex = Arc<ArcSwap<CertIndex>>;

/// Holds the current [`CertIndex`] and the listener's settings: new ones (a new
/// session-ticket key and session cache) with every change of certificates, so a session
/// resumed from before a change cannot carry a certificate that was deleted or replaced.
pub struct CertStore {
    index: SharedIndex,
    keyring: Option<Arc<Keyring>>,
    provider: Arc<CryptoProvider>,
    config: ArcSwapOption<ServerConfig>,
    /// Whether handshakes ask for a client certificate (some API has `mtls` settings).
    ask_client_cert: Arc<AtomicBool>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").field("loaded", &self.index.load().loaded).finish()
    }
}

impl CertStore {
    /// An empty store that opens private keys with `keyring`.
    pub fn new(keyring: Option<Arc<Keyring>>) -> Self {
        Self {
            index: Arc::new(ArcSwap::from_pointee(CertIndex::default())),
            keyring,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            config: ArcSwapOption::empty(),
            ask_client_cert: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether new handshakes ask clients for a certificate.
    pub fn ask_client_certificates(&self, ask: bool) {
        if self.ask_client_cert.swap(ask, Ordering::Relaxed) != ask {
            tracing::info!(ask, "TLS handshakes now {} client certificates", if ask { "ask for" } else { "skip" });
        }
    }

    /// The key that opens what is sealed at rest, if this node has one.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_deref()
    }

    /// The chain and opened key of client certificate `def`, for an upstream connection.
    pub fn client_key(&self, def: &CertificateDef) -> Result<Arc<CertifiedKey>, String> {
        certified_key(def, self.keyring.as_deref(), &self.provider).map(Arc::new)
    }

    /// Re-indexes the certificates of `data`, and renews the listener's settings (which
    /// ends resumption of sessions from before); on failure the current settings stay.
    pub fn rebuild(&self, data: &ConfigData) {
        self.index.store(Arc::new(CertIndex::build(data, self.keyring.as_deref(), &self.provider)));
        if self.config.load().is_some() {
            match self.build_config() {
                Ok(config) => self.config.store(Some(config)),
                Err(e) => tracing::error!(error = %e, "cannot renew the TLS settings; the previous ones stay"),
            }
        }
    }

    /// The listener's current settings (made on first use).
    pub fn config(&self) -> Result<Arc<ServerConfig>, rustls::Error> {
        if let Some(config) = self.config.load_full() {
            return Ok(config);
        }
        let config = self.build_config()?;
        self.config.store(Some(config.clone()));
        Ok(config)
    }

    /// The listener's TLS settings: TLS 1.3 and 1.2 with aws-lc-rs's default (AEAD-only,
    /// forward-secret) suites, ALPN `h2` then `http/1.1`, session resumption by tickets and
    /// a session cache, and certificates from this store's index.
    fn build_config(&self) -> Result<Arc<ServerConfig>, rustls::Error> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(Arc::new(OptionalClientCert {
                ask: self.ask_client_cert.clone(),
                algorithms: self.provider.signature_verification_algorithms,
            }))
            .with_cert_resolver(Arc::new(Resolver(self.index.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
        Ok(Arc::new(config))
    }
}

/// Picks a certificate per handshake from the current index.
struct Resolver(SharedIndex);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").field("loaded", &self.0.load().loaded).finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().pick(hello.server_name())
    }
}

/// Most certificates a client's chain may carry besides its leaf.
const MAX_INTERMEDIATES: usize = 8;

/// Asks for a client certificate while [`CertStore::ask_client_certificates`] says so,
/// never requires one, and accepts any that parses from a client holding its key: trust is
/// the API's to judge, per request.
struct OptionalClientCert {
    ask: Arc<AtomicBool>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for OptionalClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OptionalClientCert").field("ask", &self.ask.load(Ordering::Relaxed)).finish()
    }
}

impl ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        self.ask.load(Ordering::Relaxed)
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if intermediates.len() > MAX_INTERMEDIATES {
            return Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding));
        }
        match x509_parser::parse_x509_certificate(end_entity) {
            Ok(([], _)) => Ok(ClientCertVerified::assertion()),
            _ => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)),
        }
    }

    crate::pki::signature_checks!(algorithms);
}
