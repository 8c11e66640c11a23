//! `tollgate dev`: the whole platform in one process for local work. It keeps its state in a
//! directory (`.tollgate/` by default): a private PostgreSQL cluster (unless `DATABASE_URL`
//! is set), that cluster's password, the login signing key and, when dev mode creates the
//! first owner, that owner's password (`admin-password`, so scripts and the README's
//! walkthrough can log in). Data and logins survive a restart. Startup order: state →
//! listeners (a taken port fails fast) → database → servers.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tollgate_admin::demo::{self, DemoKey};
use tollgate_admin::pg_local::{LocalPgOptions, LocalPostgres};
use tollgate_admin::seed::SeededOwner;
use tollgate_admin::{AdminConfig, Secret};

use crate::cli::DevArgs;
use crate::commands;

/// How long the servers may take to finish open requests after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs everything until Ctrl-C or SIGTERM; PostgreSQL is stopped last, also on errors.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let state_dir = args.state_dir.clone();
    let (stored_secret, stored_key) = tokio::task::spawn_blocking(move || prepare_state_dir(&state_dir)).await??;
    let jwt_secret = args.jwt_secret.clone().unwrap_or(stored_secret);
    let secrets_key = args.secrets_key.clone().unwrap_or(stored_key);
    let keyring = tollgate_gateway::seal::Keyring::new(secrets_key.expose(), &[]).map_err(|e| {
        anyhow::anyhow!("the secrets key (--secrets-key or {}/secrets-key): {e}", args.state_dir.display())
    })?;
    let keyring = Some(std::sync::Arc::new(keyring));
    let listeners = Listeners::bind(&args).await?;
    let database = Database::open(&args).await?;
    let outcome = run_with(&args, listeners, &database, jwt_secret, keyring).await;
    database.close().await;
    outcome
}

async fn run_with(
    args: &DevArgs,
    listeners: Listeners,
    db: &Database,
    jwt_secret: Secret,
    keyring: Option<std::sync::Arc<tollgate_gateway::seal::Keyring>>,
) -> anyhow::Result<()> {
    let pool = commands::connect(&db.url()).await?;
    commands::migrate_pool(&pool).await?;
    let owner = commands::seed_owner(&pool, &args.owner_email).await?;
    let password_file = args.state_dir.join(PASSWORD_FILE);
    if let Some(owner) = &owner {
        let (path, password) = (password_file.clone(), owner.password.clone());
        tokio::task::spawn_blocking(move || write_private(&path, password.expose()))
            .await?
            .with_context(|| format!("cannot write {}", password_file.display()))?;
    }
    // Before the sample API: demo data goes only into a database without APIs.
    let demo = match args.demo {
        true => Some(Demo::prepare(&pool, args).await?),
        false => None,
    };
    // A fresh installation gets a published sample API, so the portal has something to call.
    let sample = match &owner {
        Some(_) => tollgate_admin::sample::ensure_sample_api(&pool, listeners.admin.local_addr()?).await?,
        None => false,
    };
    let mut config = AdminConfig::new(listeners.admin.local_addr()?, jwt_secret);
    // The same URL policy for saving (admin) and fetching (gateway).
    config.allow_private_auth_urls = args.gateway_limits.allow_private_auth_urls;
    config.config_events_retention = crate::cli::retention(args.config_events_retention_hours);
    config.redis_url = args.gateway_limits.redis_url.clone();
    config.usage_retention = args.usage_retention.retention();
    config.secrets = keyring.clone();
    config.validate()?;
    let demo_lines = demo.as_ref().map_or_else(Vec::new, |d| d.lines.clone());
    print_banner(&listeners.addrs()?, db, owner.as_ref(), &password_file, &demo_lines);
    if sample {
        println!(
            "  A sample API is published: GET {}/hello (subscribe to it in the portal).",
            http_url(listeners.addrs()?.gateway)
        );
    }
    if args.portal.smtp_host.is_none() {
        println!(
            "  Portal mail is not sent in dev mode: sign-up links are printed to this log (\"mail (log transport\")"
        );
        println!("  and listed at GET /admin/v1/outbox.");
    }
    let gateway_addr = listeners.gateway.local_addr()?;
    let source = tollgate_gateway::ConfigSource::Postgres(pool.clone());
    let _state_lock = commands::claim_state_dir(&args.state_dir).await?;
    let node = commands::node_id(&args.state_dir, None).await?;
    let mut gateway =
        commands::gateway_options(source, Some(args.state_dir.clone()), &args.gateway_limits, gateway_addr, node);
    gateway.secrets = keyring;
    let addrs = listeners.addrs()?;
    let mut portal = args.portal.config(http_url(addrs.portal), http_url(addrs.gateway));
    portal.redis_url = args.gateway_limits.redis_url.clone();
    let demo = demo.and_then(|d| d.live.map(|live| (live, http_url(addrs.gateway))));
    let outcome = serve_all(listeners, pool.clone(), config, portal, gateway, demo).await;
    pool.close().await;
    outcome
}

/// Creates the state directory (owner-only) and returns the stored signing key and secrets
/// key, creating them on first use.
fn prepare_state_dir(dir: &Path) -> anyhow::Result<(Secret, Secret)> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        // The directory holds secrets and a database: keep it out of version control.
        fs::write(&ignore, "*\n").with_context(|| format!("cannot write {}", ignore.display()))?;
    }
    let path = dir.join("jwt-secret");
    let jwt = load_or_create_secret(&path, || {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(io::Error::other)?;
        Ok(hex::encode(bytes))
    })
    .with_context(|| format!("cannot read or create {}", path.display()))?;
    let path = dir.join("secrets-key");
    let key = load_or_create_secret(&path, || Ok(tollgate_gateway::seal::Keyring::generate_key()))
        .with_context(|| format!("cannot read or create {}", path.display()))?;
    Ok((jwt, key))
}

/// Where dev mode keeps the password of the owner it created, inside the state directory.
const PASSWORD_FILE: &str = "admin-password";
/// Where `--demo` keeps the demo developer's portal password and the demo apps' keys.
const DEMO_PASSWORD_FILE: &str = "demo-password";
const DEMO_KEYS_FILE: &str = "demo-keys";

/// What `--demo` found or made, for the banner, and what it runs.
struct Demo {
    lines: Vec<String>,
    live: Option<DemoLive>,
}

/// The demo upstream's listener and the keys of the demo traffic.
struct DemoLive {
    upstream: TcpListener,
    keys: Vec<DemoKey>,
}

impl Demo {
    /// Binds the demo upstream (loopback, any port) and fills an empty database, keeping
    /// the new password and keys in the state directory; on a later start reads the keys.
    async fn prepare(pool: &PgPool, args: &DevArgs) -> anyhow::Result<Self> {
        let upstream = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let outcome = demo::ensure(pool, upstream.local_addr()?, &args.usage_retention.retention()).await?;
        let (password_file, keys_file) = (args.state_dir.join(DEMO_PASSWORD_FILE), args.state_dir.join(DEMO_KEYS_FILE));
        let (data, keys, password) = match outcome {
            demo::Outcome::Skipped => {
                let note = "skipped: the database has APIs already (--demo fills only an empty one)";
                return Ok(Self { lines: vec![banner_line("demo data", note)], live: None });
            }
            demo::Outcome::Created(created) => {
                let (path, password) = (password_file.clone(), created.login_password.clone());
                let (keys_path, text) = (keys_file.clone(), demo::keys_to_text(&created.keys));
                tokio::task::spawn_blocking(move || {
                    write_private(&path, password.expose())?;
                    write_private(&keys_path, &text)
                })
                .await?
                .context("cannot keep the demo password and keys in the state directory")?;
                (created.summary(), created.keys, Some(created.login_password))
            }
            demo::Outcome::Existing => {
                let keys = tokio::fs::read_to_string(&keys_file).await.map(|t| demo::keys_from_text(&t));
                ("there from an earlier start; nothing added".to_owned(), keys.unwrap_or_default(), None)
            }
        };
        let traffic = match keys.is_empty() {
            true => format!("keyless calls only (no keys in {})", keys_file.display()),
            false => format!("about {} calls a second through the gateway, sent by this process", demo::traffic::RATE),
        };
        let mut lines = vec![banner_line("demo data", &data), banner_line("demo traffic", &traffic)];
        match password {
            Some(password) => {
                lines.push(banner_line("portal login", demo::LOGIN_EMAIL));
                lines.push(banner_line("portal password", password.expose()));
                lines.push(format!("  (also saved, readable only by you, in {})", password_file.display()));
            }
            None => {
                let login = format!("{} (password in {})", demo::LOGIN_EMAIL, password_file.display());
                lines.push(banner_line("portal login", &login));
            }
        }
        Ok(Self { lines, live: Some(DemoLive { upstream, keys }) })
    }
}

/// One `label   value` line of the banner.
fn banner_line(label: &str, value: &str) -> String {
    format!("  {label:<18}{value}")
}

/// Writes `contents` to `path`, readable and writable by the owner only (mode 0600).
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    // `mode` applies only to a new file; an old one keeps whatever it had.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Reads a secret file, or creates it (mode 0600) with what `make` gives.
fn load_or_create_secret(path: &Path, make: impl FnOnce() -> io::Result<String>) -> io::Result<Secret> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim())),
        Ok(_) => {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the file is empty; delete it to get a new key"));
        }
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        Err(_) => {}
    }
    let secret = make()?;
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(Secret::new(secret))
}

/// The three listeners, bound before anything slow happens.
struct Listeners {
    admin: TcpListener,
    portal: TcpListener,
    gateway: TcpListener,
    /// The gateway's HTTPS listener (`--tls-listen`).
    tls: Option<TcpListener>,
}

/// The addresses actually bound (a requested port 0 is resolved).
struct Addrs {
    admin: SocketAddr,
    portal: SocketAddr,
    gateway: SocketAddr,
    tls: Option<SocketAddr>,
}

impl Listeners {
    async fn bind(args: &DevArgs) -> anyhow::Result<Self> {
        Ok(Self {
            admin: commands::bind(args.admin_listen, "the admin service").await?,
            portal: commands::bind(args.portal_listen, "the developer portal").await?,
            gateway: commands::bind(args.gateway_listen, "the gateway").await?,
            tls: match args.gateway_limits.tls_listen {
                Some(addr) => Some(commands::bind(addr, "the gateway's HTTPS listener").await?),
                None => None,
            },
        })
    }

    fn addrs(&self) -> io::Result<Addrs> {
        Ok(Addrs {
            admin: self.admin.local_addr()?,
            portal: self.portal.local_addr()?,
            gateway: self.gateway.local_addr()?,
            tls: self.tls.as_ref().map(TcpListener::local_addr).transpose()?,
        })
    }
}

/// Where the data lives: a server given by URL, or our own cluster in the state directory.
enum Database {
    External(Secret),
    Private { server: LocalPostgres, state_dir: PathBuf },
}

impl Database {
    async fn open(args: &DevArgs) -> anyhow::Result<Self> {
        // An empty DATABASE_URL (`DATABASE_URL= tollgate dev`) means "none", as for most tools.
        if let Some(url) = args.database_url.as_ref().filter(|url| !url.expose().trim().is_empty()) {
            return Ok(Self::External(url.clone()));
        }
        let server = LocalPostgres::start(LocalPgOptions::dev(&args.state_dir))
            .await
            .context("cannot start the private PostgreSQL")?;
        Ok(Self::Private { server, state_dir: args.state_dir.clone() })
    }

    fn url(&self) -> Secret {
        match self {
            Self::External(url) => url.clone(),
            Self::Private { server, .. } => Secret::new(server.url()),
        }
    }

    /// One line for the banner; never shows a password.
    fn describe(&self) -> String {
        match self {
            Self::External(url) => format!("{} (from DATABASE_URL)", commands::redact_url(url.expose())),
            Self::Private { server, state_dir } => format!(
                "postgres://postgres@127.0.0.1:{}/postgres (private; password in {}, log in {})",
                server.port(),
                state_dir.join("pg-password").display(),
                state_dir.join("postgres.log").display()
            ),
        }
    }

    async fn close(self) {
        if let Self::Private { server, .. } = self {
            server.stop().await;
        }
    }
}

/// Prints where everything is. The owner's password appears only when it was just created.
fn print_banner(addrs: &Addrs, db: &Database, owner: Option<&SeededOwner>, password_file: &Path, demo: &[String]) {
    let admin = http_url(addrs.admin);
    let line = |label: &str, value: &str| println!("  {label:<18}{value}");
    println!();
    println!("Tollgate is running in dev mode");
    line("admin UI", &format!("{admin}/ui"));
    line("admin API", &admin);
    line("API reference", &format!("{admin}/admin/docs"));
    line("developer portal", &http_url(addrs.portal));
    line("gateway", &http_url(addrs.gateway));
    if let Some(tls) = addrs.tls {
        let url = http_url(tls).replacen("http://", "https://", 1);
        line("gateway (HTTPS)", &format!("{url} (certificates: POST /admin/v1/certificates)"));
    }
    line("database", &db.describe());
    match owner {
        Some(owner) => {
            line("owner login", &owner.email);
            line("owner password", owner.password.expose());
            println!("  (shown only this once; also saved, readable only by you, in {})", password_file.display());
        }
        None if password_file.exists() => {
            line("owner login", &format!("as first created: password in {}", password_file.display()));
        }
        None => line("owner login", "an admin account exists already; its password was shown when it was created"),
    }
    for demo_line in demo {
        println!("{demo_line}");
    }
    println!("Press Ctrl-C to stop.");
}

/// `http://host:port` for a bound address; wildcard addresses are shown as loopback.
fn http_url(addr: SocketAddr) -> String {
    let mut shown = addr;
    if addr.ip().is_unspecified() {
        shown.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    format!("http://{shown}")
}

/// Runs the three servers until a stop signal (or until one fails), then drains them all.
async fn serve_all(
    listeners: Listeners,
    pool: PgPool,
    config: AdminConfig,
    portal: tollgate_portal::PortalConfig,
    gateway: tollgate_gateway::GatewayOptions,
    demo: Option<(DemoLive, String)>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut servers = JoinSet::new();
    let admin = tollgate_admin::serve(listeners.admin, pool.clone(), config, stopped(stop_rx.clone()));
    servers.spawn(async move { ("admin service", admin.await) });
    let portal = tollgate_portal::serve(listeners.portal, pool, portal, stopped(stop_rx.clone()));
    servers.spawn(async move { ("developer portal", portal.await) });
    if let Some((live, gateway_url)) = demo {
        let upstream = demo::upstream::serve(live.upstream, stopped(stop_rx.clone()));
        servers.spawn(async move { ("demo upstream", upstream.await) });
        let traffic = demo::traffic::run(gateway_url, live.keys, stopped(stop_rx.clone()));
        servers.spawn(async move { ("demo traffic", traffic.await) });
    }
    let gateway = tollgate_gateway::serve_all(listeners.gateway, listeners.tls, gateway, stopped(stop_rx));
    servers.spawn(async move { ("gateway", gateway.await) });

    let outcome = tokio::select! {
        () = commands::shutdown_signal() => Ok(()),
        Some(joined) = servers.join_next() => Err(stopped_early(joined)),
    };
    let _ = stop_tx.send(true);
    drain(servers).await;
    outcome
}

fn stopped_early(joined: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>) -> anyhow::Error {
    match joined {
        Ok((name, Ok(()))) => anyhow::anyhow!("the {name} stopped unexpectedly"),
        Ok((name, Err(err))) => err.context(format!("the {name} failed")),
        Err(err) => anyhow::Error::new(err).context("a server task failed"),
    }
}

/// Waits for the servers to finish open requests, at most [`DRAIN_TIMEOUT`].
async fn drain(mut servers: JoinSet<(&'static str, anyhow::Result<()>)>) {
    let all_done = async {
        while let Some(joined) = servers.join_next().await {
            if let Ok((name, Err(err))) = joined {
                tracing::warn!(server = name, error = format!("{err:#}"), "server stopped with an error");
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, all_done).await.is_err() {
        tracing::warn!(timeout_secs = DRAIN_TIMEOUT.as_secs(), "servers still busy at shutdown; aborting them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_owner_only() -> io::Result<()> {
        let dir = std::env::temp_dir().join(format!("tollgate-dev-test-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let path = dir.join(PASSWORD_FILE);
        fs::write(&path, "old, world-readable")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        write_private(&path, "s3cret")?;
        assert_eq!(fs::read_to_string(&path)?, "s3cret");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(&dir)
    }

    #[test]
    fn wildcard_addresses_are_shown_as_loopback() {
        assert_eq!(http_url(SocketAddr::from(([0, 0, 0, 0], 8001))), "http://127.0.0.1:8001");
        assert_eq!(http_url(SocketAddr::from(([10, 1, 2, 3], 80))), "http://10.1.2.3:80");
        assert_eq!(http_url("[::]:8000".parse().unwrap_or(SocketAddr::from(([0; 4], 0)))), "http://[::1]:8000");
    }
}
