//! The production commands (`migrate`, `admin`, `portal`, `gateway`) and the steps they share
//! with `dev`: binding, connecting, migrating, seeding and waiting for a stop signal.

use std::net::SocketAddr;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tollgate_admin::seed::SeededOwner;
use tollgate_admin::{AdminConfig, Secret};

use std::path::PathBuf;

use tollgate_gateway::config::node::NodeInfo;
use tollgate_gateway::edge::EdgeOptions;
use tollgate_gateway::limits::LimiterConfig;
use tollgate_gateway::usage::flush::FlushConfig;
use tollgate_gateway::{ConfigSource, GatewayOptions, Limits, ListenerOptions, UsageOptions};

use crate::cli::{AdminArgs, GatewayArgs, GatewayLimits, MigrateArgs, PortalArgs};

/// `tollgate migrate`.
pub async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let pool = connect(&args.database_url).await?;
    migrate_pool(&pool).await?;
    pool.close().await;
    Ok(())
}

/// `tollgate admin`: migrates, creates the first owner if there is none, serves until a signal.
pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let listener = bind(args.listen, "the admin service").await?;
    let mut config = AdminConfig::new(listener.local_addr()?, args.jwt_secret);
    config.allow_private_auth_urls = args.allow_private_auth_urls;
    config.config_events_retention = crate::cli::retention(args.config_events_retention_hours);
    config.redis_url = args.redis_url.clone();
    config.usage_retention = args.usage_retention.retention();
    config.nodes = crate::cli::node_windows(args.node_retention_hours);
    config.secrets = args.secrets.keyring()?;
    config.validate()?;
    let pool = connect(&args.database_url).await?;
    migrate_pool(&pool).await?;
    if let Some(owner) = seed_owner(&pool, &args.owner_email).await? {
        println!("Created the owner account {} with password {}", owner.email, owner.password.expose());
        println!("The password is shown only this once; change it after logging in.");
    }
    tracing::info!(addr = %config.bind, "admin service listening");
    tollgate_admin::serve(listener, pool.clone(), config, shutdown_signal()).await?;
    pool.close().await;
    Ok(())
}

/// `tollgate portal`.
pub async fn portal(args: PortalArgs) -> anyhow::Result<()> {
    let listener = bind(args.listen, "the developer portal").await?;
    let pool = connect(&args.database_url).await?;
    let addr = listener.local_addr()?;
    let mut config = args.portal.config(format!("http://{addr}"), "http://localhost:8000".to_owned());
    config.redis_url = args.redis_url.clone();
    config.nodes = crate::cli::node_windows(args.node_retention_hours);
    tracing::info!(%addr, "developer portal listening");
    tollgate_portal::serve(listener, pool.clone(), config, shutdown_signal()).await?;
    pool.close().await;
    Ok(())
}

/// `tollgate gateway`.
pub async fn gateway(args: GatewayArgs) -> anyhow::Result<()> {
    let listener = bind(args.listen, "the gateway").await?;
    let _state_lock = claim_state_dir(&args.state_dir).await?;
    let node = node_id(&args.state_dir, args.node_id).await?;
    let app_name = tollgate_gateway::config::node_id::application_name(node);
    let source = match (&args.config, &args.database_url) {
        (Some(path), _) => ConfigSource::File(path.clone()),
        (None, Some(url)) => ConfigSource::Postgres(lazy_pool(url, &app_name)?),
        (None, None) => anyhow::bail!("give --database-url (DATABASE_URL) or --config"),
    };
    let mut opts = gateway_options(source, Some(args.state_dir), &args.limits, listener.local_addr()?, node);
    opts.max_config_staleness = args.max_config_staleness.0;
    opts.secrets = args.secrets.keyring()?;
    if let Some(url) = &args.usage_database_url {
        opts.usage.database = Some(lazy_pool(url, &app_name)?);
    }
    let tls = match args.limits.tls_listen {
        Some(addr) => Some(bind(addr, "the gateway's HTTPS listener").await?),
        None => None,
    };
    if let Some(tls) = &tls {
        if opts.secrets.is_none() && args.config.is_none() {
            tracing::warn!("--tls-listen without --secrets-key: no stored certificate's private key can be opened");
        }
        tracing::info!(addr = %tls.local_addr()?, "gateway HTTPS listening");
    }
    tracing::info!(addr = %listener.local_addr()?, node = %opts.node.id, "gateway listening");
    tollgate_gateway::serve_all(listener, tls, opts, shutdown_signal()).await
}

/// `tollgate secrets ...`.
pub async fn secrets(cmd: crate::cli::SecretsCommand) -> anyhow::Result<()> {
    match cmd {
        crate::cli::SecretsCommand::GenerateKey => {
            println!("{}", tollgate_gateway::seal::Keyring::generate_key());
            Ok(())
        }
        crate::cli::SecretsCommand::Rotate(args) => {
            let keyring =
                args.secrets.keyring()?.context("give the new key as --secrets-key (TOLLGATE_SECRETS_KEY)")?;
            let pool = connect(&args.database_url).await?;
            let resealed = tollgate_admin::certificates::reseal_all(&pool, &keyring).await?;
            println!("Resealed {resealed} certificate(s) and API(s) with key {}.", keyring.current_id());
            pool.close().await;
            Ok(())
        }
    }
}

/// `tollgate config ...`: export, diff, apply. `diff` exits 2 when the file would change
/// something (so scripts can tell), 0 when not.
pub async fn config(cmd: crate::cli::ConfigCommand) -> anyhow::Result<()> {
    use tollgate_admin::gitops::export;
    match cmd {
        crate::cli::ConfigCommand::Export(args) => {
            let keyring = args.secrets.keyring()?;
            let pool = connect(&args.database_url).await?;
            let file = export::export(&pool, keyring.as_deref()).await?;
            pool.close().await;
            let text = export::to_yaml(&file)?;
            match args.output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        crate::cli::ConfigCommand::Diff(args) => {
            let outcome = run_file(&args, false).await?;
            if outcome.steps.is_empty() {
                println!("No changes.");
                return Ok(());
            }
            for step in &outcome.steps {
                println!("{step}");
            }
            println!("{} change(s); `tollgate config apply` makes them.", outcome.steps.len());
            std::process::exit(2);
        }
        crate::cli::ConfigCommand::Apply(args) => {
            let outcome = run_file(&args, true).await?;
            for step in &outcome.steps {
                println!("{step}");
            }
            match outcome.steps.len() {
                0 => println!("No changes: the database already holds this file."),
                n => println!("Applied {n} change(s) in one transaction."),
            }
            Ok(())
        }
    }
}

async fn run_file(
    args: &crate::cli::ApplyArgs,
    commit: bool,
) -> anyhow::Result<tollgate_admin::gitops::apply::Outcome> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let keyring = args.secrets.keyring()?;
    let pool = connect(&args.database_url).await?;
    let state = tollgate_admin::state::AppState::for_config_files(pool.clone(), keyring, args.allow_private_auth_urls);
    let who = tollgate_admin::change::Actor::system().named("tollgate config apply");
    let outcome = tollgate_admin::gitops::apply::apply(&state, &who, &text, args.prune, commit).await;
    pool.close().await;
    outcome.map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))
}

/// Claims the state directory for this process until the returned lock is dropped (see
/// `tollgate_gateway::config::node_id::lock`): a second gateway on it refuses to start.
pub async fn claim_state_dir(
    state_dir: &std::path::Path,
) -> anyhow::Result<tollgate_gateway::config::node_id::StateLock> {
    let dir = state_dir.to_path_buf();
    match tokio::task::spawn_blocking(move || tollgate_gateway::config::node_id::lock(&dir)).await? {
        Ok(held) => Ok(held),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(anyhow::anyhow!("{e}")),
        Err(e) => {
            Err(anyhow::Error::from(e).context(format!("cannot lock the state directory {}", state_dir.display())))
        }
    }
}

/// The node's id: `explicit` (`--node-id`), else the one kept in `state_dir` (created on
/// first start), so a restarted node is the same node to the control plane.
pub async fn node_id(state_dir: &std::path::Path, explicit: Option<uuid::Uuid>) -> anyhow::Result<uuid::Uuid> {
    if let Some(id) = explicit {
        return Ok(id);
    }
    let dir = state_dir.to_path_buf();
    tokio::task::spawn_blocking(move || tollgate_gateway::config::node_id::load_or_create(&dir))
        .await?
        .with_context(|| format!("cannot keep the node id in {}", state_dir.display()))
}

/// A pool that connects on first use, so a gateway starts (from its last-known-good
/// configuration) even while PostgreSQL is down. Its connections show `application_name`.
pub fn lazy_pool(url: &Secret, application_name: &str) -> anyhow::Result<PgPool> {
    let options: sqlx::postgres::PgConnectOptions =
        url.expose().parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect_lazy_with(options.application_name(application_name)))
}

/// Typed gateway options from the command-line limits.
pub fn gateway_options(
    source: ConfigSource,
    state_dir: Option<PathBuf>,
    l: &GatewayLimits,
    listen: SocketAddr,
    node: uuid::Uuid,
) -> GatewayOptions {
    let secs = std::time::Duration::from_secs;
    GatewayOptions {
        source,
        state_dir,
        node: NodeInfo {
            id: node,
            hostname: std::env::var("HOSTNAME").unwrap_or_default(),
            listen: listen.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            source: "postgres".to_owned(),
        },
        listener: ListenerOptions {
            max_connections: l.max_connections,
            header_read_timeout: secs(l.header_read_timeout_secs),
            keepalive_timeout: secs(l.keepalive_timeout_secs),
            body_read_timeout: secs(l.body_read_timeout_secs),
            send_timeout: secs(l.send_timeout_secs),
            h2_max_concurrent_streams: l.h2_max_streams,
            drain_timeout: secs(l.drain_timeout_secs),
            max_head_bytes: l.max_header_bytes.saturating_mul(2),
        },
        limits: Limits { max_body_bytes: l.max_body_bytes, max_header_bytes: l.max_header_bytes },
        initial_load_timeout: std::time::Duration::from_millis(250),
        metrics_listener: l.metrics_listen.0,
        edge: EdgeOptions {
            trusted_proxies: l.trusted_proxies.0.clone(),
            rate_limit_headers: l.rate_limit_headers,
            https_redirect_port: l.redirect_to_https,
        },
        limiter: LimiterConfig {
            redis_url: l.redis_url.as_ref().map(|u| u.expose().to_owned()),
            redis_timeout: std::time::Duration::from_millis(l.redis_timeout_ms),
            reserve_batch: l.limit_reserve_batch,
            ..LimiterConfig::default()
        },
        allow_private_auth_urls: l.allow_private_auth_urls,
        usage: UsageOptions {
            enabled: l.usage,
            max_series: usize::try_from(l.usage_max_series).unwrap_or(usize::MAX),
            flush: FlushConfig {
                interval: secs(l.usage_flush_interval_secs),
                max_pending_series: usize::try_from(l.usage_max_pending_series).unwrap_or(usize::MAX),
                ..FlushConfig::default()
            },
            database: None,
        },
        max_config_staleness: None,
        secrets: None,
        access_log: l.access_log(),
        allow_insecure_upstream_tls: l.allow_insecure_upstream_tls,
        tracing: l.tracing(node),
    }
}

/// Binds `addr`, naming `what` in the error (a taken port is the usual cause).
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for {what}"))
}

/// Connects a pool, naming the server (never the credentials) in the error.
pub async fn connect(url: &Secret) -> anyhow::Result<PgPool> {
    tollgate_admin::db::connect(url.expose())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(url.expose())))
}

/// Applies pending migrations.
pub async fn migrate_pool(pool: &PgPool) -> anyhow::Result<()> {
    tollgate_admin::db::migrate(pool).await.context("database migration failed")?;
    tracing::info!("database schema is up to date");
    Ok(())
}

/// Creates the first owner when the database has no admin users.
pub async fn seed_owner(pool: &PgPool, email: &str) -> anyhow::Result<Option<SeededOwner>> {
    let owner =
        tollgate_admin::seed::ensure_first_owner(pool, email).await.context("creating the first owner failed")?;
    if owner.is_some() {
        tracing::info!(email, "created the first owner account");
    }
    Ok(owner)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "stopping"),
        () = terminate => tracing::info!(signal = "SIGTERM", "stopping"),
    }
}

/// A PostgreSQL URL without user information, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "(unparsable URL)".to_owned() };
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let without_query = host_and_path.split('?').next().unwrap_or(host_and_path);
    format!("{scheme}://{without_query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("postgres://u:s3cret@db:5432/app?sslmode=require"), "postgres://db:5432/app");
        assert_eq!(redact_url("postgres://db/app"), "postgres://db/app");
        assert_eq!(redact_url("nonsense"), "(unparsable URL)");
    }
}
