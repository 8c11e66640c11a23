//! Active checks against real HTTP servers on 127.0.0.1:0 (real time, short intervals, polled
//! with a deadline).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

use http::Response;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::time::timeout;

use super::super::{LbPolicy, TargetConfig, UpstreamConfig};
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A server answering every request with the status in `status`, counting requests.
struct TestServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

async fn serve(status: u16) -> std::io::Result<TestServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let server = TestServer {
        addr: listener.local_addr()?,
        status: Arc::new(AtomicU16::new(status)),
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let (status, hits) = (server.status.clone(), server.hits.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (status, hits) = (status.clone(), hits.clone());
            let service = service_fn(move |_request| {
                hits.fetch_add(1, Ordering::Relaxed);
                let mut response = Response::new(Empty::<Bytes>::new());
                *response.status_mut() = http::StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap_or_default();
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Ok(server)
}

/// An address where nothing listens: bound on port 0, then released.
async fn closed_port() -> std::io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0").await?.local_addr()
}

fn checked_upstream(addrs: &[SocketAddr]) -> Arc<Upstream> {
    let target = |a: &SocketAddr| TargetConfig::new(a.ip().to_string(), a.port());
    Arc::new(Upstream::new(UpstreamConfig {
        policy: LbPolicy::RoundRobin,
        targets: addrs.iter().map(target).collect(),
        active: Some(ActiveHealthConfig {
            path: "/healthz".into(),
            interval: Duration::from_millis(20),
            timeout: Duration::from_millis(500),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
            expected_statuses: 200..400,
        }),
        ..Default::default()
    }))
}

/// Polls `condition` every 10 ms until it holds or 5 s have passed.
async fn eventually(condition: impl Fn() -> bool) -> bool {
    let poll = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    timeout(Duration::from_secs(5), poll).await.is_ok()
}

#[tokio::test]
async fn probes_mark_failing_targets_unhealthy_and_recovered_ones_healthy() -> TestResult {
    let (good, bad) = (serve(200).await?, serve(500).await?);
    let up = checked_upstream(&[good.addr, bad.addr, closed_port().await?]);
    let task = up.spawn_active_checks().ok_or("no task")?;
    let healthy = |i: usize| up.targets()[i].is_healthy();
    assert!(eventually(|| !healthy(1) && !healthy(2)).await, "500 and closed port become unhealthy");
    assert!(healthy(0), "the 200 server stays healthy");
    assert!((0..20).all(|_| up.pick(None, &[]).is_some_and(|p| p.index == 0)));
    bad.status.store(204, Ordering::Relaxed);
    assert!(eventually(|| healthy(1)).await, "a recovered target becomes healthy again");
    assert!(!healthy(2));
    assert!(good.hits.load(Ordering::Relaxed) >= 2);
    task.abort();
    Ok(())
}

#[tokio::test]
async fn the_task_ends_when_the_upstream_is_dropped() -> TestResult {
    let server = serve(200).await?;
    let up = checked_upstream(&[server.addr]);
    let task = up.spawn_active_checks().ok_or("no task")?;
    assert!(eventually(|| server.hits.load(Ordering::Relaxed) >= 3).await, "probes run");
    assert_eq!(Arc::strong_count(&up), 1, "the task holds no strong reference");
    drop(up);
    timeout(Duration::from_secs(2), task).await??;
    Ok(())
}

#[tokio::test]
async fn no_task_without_active_config() {
    let up = Arc::new(Upstream::new(UpstreamConfig::default()));
    assert!(up.spawn_active_checks().is_none());
}

#[test]
fn no_task_outside_a_runtime() {
    let up = checked_upstream(&[SocketAddr::from(([127, 0, 0, 1], 9))]);
    assert!(up.spawn_active_checks().is_none());
}
