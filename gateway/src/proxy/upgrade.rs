//! Protocol upgrades (WebSocket): nothing is forwarded to the client before the upstream
//! answers `101`; then the two upgraded connections are spliced together.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Copies bytes both ways between the client's and the upstream's upgraded connections,
/// in a task of its own, once both upgrades complete.
pub fn splice(client: OnUpgrade, upstream: OnUpgrade) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(error = %e, "upgraded connection ended with an error");
        }
    });
}
