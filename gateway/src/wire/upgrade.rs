//! Protocol upgrades (WebSocket): nothing is forwarded to the client before the upstream
//! answers `101`; then the two upgraded connections are spliced together.

use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::wire::net::Prefixed;
use crate::wire::server::OwnUpgrade;

/// The upstream side of an upgrade.
pub enum Upstream {
    /// A plain connection from the gateway's own codec, with the bytes read past the `101`.
    Plain(TcpStream, Bytes),
    /// A connection of hyper's client (TLS).
    Hyper(OnUpgrade),
}

/// The client side of an upgrade.
pub enum ClientSide {
    /// A connection of the gateway's own HTTP/1.1 server, handed over after the `101`.
    Own(tokio::sync::oneshot::Receiver<Prefixed>),
    /// A connection of hyper's server.
    Hyper(OnUpgrade),
}

impl ClientSide {
    /// The client side of `req`.
    pub fn of<B>(req: &mut http::Request<B>) -> Self {
        match req.extensions_mut().remove::<OwnUpgrade>().and_then(|own| own.take()) {
            Some(rx) => Self::Own(rx),
            None => Self::Hyper(hyper::upgrade::on(req)),
        }
    }
}

/// Copies bytes both ways between the client's and the upstream's upgraded connections,
/// in a task of its own, once the client's upgrade completes.
pub fn splice(client: ClientSide, upstream: Upstream) {
    tokio::spawn(async move {
        match client {
            ClientSide::Own(rx) => match rx.await {
                Ok(io) => pump(io, upstream).await,
                Err(_) => tracing::debug!("client upgrade failed"),
            },
            ClientSide::Hyper(on) => match on.await {
                Ok(io) => pump(TokioIo::new(io), upstream).await,
                Err(e) => tracing::debug!(error = %e, "client upgrade failed"),
            },
        }
    });
}

async fn pump<C: AsyncRead + AsyncWrite + Unpin>(mut client: C, upstream: Upstream) {
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
}
