//! A request body that can be taken back when an exchange never read from it — a connect
//! failure — so the request can go to another target with its body intact.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::client::{BoxError, ProxyBody};

/// What the sent body and its [`Reclaim`] handle share.
struct Slot {
    body: Mutex<Option<ProxyBody>>,
    /// Set on the first read: from then on the body is (partly) spent.
    read: AtomicBool,
}

impl Slot {
    fn body(&self) -> MutexGuard<'_, Option<ProxyBody>> {
        // Nothing panics while holding the lock; a poisoned one still holds a sound body.
        self.body.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes the body back from an exchange that never read it.
pub struct Reclaim(Arc<Slot>);

/// The body handed to an exchange.
struct Lent(Arc<Slot>);

/// Wraps `body` for one attempt: the body to send, and the handle to take it back.
pub fn lend(body: ProxyBody) -> (ProxyBody, Reclaim) {
    let slot = Arc::new(Slot { body: Mutex::new(Some(body)), read: AtomicBool::new(false) });
    (Lent(Arc::clone(&slot)).boxed(), Reclaim(slot))
}

impl Reclaim {
    /// The body, if the exchange never read from it (and has let go of it).
    pub fn take_unread(self) -> Option<ProxyBody> {
        if self.0.read.load(Ordering::Acquire) {
            return None;
        }
        self.0.body().take()
    }
}

impl Body for Lent {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.read.store(true, Ordering::Release);
        match self.0.body().as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.body().as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0.body().as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    fn body(text: &'static str) -> ProxyBody {
        Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed()
    }

    #[tokio::test]
    async fn an_unread_body_comes_back_whole_with_its_length() -> Result<(), BoxError> {
        let (lent, reclaim) = lend(body("hello"));
        assert_eq!(lent.size_hint().exact(), Some(5), "framing sees the real length");
        drop(lent);
        let back = reclaim.take_unread().ok_or("not reclaimed")?;
        assert_eq!(back.collect().await?.to_bytes(), "hello");
        Ok(())
    }

    #[tokio::test]
    async fn a_body_read_from_is_not_given_back() -> Result<(), BoxError> {
        let (lent, reclaim) = lend(body("hello"));
        assert_eq!(lent.collect().await?.to_bytes(), "hello");
        assert!(reclaim.take_unread().is_none());
        Ok(())
    }
}
