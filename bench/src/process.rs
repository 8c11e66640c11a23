//! The real `tollgate gateway` process under measurement: started on a free port, timed to
//! its first routed answer, its memory read from `/proc/<pid>/status`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// A field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) in MiB.
pub fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Resets the peak RSS (`VmHWM`) of `pid`, so a later read gives the peak since now.
pub fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("resetting VmHWM")
}

/// An upstream answering every request `200 ok` (HTTP/1.1 keep-alive), for routed requests.
pub async fn tiny_upstream() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 || sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// A "PostgreSQL" that accepts connections and never answers.
pub async fn silent_listener() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    Ok(port)
}

/// A running gateway and when it was spawned.
pub struct Gateway {
    pub child: Child,
    pub pid: u32,
    pub addr: String,
    pub spawned: Instant,
}

impl Gateway {
    /// Spawns `tollgate gateway` following `database_url` with `state_dir`, and waits for
    /// its "gateway listening" line.
    pub async fn spawn(bin: &Path, database_url: &str, state_dir: &Path) -> anyhow::Result<Self> {
        Self::spawn_with(bin, database_url, state_dir, (&[], &[]), "listening").await
    }

    /// [`Self::spawn`] with more flags and environment, waiting for the log line holding
    /// `listening` (its `addr=` is the gateway's address).
    pub async fn spawn_with(
        bin: &Path,
        database_url: &str,
        state_dir: &Path,
        (flags, env): (&[&str], &[(&str, &str)]),
        listening: &str,
    ) -> anyhow::Result<Self> {
        let spawned = Instant::now();
        let mut child = Command::new(bin)
            .args(["gateway", "--listen", "127.0.0.1:0", "--database-url", database_url])
            .args(flags)
            .envs(env.iter().copied())
            .arg("--state-dir")
            .arg(state_dir)
            .env("TOLLGATE_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning tollgate gateway")?;
        let pid = child.id().context("no pid")?;
        let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
        let addr = loop {
            let line = lines.next_line().await?.context("the gateway exited before listening")?;
            if line.contains(listening)
                && let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr="))
            {
                break addr.to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Gateway { child, pid, addr, spawned })
    }

    /// Polls `GET path` until it answers 200; the time since spawn.
    pub async fn first_routed(&self, path: &str, within: Duration) -> anyhow::Result<Duration> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
        let url = format!("http://{}{path}", self.addr);
        while self.spawned.elapsed() < within {
            if matches!(http.get(&url).send().await, Ok(res) if res.status() == 200) {
                return Ok(self.spawned.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::bail!("GET {url} not answered 200 within {within:?}")
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill").arg("-TERM").arg(self.pid.to_string()).status().await?;
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.context("no exit after SIGTERM")??;
        Ok(())
    }
}
