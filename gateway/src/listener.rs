//! The client-facing listener: HTTP/1.1 and HTTP/2 (TLS-less h2c by prior knowledge too),
//! with work bounded at accept time — a connection cap (excess connections get a 503
//! problem and are closed), a header-read timeout against slowloris (hyper enforces it
//! only with a timer configured), and HTTP/2 stream and header-list limits. On shutdown it
//! stops accepting and drains open connections up to a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::proxy::{ConnInfo, Pipeline};

/// Listener limits.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Open client connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time a client has to send a complete request head.
    pub header_read_timeout: Duration,
    /// HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Largest request head hyper buffers (our own 431 check applies below it).
    pub max_head_bytes: usize,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 256,
            drain_timeout: Duration::from_secs(30),
            max_head_bytes: 64 * 1024,
        }
    }
}

/// Path of the gateway's own liveness endpoint; answered before any routing.
pub const HEALTH_PATH: &str = "/__tollgate/health";

const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 126\r\n\r\n{\"type\":\"urn:tollgate:problem:overloaded\",\"title\":\"Overloaded\",\"status\":503,\"detail\":\"the gateway is at its connection limit\"}";

/// Serves `pipeline` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    opts: ListenerOptions,
    shutdown: impl Future<Output = ()> + Send,
) {
    let builder = builder(&opts);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let conn = ConnInfo { peer, https: false };
                        serve_connection(&builder, &graceful, stream, pipeline.clone(), conn, slot);
                    }
                    Err(_) => refuse(stream),
                },
                Err(err) => {
                    // Out of file descriptors and the like: pause so open connections can finish.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("connections drained"),
        () = tokio::time::sleep(opts.drain_timeout) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

fn builder(opts: &ListenerOptions) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_head_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(opts.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(opts.max_head_bytes).unwrap_or(u32::MAX));
    b
}

fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    stream: TcpStream,
    pipeline: Arc<Pipeline>,
    conn: ConnInfo,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let pipeline = pipeline.clone();
        async move {
            if req.uri().path() == HEALTH_PATH {
                return Ok::<_, std::convert::Infallible>(health(&pipeline));
            }
            Ok(pipeline.handle(req, conn).await)
        }
    });
    let conn = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(error = %err, "connection ended with an error");
        }
        drop(slot);
    });
}

fn health(pipeline: &Pipeline) -> hyper::Response<crate::proxy::GwBody> {
    let (status, body) = if pipeline.store.is_loaded() {
        (http::StatusCode::OK, format!("{{\"status\":\"ok\",\"config_event_id\":{}}}", pipeline.store.load().event_id))
    } else {
        (http::StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"loading\"}".to_owned())
    };
    let mut res =
        hyper::Response::new(http_body_util::Either::Right(http_body_util::Full::new(bytes::Bytes::from(body))));
    *res.status_mut() = status;
    res.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    res
}

/// Answers a connection over the cap with a fixed 503 and closes it, off the accept loop.
fn refuse(mut stream: TcpStream) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(OVERLOADED)).await;
        let _ = stream.shutdown().await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overloaded_response_has_a_correct_length() {
        let text = String::from_utf8_lossy(OVERLOADED);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head} / {}", body.len());
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
