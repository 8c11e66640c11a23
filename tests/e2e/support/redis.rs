//! A private `redis-server` on a free loopback port, which a test may kill (SIGKILL) and start
//! again on the same port, so an outage affects nothing but that test; and a minimal RESP
//! client to look at what the gateways stored in it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{collect, text};

/// How long the server may take to answer `PING` after it was started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one command may take on the test's own client.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts to find a free port (another process may take the probed one first).
const START_ATTEMPTS: usize = 3;

/// A running private Redis; killed on drop.
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
}

impl PrivateRedis {
    /// Starts `redis-server` without persistence in `dir` on a free loopback port.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let mut redis = Self { port, dir: dir.to_path_buf(), child: None, log: Arc::default() };
            match redis.spawn().await {
                Ok(()) => return Ok(redis),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
    }

    /// `redis://127.0.0.1:<port>`; the same across restarts.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (no shutdown, no goodbye to clients) and waits for it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill().context("SIGKILL redis-server")?;
            child.wait().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same port, empty (nothing was persisted).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill().await?;
        self.spawn().await
    }

    /// Runs one command and returns its reply.
    pub async fn command(&self, args: &[&str]) -> anyhow::Result<Resp> {
        tokio::time::timeout(COMMAND_TIMEOUT, self.exchange(args))
            .await
            .with_context(|| format!("redis {args:?}: no answer within {COMMAND_TIMEOUT:?}"))?
    }

    /// Every key stored (`SCAN` to the end).
    pub async fn keys(&self) -> anyhow::Result<Vec<String>> {
        let mut cursor = "0".to_owned();
        let mut keys = Vec::new();
        loop {
            let reply = self.command(&["SCAN", &cursor, "COUNT", "1000"]).await?;
            let Resp::Array(Some(parts)) = reply else { bail!("SCAN answered {reply:?}") };
            let [next, Resp::Array(Some(batch))] = parts.as_slice() else { bail!("SCAN answered {parts:?}") };
            keys.extend(batch.iter().filter_map(Resp::text));
            cursor = next.text().with_context(|| format!("SCAN cursor {next:?}"))?;
            if cursor == "0" {
                return Ok(keys);
            }
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        text(&self.log)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        cmd.arg("--dir").arg(&self.dir);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("redis-server is not installed: install the Debian package `redis-server`")
            }
            Err(e) => return Err(e).context("spawning redis-server"),
        };
        for pipe in [child.stdout.take().map(boxed), child.stderr.take().map(boxed)].into_iter().flatten() {
            tokio::spawn(collect(pipe, Arc::clone(&self.log)));
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("redis-server on port {} exited with {status}; log:\n{}", self.port, self.log());
            }
            match self.command(&["PING"]).await {
                Ok(Resp::Simple(pong)) if pong == "PONG" => break,
                other if Instant::now() >= deadline => {
                    bail!("redis-server on port {} did not answer PING: {other:?}; log:\n{}", self.port, self.log())
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        self.child = Some(child);
        Ok(())
    }

    async fn exchange(&self, args: &[&str]) -> anyhow::Result<Resp> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        loop {
            if let Some((reply, _)) = Resp::parse(&buf)? {
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await? {
                0 => bail!("redis closed the connection mid-reply"),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

fn boxed(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    Box::new(pipe)
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?.port())
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The reply as text, for simple and bulk strings.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// One reply from the start of `buf` and the bytes it took; `None` while incomplete.
    fn parse(buf: &[u8]) -> anyhow::Result<Option<(Resp, usize)>> {
        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let (Some(&kind), Some(line)) = (buf.first(), buf.get(1..end)) else { bail!("RESP reply without a type") };
        let line = std::str::from_utf8(line).context("RESP line is not UTF-8")?;
        let after = end + 2;
        let number = || line.parse::<i64>().with_context(|| format!("RESP length {line:?}"));
        match kind {
            b'+' => Ok(Some((Resp::Simple(line.to_owned()), after))),
            b'-' => Ok(Some((Resp::Error(line.to_owned()), after))),
            b':' => Ok(Some((Resp::Int(number()?), after))),
            b'$' => {
                let Ok(len) = usize::try_from(number()?) else { return Ok(Some((Resp::Bulk(None), after))) };
                if buf.len() < after + len + 2 {
                    return Ok(None);
                }
                Ok(Some((Resp::Bulk(Some(buf[after..after + len].to_vec())), after + len + 2)))
            }
            b'*' => {
                let Ok(count) = usize::try_from(number()?) else { return Ok(Some((Resp::Array(None), after))) };
                let (mut items, mut at) = (Vec::with_capacity(count), after);
                for _ in 0..count {
                    let Some((item, used)) = Resp::parse(&buf[at..])? else { return Ok(None) };
                    items.push(item);
                    at += used;
                }
                Ok(Some((Resp::Array(Some(items)), at)))
            }
            other => bail!("unexpected RESP type byte {other:#x}"),
        }
    }
}
