//! Protocol upgrades (WebSocket): nothing is forwarded to the client before the upstream
//! answers `101`; then the two upgraded connections are spliced together.

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::net::Prefixed;

/// The upstream side of an upgrade.
pub enum Upstream {
    /// A plain connection from the gateway's own codec, with the bytes read past the `101`.
    Plain(TcpStream, Bytes),
    /// A connection of hyper's client (TLS).
    Hyper(OnUpgrade),
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections,
/// in a task of its own, once the client's upgrade completes.
pub fn splice(client: OnUpgrade, upstream: Upstream) {
    tokio::spawn(async move {
        let client = match client.await {
            Ok(c) => c,
            Err(e) => return tracing::debug!(error = %e, "client upgrade failed"),
        };
        let mut client = TokioIo::new(client);
        let copied = match upstream {
            Upstream::Plain(io, read) => tokio::io::copy_bidirectional(&mut client, &mut Prefixed::new(read, io)).await,
            Upstream::Hyper(up) => match up.await {
                Ok(up) => tokio::io::copy_bidirectional(&mut client, &mut TokioIo::new(up)).await,
                Err(e) => return tracing::debug!(error = %e, "upstream upgrade failed"),
            },
        };
        if let Err(e) = copied {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
