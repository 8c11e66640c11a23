//! OAuth 2.0 token introspection (RFC 7662) for the `introspection` auth method.
//!
//! A call: SHA-256 the token → cache (single-flight) → POST `token=…&token_type_hint=
//! access_token` with HTTP Basic client credentials to the endpoint, within `timeout_ms`
//! in total → read the answer → scope check. Active answers are kept for
//! min(`cache_ttl_secs`, `exp` − now), inactive ones for `negative_cache_ttl_secs`; endpoint
//! failures are never kept, so the next call asks again. The caller answers 401 to a token
//! error and 503 to an endpoint error ([`IntrospectError::is_unavailable`]).

mod answer;
mod cache;
mod config;
mod endpoint;
mod error;

use std::fmt;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

pub use self::answer::TokenInfo;
use self::answer::{Answer, Reading, lifetime};
use self::cache::TtlCache;
pub use self::config::{CACHE_TTL_SECS, ConfigError, IntrospectionConfig, NEGATIVE_CACHE_TTL_SECS, TIMEOUT_MS};
use self::endpoint::Endpoint;
pub use self::endpoint::RECHECK;
pub use self::error::IntrospectError;
use crate::auth::ssrf::UrlPolicy;

/// Most answers one introspector keeps (a few hundred bytes each): past this, expired
/// entries and then arbitrary ones are dropped, so random tokens cannot grow memory.
pub const CACHE_CAPACITY: usize = 100_000;

/// A compiled [`IntrospectionConfig`]: one per API, shared by its requests.
pub struct Introspector {
    endpoint: Endpoint,
    reading: Reading,
    cache: TtlCache<Answer, IntrospectError>,
    timeout: Duration,
    cache_ttl: Duration,
    negative_ttl: Duration,
    required_scopes: Vec<String>,
}

impl Introspector {
    /// Validates `cfg` and syntax-checks its URL against `policy`; the addresses are checked
    /// later, before connecting (see [`RECHECK`]).
    pub fn new(cfg: IntrospectionConfig, policy: UrlPolicy) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let endpoint = Endpoint::new(&cfg, policy)?;
        let issuer = cfg.issuer.unwrap_or_else(|| cfg.url.clone());
        Ok(Self {
            endpoint,
            reading: Reading { subject_claim: cfg.subject_claim, issuer },
            cache: TtlCache::new(CACHE_CAPACITY),
            timeout,
            cache_ttl: Duration::from_secs(cfg.cache_ttl_secs),
            negative_ttl: Duration::from_secs(cfg.negative_cache_ttl_secs),
            required_scopes: cfg.required_scopes,
        })
    }

    /// What the endpoint says about `token` (maybe from the cache), if it is active and has
    /// every required scope. Concurrent calls for the same uncached token share one request.
    pub async fn introspect(&self, token: &str) -> Result<TokenInfo, IntrospectError> {
        let key = Sha256::digest(token.as_bytes()).into();
        match self.cache.get_or_fetch(key, || self.fetch(token)).await? {
            Answer::Inactive => Err(IntrospectError::Inactive),
            Answer::Active(info) if self.required_scopes.iter().all(|s| info.scopes.contains(s)) => Ok(info),
            Answer::Active(_) => Err(IntrospectError::MissingScope),
        }
    }

    /// Answers held in the cache (including expired ones not yet dropped).
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Asks the endpoint; returns the answer and how long it may be reused.
    async fn fetch(&self, token: &str) -> Result<(Answer, Duration), IntrospectError> {
        let body = tokio::time::timeout(self.timeout, self.endpoint.post(token))
            .await
            .map_err(|_| IntrospectError::Timeout)??;
        let now = SystemTime::now();
        let answer = self.reading.parse(&body, now)?;
        let ttl = match &answer {
            Answer::Active(info) => lifetime(self.cache_ttl, info.exp, now),
            Answer::Inactive => self.negative_ttl,
        };
        Ok((answer, ttl))
    }
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}
