//! The HTTP side of introspection: one pooled keep-alive client per endpoint, pinned to the
//! addresses the SSRF policy last approved.
//!
//! Why re-check every [`RECHECK`] rather than per request: the policy's job is that no new
//! connection goes to an address it did not approve. The client's resolver answers only with
//! the checked addresses, so that holds for every connection the pool opens; re-checking
//! (and so re-resolving) at most every 30 s, and swapping in a client pinned to the new
//! answer, keeps one DNS lookup off each uncached token while a DNS change (including one to
//! a forbidden address) still takes effect within 30 s. A swap drops the old pool's idle
//! connections, so a keep-alive connection is reused for at most that long.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::time::Instant;

use super::{ConfigError, IntrospectError, IntrospectionConfig};
use crate::auth::ssrf::{PinnedClient, SsrfError, UrlPolicy, pinned_client};

/// How long one SSRF check (and the client pinned to its answer) is used.
pub const RECHECK: Duration = Duration::from_secs(30);
/// Answers are a few hundred bytes; anything much larger is not an introspection answer.
const MAX_BODY: usize = 64 * 1024;
/// `application/x-www-form-urlencoded` keeps only `*-._` and alphanumerics; a space becomes
/// `%20`, which form decoders read like `+` and plain percent-decoders read correctly.
const FORM: &AsciiSet = &NON_ALPHANUMERIC.remove(b'*').remove(b'-').remove(b'.').remove(b'_');

/// One introspection endpoint and the gateway's credentials there.
#[derive(Debug)]
pub(super) struct Endpoint {
    url: String,
    uri: Uri,
    policy: UrlPolicy,
    authorization: HeaderValue,
    connect_timeout: Duration,
    current: ArcSwapOption<Checked>,
    /// Held while re-checking, so a stale client triggers one DNS lookup, not one per call.
    recheck: tokio::sync::Mutex<()>,
}

/// A client pinned to the addresses one check returned.
#[derive(Debug)]
struct Checked {
    client: PinnedClient<Full<Bytes>>,
    at: Instant,
}

impl Endpoint {
    /// Syntax-checks the URL against `policy` (addresses are checked before connecting).
    pub(super) fn new(cfg: &IntrospectionConfig, policy: UrlPolicy) -> Result<Self, ConfigError> {
        policy.parse(&cfg.url).map_err(ConfigError::Url)?;
        let uri = cfg.url.parse().map_err(|_| ConfigError::Url(SsrfError::InvalidUrl))?;
        Ok(Self {
            url: cfg.url.clone(),
            uri,
            policy,
            authorization: basic_authorization(&cfg.client_id, &cfg.client_secret)?,
            // Never reached before the total timeout; the connector just needs a bound of its own.
            connect_timeout: Duration::from_millis(cfg.timeout_ms),
            current: ArcSwapOption::empty(),
            recheck: tokio::sync::Mutex::new(()),
        })
    }

    /// POSTs the token and returns the body of a 200 answer.
    pub(super) async fn post(&self, token: &str) -> Result<Bytes, IntrospectError> {
        let client = self.client().await?;
        let response = client.client.request(self.request(token)).await.map_err(|e| transport_error(&e))?;
        if response.status() != StatusCode::OK {
            return Err(IntrospectError::Status(response.status()));
        }
        match Limited::new(response.into_body(), MAX_BODY).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(IntrospectError::Malformed("body too large")),
            Err(e) => Err(transport_error(e.as_ref())),
        }
    }

    fn request(&self, token: &str) -> Request<Full<Bytes>> {
        let body = format!("token={}&token_type_hint=access_token", utf8_percent_encode(token, FORM));
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(AUTHORIZATION, self.authorization.clone());
        request
    }

    /// The pinned client, re-checking the URL first when the last check is [`RECHECK`] old.
    async fn client(&self) -> Result<Arc<Checked>, IntrospectError> {
        if let Some(fresh) = self.fresh() {
            return Ok(fresh);
        }
        let _recheck = self.recheck.lock().await;
        if let Some(fresh) = self.fresh() {
            return Ok(fresh);
        }
        let addrs = self.policy.check(&self.url).await.map_err(IntrospectError::Refused)?;
        tracing::debug!(url = %self.url, addresses = addrs.len(), "introspection url checked");
        let client = pinned_client(addrs, self.connect_timeout).map_err(|e| transport_error(e.as_ref()))?;
        let checked = Arc::new(Checked { client, at: Instant::now() });
        self.current.store(Some(Arc::clone(&checked)));
        Ok(checked)
    }

    fn fresh(&self) -> Option<Arc<Checked>> {
        self.current.load_full().filter(|checked| checked.at.elapsed() < RECHECK)
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))`, per RFC 6749 §2.3.1.
fn basic_authorization(id: &str, secret: &str) -> Result<HeaderValue, ConfigError> {
    let pair = format!("{}:{}", utf8_percent_encode(id, FORM), utf8_percent_encode(secret, FORM));
    let mut value =
        HeaderValue::try_from(format!("Basic {}", STANDARD.encode(pair))).map_err(|_| ConfigError::Credentials)?;
    value.set_sensitive(true);
    Ok(value)
}

/// An error with its sources (hyper's top-level messages alone say little).
fn transport_error(error: &(dyn StdError + 'static)) -> IntrospectError {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    IntrospectError::Unreachable(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_form_encoded_then_base64() {
        let value = basic_authorization("gate way", "p@ss:w+rd/é").unwrap();
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let pair = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(pair, "gate%20way:p%40ss%3Aw%2Brd%2F%C3%A9");
        assert!(value.is_sensitive());
    }

    #[tokio::test]
    async fn request_carries_form_body_and_headers() {
        let json = serde_json::json!({"url": "https://idp.example/i", "client_id": "a", "client_secret": "b"});
        let endpoint = Endpoint::new(&IntrospectionConfig::from_json(json).unwrap(), UrlPolicy::default()).unwrap();
        let request = endpoint.request("a+b/c=d e");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.headers()[CONTENT_TYPE], "application/x-www-form-urlencoded");
        assert_eq!(request.headers()[ACCEPT], "application/json");
        let body = request.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "token=a%2Bb%2Fc%3Dd%20e&token_type_hint=access_token");
    }
}
