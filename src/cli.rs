//! Command-line flags and their environment fallbacks. Parsing ends here: the commands get
//! typed values (addresses, secrets), never raw strings from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tollgate_admin::Secret;
use tollgate_gateway::access_log::{AccessLogOptions, FieldSet, Sink};
use tollgate_gateway::limits::HeaderStyle;

/// Tollgate API management platform: admin service, developer portal and gateway in one binary.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
pub struct Cli {
    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info,tollgate_admin=debug`).
    #[arg(
        long = "log",
        env = "TOLLGATE_LOG",
        default_value = "info,sqlx=warn",
        global = true,
        help_heading = "Logging"
    )]
    pub log_filter: String,
    /// Log line format (logs go to stderr).
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true, help_heading = "Logging")]
    pub log_format: LogFormat,
    /// Worker threads of the async runtime (default: one per CPU core).
    #[arg(long, env = "TOLLGATE_WORKERS", global = true, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process for local development: a private PostgreSQL (unless
    /// DATABASE_URL is set), admin, portal and gateway, with state kept in `.tollgate/`.
    Dev(Box<DevArgs>),
    /// The admin service (REST API); migrates the database first.
    Admin(AdminArgs),
    /// The developer portal.
    Portal(PortalArgs),
    /// A gateway node.
    Gateway(Box<GatewayArgs>),
    /// Applies pending database migrations and exits.
    Migrate(MigrateArgs),
    /// Secrets-key chores: make a key, reseal stored secrets after a rotation.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// GitOps: the configuration as a declarative file — export it, compare a file with
    /// the database, apply a file in one transaction.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `tollgate config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Writes the configuration gateways enforce as the YAML DB-less gateways read (ids
    /// included; secrets sealed, keys hashed; developers' apps left out).
    Export(ExportArgs),
    /// Prints what `apply` would change (+ create, ~ update, - delete), changing nothing;
    /// exits 2 when there are changes.
    Diff(ApplyArgs),
    /// Makes the database hold what FILE says, in one transaction through the admin's
    /// operations (validated and audited; gateways see one change). A file with an error
    /// changes nothing.
    Apply(ApplyArgs),
}

/// Flags of `tollgate config export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub secrets: SecretsFlags,
}

/// Flags of `tollgate config diff` and `tollgate config apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The declarative file (`-` for standard input).
    pub file: std::path::PathBuf,
    /// Also delete what the file does not name (developers' apps and revoked keys are
    /// never deleted).
    #[arg(long)]
    pub prune: bool,
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Accept authentication URLs (JWKS, introspection) on private addresses, as the admin's
    /// flag of the same name.
    #[arg(long, env = "TOLLGATE_ALLOW_PRIVATE_AUTH_URLS")]
    pub allow_private_auth_urls: bool,
    #[command(flatten)]
    pub secrets: SecretsFlags,
}

/// `tollgate secrets ...`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Prints a new random secrets key (32 bytes, base64) for `--secrets-key`.
    GenerateKey,
    /// Reseals every stored secret sealed by an old key (`--secrets-old-keys`) with the
    /// current one (`--secrets-key`), and seals API secrets still stored in clear; run after
    /// giving every process the new key with the old one listed as old, and before removing
    /// the old one.
    Rotate(RotateArgs),
}

/// Flags of `tollgate secrets rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    #[command(flatten)]
    pub secrets: SecretsFlags,
}

/// The key that seals secrets stored in the database (certificate private keys).
#[derive(Debug, Clone, Args)]
pub struct SecretsFlags {
    /// Key sealing secrets at rest: 32 bytes in base64 (`tollgate secrets generate-key`).
    /// Give the admin and every gateway the same one.
    #[arg(long, env = "TOLLGATE_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<Secret>,
    /// Earlier secrets keys, comma-separated: they still open what they sealed (key rotation).
    #[arg(long, env = "TOLLGATE_SECRETS_OLD_KEYS", hide_env_values = true)]
    pub secrets_old_keys: Option<Secret>,
}

impl SecretsFlags {
    /// The keyring these flags give, if any.
    pub fn keyring(&self) -> anyhow::Result<Option<std::sync::Arc<tollgate_gateway::seal::Keyring>>> {
        let Some(key) = &self.secrets_key else {
            if self.secrets_old_keys.is_some() {
                anyhow::bail!("--secrets-old-keys needs --secrets-key");
            }
            return Ok(None);
        };
        let old: Vec<&str> =
            self.secrets_old_keys.as_ref().map(|o| o.expose().split(',').collect()).unwrap_or_default();
        let ring = tollgate_gateway::seal::Keyring::new(key.expose(), &old)
            .map_err(|e| anyhow::anyhow!("--secrets-key / --secrets-old-keys: {e}"))?;
        Ok(Some(std::sync::Arc::new(ring)))
    }
}

/// Flags of `tollgate dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// PostgreSQL to use instead of a private one under the state directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Address of the admin service (dev mode listens on loopback by default).
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN", default_value = "127.0.0.1:8001")]
    pub admin_listen: SocketAddr,
    /// Address of the developer portal.
    #[arg(long, env = "TOLLGATE_PORTAL_LISTEN", default_value = "127.0.0.1:8002")]
    pub portal_listen: SocketAddr,
    /// Address of the gateway.
    #[arg(long, env = "TOLLGATE_GATEWAY_LISTEN", default_value = "127.0.0.1:8000")]
    pub gateway_listen: SocketAddr,
    /// Email of the owner account created on first start.
    #[arg(long, env = "TOLLGATE_OWNER_EMAIL", default_value = "admin@localhost")]
    pub owner_email: String,
    /// Signing key for admin logins; generated and kept in the state directory when unset.
    #[arg(long, env = "TOLLGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Key sealing secrets at rest (certificate private keys); generated and kept in the
    /// state directory when unset.
    #[arg(long, env = "TOLLGATE_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<Secret>,
    /// Where dev mode keeps its PostgreSQL data, password and signing key.
    #[arg(long, env = "TOLLGATE_STATE_DIR", default_value = ".tollgate")]
    pub state_dir: PathBuf,
    /// Hours config events are kept before pruning (the newest is always kept); 0 keeps all.
    #[arg(long, env = "TOLLGATE_CONFIG_EVENTS_RETENTION_HOURS", default_value_t = 168)]
    pub config_events_retention_hours: u64,
    /// Fill an empty database with example APIs, developers, apps and keys, 30 days of
    /// synthetic usage, and send live demo traffic through the gateway (docs/demo.md).
    #[arg(long, env = "TOLLGATE_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    pub demo: bool,
    #[command(flatten)]
    pub usage_retention: UsageRetention,
    #[command(flatten)]
    pub gateway_limits: GatewayLimits,
    #[command(flatten)]
    pub portal: PortalFlags,
}

/// How long the admin keeps each usage tier (also used by `dev`).
#[derive(Debug, Clone, Args)]
pub struct UsageRetention {
    /// Hours per-minute usage is kept.
    #[arg(long, env = "TOLLGATE_USAGE_MINUTES_RETENTION_HOURS", default_value_t = 48,
          value_parser = clap::value_parser!(u64).range(2..=24 * 90))]
    pub usage_minutes_retention_hours: u64,
    /// Days hourly usage is kept.
    #[arg(long, env = "TOLLGATE_USAGE_HOURS_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(u64).range(2..=3650))]
    pub usage_hours_retention_days: u64,
    /// Days daily usage is kept.
    #[arg(long, env = "TOLLGATE_USAGE_DAYS_RETENTION_DAYS", default_value_t = 396,
          value_parser = clap::value_parser!(u64).range(2..=36500))]
    pub usage_days_retention_days: u64,
}

impl UsageRetention {
    /// As the admin takes it.
    pub fn retention(&self) -> tollgate_admin::usage::Retention {
        let hours = |h: u64| std::time::Duration::from_secs(h.saturating_mul(3600));
        tollgate_admin::usage::Retention {
            minutes: hours(self.usage_minutes_retention_hours),
            hours: hours(self.usage_hours_retention_days.saturating_mul(24)),
            days: hours(self.usage_days_retention_days.saturating_mul(24)),
        }
    }
}

/// Flags of `tollgate admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Address to listen on.
    #[arg(long, env = "TOLLGATE_ADMIN_LISTEN", default_value = "0.0.0.0:8001")]
    pub listen: SocketAddr,
    /// Signing key for admin logins, at least 32 bytes.
    #[arg(long, env = "TOLLGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Secret,
    /// Email of the owner account created when the database has no admin users yet.
    #[arg(long, env = "TOLLGATE_OWNER_EMAIL", default_value = "admin@localhost")]
    pub owner_email: String,
    /// Accept JWKS and introspection URLs using plain `http` or private addresses.
    #[arg(long, env = "TOLLGATE_ALLOW_PRIVATE_AUTH_URLS")]
    pub allow_private_auth_urls: bool,
    /// Hours config events are kept before pruning (the newest is always kept); 0 keeps all.
    #[arg(long, env = "TOLLGATE_CONFIG_EVENTS_RETENTION_HOURS", default_value_t = 168)]
    pub config_events_retention_hours: u64,
    /// Redis the gateways count `redis` plans in: read for subscriptions' quota answers.
    #[arg(long, env = "TOLLGATE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    #[command(flatten)]
    pub usage_retention: UsageRetention,
    /// Hours a gateway node that stopped reporting still counts in propagation reports
    /// ("live on 2 of 3"), named as unreachable; older nodes are dropped and pruned.
    #[arg(long, env = "TOLLGATE_NODE_RETENTION_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u64).range(1..=24 * 365))]
    pub node_retention_hours: u64,
    #[command(flatten)]
    pub secrets: SecretsFlags,
}

/// Flags of `tollgate portal`.
#[derive(Debug, Args)]
pub struct PortalArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Address to listen on.
    #[arg(long, env = "TOLLGATE_PORTAL_LISTEN", default_value = "0.0.0.0:8002")]
    pub listen: SocketAddr,
    /// Redis the gateways count `redis` plans in: read for the quota meters.
    #[arg(long, env = "TOLLGATE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// Hours a gateway node that stopped reporting still counts in propagation reports
    /// ("live on 2 of 3"), named as unreachable; older nodes are dropped and pruned.
    #[arg(long, env = "TOLLGATE_NODE_RETENTION_HOURS", default_value_t = 24,
          value_parser = clap::value_parser!(u64).range(1..=24 * 365))]
    pub node_retention_hours: u64,
    #[command(flatten)]
    pub portal: PortalFlags,
}

/// Portal settings (also used by `dev`).
#[derive(Debug, Clone, Args)]
pub struct PortalFlags {
    /// The portal's public URL, for links in mail (default: its listen address). HTTPS marks
    /// cookies Secure and turns on HSTS.
    #[arg(long, env = "TOLLGATE_PORTAL_URL")]
    pub portal_url: Option<String>,
    /// The gateway's public URL, shown in API references and curl lines and the only target
    /// of the try-it console (default: the gateway's listen address in dev, else http://localhost:8000).
    #[arg(long, env = "TOLLGATE_GATEWAY_URL")]
    pub gateway_url: Option<String>,
    /// New developer accounts wait for an admin's approval.
    #[arg(long, env = "TOLLGATE_SIGNUP_APPROVAL")]
    pub signup_approval: bool,
    /// SMTP relay for portal mail; without it mail is printed to the log and kept in the outbox.
    #[arg(long, env = "TOLLGATE_SMTP_HOST")]
    pub smtp_host: Option<String>,
    #[arg(long, env = "TOLLGATE_SMTP_PORT", default_value_t = 587)]
    pub smtp_port: u16,
    /// `starttls` (required STARTTLS, port 587), `tls` (port 465) or `none` (local relay only).
    #[arg(long, env = "TOLLGATE_SMTP_SECURITY", default_value = "starttls", value_parser = ["starttls", "tls", "none"])]
    pub smtp_security: String,
    #[arg(long, env = "TOLLGATE_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    #[arg(long, env = "TOLLGATE_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<Secret>,
    /// The From of portal mail.
    #[arg(long, env = "TOLLGATE_MAIL_FROM", default_value = "Tollgate developer portal <no-reply@localhost>")]
    pub mail_from: String,
}

impl PortalFlags {
    /// The portal's configuration; `portal` and `gateway` are the URLs to use when no flag gives them.
    pub fn config(&self, portal: String, gateway: String) -> tollgate_portal::PortalConfig {
        use tollgate_admin::mail::{SmtpSecurity, SmtpSettings, Transport};
        let mut c = tollgate_portal::PortalConfig::new(
            self.portal_url.clone().unwrap_or(portal),
            self.gateway_url.clone().unwrap_or(gateway),
        );
        c.signup_approval = self.signup_approval;
        c.mail_from = self.mail_from.clone();
        if let Some(host) = &self.smtp_host {
            let security = match self.smtp_security.as_str() {
                "tls" => SmtpSecurity::Tls,
                "none" => SmtpSecurity::None,
                _ => SmtpSecurity::StartTls,
            };
            c.mail_transport = Transport::Smtp(SmtpSettings {
                host: host.clone(),
                port: self.smtp_port,
                security,
                username: self.smtp_username.clone(),
                password: self.smtp_password.clone(),
            });
        }
        c
    }
}

/// Flags of `tollgate gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to listen on.
    #[arg(long, env = "TOLLGATE_GATEWAY_LISTEN", default_value = "0.0.0.0:8000")]
    pub listen: SocketAddr,
    /// PostgreSQL connection URL of the control plane (the usual source of configuration).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    pub database_url: Option<Secret>,
    /// DB-less mode: serve the declarative YAML file at this path, reloading it on change.
    #[arg(long, env = "TOLLGATE_GATEWAY_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Where the last-known-good configuration is kept, to start while PostgreSQL is down.
    #[arg(long, env = "TOLLGATE_STATE_DIR", default_value = ".tollgate")]
    pub state_dir: std::path::PathBuf,
    /// DB-less mode: the PostgreSQL URL usage is written to (without it, usage is only in
    /// `/metrics`, per API).
    #[arg(long, env = "TOLLGATE_USAGE_DATABASE_URL", hide_env_values = true, requires = "config")]
    pub usage_database_url: Option<Secret>,
    /// This node's id in `/nodes` and propagation reports (default: kept in `node-id` in the
    /// state directory, created on first start).
    #[arg(long, env = "TOLLGATE_NODE_ID")]
    pub node_id: Option<uuid::Uuid>,
    /// Past this long without a confirmed sync with PostgreSQL (e.g. `30s`, `5m`), refuse
    /// calls with credentials (503) and report not ready; `off` (the default) trusts the
    /// last configuration for as long as the outage lasts.
    #[arg(long, env = "TOLLGATE_MAX_CONFIG_STALENESS", default_value = "off", conflicts_with = "config")]
    pub max_config_staleness: Staleness,
    #[command(flatten)]
    pub limits: GatewayLimits,
    #[command(flatten)]
    pub secrets: SecretsFlags,
}

/// Limits of a gateway node (also used by `dev`).
#[derive(Debug, Clone, Args)]
pub struct GatewayLimits {
    /// Address of the HTTPS listener (e.g. `0.0.0.0:8443`), serving the certificates managed
    /// through the admin API, chosen by SNI; none by default.
    #[arg(long, env = "TOLLGATE_TLS_LISTEN")]
    pub tls_listen: Option<SocketAddr>,
    /// Answer every request on the plain listener with `308` to `https://<host>:<PORT>/…`
    /// (the port left out when 443): the public port of the HTTPS listener.
    #[arg(long, env = "TOLLGATE_REDIRECT_TO_HTTPS", value_name = "PORT")]
    pub redirect_to_https: Option<u16>,
    /// Open client connections at most; more are answered 503.
    #[arg(long, env = "TOLLGATE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Largest request body in bytes (413 above).
    #[arg(long, env = "TOLLGATE_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: u64,
    /// Largest total size of request headers in bytes (431 above).
    #[arg(long, env = "TOLLGATE_MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Seconds a client has to send a complete request head.
    #[arg(long, env = "TOLLGATE_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout_secs: u64,
    /// Seconds a client connection may stay idle (HTTP/1.1 between requests, HTTP/2 without
    /// streams).
    #[arg(long, env = "TOLLGATE_KEEPALIVE_TIMEOUT", default_value_t = 60)]
    pub keepalive_timeout_secs: u64,
    /// Seconds a request body may go without a byte arriving (the client's body read, and
    /// an upstream response body's).
    #[arg(long, env = "TOLLGATE_BODY_READ_TIMEOUT", default_value_t = 60)]
    pub body_read_timeout_secs: u64,
    /// Seconds a client may go without taking a byte of its response.
    #[arg(long, env = "TOLLGATE_SEND_TIMEOUT", default_value_t = 60)]
    pub send_timeout_secs: u64,
    /// HTTP/2 concurrent streams per connection.
    #[arg(long, env = "TOLLGATE_H2_MAX_STREAMS", default_value_t = 256)]
    pub h2_max_streams: u32,
    /// Seconds to finish in-flight requests on shutdown.
    #[arg(long, env = "TOLLGATE_DRAIN_TIMEOUT", default_value_t = 30)]
    pub drain_timeout_secs: u64,
    /// Address of the Prometheus `/metrics` listener, kept off the traffic port (e.g.
    /// `127.0.0.1:8100`); `off` (the default) disables it.
    #[arg(long, env = "TOLLGATE_METRICS_LISTEN", default_value = "off")]
    pub metrics_listen: MetricsListen,
    /// Redis for plans counting in `redis` mode (e.g. `redis://127.0.0.1:6379`); without it
    /// they apply their failure policy.
    #[arg(long, env = "TOLLGATE_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// Milliseconds to wait for Redis before a plan's failure policy applies to that request
    /// (three failures in a row apply it to every request until Redis answers a probe).
    #[arg(long, env = "TOLLGATE_REDIS_TIMEOUT_MS", default_value_t = 100)]
    pub redis_timeout_ms: u64,
    /// Which rate-limit fields responses carry: `ietf` (`RateLimit-Policy` and `RateLimit`),
    /// `legacy` (`RateLimit-Limit/-Remaining/-Reset` and `X-RateLimit-*`) or `both`.
    #[arg(long, env = "TOLLGATE_RATE_LIMIT_HEADERS", default_value = "ietf", value_parser = header_style)]
    pub rate_limit_headers: HeaderStyle,
    /// Units of a Redis-counted limit a node may reserve per round trip (0: count each request).
    #[arg(long, env = "TOLLGATE_LIMIT_RESERVE_BATCH", default_value_t = 0)]
    pub limit_reserve_batch: u32,
    /// Proxies in front of the gateway whose `X-Forwarded-For` is believed: comma-separated
    /// addresses and CIDR ranges.
    #[arg(long, env = "TOLLGATE_TRUSTED_PROXIES", value_parser = trusted_proxies, default_value = "")]
    pub trusted_proxies: TrustedProxies,
    /// Let JWKS and introspection URLs use plain `http` and private addresses.
    #[arg(long, env = "TOLLGATE_ALLOW_PRIVATE_AUTH_URLS")]
    pub allow_private_auth_urls: bool,
    /// Honour an API's `upstream_tls.verify: false` (without this flag, upstream
    /// certificates are verified whatever the API says).
    #[arg(long, env = "TOLLGATE_ALLOW_INSECURE_UPSTREAM_TLS")]
    pub allow_insecure_upstream_tls: bool,
    /// Record usage per consumer, key and route (`on`) or not (`off`).
    #[arg(long, env = "TOLLGATE_USAGE", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub usage: bool,
    /// Seconds between writes of recorded usage to PostgreSQL.
    #[arg(long, env = "TOLLGATE_USAGE_FLUSH_INTERVAL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub usage_flush_interval_secs: u64,
    /// Distinct usage series per flush interval; beyond it, new ones are folded into their
    /// API's overflow series.
    #[arg(long, env = "TOLLGATE_USAGE_MAX_SERIES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub usage_max_series: u64,
    /// Usage series kept unwritten while PostgreSQL is unreachable; beyond it the oldest
    /// minutes are given up (and counted).
    #[arg(long, env = "TOLLGATE_USAGE_MAX_PENDING_SERIES", default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub usage_max_pending_series: u64,
    /// Access log: `off` (the default), `stderr`, or a file path (appended to, reopened on
    /// `SIGHUP`). One JSON object per request, written off the request path.
    #[arg(long, env = "TOLLGATE_ACCESS_LOG", default_value = "off", value_parser = access_log_sink)]
    pub access_log: AccessLogSink,
    /// Comma-separated access log fields (`all`, the default, for every one; see
    /// `docs/operations.md`).
    #[arg(long, env = "TOLLGATE_ACCESS_LOG_FIELDS", default_value = "all", value_parser = access_log_fields)]
    pub access_log_fields: FieldSet,
    /// OTLP/HTTP traces endpoint of a collector (e.g. `http://127.0.0.1:4318/v1/traces`):
    /// a span per request and per upstream attempt, JSON-encoded; off by default.
    #[arg(long, env = "TOLLGATE_OTLP_ENDPOINT", value_parser = tollgate_gateway::trace::parse_endpoint)]
    pub otlp_endpoint: Option<tollgate_gateway::trace::Uri>,
    /// Share of requests without a sampled `traceparent` that are traced (0 to 1); a
    /// client's sampling decision is always followed.
    #[arg(long, env = "TOLLGATE_TRACE_SAMPLE_RATIO", default_value_t = 1.0, value_parser = sample_ratio)]
    pub trace_sample_ratio: f64,
    /// Access log entries that may wait for the writer; beyond, entries are dropped and
    /// counted (`tollgate_access_log_dropped_total`) rather than slowing requests.
    #[arg(long, env = "TOLLGATE_ACCESS_LOG_BUFFER", default_value_t = 16_384,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub access_log_buffer: u64,
}

/// Parsed `--access-log`.
#[derive(Debug, Clone)]
pub struct AccessLogSink(pub Option<Sink>);

fn access_log_sink(s: &str) -> Result<AccessLogSink, String> {
    Ok(AccessLogSink(match s {
        "" => return Err("expected off, stderr or a file path".to_owned()),
        _ if s.eq_ignore_ascii_case("off") => None,
        _ if s.eq_ignore_ascii_case("stderr") => Some(Sink::Stderr),
        path => Some(Sink::File(path.into())),
    }))
}

fn sample_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a number from 0 to 1, not {s:?}")),
    }
}

fn access_log_fields(s: &str) -> Result<FieldSet, String> {
    FieldSet::parse(s)
}

impl GatewayLimits {
    /// The trace export settings of node `node`, if it is on.
    pub fn tracing(&self, node: uuid::Uuid) -> Option<tollgate_gateway::trace::TraceOptions> {
        self.otlp_endpoint.clone().map(|endpoint| tollgate_gateway::trace::TraceOptions {
            endpoint,
            sample_ratio: self.trace_sample_ratio,
            service_name: "tollgate-gateway".to_owned(),
            instance_id: node.to_string(),
            capacity: 16_384,
        })
    }

    /// The access log settings, if it is on.
    pub fn access_log(&self) -> Option<AccessLogOptions> {
        self.access_log.0.clone().map(|sink| AccessLogOptions {
            sink,
            fields: self.access_log_fields,
            capacity: usize::try_from(self.access_log_buffer).unwrap_or(usize::MAX),
        })
    }
}

/// `on` or `off`.
fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, not {s:?}")),
    }
}

/// The `--node-retention-hours` value as the admin and the portal take it.
pub fn node_windows(hours: u64) -> tollgate_admin::nodes::NodeWindows {
    let retention = std::time::Duration::from_secs(hours.saturating_mul(3600));
    tollgate_admin::nodes::NodeWindows { retention, ..Default::default() }
}

/// The `--config-events-retention-hours` value as the admin takes it.
pub fn retention(hours: u64) -> Option<std::time::Duration> {
    (hours > 0).then(|| std::time::Duration::from_secs(hours.saturating_mul(3600)))
}

/// Parsed `--trusted-proxies`.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

fn header_style(s: &str) -> Result<HeaderStyle, String> {
    match s {
        "ietf" => Ok(HeaderStyle::Ietf),
        "legacy" => Ok(HeaderStyle::Legacy),
        "both" => Ok(HeaderStyle::Both),
        _ => Err(format!("`{s}` is not one of ietf, legacy, both")),
    }
}

fn trusted_proxies(s: &str) -> Result<TrustedProxies, String> {
    tollgate_gateway::edge::client_ip::parse_trusted(s).map(TrustedProxies)
}

/// Parsed `--max-config-staleness`: `off`, or a whole number with `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, Copy)]
pub struct Staleness(pub Option<std::time::Duration>);

impl std::str::FromStr for Staleness {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let n: u64 = number.parse().map_err(|_| format!("expected e.g. 30s, 5m or off, not {s:?}"))?;
        let ms = match unit {
            "ms" => n,
            "s" => n.saturating_mul(1000),
            "m" => n.saturating_mul(60_000),
            "h" => n.saturating_mul(3_600_000),
            _ => return Err(format!("unit of {s:?} must be ms, s, m or h")),
        };
        if ms < 100 {
            return Err("the staleness bound must be at least 100ms".to_owned());
        }
        Ok(Self(Some(std::time::Duration::from_millis(ms))))
    }
}

/// Where the metrics endpoint listens, if anywhere.
#[derive(Debug, Clone, Copy)]
pub struct MetricsListen(pub Option<SocketAddr>);

impl std::str::FromStr for MetricsListen {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") { Ok(Self(None)) } else { s.parse().map(|a| Self(Some(a))) }
    }
}

/// Flags of `tollgate migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn staleness_bounds_parse_or_explain() {
        let parse = |s: &str| s.parse::<Staleness>().map(|b| b.0);
        assert_eq!(parse("off"), Ok(None));
        assert_eq!(parse("30s"), Ok(Some(std::time::Duration::from_secs(30))));
        assert_eq!(parse("2m"), Ok(Some(std::time::Duration::from_secs(120))));
        assert_eq!(parse("500ms"), Ok(Some(std::time::Duration::from_millis(500))));
        for bad in ["", "30", "s", "-1s", "1.5s", "10ms", "3d"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// `--usage on|off` takes its value (a bool flag would be a switch without one).
    #[test]
    fn usage_takes_on_or_off() {
        let usage = |args: &[&str]| {
            // (`--database-url` given, so a `DATABASE_URL` in the environment changes nothing.)
            let base = ["tollgate", "gateway", "--database-url", "postgres://db.invalid/x"];
            let cli = Cli::try_parse_from([&base[..], args].concat()).map_err(|e| e.to_string())?;
            match cli.command {
                Command::Gateway(g) => Ok(g.limits.usage),
                _ => Err("not the gateway".to_owned()),
            }
        };
        assert_eq!(usage(&["--usage", "off"]), Ok(false));
        assert_eq!(usage(&["--usage", "on"]), Ok(true));
        assert_eq!(usage(&[]), Ok(true));
        assert!(usage(&["--usage", "maybe"]).is_err());
    }

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    /// The README's configuration reference names every flag and environment variable.
    #[test]
    fn readme_documents_every_flag() {
        let readme = include_str!("../README.md");
        let root = Cli::command();
        let commands = std::iter::once(&root).chain(root.get_subcommands());
        for arg in commands.flat_map(|c| c.get_arguments()) {
            if let Some(long) = arg.get_long().filter(|l| !matches!(*l, "help" | "version")) {
                assert!(readme.contains(&format!("`--{long}`")), "README.md does not document --{long}");
            }
            if let Some(env) = arg.get_env().and_then(|e| e.to_str()) {
                assert!(readme.contains(&format!("`{env}`")), "README.md does not document {env}");
            }
        }
    }
}
