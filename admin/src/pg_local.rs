//! Private PostgreSQL clusters, for `tollgate dev` and for tests run without `DATABASE_URL`.
//!
//! A cluster is a plain `postgres` child process (no `pg_ctl`) that listens on 127.0.0.1 only.
//! For a data directory `D`, the directory above it (the *run root*) holds `postgres.log`
//! (stdout and stderr of `initdb` and `postgres`) and `run/`, the Unix socket directory; when
//! that path is too long for a socket address, a private directory under `/tmp` is used.
//!
//! PostgreSQL refuses to run as root. When this process is root, `initdb` and `postgres` run
//! as the `postgres` system user, which must be able to enter every directory above `D`.
//!
//! The postmaster is asked to die with us (`PR_SET_PDEATHSIG`). Linux sends that signal when
//! the *thread* that forked the child exits, so each postmaster is forked from a dedicated
//! thread that lives exactly as long as the postmaster does (it waits for its exit).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use tokio::sync::watch;

use crate::secret::Secret;

/// Superuser of every private cluster.
const SUPERUSER: &str = "postgres";
/// Attempts at starting on a picked port before giving up (another process may take it first).
const PORT_ATTEMPTS: usize = 3;
/// How long a fast shutdown (SIGINT) may take before an immediate one (SIGQUIT) is sent.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest Unix socket path the kernel accepts (`sun_path` is 108 bytes, NUL included).
const MAX_SOCKET_PATH: usize = 107;

/// Why a private cluster could not be found, prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum PgLocalError {
    #[error(
        "PostgreSQL server programs (initdb, postgres) were not found on PATH or in /usr/lib/postgresql/*/bin; \
         install them (Debian/Ubuntu: `apt-get install postgresql`) or set DATABASE_URL"
    )]
    NotInstalled,
    #[error(
        "PostgreSQL refuses to run as root and there is no `postgres` system user to run it as; \
         create one, run as a regular user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    #[error(
        "the postgres user cannot enter {0}, above the PostgreSQL data; run `chmod o+x {0}` or use another directory"
    )]
    NotTraversable(PathBuf),
    #[error("{0} exists and is not an empty directory; a fresh cluster needs an empty or missing data directory")]
    NotEmpty(PathBuf),
    #[error(
        "the PostgreSQL password file {file} is missing, but {data_dir} holds a cluster; restore it or delete the data directory"
    )]
    PasswordMissing { file: PathBuf, data_dir: PathBuf },
    #[error("{action} failed: {source}")]
    Io { action: String, source: io::Error },
    #[error("initdb failed ({status}); see {log}")]
    Initdb { status: ExitStatus, log: PathBuf },
    #[error("PostgreSQL exited while starting ({status}): {reason}; see {log}")]
    Exited { status: ExitStatus, reason: String, log: PathBuf },
    #[error("PostgreSQL rejected the password in {file}; the cluster was created with another one")]
    BadPassword { file: PathBuf },
    #[error("PostgreSQL did not accept connections within {}s; see {log}", .timeout.as_secs())]
    Timeout { timeout: Duration, log: PathBuf },
}

fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> PgLocalError {
    let action = action.into();
    move |source| PgLocalError::Io { action, source }
}

/// How to run a private cluster.
#[derive(Debug, Clone)]
pub struct LocalPgOptions {
    /// The cluster's data directory (`PGDATA`); its parent is the run root (log, socket).
    pub data_dir: PathBuf,
    /// TCP port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// `true`: keep data across restarts (`initdb` only when there is no `PG_VERSION`).
    /// `false`: a throwaway cluster for tests: the data directory must be missing or empty,
    /// durability is off, and [`LocalPostgres::stop`] deletes the data.
    pub keep_data: bool,
    /// Where the superuser password lives (created 0600 on first start, reused after);
    /// `None` means trust authentication.
    pub password_file: Option<PathBuf>,
    /// How long to wait for the server to accept connections (crash recovery included).
    pub startup_timeout: Duration,
}

impl LocalPgOptions {
    /// A persistent, password-protected cluster under `state_dir` (`pgdata/`, `pg-password`).
    pub fn dev(state_dir: &Path) -> Self {
        Self {
            data_dir: state_dir.join("pgdata"),
            port: None,
            keep_data: true,
            password_file: Some(state_dir.join("pg-password")),
            startup_timeout: Duration::from_secs(120),
        }
    }

    /// A throwaway cluster with trust authentication, data in `root/pgdata`.
    pub fn throwaway(root: &Path) -> Self {
        Self {
            data_dir: root.join("pgdata"),
            port: None,
            keep_data: false,
            password_file: None,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// Finds the directory holding `initdb` and `postgres`: first on `PATH`, then the newest
/// `/usr/lib/postgresql/<version>/bin` (the Debian layout).
pub fn find_bin_dir() -> Result<PathBuf, PgLocalError> {
    let on_path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    on_path
        .into_iter()
        .chain(versioned_bin_dirs(Path::new("/usr/lib/postgresql")))
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .ok_or(PgLocalError::NotInstalled)
}

/// `<root>/<version>/bin` for every version under `root`, newest first.
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else { return Vec::new() };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((version_key(e.file_name().to_str()?)?, e.path().join("bin"))))
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// `"9.6"` → `[9, 6]`; `None` for names that are not versions.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The account PostgreSQL runs as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

fn run_as() -> Result<Option<RunAs>, PgLocalError> {
    if sys::euid() != 0 {
        return Ok(None);
    }
    match sys::lookup_user(c"postgres").map_err(io_err("looking up the postgres user"))? {
        Some((uid, gid)) => Ok(Some(RunAs { uid, gid })),
        None => Err(PgLocalError::NoPostgresUser),
    }
}

/// Everything resolved before the postmaster starts.
#[derive(Debug)]
struct Prepared {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    socket_dir: PathBuf,
    socket_dir_is_temp: bool,
    run_as: Option<RunAs>,
    password: Option<Secret>,
    password_file: Option<PathBuf>,
    keep_data: bool,
}

/// Finds the programs, lays out the directories, settles the password and runs `initdb`
/// when needed. Blocking: runs on the blocking pool.
fn prepare(opts: &LocalPgOptions) -> Result<Prepared, PgLocalError> {
    let bin_dir = find_bin_dir()?;
    let run_as = run_as()?;
    let data_dir = std::path::absolute(&opts.data_dir).map_err(io_err("resolving the data directory"))?;
    let root = data_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
    if let Some(user) = run_as {
        ensure_reachable(&root, user)?;
    }
    let (socket_dir, socket_dir_is_temp) = socket_dir_for(&root);
    make_private_dir(&socket_dir, run_as)?;
    let initialised = data_dir.join("PG_VERSION").is_file();
    let password = settle_password(opts, initialised, &data_dir)?;
    let prepared = Prepared {
        bin_dir,
        log_path: root.join("postgres.log"),
        data_dir,
        socket_dir,
        socket_dir_is_temp,
        run_as,
        password,
        password_file: opts.password_file.clone(),
        keep_data: opts.keep_data,
    };
    if !(opts.keep_data && initialised) {
        initdb(&prepared)?;
    }
    Ok(prepared)
}

/// Makes `root` (ours) enterable by `user` and checks that every directory above it is.
fn ensure_reachable(root: &Path, user: RunAs) -> Result<(), PgLocalError> {
    let meta = fs::metadata(root).map_err(io_err(format!("reading {}", root.display())))?;
    if !can_enter(&meta, user) {
        let mode = meta.mode() | 0o011;
        fs::set_permissions(root, fs::Permissions::from_mode(mode))
            .map_err(io_err(format!("opening up {}", root.display())))?;
    }
    for dir in root.ancestors().skip(1) {
        let meta = fs::metadata(dir).map_err(io_err(format!("reading {}", dir.display())))?;
        if !can_enter(&meta, user) {
            return Err(PgLocalError::NotTraversable(dir.to_path_buf()));
        }
    }
    Ok(())
}

fn can_enter(meta: &fs::Metadata, user: RunAs) -> bool {
    let mode = meta.mode();
    if meta.uid() == user.uid {
        mode & 0o100 != 0
    } else if meta.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// `root/run`, or a fresh directory under `/tmp` when socket paths there would be too long.
fn socket_dir_for(root: &Path) -> (PathBuf, bool) {
    let dir = root.join("run");
    // The socket is `<dir>/.s.PGSQL.<port>`; the longest port has 5 digits.
    if dir.as_os_str().len() + "/.s.PGSQL.65535".len() <= MAX_SOCKET_PATH {
        return (dir, false);
    }
    (std::env::temp_dir().join(format!("tollgate-pg-{}", random_hex(8))), true)
}

/// Creates `dir` (if needed) as a 0700 directory owned by the server's account.
fn make_private_dir(dir: &Path, run_as: Option<RunAs>) -> Result<(), PgLocalError> {
    fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("handing {} to the postgres user", dir.display())))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(format!("securing {}", dir.display())))
}

/// Reads the password file, or creates it for a cluster that does not exist yet.
fn settle_password(opts: &LocalPgOptions, initialised: bool, data_dir: &Path) -> Result<Option<Secret>, PgLocalError> {
    let Some(file) = &opts.password_file else { return Ok(None) };
    match fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(Secret::new(text.trim()))),
        Ok(_) | Err(_) if initialised && opts.keep_data => {
            Err(PgLocalError::PasswordMissing { file: file.clone(), data_dir: data_dir.to_path_buf() })
        }
        _ => {
            let password = random_hex(24);
            write_private_file(file, &password).map_err(io_err(format!("writing {}", file.display())))?;
            Ok(Some(Secret::new(password)))
        }
    }
}

/// Writes `contents` to a new file readable by its owner only.
fn write_private_file(path: &Path, contents: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // Without an entropy source nothing else here would work either; uuid falls back the same way.
    if getrandom::fill(&mut bytes).is_err() {
        return uuid::Uuid::new_v4().simple().to_string();
    }
    hex::encode(bytes)
}

fn open_log(path: &Path) -> Result<File, PgLocalError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(io_err(format!("opening {}", path.display())))
}

/// A command for one of the server programs, as the right user, output to the log.
fn server_command(p: &Prepared, program: &str) -> Result<Command, PgLocalError> {
    let log = open_log(&p.log_path)?;
    let log2 = log.try_clone().map_err(io_err("duplicating the log handle"))?;
    let mut cmd = Command::new(p.bin_dir.join(program));
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2).env("LC_ALL", "C");
    cmd.current_dir(p.data_dir.parent().unwrap_or(Path::new("/")));
    if let Some(user) = p.run_as {
        cmd.uid(user.uid).gid(user.gid);
    }
    Ok(cmd)
}

/// Creates the cluster in the (missing or empty) data directory.
fn initdb(p: &Prepared) -> Result<(), PgLocalError> {
    let empty = fs::read_dir(&p.data_dir).map(|mut d| d.next().is_none()).unwrap_or(true);
    if !empty {
        return Err(PgLocalError::NotEmpty(p.data_dir.clone()));
    }
    make_private_dir(&p.data_dir, p.run_as)?;
    let mut cmd = server_command(p, "initdb")?;
    cmd.arg("-D").arg(&p.data_dir).args(["-U", SUPERUSER, "-E", "UTF8", "--no-locale"]);
    let pwfile = p.socket_dir.join("initdb-pwfile");
    if let Some(password) = &p.password {
        write_private_file(&pwfile, password.expose()).map_err(io_err("writing the initdb password file"))?;
        if let Some(user) = p.run_as {
            std::os::unix::fs::chown(&pwfile, Some(user.uid), Some(user.gid))
                .map_err(io_err("handing over the password file"))?;
        }
        cmd.arg("--auth=scram-sha-256").arg(format!("--pwfile={}", pwfile.display()));
    } else {
        cmd.arg("--auth=trust");
    }
    if !p.keep_data {
        cmd.arg("--no-sync");
    }
    tracing::info!(data_dir = %p.data_dir.display(), log = %p.log_path.display(), "creating a PostgreSQL cluster");
    let status = cmd.status().map_err(io_err("running initdb"));
    let _ = fs::remove_file(&pwfile);
    match status? {
        s if s.success() => Ok(()),
        status => Err(PgLocalError::Initdb { status, log: p.log_path.clone() }),
    }
}

/// A running private PostgreSQL server. Stop it with [`LocalPostgres::stop`]; dropping it
/// only asks the server to shut down.
#[derive(Debug)]
pub struct LocalPostgres {
    prepared: Arc<Prepared>,
    port: u16,
    pid: i32,
    /// Length of the log when this server started: what it wrote comes after.
    log_offset: u64,
    exit: watch::Receiver<Option<ExitStatus>>,
    stopped: bool,
}

impl LocalPostgres {
    /// Prepares the cluster (running `initdb` if needed), starts the server and waits until it
    /// accepts connections.
    pub async fn start(opts: LocalPgOptions) -> Result<Self, PgLocalError> {
        let prep_opts = opts.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare(&prep_opts))
            .await
            .map_err(|e| PgLocalError::Io { action: "preparing PostgreSQL".into(), source: io::Error::other(e) })??;
        let prepared = Arc::new(prepared);
        let deadline = Instant::now() + opts.startup_timeout;
        let mut attempt = 1;
        loop {
            let port = opts.port.map_or_else(free_port, Ok)?;
            let mut server = Self::spawn(Arc::clone(&prepared), port)?;
            match server.wait_ready(deadline, opts.startup_timeout).await {
                Ok(()) => return Ok(server),
                Err(ReadyError::PortTaken(_)) if opts.port.is_none() && attempt < PORT_ATTEMPTS => {
                    tracing::debug!(port, attempt, "picked port was taken; retrying on another");
                    attempt += 1;
                }
                Err(err) => {
                    server.stop_and_wait().await;
                    return Err(err.into());
                }
            }
        }
    }

    /// Forks the postmaster from a thread that then waits for it (see the module docs).
    fn spawn(prepared: Arc<Prepared>, port: u16) -> Result<Self, PgLocalError> {
        let log_offset = fs::metadata(&prepared.log_path).map(|m| m.len()).unwrap_or(0);
        let mut cmd = server_command(&prepared, "postgres")?;
        cmd.arg("-D").arg(&prepared.data_dir).arg("-p").arg(port.to_string()).arg("-k").arg(&prepared.socket_dir);
        cmd.args(["-c", "listen_addresses=127.0.0.1"]);
        if !prepared.keep_data {
            for setting in ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=300"] {
                cmd.args(["-c", setting]);
            }
        }
        // Our terminal's Ctrl-C must reach us, not the server: we stop it last, in order.
        cmd.process_group(0);
        sys::die_with_parent(&mut cmd);
        let (exit_tx, exit) = watch::channel(None);
        let (pid_tx, pid_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postmaster".into())
            .spawn(move || own_postmaster(cmd, pid_tx, exit_tx))
            .map_err(io_err("starting the postmaster thread"))?;
        let pid = pid_rx
            .recv()
            .map_err(|_| PgLocalError::Io {
                action: "starting postgres".into(),
                source: io::ErrorKind::BrokenPipe.into(),
            })?
            .map_err(io_err("starting postgres"))?;
        tracing::info!(pid, port, data_dir = %prepared.data_dir.display(), "PostgreSQL starting");
        Ok(Self { prepared, port, pid, log_offset, exit, stopped: false })
    }

    /// Polls until a connection succeeds, the server exits, or `deadline` passes.
    async fn wait_ready(&mut self, deadline: Instant, timeout: Duration) -> Result<(), ReadyError> {
        let options = self.connect_options();
        loop {
            if let Some(status) = *self.exit.borrow() {
                return Err(self.exited(status));
            }
            match tokio::time::timeout(Duration::from_secs(2), PgConnection::connect_with(&options)).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Ok(Err(err)) if is_auth_failure(&err) => {
                    let file = self.prepared.password_file.clone().unwrap_or_default();
                    return Err(ReadyError::Other(PgLocalError::BadPassword { file }));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                let log = self.prepared.log_path.clone();
                return Err(ReadyError::Other(PgLocalError::Timeout { timeout, log }));
            }
            tokio::select! {
                _ = self.exit.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    fn exited(&self, status: ExitStatus) -> ReadyError {
        let reason = log_reason(&self.prepared.log_path, self.log_offset);
        let port_taken = reason.contains("could not bind") || reason.contains("could not create any TCP/IP sockets");
        let err = PgLocalError::Exited { status, reason, log: self.prepared.log_path.clone() };
        if port_taken { ReadyError::PortTaken(err) } else { ReadyError::Other(err) }
    }

    /// A `postgres://` URL for the `postgres` database, with the password if there is one.
    pub fn url(&self) -> String {
        match &self.prepared.password {
            Some(pw) => format!("postgres://{SUPERUSER}:{}@127.0.0.1:{}/postgres", pw.expose(), self.port),
            None => format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port),
        }
    }

    /// Connection options for the `postgres` database (TCP, no TLS).
    pub fn connect_options(&self) -> PgConnectOptions {
        let options = PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .database("postgres")
            .ssl_mode(PgSslMode::Disable);
        match &self.prepared.password {
            Some(pw) => options.password(pw.expose()),
            None => options,
        }
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        &self.prepared.log_path
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.prepared.data_dir
    }

    /// Fast shutdown: SIGINT to the postmaster (open sessions are ended), then waits for it to
    /// exit; a server that hangs gets SIGQUIT. A throwaway cluster's data is deleted afterwards.
    pub async fn stop(mut self) {
        self.stop_and_wait().await;
    }

    async fn stop_and_wait(&mut self) {
        self.stopped = true;
        let mut exit = self.exit.clone();
        for (signal, timeout) in [(libc::SIGINT, STOP_TIMEOUT), (libc::SIGQUIT, Duration::from_secs(5))] {
            if exit.borrow().is_some() {
                break;
            }
            sys::signal(self.pid, signal);
            if tokio::time::timeout(timeout, exit.wait_for(Option::is_some)).await.is_err() {
                tracing::warn!(pid = self.pid, signal, "PostgreSQL did not stop in time");
            }
        }
        self.clean_up();
    }

    /// Like [`LocalPostgres::stop`], for places without an async runtime (e.g. `atexit`).
    pub fn stop_blocking(&self) {
        for (signal, timeout) in [(libc::SIGINT, STOP_TIMEOUT), (libc::SIGQUIT, Duration::from_secs(5))] {
            if self.exit.borrow().is_some() {
                break;
            }
            sys::signal(self.pid, signal);
            let deadline = Instant::now() + timeout;
            while self.exit.borrow().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.clean_up();
    }

    fn clean_up(&self) {
        let p = &self.prepared;
        if p.socket_dir_is_temp || !p.keep_data {
            let _ = fs::remove_dir_all(&p.socket_dir);
        }
        if !p.keep_data && self.exit.borrow().is_some() {
            let _ = fs::remove_dir_all(&p.data_dir);
        }
        tracing::info!(pid = self.pid, "PostgreSQL stopped");
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if !self.stopped && self.exit.borrow().is_none() {
            sys::signal(self.pid, libc::SIGINT);
        }
    }
}

/// Why a start attempt failed; a taken port may be retried on another one.
enum ReadyError {
    PortTaken(PgLocalError),
    Other(PgLocalError),
}

impl From<ReadyError> for PgLocalError {
    fn from(err: ReadyError) -> Self {
        match err {
            ReadyError::PortTaken(e) | ReadyError::Other(e) => e,
        }
    }
}

/// Body of the postmaster's owner thread: spawn, report the pid, wait, report the exit.
fn own_postmaster(
    mut cmd: Command,
    pid_tx: std::sync::mpsc::Sender<io::Result<i32>>,
    exit_tx: watch::Sender<Option<ExitStatus>>,
) {
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(err) => {
            let _ = pid_tx.send(Err(err));
            return;
        }
    };
    let _ = pid_tx.send(i32::try_from(child.id()).map_err(io::Error::other));
    match child.wait() {
        Ok(status) => {
            tracing::debug!(pid = child.id(), %status, "postmaster exited");
            exit_tx.send_replace(Some(status));
        }
        Err(err) => tracing::error!(error = %err, "waiting for the postmaster failed"),
    }
}

fn free_port() -> Result<u16, PgLocalError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|addr| addr.port())
        .map_err(io_err("picking a free port"))
}

fn is_auth_failure(err: &sqlx::Error) -> bool {
    let code = err.as_database_error().and_then(|e| e.code());
    matches!(code.as_deref(), Some("28P01" | "28000"))
}

/// The most telling line at the end of the log: the last FATAL/PANIC/ERROR, else the last line.
fn log_reason(log: &Path, since: u64) -> String {
    let tail = read_tail(log, since, 16 * 1024).unwrap_or_default();
    let lines: Vec<&str> = tail.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // Server lines start with a timestamp and pid; the message starts at its severity.
    let telling =
        lines.iter().rev().find_map(|l| ["FATAL:", "PANIC:", "ERROR:"].iter().find_map(|k| l.find(k)).map(|i| &l[i..]));
    telling.or(lines.last().copied()).map(str::to_owned).unwrap_or_else(|| "no output".to_owned())
}

/// At most the last `max` bytes of `path` written after offset `since`.
fn read_tail(path: &Path, since: u64, max: u64) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max).max(since)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The few system calls std does not wrap.
mod sys {
    use std::ffi::CStr;
    use std::io;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// The effective user id of this process.
    #[expect(unsafe_code, reason = "geteuid has no safe wrapper in std")]
    pub fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    /// `(uid, gid)` of the account `name`, `None` if there is none.
    #[expect(unsafe_code, reason = "getpwnam_r is the C interface to the user database")]
    pub fn lookup_user(name: &CStr) -> io::Result<Option<(u32, u32)>> {
        // SAFETY: `passwd` is plain data (integers and pointers); all zeroes is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call, `buf.len()` is its true length, and the
        // strings `pwd` points into (inside `buf`) are not read after `buf` is dropped.
        let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
        match rc {
            0 if found.is_null() => Ok(None),
            0 => Ok(Some((pwd.pw_uid, pwd.pw_gid))),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }

    /// Sends `signal` to `pid`; a process that is already gone is not an error.
    #[expect(unsafe_code, reason = "kill has no safe wrapper in std")]
    pub fn signal(pid: i32, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions; pid is a child we started (> 0).
        if pid > 0 && unsafe { libc::kill(pid, signal) } != 0 {
            tracing::debug!(pid, signal, error = %io::Error::last_os_error(), "signal not delivered");
        }
    }

    /// Makes the child receive SIGTERM when the thread that forks it exits.
    ///
    /// std applies `uid`/`gid` *before* running `pre_exec` closures, which matters: changing
    /// credentials clears the parent-death signal, so it must be set after them.
    #[expect(unsafe_code, reason = "pre_exec runs code between fork and exec")]
    pub fn die_with_parent(cmd: &mut Command) {
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        // SAFETY: between fork and exec only async-signal-safe calls are allowed; the closure
        // makes two system calls (prctl, getppid) and allocates nothing, not even on error.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // If we died before prctl took effect, no signal will ever come: give up.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_root() -> PathBuf {
        std::env::temp_dir().join(format!("tollgate-pg-local-test-{}", random_hex(6)))
    }

    #[test]
    fn pg_local_versions_sort_numerically() {
        let mut keys = ["9.6", "15", "10", "x"].map(version_key).into_iter().flatten().collect::<Vec<_>>();
        keys.sort();
        assert_eq!(keys, vec![vec![9, 6], vec![10], vec![15]]);
    }

    #[test]
    fn pg_local_long_socket_paths_fall_back_to_tmp() {
        let (short, temp) = socket_dir_for(Path::new("/srv/app/.tollgate"));
        assert_eq!((short, temp), (PathBuf::from("/srv/app/.tollgate/run"), false));
        let long = PathBuf::from(format!("/{}", "d".repeat(120)));
        let (dir, temp) = socket_dir_for(&long);
        assert!(temp && dir.starts_with(std::env::temp_dir()));
    }

    #[tokio::test]
    async fn pg_local_throwaway_cluster_starts_serves_and_stops() -> anyhow::Result<()> {
        let root = scratch_root();
        let pg = LocalPostgres::start(LocalPgOptions::throwaway(&root)).await?;
        let (data_dir, pid) = (pg.data_dir().to_path_buf(), pg.pid);
        let pool = sqlx::PgPool::connect(&pg.url()).await?;
        let (one,): (i32,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await?;
        assert_eq!(one, 1);
        pool.close().await;
        pg.stop().await;
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "postmaster still running");
        assert!(!data_dir.exists(), "throwaway data left behind");
        fs::remove_dir_all(&root)?;
        Ok(())
    }

    #[tokio::test]
    async fn pg_local_taken_port_is_a_clear_error() -> anyhow::Result<()> {
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let root = scratch_root();
        let opts = LocalPgOptions { port: Some(taken.local_addr()?.port()), ..LocalPgOptions::throwaway(&root) };
        let err = LocalPostgres::start(opts).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("could not") && err.contains("postgres.log"), "unexpected: {err}");
        assert!(!root.join("pgdata").exists(), "throwaway data removed after a failed start");
        fs::remove_dir_all(&root)?;
        Ok(())
    }

    #[tokio::test]
    async fn pg_local_dev_cluster_keeps_data_and_password() -> anyhow::Result<()> {
        let root = scratch_root();
        let opts = LocalPgOptions::dev(&root);
        let pg = LocalPostgres::start(opts.clone()).await?;
        let url = pg.url();
        assert!(url.contains(":") && url.contains('@'), "URL carries a password");
        let mut conn = PgConnection::connect(&url).await?;
        sqlx::raw_sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)").execute(&mut conn).await?;
        conn.close().await?;
        let wrong = pg.connect_options().password("wrong");
        assert!(PgConnection::connect_with(&wrong).await.is_err(), "password is enforced");
        pg.stop().await;
        let mode = fs::metadata(root.join("pg-password"))?.mode() & 0o777;
        assert_eq!(mode, 0o600);

        let pg = LocalPostgres::start(opts).await?;
        let mut conn = PgConnection::connect_with(&pg.connect_options()).await?;
        let (v,): (i32,) = sqlx::query_as("SELECT v FROM kept").fetch_one(&mut conn).await?;
        assert_eq!(v, 7);
        conn.close().await?;
        pg.stop().await;
        fs::remove_dir_all(&root)?;
        Ok(())
    }
}
