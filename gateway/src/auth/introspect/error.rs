//! Why an introspected token was not accepted: the token's fault (401) or the endpoint's
//! (503). None of the variants carries the token or the client secret.

use http::StatusCode;

use crate::auth::ssrf::SsrfError;

/// The outcome of a failed [`super::Introspector::introspect`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectError {
    /// The endpoint says the token is not active, or its `exp` has passed.
    #[error("token is not active")]
    Inactive,
    /// The token is active but lacks a required scope.
    #[error("required scope missing")]
    MissingScope,
    /// The endpoint's URL failed the SSRF check at connect time; nothing was sent.
    #[error("introspection url refused: {0}")]
    Refused(SsrfError),
    /// Connecting or talking to the endpoint failed.
    #[error("introspection endpoint unreachable: {0}")]
    Unreachable(String),
    /// The whole call took longer than `timeout_ms`.
    #[error("introspection timed out")]
    Timeout,
    /// The endpoint answered with a status other than 200.
    #[error("introspection endpoint answered {0}")]
    Status(StatusCode),
    /// A 200 whose body is not an RFC 7662 answer; names the offending part.
    #[error("malformed introspection answer ({0})")]
    Malformed(&'static str),
}

impl IntrospectError {
    /// True when the endpoint, not the token, is at fault: the caller answers 503 (and
    /// nothing was cached); otherwise 401.
    pub fn is_unavailable(&self) -> bool {
        !matches!(self, Self::Inactive | Self::MissingScope)
    }

    /// A stable, machine-readable reason for the problem+json body and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Inactive => "token_inactive",
            Self::MissingScope => "insufficient_scope",
            Self::Refused(_) => "introspection_refused",
            Self::Unreachable(_) => "introspection_unreachable",
            Self::Timeout => "introspection_timeout",
            Self::Status(_) => "introspection_status",
            Self::Malformed(_) => "introspection_malformed",
        }
    }
}
