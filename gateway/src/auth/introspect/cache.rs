//! A bounded, single-flight cache of answers keyed by a token's SHA-256 digest.
//!
//! Concurrent lookups of a key that is not cached share one fetch: the first caller runs it
//! inside the key's [`OnceCell`] and the others wait on that cell. If the running caller is
//! cancelled (its client went away), a waiter starts the fetch again, so nobody waits on a
//! request no one drives. A fetch error reaches the callers that waited for it and is then
//! dropped, never kept. When full, the cache drops expired entries, then arbitrary ones down
//! to 90 % of its capacity: a flood of distinct tokens costs one scan per tenth of capacity.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// SHA-256 of the token: raw tokens are never kept.
pub(super) type Key = [u8; 32];

/// Values of type `V` (with their own lifetime) or the error `E` of the fetch in flight.
pub(super) struct TtlCache<V, E> {
    slots: DashMap<Key, Arc<Slot<V, E>>>,
    capacity: usize,
}

type Stored<V, E> = Result<(V, Instant), E>;

/// One key's entry: empty while its fetch runs, then the value and its deadline (or the error).
struct Slot<V, E> {
    cell: OnceCell<Stored<V, E>>,
}

impl<V, E> Slot<V, E> {
    fn new() -> Arc<Self> {
        Arc::new(Self { cell: OnceCell::new() })
    }

    /// Worth joining: in flight, or holding a value that has not expired.
    fn is_live(&self, now: Instant) -> bool {
        match self.cell.get() {
            None => true,
            Some(Ok((_, until))) => *until > now,
            Some(Err(_)) => false,
        }
    }
}

impl<V: Clone, E: Clone> TtlCache<V, E> {
    /// A cache of at most `capacity` entries (at least 1).
    pub(super) fn new(capacity: usize) -> Self {
        Self { slots: DashMap::new(), capacity: capacity.max(1) }
    }

    /// The live value of `key`, or the result of `fetch` shared with every concurrent caller
    /// of the same key. `fetch` returns the value and how long to keep it (zero: not kept).
    pub(super) async fn get_or_fetch<F, Fut>(&self, key: Key, fetch: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(V, Duration), E>>,
    {
        let slot = self.slot(key);
        let stored = slot
            .cell
            .get_or_init(|| async move {
                let (value, ttl) = fetch().await?;
                Ok((value, Instant::now() + ttl))
            })
            .await;
        if !slot.is_live(Instant::now()) {
            self.slots.remove_if(&key, |_, current| Arc::ptr_eq(current, &slot));
        }
        stored.as_ref().map(|(value, _)| value.clone()).map_err(E::clone)
    }

    /// Entries held, including fetches in flight and expired entries not yet dropped.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// The key's live slot, or a fresh one in its place.
    fn slot(&self, key: Key) -> Arc<Slot<V, E>> {
        let now = Instant::now();
        // The read guard is released at the end of this statement, before `entry` locks.
        let live = self.slots.get(&key).filter(|slot| slot.is_live(now)).map(|slot| Arc::clone(&slot));
        if let Some(slot) = live {
            return slot;
        }
        if self.slots.len() >= self.capacity {
            self.make_room(now);
        }
        let mut entry = self.slots.entry(key).or_insert_with(Slot::new);
        if !entry.is_live(now) {
            *entry = Slot::new();
        }
        Arc::clone(&entry)
    }

    /// Drops expired entries, then arbitrary ones until a tenth of the capacity is free.
    fn make_room(&self, now: Instant) {
        self.slots.retain(|_, slot| slot.is_live(now));
        let target = self.capacity - self.capacity / 10 - 1;
        let excess = self.slots.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        // Keys first: removing while iterating would deadlock on the shard lock.
        let victims: Vec<Key> = self.slots.iter().take(excess).map(|entry| *entry.key()).collect();
        for key in victims {
            self.slots.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    type Cache = TtlCache<u32, &'static str>;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    /// A fetch that counts its calls and returns `value` to keep for `ttl`.
    async fn counted(calls: &AtomicUsize, value: u32, ttl: u64) -> Result<(u32, Duration), &'static str> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok((value, Duration::from_secs(ttl)))
    }

    #[tokio::test(start_paused = true)]
    async fn values_live_for_their_ttl() {
        let (cache, calls) = (Cache::new(10), AtomicUsize::new(0));
        assert_eq!(cache.get_or_fetch(key(1), || counted(&calls, 7, 5)).await, Ok(7));
        assert_eq!(cache.get_or_fetch(key(1), || counted(&calls, 8, 5)).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(cache.get_or_fetch(key(1), || counted(&calls, 8, 0)).await, Ok(8));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.len(), 0, "a zero lifetime is not kept");
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_shared_but_not_kept() {
        let (cache, calls) = (Cache::new(10), AtomicUsize::new(0));
        let calls = &calls;
        let failing = || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Err("down")
        };
        let results = futures_util::future::join_all((0..5).map(|_| cache.get_or_fetch(key(1), failing))).await;
        assert!(results.iter().all(|r| *r == Err("down")));
        assert_eq!((calls.load(Ordering::SeqCst), cache.len()), (1, 0));
        assert_eq!(cache.get_or_fetch(key(1), failing).await, Err("down"));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_fetch_is_taken_over() {
        let (cache, calls) = (Cache::new(10), AtomicUsize::new(0));
        let calls = &calls;
        let slow = || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok((1, Duration::from_secs(60)))
        };
        let first = tokio::time::timeout(Duration::from_millis(10), cache.get_or_fetch(key(1), slow));
        let (first, second) = tokio::join!(first, cache.get_or_fetch(key(1), slow));
        assert!(first.is_err(), "the first caller gave up");
        assert_eq!(second, Ok(1));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn size_is_bounded_and_expired_entries_go_first() {
        let (cache, calls) = (Cache::new(20), AtomicUsize::new(0));
        for n in 0..10 {
            cache.get_or_fetch(key(n), || counted(&calls, 0, 1)).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for n in 10..35 {
            cache.get_or_fetch(key(n), || counted(&calls, 1, 60)).await.unwrap();
            assert!(cache.len() <= 20);
        }
        // Filling up dropped the 10 expired entries first, then arbitrary live ones.
        assert!(cache.slots.iter().all(|e| e.is_live(Instant::now())));
        assert!(cache.len() >= 15, "{}", cache.len());
    }
}
