//! Test support: a fresh, migrated database per test and a running admin service on port 0.
//!
//! Databases live on the server named by `DATABASE_URL` when it is set; otherwise on one
//! private throwaway cluster per test process ([`crate::pg_local`]), started on first use and
//! stopped (its files deleted) when the process exits. Setup failures panic with a message
//! that says what to fix: this module is for tests only.

pub mod certs;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::pg_local::{LocalPgOptions, LocalPostgres};
use crate::{AdminConfig, Secret};

/// Prefix of every database this module creates (and, once stale, drops).
const DB_PREFIX: &str = "tg_test_";
/// Test databases older than this on a shared server are dropped when a test process starts.
const STALE_AFTER_SECS: u64 = 6 * 3600;
/// Prefix of the directories of private test clusters under the temp dir.
const CLUSTER_DIR_PREFIX: &str = "tollgate-testpg-";

/// A fresh, migrated database of its own.
pub struct TestDatabase {
    /// A pool connected to it.
    pub pool: PgPool,
    /// A `postgres://` URL for it, to hand to another process.
    pub url: String,
    /// Its name (`tg_test_<unix time>_<uuid>`).
    pub name: String,
}

/// A fresh, migrated database; see [`test_database`].
pub async fn test_pool() -> PgPool {
    test_database().await.pool
}

/// Creates and migrates a database of its own for the calling test.
pub async fn test_database() -> TestDatabase {
    let (admin, base_url) = server();
    drop_stale_databases_once(&admin).await;
    let name = format!("{DB_PREFIX}{}_{}", unix_now(), Uuid::new_v4().simple());
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .unwrap_or_else(|e| panic!("testkit: cannot connect to the test PostgreSQL server: {e}"));
    // Identifiers cannot be bound; `name` is generated above from digits and hex only.
    sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("testkit: CREATE DATABASE {name} failed: {e}"));
    let _ = conn.close().await;
    let pool = PgPool::connect_with(admin.database(&name))
        .await
        .unwrap_or_else(|e| panic!("testkit: cannot connect to {name}: {e}"));
    crate::db::migrate(&pool).await.unwrap_or_else(|e| panic!("testkit: migrating {name} failed: {e}"));
    TestDatabase { pool, url: with_database(&base_url, &name), name }
}

/// A running admin service with a seeded owner account.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base_url: String,
    /// The service's database (fresh and migrated).
    pub pool: PgPool,
    pub owner_email: String,
    pub owner_password: String,
}

/// Starts the admin service on a fresh database and a free port, on the current runtime.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the configuration adjusted by `configure` first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut AdminConfig)) -> TestApp {
    install_crypto_provider();
    let pool = test_pool().await;
    let owner_email = "owner@example.com".to_owned();
    let owner = crate::seed::ensure_first_owner(&pool, &owner_email)
        .await
        .unwrap_or_else(|e| panic!("testkit: seeding the owner failed: {e:#}"))
        .unwrap_or_else(|| panic!("testkit: a fresh database already had admin users"));
    let listener =
        TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("testkit: cannot bind 127.0.0.1:0: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("testkit: no local address: {e}"));
    let mut config = AdminConfig::new(addr, Secret::new(random_hex(24)));
    configure(&mut config);
    let server_pool = pool.clone();
    tokio::spawn(async move {
        if let Err(err) = crate::serve(listener, server_pool, config, std::future::pending()).await {
            tracing::error!(error = %err, "test admin service failed");
        }
    });
    TestApp {
        base_url: format!("http://{addr}"),
        pool,
        owner_email,
        owner_password: owner.password.expose().to_owned(),
    }
}

/// Installs rustls' aws-lc-rs provider as the process default (once; later calls do nothing).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Connection options for the server's maintenance database, and its URL.
fn server() -> (PgConnectOptions, String) {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => {
            let options = PgConnectOptions::from_str(&url)
                .unwrap_or_else(|e| panic!("testkit: DATABASE_URL is not a PostgreSQL URL: {e}"));
            (options, url)
        }
        _ => {
            let pg = private_cluster();
            (pg.connect_options(), pg.url())
        }
    }
}

/// `url` with its database (path) replaced by `db`; the query string is kept.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    match query {
        Some(q) => format!("{}/{db}?{q}", &base[..path]),
        None => format!("{}/{db}", &base[..path]),
    }
}

/// The private cluster and its directory, or why it could not start.
type Cluster = Result<(LocalPostgres, PathBuf), String>;

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The process's private cluster, started on first use.
fn private_cluster() -> &'static LocalPostgres {
    match CLUSTER.get_or_init(start_private_cluster) {
        Ok((pg, _)) => pg,
        Err(err) => panic!("testkit: DATABASE_URL is unset and no private PostgreSQL could start: {err}"),
    }
}

/// Starts the cluster on a thread with a runtime of its own: each `#[tokio::test]` has its own
/// runtime, which dies with the test, and the cluster must outlive all of them. (The
/// postmaster itself is forked from a thread that lives as long as it does; see `pg_local`.)
fn start_private_cluster() -> Cluster {
    remove_abandoned_clusters();
    let root = std::env::temp_dir().join(format!("{CLUSTER_DIR_PREFIX}{}-{}", std::process::id(), random_hex(4)));
    let opts = LocalPgOptions::throwaway(&root);
    let started = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(LocalPostgres::start(opts)).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the startup thread panicked".to_owned())??;
    sys::at_exit(stop_private_cluster);
    Ok((started, root))
}

/// Runs at process exit: stops the private cluster and deletes its files.
extern "C" fn stop_private_cluster() {
    if let Some(Ok((pg, root))) = CLUSTER.get() {
        pg.stop_blocking();
        let _ = std::fs::remove_dir_all(root);
    }
}

/// Deletes cluster directories left by test processes that were killed (no exit handler ran).
fn remove_abandoned_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let owner =
            name.to_str().and_then(|n| n.strip_prefix(CLUSTER_DIR_PREFIX)).and_then(|rest| rest.split('-').next());
        if let Some(pid) = owner.filter(|pid| !Path::new("/proc").join(pid).exists()) {
            tracing::debug!(pid, dir = %entry.path().display(), "removing an abandoned test cluster");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// On a shared server, drops test databases old enough to be leftovers (once per process).
/// Databases in use cannot be dropped; those errors are ignored.
async fn drop_stale_databases_once(admin: &PgConnectOptions) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let Ok(mut conn) = PgConnection::connect_with(admin).await else { return };
    let names: Vec<(String,)> = sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'tg\\_test\\_%'")
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
    let cutoff = unix_now().saturating_sub(STALE_AFTER_SECS);
    for (name,) in names {
        let created =
            name.strip_prefix(DB_PREFIX).and_then(|r| r.split('_').next()).and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t < cutoff) {
            let _ =
                sqlx::raw_sql(AssertSqlSafe(format!(r#"DROP DATABASE IF EXISTS "{name}""#))).execute(&mut conn).await;
        }
    }
    let _ = conn.close().await;
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("testkit: no randomness: {e}"));
    hex::encode(bytes)
}

mod sys {
    /// Registers `f` to run when the process exits normally (the test harness exits that way,
    /// also when tests fail).
    #[expect(unsafe_code, reason = "atexit is the C interface for exit handlers")]
    pub fn at_exit(f: extern "C" fn()) {
        // SAFETY: `f` is a plain function that takes nothing and does not unwind (a panic in
        // an `extern "C"` function aborts instead).
        if unsafe { libc::atexit(f) } != 0 {
            tracing::warn!("could not register the test cluster's exit handler; it stops when the process dies");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_swapped_in_urls() {
        let swap = |u| with_database(u, "db2");
        assert_eq!(swap("postgres://u:p@h:5432/postgres"), "postgres://u:p@h:5432/db2");
        assert_eq!(swap("postgres://u@h/x?sslmode=disable"), "postgres://u@h/db2?sslmode=disable");
        assert_eq!(swap("postgresql://h:1"), "postgresql://h:1/db2");
    }

    #[tokio::test]
    async fn test_databases_are_fresh_and_migrated() -> anyhow::Result<()> {
        let (a, b) = (test_database().await, test_database().await);
        assert_ne!(a.name, b.name);
        let (users,): (i64,) = sqlx::query_as("SELECT count(*) FROM admin_users").fetch_one(&a.pool).await?;
        assert_eq!(users, 0);
        let mut conn = PgConnection::connect(&b.url).await?;
        let (db,): (String,) = sqlx::query_as("SELECT current_database()").fetch_one(&mut conn).await?;
        assert_eq!(db, b.name);
        conn.close().await?;
        Ok(())
    }
}
