//! Shared state of the portal: one `Arc` inside, cheap to clone per request.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tollgate_admin::AppState;
use tollgate_admin::auth::throttle::LoginThrottle;
use tollgate_admin::mail::Mailer;
use tollgate_admin::ui::session::{SessionPolicy, SessionStore};

use crate::config::PortalConfig;

/// Name of the portal's session cookie.
pub const SESSION_COOKIE: &str = "tg_portal";

/// What every portal handler can reach.
#[derive(Clone)]
pub struct PortalState(Arc<Inner>);

struct Inner {
    db: PgPool,
    config: PortalConfig,
    sessions: SessionStore,
    mailer: Mailer,
    logins: LoginThrottle,
    signups: LoginThrottle,
    ops: AppState,
    http: reqwest::Client,
}

impl PortalState {
    /// The state around a migrated pool; fails when the mail settings are unusable.
    pub fn new(db: PgPool, config: PortalConfig) -> anyhow::Result<Self> {
        let policy = SessionPolicy {
            cookie: SESSION_COOKIE,
            idle: config.session_idle,
            absolute: config.session_absolute,
            secure: config.secure(),
        };
        let mailer = Mailer::new(db.clone(), &config.mail_from, &config.mail_transport)?;
        Ok(Self(Arc::new(Inner {
            sessions: SessionStore::new(db.clone(), policy),
            mailer,
            logins: LoginThrottle::new(config.login_max_failures, config.login_lockout),
            signups: LoginThrottle::new(config.signups_per_hour, Duration::from_secs(3600)),
            ops: AppState::for_operations(db.clone(), config.redis_url.clone()),
            // Try-it calls: no redirects followed (the answer is shown as it is).
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?,
            db,
            config,
        })))
    }

    pub fn db(&self) -> &PgPool {
        &self.0.db
    }

    pub fn config(&self) -> &PortalConfig {
        &self.0.config
    }

    pub fn sessions(&self) -> &SessionStore {
        &self.0.sessions
    }

    pub fn mailer(&self) -> &Mailer {
        &self.0.mailer
    }

    /// Failed-login bookkeeping.
    pub fn logins(&self) -> &LoginThrottle {
        &self.0.logins
    }

    /// Sign-up attempts per address.
    pub fn signups(&self) -> &LoginThrottle {
        &self.0.signups
    }

    /// The HTTP client of the try-it console.
    pub fn http(&self) -> &reqwest::Client {
        &self.0.http
    }

    /// The admin's state, for the shared write operations.
    pub fn ops(&self) -> &AppState {
        &self.0.ops
    }
}
