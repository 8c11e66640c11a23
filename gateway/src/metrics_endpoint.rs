//! The metrics listener: `GET /metrics` in the Prometheus text format, and the node's
//! `/health/live` and `/health/ready` ([`crate::health`]), on their own port so scraping and
//! probes never compete with (or are exposed alongside) API traffic, nor take a path an API
//! could route.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::access_log::AccessLog;
use crate::config::freshness::Freshness;
use crate::health;
use crate::snapshot::ConfigStore;
use crate::trace::Tracer;
use crate::usage::Recorder;

/// Binds `addr` and serves metrics from `store` until the task is aborted.
pub async fn spawn(addr: SocketAddr, sources: Sources) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let sources = Arc::new(sources);
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for metrics"))?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: pause instead of spinning on the error.
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let sources = sources.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sources = sources.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(req.uri().path(), &sources)) }
                });
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }))
}

/// What the endpoint reports on.
pub struct Sources {
    pub store: Arc<ConfigStore>,
    pub usage: Option<Arc<Recorder>>,
    pub freshness: Arc<Freshness>,
    pub access_log: Option<Arc<AccessLog>>,
    pub tracer: Option<Arc<Tracer>>,
}

fn respond(path: &str, sources: &Sources) -> Response<Full<Bytes>> {
    let Sources { store, usage, freshness, access_log, tracer } = sources;
    const TEXT: &str = "text/plain; version=0.0.4";
    const JSON: &str = "application/json";
    let (status, body, kind) = match path {
        "/metrics" => {
            let mut text = store.metrics.render(store.load().event_id);
            if let Some(usage) = usage {
                usage.stats.render(&mut text);
            }
            if let Some(log) = access_log {
                log.render_metrics(&mut text);
            }
            if let Some(t) = tracer {
                t.render_metrics(&mut text);
            }
            (StatusCode::OK, text, TEXT)
        }
        "/health/live" => {
            let (status, body) = health::live();
            (status, body, JSON)
        }
        "/health/ready" => {
            let (status, body) = health::ready(store, freshness);
            (status, body, JSON)
        }
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned(), TEXT),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    /// Everything a node's `/metrics` renders, by the rules `promtool check metrics` applies.
    #[test]
    fn every_metric_of_a_node_passes_the_exposition_rules() {
        let r = crate::metrics::Registry::default();
        r.api(uuid::Uuid::nil(), &std::sync::Arc::from("orders \"quoted\""))
            .record(200, std::time::Duration::from_millis(3));
        r.unrouted.record(404, std::time::Duration::from_micros(40));
        let mut text = r.render(3);
        crate::usage::Stats::default().render(&mut text);
        let log = crate::access_log::AccessLog::start(&crate::access_log::AccessLogOptions::new(
            crate::access_log::Sink::Stderr,
        ));
        if let Ok(log) = &log {
            log.render_metrics(&mut text);
            log.close(std::time::Duration::from_secs(1));
        }
        crate::metrics::tests::check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        // And the check itself catches what it is for.
        assert!(crate::metrics::tests::check_exposition("# TYPE a counter\na 1\n").is_err(), "no HELP");
        assert!(
            crate::metrics::tests::check_exposition("# HELP a x\n# TYPE a counter\nb 1\n").is_err(),
            "foreign sample"
        );
        let split =
            "# HELP a x\n# TYPE a counter\na 1\n# HELP b y\n# TYPE b gauge\nb 1\n# HELP a x\n# TYPE a counter\n";
        assert!(crate::metrics::tests::check_exposition(split).is_err(), "a family split in two");
    }
}
