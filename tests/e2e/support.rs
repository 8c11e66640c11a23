//! Helpers: running `tollgate dev` as a child process, reading its banner, polling health
//! endpoints with a deadline, and scratch directories. The cross-plane tests' helpers live in
//! the submodules: gateway processes, the admin, upstream servers, a private PostgreSQL and a
//! private Redis.

pub mod admin;
pub mod gateway;
pub mod postgres;
pub mod redis;
pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long `tollgate dev` may take to print its banner (a first start runs initdb).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long it may take to exit after a stop signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A running `tollgate dev` and what it printed on stdout up to "Press Ctrl-C".
pub struct DevProcess {
    child: Child,
    banner: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl DevProcess {
    /// Starts `tollgate dev` on port 0 everywhere; `configure` adds flags, env and cwd.
    pub async fn start(configure: impl FnOnce(&mut Command)) -> anyhow::Result<Self> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg("dev");
        for flag in ["--admin-listen", "--portal-listen", "--gateway-listen"] {
            cmd.args([flag, "127.0.0.1:0"]);
        }
        for var in ["TOLLGATE_JWT_SECRET", "TOLLGATE_STATE_DIR", "TOLLGATE_OWNER_EMAIL", "TOLLGATE_LOG_FORMAT"] {
            cmd.env_remove(var);
        }
        cmd.env("TOLLGATE_LOG", "info").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        configure(&mut cmd);
        let mut child = cmd.spawn().context("spawning tollgate")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            tokio::spawn(collect(pipe, Arc::clone(&stderr)));
        }
        let stdout = child.stdout.take().context("no stdout pipe")?;
        match tokio::time::timeout(STARTUP_TIMEOUT, read_banner(stdout)).await {
            Ok(Ok(banner)) => Ok(Self { child, banner, stderr }),
            Ok(Err(err)) => bail!("{err}; stderr:\n{}", text(&stderr)),
            Err(_) => bail!("no banner within {STARTUP_TIMEOUT:?}; stderr:\n{}", text(&stderr)),
        }
    }

    /// The value printed after `label` in the banner (`  <label>   <value>`).
    pub fn field(&self, label: &str) -> Option<String> {
        self.banner.iter().find_map(|line| {
            let rest = line.strip_prefix("  ")?.strip_prefix(label)?;
            rest.starts_with(' ').then(|| rest.trim().to_owned())
        })
    }

    /// Everything printed on stdout up to the banner's end.
    pub fn banner(&self) -> String {
        self.banner.join("\n")
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the exit.
    pub async fn stop(mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().context("tollgate already exited")?;
        let sent = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().await?;
        anyhow::ensure!(sent.success(), "kill -{signal} {pid} failed");
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!("no exit within {STOP_TIMEOUT:?} of SIG{signal}; stderr:\n{}", self.stderr()),
        }
    }
}

pub fn text(buf: &Mutex<String>) -> String {
    buf.lock().map(|s| s.clone()).unwrap_or_default()
}

pub async fn collect(mut pipe: impl AsyncRead + Unpin, into: Arc<Mutex<String>>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
        if let Ok(mut buf) = into.lock() {
            buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }
}

/// Reads stdout up to the "Press Ctrl-C" line; the rest is drained in the background.
async fn read_banner(stdout: impl AsyncRead + Unpin + Send + 'static) -> anyhow::Result<Vec<String>> {
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let done = line.starts_with("Press Ctrl-C");
        banner.push(line);
        if done {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(banner);
        }
    }
    bail!("tollgate exited before it was ready; stdout:\n{}", banner.join("\n"))
}

/// Polls `url` until it answers 200, for at most 30 seconds.
pub async fn wait_healthy(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = client.get(url).timeout(Duration::from_secs(2)).send().await;
        match outcome {
            Ok(res) if res.status() == reqwest::StatusCode::OK => return Ok(()),
            _ if Instant::now() >= deadline => bail!("{url} did not become healthy: {outcome:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Polls `probe` every 50 ms until it succeeds, for at most `within`. The probe's error says
/// what it saw, for the failure message.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(found) => return Ok(found),
            Err(seen) if Instant::now() >= deadline => bail!("waited {within:?} for {what}; last seen: {seen}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// A scratch directory under the temp dir, removed on drop. Mode 0755: a private PostgreSQL
/// inside runs as the `postgres` user when the tests run as root, and must be able to enter it.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new() -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("tollgate-e2e-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
