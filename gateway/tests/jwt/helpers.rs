//! Shared test helpers: PyJWT-minted tokens (one Python run per test binary) and a tiny
//! JWKS server on `127.0.0.1:0` that counts its hits.

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Everything `mint.py` printed, or `None` (after a loud message) when PyJWT is missing.
/// In CI (`CI` set) a missing PyJWT fails the test instead.
pub fn minted() -> Option<&'static Value> {
    static MINTED: OnceLock<Option<Value>> = OnceLock::new();
    MINTED.get_or_init(run_mint).as_ref()
}

fn run_mint() -> Option<Value> {
    let out = Command::new("python3").arg("-c").arg(include_str!("mint.py")).output();
    let why = match out {
        Ok(out) if out.status.success() => return Some(serde_json::from_slice(&out.stdout).unwrap()),
        Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
        Err(e) => format!("python3: {e}"),
    };
    let msg = format!("PyJWT tokens unavailable ({why}); install with: pip install \"pyjwt[crypto]\"");
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    // Straight to the process's stderr: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "\n!!!!!!!!!! JWT tests SKIPPED (not passed): {msg}\n");
    None
}

/// A JWKS endpoint: serves the current body to every GET, counts requests.
#[derive(Clone)]
pub struct JwksServer {
    pub url: String,
    pub port: u16,
    body: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    pub async fn start(body: Value) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = Self {
            url: format!("http://127.0.0.1:{port}/jwks"),
            port,
            body: Arc::new(Mutex::new(body.to_string())),
            hits: Arc::default(),
        };
        let handle = server.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let h = handle.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    h.hits.fetch_add(1, Ordering::SeqCst);
                    let body = h.body.lock().unwrap().clone();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        server
    }

    pub fn set_body(&self, body: Value) {
        *self.body.lock().unwrap() = body.to_string();
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
