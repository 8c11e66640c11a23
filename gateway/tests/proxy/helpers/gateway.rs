//! A gateway started in-process with `tollgate_gateway::serve` on `127.0.0.1:0`, configured
//! from a declarative file in a private temporary directory. Config changes rewrite the file
//! and wait until the gateway serves them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate_gateway::config::node::NodeInfo;
use tollgate_gateway::{ConfigSource, GatewayOptions, Limits, ListenerOptions};

use super::client::{Client, empty, get};
use super::upstream::Upstream;
use super::{WAIT, eventually, within};

/// Options for [`Gateway::start_with`]; the defaults are the gateway's own.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub listener: ListenerOptions,
    pub limits: Limits,
    pub edge: tollgate_gateway::edge::EdgeOptions,
    pub limiter: tollgate_gateway::limits::LimiterConfig,
    pub allow_private_auth_urls: bool,
    /// Open an HTTPS listener too (its certificates come from the file's `certificates`).
    pub tls: bool,
    pub access_log: Option<tollgate_gateway::access_log::AccessLogOptions>,
    pub allow_insecure_upstream_tls: bool,
    pub tracing: Option<tollgate_gateway::trace::TraceOptions>,
}

/// A running gateway.
pub struct Gateway {
    pub addr: SocketAddr,
    /// The HTTPS listener, with [`Options::tls`].
    pub tls_addr: Option<SocketAddr>,
    dir: PathBuf,
    version: u32,
    /// Target of the probe API that marks each configuration version.
    probe: Upstream,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Gateway {
    /// Starts a gateway with default options serving `config` (the declarative file's
    /// content, as JSON — a subset of YAML).
    pub async fn start(config: Value) -> Gateway {
        Self::start_with(config, Options::default()).await
    }

    /// Starts a gateway with `opts` serving `config`.
    pub async fn start_with(config: Value, opts: Options) -> Gateway {
        let dir = std::env::temp_dir().join(format!("tollgate-proxy-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let probe = Upstream::echo("__probe").await;
        let mut gw = Gateway {
            addr: ([127, 0, 0, 1], 0).into(),
            tls_addr: None,
            dir,
            version: 0,
            probe,
            shutdown: None,
            task: None,
        };
        gw.write(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
        gw.addr = listener.local_addr().expect("gateway address");
        let options = GatewayOptions {
            source: ConfigSource::File(gw.file()),
            state_dir: None,
            node: NodeInfo {
                id: uuid::Uuid::new_v4(),
                hostname: "test".into(),
                listen: gw.addr.to_string(),
                version: "test".into(),
                source: "file".into(),
            },
            listener: opts.listener,
            limits: opts.limits,
            initial_load_timeout: Duration::from_secs(1),
            metrics_listener: None,
            edge: opts.edge,
            limiter: opts.limiter,
            allow_private_auth_urls: opts.allow_private_auth_urls,
            usage: tollgate_gateway::UsageOptions::default(),
            max_config_staleness: None,
            secrets: None,
            access_log: opts.access_log,
            allow_insecure_upstream_tls: opts.allow_insecure_upstream_tls,
            tracing: opts.tracing,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        // `serve` publishes the file before accepting: once the listener is bound, connections
        // wait in the backlog and are served with the configuration.
        let tls = match opts.tls {
            true => Some(TcpListener::bind("127.0.0.1:0").await.expect("bind the HTTPS listener")),
            false => None,
        };
        gw.tls_addr = tls.as_ref().map(|l| l.local_addr().expect("HTTPS address"));
        gw.task = Some(tokio::spawn(tollgate_gateway::serve_all(listener, tls, options, shutdown)));
        gw.shutdown = Some(tx);
        gw
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn file(&self) -> PathBuf {
        self.dir.join("gateway.yaml")
    }

    /// The host of the probe route of configuration `version`.
    fn probe_host(version: u32) -> String {
        format!("probe-{version}.tollgate.test")
    }

    /// Writes `config` plus a probe API whose route (an exact host, which beats any route of
    /// the tests) marks this version, atomically.
    fn write(&mut self, mut config: Value) {
        self.version += 1;
        let probe = json!({
            "name": format!("__probe_{}", self.version),
            "auth_methods": ["anonymous"],
            "targets": [self.probe.target()],
            "routes": [{ "name": "probe", "hosts": [Self::probe_host(self.version)], "paths": ["/__probe"] }],
        });
        let apis = config.as_object_mut().expect("config is an object").entry("apis").or_insert_with(|| json!([]));
        apis.as_array_mut().expect("apis is a list").push(probe);
        let tmp = self.dir.join("gateway.yaml.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&config).expect("config json")).expect("write config");
        std::fs::rename(&tmp, self.file()).expect("rename config");
    }

    /// Replaces the configuration and waits until the gateway serves it: until its probe
    /// route reaches the probe upstream.
    pub async fn reload(&mut self, config: Value) {
        self.write(config);
        let client = Client::http1();
        let (url, host) = (self.url("/__probe"), Self::probe_host(self.version));
        eventually(WAIT, "the gateway to load the new configuration", || {
            let req = get(&url).header("host", host.clone()).body(empty()).expect("probe request");
            let client = client.clone();
            async move {
                let reply = client.try_send(req).await;
                reply.is_some_and(|r| r.status == 200 && r.json()["upstream"] == "__probe")
            }
        })
        .await;
    }

    /// Signals shutdown (the gateway stops accepting and drains).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits until `serve` has returned, i.e. drained.
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        let task = self.task.take().expect("gateway running");
        within(WAIT, "the gateway to stop", task).await.expect("gateway task")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(task) = &self.task {
            task.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
