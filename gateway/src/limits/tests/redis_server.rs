//! A Redis for tests: `REDIS_URL`, else 127.0.0.1:6379 when it answers, else a private
//! `redis-server` child (always private for tests that stop and restart it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `redis-server` on a free port, killed on drop.
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a private server without persistence and waits until it answers.
    pub(crate) fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port.
    pub(crate) fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server ({e}): install the Debian package `redis-server`"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(&format!("127.0.0.1:{}", self.port)) {
            assert!(Instant::now() < deadline, "redis-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops (`STOP`) or resumes (`CONT`) the server process: a stalled Redis keeps its
    /// connections, and what was sent meanwhile runs when it resumes.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("the server runs").id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when a Redis at `addr` answers PING.
fn answers(addr: &str) -> bool {
    let Ok(addr) = addr.parse() else { return false };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A Redis URL for tests that do not stop the server, and the private server if one was
/// started (keep it alive for the test).
pub(crate) fn shared() -> (String, Option<RedisServer>) {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return (url, None);
    }
    if answers("127.0.0.1:6379") {
        return ("redis://127.0.0.1:6379".to_owned(), None);
    }
    let server = RedisServer::start();
    (server.url(), Some(server))
}
