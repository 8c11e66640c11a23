//! Errors of JWT configuration and validation. Validation errors map to a stable reason
//! string for the 401 problem detail; none of them carries key material or token contents.

use crate::auth::ssrf::SsrfError;

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments with a JSON header (and JSON object claims).
    #[error("malformed token")]
    Malformed,
    /// `alg: none` (any case): unsigned tokens are never accepted.
    #[error("unsigned token (alg none)")]
    AlgNone,
    /// An algorithm this gateway does not implement.
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// A supported algorithm that is not in the route's allow-list.
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header carries `jku`, `x5u`, `jwk`, `x5c` or `crit`: key references and inline
    /// keys are attacker-controlled, so such tokens are refused outright.
    #[error("forbidden header parameter")]
    ForbiddenHeader,
    /// The `kid` matches no configured key (after the rate-limited JWKS refetch).
    #[error("unknown key id")]
    UnknownKid,
    /// No configured key may verify this algorithm (e.g. an HMAC token with only RSA keys).
    #[error("no key for this algorithm")]
    NoMatchingKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` is in the past (beyond leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not an accepted issuer.
    #[error("issuer not accepted")]
    BadIssuer,
    /// `aud` contains no accepted audience.
    #[error("audience not accepted")]
    BadAudience,
    /// A required claim is missing (or a registered claim has the wrong type).
    #[error("required claim missing")]
    MissingClaim,
    /// A required scope is missing.
    #[error("required scope missing")]
    MissingScope,
    /// The JWKS could not be fetched and no cached keys exist.
    #[error("signing keys unavailable")]
    KeysUnavailable,
}

impl JwtError {
    /// A stable, machine-readable reason for the problem+json body and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed_token",
            Self::AlgNone => "alg_none",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::ForbiddenHeader => "forbidden_header",
            Self::UnknownKid => "unknown_kid",
            Self::NoMatchingKey => "no_matching_key",
            Self::BadSignature => "invalid_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::BadIssuer => "invalid_issuer",
            Self::BadAudience => "invalid_audience",
            Self::MissingClaim => "missing_claim",
            Self::MissingScope => "insufficient_scope",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

    /// Maps a `jsonwebtoken` decode error; anything unexpected is a malformed token.
    pub(crate) fn from_decode(err: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match err.kind() {
            K::InvalidSignature => Self::BadSignature,
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer => Self::BadIssuer,
            K::InvalidAudience => Self::BadAudience,
            K::MissingRequiredClaim(_) | K::InvalidClaimFormat(_) => Self::MissingClaim,
            K::InvalidAlgorithm => Self::AlgorithmNotAllowed,
            _ => Self::Malformed,
        }
    }
}

/// Why a [`super::JwtConfig`] cannot be compiled into a validator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The algorithm allow-list is empty.
    #[error("algorithms: the allow-list is empty")]
    NoAlgorithms,
    /// A static key source with no keys.
    #[error("keys: no static keys configured")]
    NoKeys,
    /// Static key number `index` cannot be used (wrong format or family, too short).
    #[error("keys[{index}]: {reason}")]
    InvalidKey { index: usize, reason: &'static str },
    /// The JWKS URL is refused by the SSRF policy's syntactic check.
    #[error("jwks url: {0}")]
    JwksUrl(SsrfError),
    /// A JWKS refresh interval of zero.
    #[error("jwks refresh interval must be positive")]
    ZeroRefresh,
}
