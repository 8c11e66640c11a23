//! Tollgate data plane. For now only the listener: it accepts HTTP/1.1 and HTTP/2, answers its
//! own health check and, as no routes are loaded yet, refuses everything else with a
//! `no-route` problem document. Routing, plugins and proxying come with the data-plane work.

pub mod config;
pub mod error;
pub mod proxy;
pub mod router;
pub mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

/// Path of the gateway's own liveness endpoint; it is answered before any routing.
pub const HEALTH_PATH: &str = "/__tollgate/health";

/// How long a client may take to send its request head before the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long shutdown waits for open connections to finish before dropping them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The body of the answer to a request that no route matches.
const NO_ROUTE: &str = r#"{"type":"urn:tollgate:problem:no-route","title":"No route","status":404,"detail":"no route matches this request"}"#;

/// Serves gateway traffic on `listener` until `shutdown` completes, then drains open
/// connections (at most [`DRAIN_TIMEOUT`]).
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => serve_connection(&builder, &graceful, stream),
                Err(err) => accept_failed(err).await,
            },
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("gateway connections drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!(timeout_secs = DRAIN_TIMEOUT.as_secs(), "gateway connections still open at shutdown; closing them");
        }
    }
    Ok(())
}

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder
}

fn serve_connection(builder: &auto::Builder<TokioExecutor>, graceful: &GracefulShutdown, stream: TcpStream) {
    let conn = builder.serve_connection(TokioIo::new(stream), service_fn(handle)).into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(error = %err, "gateway connection ended with an error");
        }
    });
}

/// Accept fails on resource exhaustion (e.g. out of file descriptors); pausing briefly lets
/// open connections finish instead of spinning on the error.
async fn accept_failed(err: std::io::Error) {
    tracing::warn!(error = %err, "gateway accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == HEALTH_PATH && matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(respond(StatusCode::OK, "application/json", r#"{"status":"ok"}"#));
    }
    Ok(respond(StatusCode::NOT_FOUND, "application/problem+json", NO_ROUTE))
}

fn respond(status: StatusCode, content_type: &'static str, body: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_body_is_a_problem_document() -> serde_json::Result<()> {
        let v: serde_json::Value = serde_json::from_str(NO_ROUTE)?;
        assert_eq!(v["type"], "urn:tollgate:problem:no-route");
        assert_eq!(v["status"], 404);
        Ok(())
    }
}
