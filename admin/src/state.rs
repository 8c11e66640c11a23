//! Shared state of the admin service: one `Arc` inside, cheap to clone per request.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::throttle::LoginThrottle;
use crate::config::AdminConfig;

/// What every admin handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    db: PgPool,
    config: AdminConfig,
    throttle: LoginThrottle,
}

impl AppState {
    /// Builds the state around a migrated pool and a validated configuration.
    pub fn new(db: PgPool, config: AdminConfig) -> Self {
        let throttle = LoginThrottle::new(config.login_max_failures, config.login_lockout);
        Self(Arc::new(Inner { db, config, throttle }))
    }

    /// The database pool.
    pub fn db(&self) -> &PgPool {
        &self.0.db
    }

    /// The configuration the service was started with.
    pub fn config(&self) -> &AdminConfig {
        &self.0.config
    }

    /// Failed-login bookkeeping.
    pub fn throttle(&self) -> &LoginThrottle {
        &self.0.throttle
    }
}
