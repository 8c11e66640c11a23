//! A rolling restart under load: three gateway nodes behind nginx (round robin; a request
//! whose connection fails goes to the next node, as operators configure their balancer),
//! restarted one after the other with SIGTERM while clients keep sending; no request fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::process::Command;
use tollgate_admin::testkit::test_database;

use crate::support::admin::Admin;
use crate::support::gateway::Gateway;
use crate::support::upstream::Upstream;
use crate::support::{ScratchDir, eventually};

/// Concurrent clients sending through the balancer.
const CLIENTS: usize = 8;
const NODES: usize = 3;

/// nginx, the balancer of this test: the test fails without it, naming the package.
fn nginx() -> PathBuf {
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    dirs.into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("the rolling-restart test needs nginx as its load balancer (apt-get install nginx)"))
}

fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// What the clients saw: answers from the upstream, and anything else (with what it was).
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    failed: std::sync::Mutex<Vec<String>>,
}

#[tokio::test]
async fn a_rolling_restart_behind_nginx_loses_no_request() -> anyhow::Result<()> {
    let nginx = nginx();
    let db = test_database().await;
    let admin = Admin::start(&db.url).await?;
    let scratch = ScratchDir::new()?;
    let upstream = Upstream::start("rolling").await?;
    admin.publish("rolling", upstream.addr, &["/rolling"]).await?;
    let expected = upstream.body_for("/rolling");

    let addrs: Vec<SocketAddr> = (0..NODES).map(|_| free_addr()).collect::<anyhow::Result<_>>()?;
    let dirs: Vec<PathBuf> = (0..NODES).map(|i| scratch.path().join(format!("node{i}"))).collect();
    let mut nodes = Vec::new();
    for (addr, dir) in addrs.iter().zip(&dirs) {
        let node = Gateway::start_on(&db.url, dir, *addr).await?;
        node.wait_routed("/rolling", &expected, Duration::from_secs(10)).await?;
        nodes.push(Some(node));
    }

    let lb = free_addr()?;
    let conf_dir = scratch.path().join("nginx");
    std::fs::create_dir_all(&conf_dir)?;
    let servers: String = addrs.iter().map(|a| format!("server {a} max_fails=0; ")).collect();
    std::fs::write(
        conf_dir.join("nginx.conf"),
        format!(
            // (One process: killing it leaves no orphaned worker behind, also on a panic.)
            "master_process off; daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{ access_log off;
  upstream gateways {{ {servers} keepalive 32; }}
  server {{ listen {lb};
    location / {{ proxy_pass http://gateways; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_next_upstream error timeout; proxy_next_upstream_tries {NODES}; proxy_connect_timeout 2s; }} }} }}
",
            dir = conf_dir.display()
        ),
    )?;
    let mut balancer = Command::new(&nginx)
        .arg("-p")
        .arg(&conf_dir)
        .arg("-c")
        .arg(conf_dir.join("nginx.conf"))
        .arg("-e")
        .arg(conf_dir.join("error.log"))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", nginx.display()))?;
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build()?;
    let url = format!("http://{lb}/rolling");
    eventually("nginx to pass requests to the gateways", Duration::from_secs(10), || async {
        match http.get(&url).send().await {
            Ok(res) if res.status() == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await?;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url, tally, stop, expected) =
                (http.clone(), url.clone(), tally.clone(), stop.clone(), expected.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = match http.get(&url).send().await {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            match res.text().await {
                                Ok(body) if status == 200 && body == expected => Ok(()),
                                Ok(body) => Err(format!("{status}: {body}")),
                                Err(e) => Err(format!("{status}, body cut: {e}")),
                            }
                        }
                        Err(e) => Err(format!("{e:?}")),
                    };
                    match outcome {
                        Ok(()) => _ = tally.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => tally.failed.lock().map(|mut f| f.push(e)).unwrap_or_default(),
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut served_while_restarting = Vec::new();
    for i in 0..NODES {
        let before = tally.ok.load(Ordering::Relaxed);
        let old = nodes[i].take().context("node")?;
        let exit = old.stop("TERM").await?;
        ensure!(exit.success(), "node {i} exited {exit:?}");
        let new = Gateway::start_on(&db.url, &dirs[i], addrs[i]).await?;
        new.wait_routed("/rolling", &expected, Duration::from_secs(10)).await?;
        nodes[i] = Some(new);
        tokio::time::sleep(Duration::from_millis(300)).await;
        served_while_restarting.push(tally.ok.load(Ordering::Relaxed) - before);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await?;
    }
    let _ = balancer.start_kill();

    let failed = tally.failed.lock().map(|f| f.clone()).unwrap_or_default();
    let ok = tally.ok.load(Ordering::Relaxed);
    eprintln!("rolling restart: {ok} requests answered, per node restart {served_while_restarting:?}");
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, first: {:?}",
        failed.len(),
        ok + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        served_while_restarting.iter().all(|&n| n >= CLIENTS),
        "the clients kept sending through every restart: {served_while_restarting:?}"
    );
    for node in nodes.into_iter().flatten() {
        ensure!(node.stop("TERM").await?.success());
    }
    Ok(())
}
