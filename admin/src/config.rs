//! Typed, validated admin configuration. Flags and environment are parsed at the edge
//! (the `tollgate` binary); this crate only sees the result.

use std::net::SocketAddr;
use std::time::Duration;

use crate::secret::Secret;

/// Everything the admin service needs to run.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener.
    pub bind: SocketAddr,
    /// HS256 key for the short-lived login tokens; at least 32 bytes.
    pub jwt_secret: Secret,
    /// Lifetime of a login token.
    pub token_ttl: Duration,
    /// Largest request body accepted (OpenAPI documents are the big ones).
    pub body_limit: usize,
    /// Failed logins allowed per account (and per client address) before backing off.
    pub login_max_failures: u32,
    /// How long a throttled account or address must wait after the last failure.
    pub login_lockout: Duration,
    /// Accept JWKS and token introspection URLs on loopback, private, link-local, CGNAT and
    /// unique-local addresses, and plain `http` (`--allow-private-auth-urls`). Gateways have
    /// their own switch: they check each URL again before connecting.
    pub allow_private_auth_urls: bool,
    /// Config events older than this are pruned hourly (the newest is always kept); `None`
    /// keeps them all.
    pub config_events_retention: Option<Duration>,
    /// Redis the gateways count `redis` plans in (read for the quota answer).
    pub redis_url: Option<Secret>,
    /// How long each usage tier is kept.
    pub usage_retention: crate::usage::Retention,
    /// How often usage is rolled up (`None`: never, for tests that roll up themselves).
    pub usage_rollup_every: Option<Duration>,
    /// The admin UI's sessions end this long after their last request...
    pub ui_session_idle: Duration,
    /// ...and this long after login, whatever happens.
    pub ui_session_absolute: Duration,
    /// The admin UI is served over HTTPS (by a proxy in front): `Secure` cookies and HSTS.
    pub ui_https: bool,
    /// Which gateway nodes count as live, and which count at all in propagation reports
    /// (older ones are pruned hourly).
    pub nodes: crate::nodes::NodeWindows,
    /// Seals certificate private keys (`--secrets-key`); without it certificates cannot be
    /// uploaded.
    pub secrets: Option<std::sync::Arc<tollgate_gateway::seal::Keyring>>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the JWT secret must be at least 32 bytes long (set TOLLGATE_JWT_SECRET)")]
    ShortJwtSecret,
    #[error("the token lifetime must be between 1 minute and 24 hours")]
    TokenTtl,
    #[error("the body limit must be between 1 KiB and 64 MiB")]
    BodyLimit,
    #[error("the node retention must be at least the live window (30 s by default)")]
    NodeRetention,
}

impl AdminConfig {
    /// A configuration with production defaults around the given listener and key.
    pub fn new(bind: SocketAddr, jwt_secret: Secret) -> Self {
        Self {
            bind,
            jwt_secret,
            token_ttl: Duration::from_secs(15 * 60),
            body_limit: 4 * 1024 * 1024,
            login_max_failures: 5,
            login_lockout: Duration::from_secs(15 * 60),
            allow_private_auth_urls: false,
            config_events_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            redis_url: None,
            usage_retention: crate::usage::Retention::default(),
            usage_rollup_every: Some(Duration::from_secs(60)),
            ui_session_idle: Duration::from_secs(3600),
            ui_session_absolute: Duration::from_secs(12 * 3600),
            ui_https: false,
            nodes: crate::nodes::NodeWindows::default(),
            secrets: None,
        }
    }

    /// Checks the limits a running service relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.expose().len() < 32 {
            return Err(ConfigError::ShortJwtSecret);
        }
        if !(60..=86_400).contains(&self.token_ttl.as_secs()) {
            return Err(ConfigError::TokenTtl);
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.body_limit) {
            return Err(ConfigError::BodyLimit);
        }
        if self.nodes.retention < self.nodes.live || self.nodes.live.is_zero() {
            return Err(ConfigError::NodeRetention);
        }
        Ok(())
    }
}
