//! JWKS cache: keys fetched from the identity provider's URL, refreshed in the background on
//! an interval and on an unknown `kid`.
//!
//! One fetch at a time (a mutex around fetching; waiters re-check the generation and reuse
//! the result), and at most one fetch per [`MIN_REFETCH`] whatever the trigger, so a flood
//! of tokens with random `kid`s cannot turn the gateway into a load generator against the
//! IdP. Each fetch re-runs the SSRF check and connects only to the addresses it returned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::jwk::Jwk;

use super::JwtError;
use super::keys::{KeyStore, load_jwks_key};
use crate::auth::ssrf::{PinnedClient, UrlPolicy, pinned_client};

/// Minimum time between two fetches of the same JWKS URL.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// Upper bound on one fetch: connect, TLS, headers and body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Real key sets are a few KiB; anything much larger is a misconfiguration or an attack.
const MAX_BODY: usize = 256 * 1024;

/// A key set and when it was fetched.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub store: KeyStore,
    generation: u64,
    fetched_at: Instant,
}

/// The cache of one JWKS URL.
#[derive(Debug)]
pub(crate) struct JwksCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    url: String,
    refresh: Duration,
    policy: UrlPolicy,
    current: ArcSwapOption<Loaded>,
    /// Time of the last fetch attempt (success or not); held while fetching.
    fetch: tokio::sync::Mutex<Option<Instant>>,
    /// A background refresh is under way.
    refreshing: AtomicBool,
}

impl JwksCache {
    pub(crate) fn new(url: String, refresh: Duration, policy: UrlPolicy) -> Self {
        let fetch = tokio::sync::Mutex::new(None);
        let refreshing = AtomicBool::new(false);
        Self { inner: Arc::new(Inner { url, refresh, policy, current: ArcSwapOption::empty(), fetch, refreshing }) }
    }

    /// The current keys. Only the very first fetch is waited for: keys older than `refresh`
    /// are still served while one background task fetches new ones (stale keys are kept when
    /// that fails), so no request waits for the identity provider on a routine refresh.
    pub(crate) async fn keys(&self) -> Result<Arc<Loaded>, JwtError> {
        let seen = self.inner.current.load_full();
        match seen {
            Some(loaded) => {
                if loaded.fetched_at.elapsed() >= self.inner.refresh {
                    self.refresh_in_background(&loaded);
                }
                Ok(loaded)
            }
            None => self.inner.refetch(None).await,
        }
    }

    /// Fetches again (rate-limited) because `seen` lacked a key; returns the newest keys.
    pub(crate) async fn refetch(&self, seen: Option<&Arc<Loaded>>) -> Result<Arc<Loaded>, JwtError> {
        self.inner.refetch(seen).await
    }

    fn refresh_in_background(&self, seen: &Arc<Loaded>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (inner, seen) = (self.inner.clone(), seen.clone());
        rt.spawn(async move {
            let _ = inner.refetch(Some(&seen)).await;
            inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    async fn refetch(&self, seen: Option<&Arc<Loaded>>) -> Result<Arc<Loaded>, JwtError> {
        let mut last_attempt = self.fetch.lock().await;
        let newest = self.current.load_full();
        let seen_gen = seen.map(|l| l.generation);
        let changed = newest.as_ref().map(|l| l.generation) != seen_gen;
        let limited = last_attempt.is_some_and(|t| t.elapsed() < MIN_REFETCH);
        if changed || limited {
            return newest.ok_or(JwtError::KeysUnavailable);
        }
        *last_attempt = Some(Instant::now());
        match fetch_jwks(&self.url, self.policy).await {
            Ok(store) => {
                let generation = seen_gen.map_or(1, |g| g + 1);
                let loaded = Arc::new(Loaded { store, generation, fetched_at: Instant::now() });
                tracing::info!(url = %self.url, keys = loaded.store.keys.len(), "jwks fetched");
                self.current.store(Some(loaded.clone()));
                Ok(loaded)
            }
            Err(error) => {
                tracing::warn!(url = %self.url, error = %error, "jwks fetch failed");
                newest.ok_or(JwtError::KeysUnavailable)
            }
        }
    }
}

/// Fetches and parses a JWKS, connecting only to addresses that pass `policy` right now.
pub(crate) async fn fetch_jwks(url: &str, policy: UrlPolicy) -> anyhow::Result<KeyStore> {
    let fetch = async {
        let addrs = policy.check(url).await.map_err(|e| anyhow!("ssrf policy: {e}"))?;
        get_body(url, addrs).await
    };
    // DNS included: a slow resolver must not hold the fetch lock for long either.
    let body = tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| anyhow!("timed out after {FETCH_TIMEOUT:?}"))??;
    parse_jwks(&body)
}

async fn get_body(url: &str, addrs: Vec<SocketAddr>) -> anyhow::Result<Bytes> {
    let client: PinnedClient<Empty<Bytes>> = pinned_client(addrs, CONNECT_TIMEOUT)?;
    let request = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .context("request")?;
    let response = client.request(request).await.context("request failed")?;
    if response.status() != http::StatusCode::OK {
        bail!("status {}", response.status());
    }
    let collected = Limited::new(response.into_body(), MAX_BODY).collect().await.map_err(|e| anyhow!("body: {e}"))?;
    Ok(collected.to_bytes())
}

/// Parses a JWK set, keeping the keys usable for signature verification; one odd key (an
/// unknown type, an encryption key) does not spoil the others.
pub(crate) fn parse_jwks(body: &[u8]) -> anyhow::Result<KeyStore> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(body).context("not a JWK set")?;
    let keys = raw
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| load_jwks_key(&jwk))
        .collect();
    Ok(KeyStore { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let body = br#"{"keys":[
            {"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","kid":"sym"},
            {"kty":"weird","kid":"w"},
            {"kty":"OKP","crv":"Ed25519","kid":"ed",
             "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let store = parse_jwks(body).unwrap();
        assert_eq!(store.keys.len(), 1);
        assert_eq!(store.keys[0].kid.as_deref(), Some("ed"));
        assert!(parse_jwks(b"[]").is_err());
    }
}
