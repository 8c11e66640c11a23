//! Gateway nodes as real processes: `tollgate gateway` on 127.0.0.1:0, following a database
//! and keeping its last-known-good configuration in a state directory of the test's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use super::{collect, eventually, text};

/// How long a node may take to bind and load its first configuration.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long it may take to exit after a stop signal (drain included).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Per-request timeout of the test client, well above any upstream delay a test uses.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A running `tollgate gateway`; killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    /// The node id it reports in `gateway_nodes`.
    pub node_id: String,
    pub state_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Gateway {
    /// Starts a node following `database_url`, waits until it listens and has a
    /// configuration (from PostgreSQL or from disk).
    pub async fn start(database_url: &str, state_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(database_url, state_dir, |_| {}).await
    }

    /// [`Gateway::start`] with flags or environment added by `configure` (e.g. `--redis-url`).
    pub async fn start_with(
        database_url: &str,
        state_dir: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Self> {
        Self::launch(database_url, state_dir, configure).await?.loaded().await
    }

    /// [`Gateway::start`] on a given address (a load balancer's configuration names it).
    pub async fn start_on(database_url: &str, state_dir: &Path, listen: SocketAddr) -> anyhow::Result<Self> {
        Self::launch_on(database_url, state_dir, listen, |_| {}).await?.loaded().await
    }

    /// Waits for the first configuration: it listens at once and answers 503 until its first
    /// load lands.
    async fn loaded(self) -> anyhow::Result<Self> {
        eventually("a configuration", STARTUP_TIMEOUT, || async {
            self.config_event_id().await.map_err(|e| format!("{e:#}"))
        })
        .await
        .with_context(|| format!("stderr:\n{}", self.stderr()))?;
        Ok(self)
    }

    /// Starts a node and waits until it listens, with or without a configuration.
    pub async fn launch(
        database_url: &str,
        state_dir: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Self> {
        Self::launch_on(database_url, state_dir, SocketAddr::from(([127, 0, 0, 1], 0)), configure).await
    }

    async fn launch_on(
        database_url: &str,
        state_dir: &Path,
        listen: SocketAddr,
        configure: impl FnOnce(&mut Command),
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
        cmd.arg("gateway").arg("--listen").arg(listen.to_string()).args(["--database-url", database_url]);
        cmd.arg("--state-dir").arg(state_dir);
        for var in ["TOLLGATE_GATEWAY_CONFIG", "TOLLGATE_LOG_FORMAT", "DATABASE_URL"] {
            cmd.env_remove(var);
        }
        cmd.env("TOLLGATE_LOG", "info,sqlx=warn").env("TOLLGATE_DRAIN_TIMEOUT", "20");
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        configure(&mut cmd);
        let mut child = cmd.spawn().context("spawning tollgate gateway")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        tokio::spawn(collect(child.stderr.take().context("no stderr pipe")?, Arc::clone(&stderr)));
        let (addr, node_id) = match eventually("the gateway to listen", STARTUP_TIMEOUT, || {
            let log = text(&stderr);
            async move { listening(&log).ok_or(log) }
        })
        .await
        {
            Ok(found) => found,
            Err(err) => bail!("{err:#}; exit status: {:?}", child.try_wait()),
        };
        let http = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build()?;
        Ok(Self { child, addr, node_id, state_dir: state_dir.to_path_buf(), stderr, http })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path`: status and body text.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let res = self.http.get(self.url(path)).send().await?;
        let status = res.status().as_u16();
        Ok((status, res.text().await?))
    }

    /// `GET path` with extra request headers: the whole reply.
    pub async fn request(&self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
        let mut req = self.http.get(self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = req.send().await.with_context(|| format!("GET {path} on {}", self.addr))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        Ok(Reply { status, headers, body: res.text().await? })
    }

    /// Id of the config event the node enforces, from its health endpoint.
    pub async fn config_event_id(&self) -> anyhow::Result<i64> {
        let res = self.http.get(self.url(tollgate_gateway::HEALTH_PATH)).send().await?;
        let status = res.status();
        let body: serde_json::Value = res.json().await?;
        match body["config_event_id"].as_i64() {
            Some(id) if status.is_success() => Ok(id),
            _ => bail!("health answered {status}: {body}"),
        }
    }

    /// Waits until `GET path` is answered by the upstream whose body is `expected`.
    pub async fn wait_routed(&self, path: &str, expected: &str, within: Duration) -> anyhow::Result<()> {
        eventually(&format!("GET {path} on {} to reach the upstream", self.addr), within, || async {
            match self.get(path).await {
                Ok((200, body)) if body == expected => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Waits until `GET path` gets `status` from the gateway itself.
    pub async fn wait_status(&self, path: &str, status: u16, within: Duration) -> anyhow::Result<()> {
        eventually(&format!("GET {path} on {} to answer {status}", self.addr), within, || async {
            match self.get(path).await {
                Ok((s, _)) if s == status => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// Waits until the node's log contains `needle` at least `times` times. (Its log is read
    /// in the background, so a line may arrive after what it reports became visible.)
    pub async fn wait_logged(&self, needle: &str, times: usize, within: Duration) -> anyhow::Result<()> {
        eventually(&format!("{needle:?} {times}x in the log of {}", self.addr), within, || async {
            let log = self.stderr();
            if log.matches(needle).count() >= times { Ok(()) } else { Err(log) }
        })
        .await
    }

    /// Waits until the node's last-known-good file on disk reflects event `event_id`.
    pub async fn wait_saved(&self, event_id: i64, within: Duration) -> anyhow::Result<()> {
        let path = self.state_dir.join("gateway-config.json");
        eventually(&format!("{} to hold event {event_id}", path.display()), within, || async {
            match tollgate_gateway::config::disk::load(&path) {
                Ok(data) if data.event_id == event_id => Ok(()),
                Ok(data) => Err(format!("event {}", data.event_id)),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Everything it logged so far.
    pub fn stderr(&self) -> String {
        text(&self.stderr)
    }

    /// `GET path` on the metrics listener (started with `--metrics-listen 127.0.0.1:0`; its
    /// address is read from the log): status and JSON body.
    pub async fn ops(&self, path: &str) -> anyhow::Result<(u16, serde_json::Value)> {
        let log = self.stderr();
        let addr = log
            .lines()
            .find(|l| l.contains("metrics listening"))
            .and_then(|line| line.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            .context("no metrics listener in the log (start the node with --metrics-listen)")?;
        let res = self.http.get(format!("http://{addr}{path}")).send().await?;
        let status = res.status().as_u16();
        Ok((status, res.json().await?))
    }

    /// The process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the gateway already exited")
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the exit.
    pub async fn stop(mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        send_signal(self.pid()?, signal).await?;
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!("no exit within {STOP_TIMEOUT:?} of SIG{signal}; stderr:\n{}", self.stderr()),
        }
    }

    /// Sends `signal` without waiting; see [`Gateway::wait_exit`].
    pub async fn signal(&self, signal: &str) -> anyhow::Result<()> {
        send_signal(self.pid()?, signal).await
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!("no exit within {STOP_TIMEOUT:?}; stderr:\n{}", self.stderr()),
        }
    }
}

/// A gateway's answer: status, headers and body text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `type` of a problem+json body (`urn:tollgate:problem:<slug>`), if it is one.
    pub fn problem_type(&self) -> Option<String> {
        let is_problem = self.header("content-type").is_some_and(|t| t.starts_with("application/problem+json"));
        let doc: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        is_problem.then(|| doc["type"].as_str().map(str::to_owned)).flatten()
    }
}

async fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let sent = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().await?;
    anyhow::ensure!(sent.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// The address and node id from the "gateway listening addr=… node=…" log line.
fn listening(log: &str) -> Option<(SocketAddr, String)> {
    let line = log.lines().find(|l| l.contains("gateway listening"))?;
    let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_owned);
    Some((field("addr=")?.parse().ok()?, field("node=")?))
}
