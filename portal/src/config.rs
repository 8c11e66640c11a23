//! Typed portal configuration; flags are parsed by the `tollgate` binary.

use std::time::Duration;

use tollgate_admin::mail::Transport;

/// Everything the portal needs besides its database and listener.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// The portal's own public URL (`https://developer.example.com`), for links in mail.
    /// HTTPS here marks cookies `Secure` and turns on HSTS.
    pub public_url: String,
    /// The gateway's public URL, shown in the API reference and `curl` lines, and the only
    /// place the try-it console sends requests to.
    pub gateway_url: String,
    /// New accounts wait for an admin's approval before they can sign in.
    pub signup_approval: bool,
    /// Session lifetimes.
    pub session_idle: Duration,
    pub session_absolute: Duration,
    /// Failed logins allowed per account and address before backing off, and for how long.
    pub login_max_failures: u32,
    pub login_lockout: Duration,
    /// Sign-ups allowed per client address per hour.
    pub signups_per_hour: u32,
    /// The `From` of mail (`Tollgate <no-reply@example.com>`).
    pub mail_from: String,
    pub mail_transport: Transport,
    /// The gateways' Redis, read for the quota meters of plans counted there.
    pub redis_url: Option<tollgate_admin::Secret>,
    /// Which gateway nodes count in "live on all gateways" (as the admin's setting).
    pub nodes: tollgate_admin::nodes::NodeWindows,
}

impl PortalConfig {
    /// Defaults for a portal at `public_url` in front of a gateway at `gateway_url`, mail
    /// logged only.
    pub fn new(public_url: impl Into<String>, gateway_url: impl Into<String>) -> Self {
        Self {
            public_url: trim_slash(public_url.into()),
            gateway_url: trim_slash(gateway_url.into()),
            signup_approval: false,
            session_idle: Duration::from_secs(2 * 3600),
            session_absolute: Duration::from_secs(7 * 24 * 3600),
            login_max_failures: 5,
            login_lockout: Duration::from_secs(15 * 60),
            signups_per_hour: 10,
            mail_from: "Tollgate developer portal <no-reply@tollgate.invalid>".to_owned(),
            mail_transport: Transport::Log,
            redis_url: None,
            nodes: tollgate_admin::nodes::NodeWindows::default(),
        }
    }

    /// Whether the portal is served over HTTPS.
    pub fn secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

fn trim_slash(mut s: String) -> String {
    while s.ends_with('/') {
        s.pop();
    }
    s
}
