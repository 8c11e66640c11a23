//! Test kit: the in-process gateway, real upstream servers, clients, and bounded waits.

pub mod client;
pub mod gateway;
pub mod pki;
pub mod raw;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

use serde_json::{Value, json};

pub use client::Client;
pub use gateway::{Gateway, Options};
pub use raw::Raw;
pub use upstream::Upstream;

/// The longest any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` until it holds, failing the test with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A declarative config with these APIs.
pub fn config(apis: Vec<Value>) -> Value {
    json!({ "apis": apis })
}

/// An API named `name` with `targets` and `routes`, open to anonymous callers; `extra`
/// fields are merged in.
pub fn api(name: &str, targets: &[&Upstream], routes: Value, extra: Value) -> Value {
    let mut api = json!({
        "name": name,
        "auth_methods": ["anonymous"],
        "targets": targets.iter().map(|u| u.target()).collect::<Vec<_>>(),
        "routes": routes,
    });
    if let (Some(obj), Some(more)) = (api.as_object_mut(), extra.as_object()) {
        obj.extend(more.clone());
    }
    api
}

/// A route on `paths` with no other conditions.
pub fn paths(name: &str, paths: &[&str]) -> Value {
    json!({ "name": name, "paths": paths })
}

/// A port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

/// A one-way latch between tasks: closed until [`Gate::open`], then open for good.
#[derive(Clone)]
pub struct Gate {
    tx: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate { tx: std::sync::Arc::new(tokio::sync::watch::channel(false).0) }
    }
}

impl Gate {
    pub fn open(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_open(&self) -> bool {
        *self.tx.borrow()
    }

    /// Waits until the gate is open (unbounded: callers bound it, or the test does).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }

    /// Waits until the gate is open, failing the test with `what` after [`WAIT`].
    pub async fn opened(&self, what: &str) {
        within(WAIT, what, self.wait()).await;
    }
}
