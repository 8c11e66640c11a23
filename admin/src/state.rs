//! Shared state of the admin service: one `Arc` inside, cheap to clone per request.

use std::sync::Arc;

use sqlx::PgPool;
use tollgate_gateway::limits::{LimiterConfig, RedisCounter};

use crate::auth::throttle::LoginThrottle;
use crate::config::AdminConfig;
use crate::ui::session::{SessionPolicy, SessionStore};

/// Name of the admin UI's session cookie.
pub const SESSION_COOKIE: &str = "tg_admin";

/// What every admin handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    db: PgPool,
    config: AdminConfig,
    throttle: LoginThrottle,
    redis: Option<RedisCounter>,
    sessions: SessionStore,
    dashboard: crate::console::dashboard::Cache,
}

impl AppState {
    /// Builds the state around a migrated pool and a validated configuration. With a Redis
    /// URL it must be called inside a Tokio runtime (the connection is made on first use).
    pub fn new(db: PgPool, config: AdminConfig) -> Self {
        let throttle = LoginThrottle::new(config.login_max_failures, config.login_lockout);
        let redis = config.redis_url.as_ref().and_then(|url| {
            let defaults = LimiterConfig::default();
            RedisCounter::new(url.expose(), &defaults.namespace, std::time::Duration::from_secs(2))
                .map_err(|e| tracing::warn!(error = %e, "the Redis URL cannot be used; quotas of redis plans are unavailable"))
                .ok()
        });
        let policy = SessionPolicy {
            cookie: SESSION_COOKIE,
            idle: config.ui_session_idle,
            absolute: config.ui_session_absolute,
            secure: config.ui_https,
        };
        let sessions = SessionStore::new(db.clone(), policy);
        let dashboard = crate::console::dashboard::Cache::default();
        Self(Arc::new(Inner { db, config, throttle, redis, sessions, dashboard }))
    }

    /// The state the shared operations (`ops`, `keys`, `subscriptions`, usage and quota
    /// reads) need when they run outside the admin service, in the portal: default settings,
    /// the gateways' Redis (to read quotas) if any, and a random login-token key that signs
    /// nothing (the portal issues no admin tokens).
    pub fn for_operations(db: PgPool, redis_url: Option<crate::Secret>) -> Self {
        let secret = crate::auth::random_token("", 32);
        let mut config = AdminConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), secret.into());
        config.redis_url = redis_url;
        Self::new(db, config)
    }

    /// The state `tollgate config apply` runs the operations with: default settings, the
    /// secrets key (to open what a file holds sealed and seal what it writes) and the
    /// operator's SSRF policy for authentication URLs.
    pub fn for_config_files(
        db: PgPool,
        secrets: Option<Arc<tollgate_gateway::seal::Keyring>>,
        allow_private_auth_urls: bool,
    ) -> Self {
        let secret = crate::auth::random_token("", 32);
        let mut config = AdminConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), secret.into());
        config.secrets = secrets;
        config.allow_private_auth_urls = allow_private_auth_urls;
        Self::new(db, config)
    }

    /// The gateways' Redis counters (read only), when configured.
    pub fn redis(&self) -> Option<&RedisCounter> {
        self.0.redis.as_ref()
    }

    /// The database pool.
    pub fn db(&self) -> &PgPool {
        &self.0.db
    }

    /// The configuration the service was started with.
    pub fn config(&self) -> &AdminConfig {
        &self.0.config
    }

    /// The admin UI's browser sessions.
    pub fn sessions(&self) -> &SessionStore {
        &self.0.sessions
    }

    /// The admin UI dashboard's recent numbers.
    pub fn dashboard_cache(&self) -> &crate::console::dashboard::Cache {
        &self.0.dashboard
    }

    /// Failed-login bookkeeping.
    pub fn throttle(&self) -> &LoginThrottle {
        &self.0.throttle
    }
}
