//! Errors the gateway itself produces. The pipeline returns a typed [`GatewayError`]; the
//! edge renders it once as `application/problem+json` (RFC 9457) with a stable `type`,
//! never leaking internals. The status follows the error's source: client (4xx),
//! upstream (502/503/504) or the gateway itself (500).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::limits::{Decision, Denial};

/// Why the gateway answered instead of the upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("no route matches this request")]
    NoRoute,
    #[error("the request method is not allowed")]
    MethodNotAllowed,
    #[error("the request body stalled")]
    RequestTimeout,
    #[error("the request body is too large")]
    BodyTooLarge,
    #[error("the request headers are too large")]
    HeadersTooLarge,
    #[error("the gateway is at its connection limit")]
    Overloaded,
    #[error("no healthy upstream target")]
    NoHealthyTarget,
    #[error("the upstream's circuit breaker is open")]
    CircuitOpen,
    #[error("the upstream could not be reached: {0}")]
    UpstreamConnect(String),
    #[error("the upstream failed: {0}")]
    UpstreamProtocol(String),
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    #[error("the gateway has no configuration yet")]
    NotReady,
    #[error("the configuration is stale: not confirmed with the control plane within --max-config-staleness")]
    ConfigStale,
    #[error("no credentials")]
    MissingCredentials(Challenge),
    #[error("invalid credentials: {detail}")]
    InvalidCredentials { detail: &'static str, challenge: Challenge },
    #[error("forbidden: {0:?}")]
    Forbidden(Refusal),
    #[error("rate limit or quota exceeded")]
    RateLimited(Box<Decision>),
    #[error("the shared rate-limit counter is unreachable")]
    LimitUnavailable(Box<Decision>),
    #[error("the identity provider could not be reached")]
    AuthUnavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::wire::Reject> for GatewayError {
    fn from(why: crate::wire::Reject) -> Self {
        use crate::wire::Reject;
        match why {
            Reject::BadRequest(reason) => Self::BadRequest(reason),
            Reject::HeadersTooLarge => Self::HeadersTooLarge,
            Reject::MethodNotAllowed => Self::MethodNotAllowed,
            Reject::RequestTimeout => Self::RequestTimeout,
        }
    }
}

/// Which credentials a 401 asks for (`WWW-Authenticate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    ApiKey,
    Bearer,
    Both,
    /// Only a client certificate is accepted: there is no HTTP scheme to name.
    ClientCertificate,
}

impl Challenge {
    fn header(self) -> Option<HeaderValue> {
        Some(HeaderValue::from_static(match self {
            Challenge::ApiKey => "ApiKey realm=\"tollgate\"",
            Challenge::Bearer => "Bearer realm=\"tollgate\"",
            Challenge::Both => "Bearer realm=\"tollgate\", ApiKey realm=\"tollgate\"",
            Challenge::ClientCertificate => return None,
        }))
    }
}

/// Why an authenticated caller may not call this API (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SubscriptionRequired,
    SubscriptionPending,
    SubscriptionSuspended,
    ConsumerDisabled,
}

impl GatewayError {
    /// Status, stable type slug, title and client-facing detail.
    fn parts(&self) -> (StatusCode, &'static str, &'static str, &'static str) {
        use GatewayError::*;
        match self {
            BadRequest(why) => (StatusCode::BAD_REQUEST, "bad-request", "Malformed request", why),
            NoRoute => (StatusCode::NOT_FOUND, "no-route", "No route", "no route matches this request"),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "CONNECT and TRACE are not served",
            ),
            RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "request-timeout",
                "Request timeout",
                "the request body did not arrive in time",
            ),
            BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                "the request body is over the limit",
            ),
            HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request header fields too large",
                "the request headers are over the limit",
            ),
            Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "Overloaded",
                "the gateway is at its connection limit; retry later",
            ),
            NoHealthyTarget => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no-healthy-upstream",
                "Upstream unavailable",
                "no healthy upstream target",
            ),
            CircuitOpen => (
                StatusCode::SERVICE_UNAVAILABLE,
                "circuit-open",
                "Upstream unavailable",
                "the upstream is failing; requests are paused",
            ),
            UpstreamConnect(_) => {
                (StatusCode::BAD_GATEWAY, "upstream-unreachable", "Bad gateway", "the upstream could not be reached")
            }
            UpstreamProtocol(_) => {
                (StatusCode::BAD_GATEWAY, "upstream-error", "Bad gateway", "the upstream sent an invalid response")
            }
            UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream-timeout",
                "Gateway timeout",
                "the upstream did not answer in time",
            ),
            NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                "the gateway has not loaded its configuration yet",
            ),
            ConfigStale => (
                StatusCode::SERVICE_UNAVAILABLE,
                "config-stale",
                "Configuration stale",
                "this gateway node could not confirm its configuration with the control plane within its staleness bound; credentials are not accepted until it can (retry, possibly on another node)",
            ),
            MissingCredentials(Challenge::ClientCertificate) => (
                StatusCode::UNAUTHORIZED,
                "credentials-missing",
                "Unauthorized",
                "this API requires a client certificate (HTTPS, with a certificate its CAs issued)",
            ),
            MissingCredentials(_) => {
                (StatusCode::UNAUTHORIZED, "credentials-missing", "Unauthorized", "this API requires credentials")
            }
            InvalidCredentials { detail, .. } => {
                (StatusCode::UNAUTHORIZED, "invalid-credentials", "Unauthorized", detail)
            }
            Forbidden(Refusal::SubscriptionRequired) => (
                StatusCode::FORBIDDEN,
                "subscription-required",
                "Forbidden",
                "this application has no subscription to this API",
            ),
            Forbidden(Refusal::SubscriptionPending) => (
                StatusCode::FORBIDDEN,
                "subscription-pending",
                "Forbidden",
                "this application's subscription awaits approval",
            ),
            Forbidden(Refusal::SubscriptionSuspended) => (
                StatusCode::FORBIDDEN,
                "subscription-suspended",
                "Forbidden",
                "this application's subscription is suspended",
            ),
            Forbidden(Refusal::ConsumerDisabled) => {
                (StatusCode::FORBIDDEN, "consumer-disabled", "Forbidden", "this application is disabled")
            }
            RateLimited(d) if d.denied_by == Some(Denial::Quota) => (
                StatusCode::TOO_MANY_REQUESTS,
                "quota-exceeded",
                "Quota exceeded",
                "the plan's quota for this period is used up",
            ),
            RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                "the plan's rate limit is exceeded; retry after the time given",
            ),
            LimitUnavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "rate-limit-unavailable",
                "Rate limiting unavailable",
                "the rate-limit counter is unreachable and this plan fails closed",
            ),
            AuthUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "auth-unavailable",
                "Authentication unavailable",
                "the identity provider could not be reached",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "the gateway failed to handle the request",
            ),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The stable slug of its problem type (`urn:tollgate:problem:<slug>`).
    pub fn slug(&self) -> &'static str {
        self.parts().1
    }

    /// The RFC 9457 problem document of this error, as JSON text.
    pub fn problem_json(&self) -> String {
        let (status, slug, title, detail) = self.parts();
        serde_json::json!({
            "type": format!("urn:tollgate:problem:{slug}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        })
        .to_string()
    }

    /// The problem document, with the request id when known.
    pub fn to_response(&self, request_id: Option<&HeaderValue>) -> Response<Full<Bytes>> {
        let mut res = Response::new(Full::new(Bytes::from(self.problem_json())));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(id) = request_id {
            h.insert("x-request-id", id.clone());
        }
        match self {
            GatewayError::MissingCredentials(c) | GatewayError::InvalidCredentials { challenge: c, .. } => {
                if let Some(value) = c.header() {
                    h.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            GatewayError::RateLimited(d) | GatewayError::LimitUnavailable(d) => d.write_headers(h),
            _ => {}
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_source() {
        assert_eq!(GatewayError::NoRoute.status(), 404);
        assert_eq!(GatewayError::UpstreamConnect("x".into()).status(), 502);
        assert_eq!(GatewayError::UpstreamTimeout.status(), 504);
        assert_eq!(GatewayError::CircuitOpen.status(), 503);
        assert_eq!(GatewayError::HeadersTooLarge.status(), 431);
        let res = GatewayError::Internal("secret detail".into()).to_response(None);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/problem+json");
    }
}
