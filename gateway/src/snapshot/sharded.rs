//! A persistent hash map for the snapshot's identity tables: 64 `Arc`-shared shards, so a
//! change copies only the shards it touches and every other shard is shared with the
//! previous snapshot (one consumer changed at 1M consumers: one shard of ~16k entries).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use crate::fx::FxBuildHasher;

const SHARDS: usize = 64;

type Shard<K, V> = HashMap<K, V, FxBuildHasher>;

/// The sharded map.
#[derive(Debug, Clone)]
pub struct Sharded<K, V> {
    shards: Vec<Arc<Shard<K, V>>>,
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Arc::new(HashMap::with_hasher(FxBuildHasher::default()))).collect() }
    }
}

fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
    // The high bits: the shard's own table indexes with the low ones.
    (FxBuildHasher::default().hash_one(key) >> 58) as usize % SHARDS
}

impl<K: Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards.get(shard_of(key))?.get(key)
    }

    /// Inserts or replaces, copying the key's shard if it is shared.
    pub fn insert(&mut self, key: K, value: V) {
        if let Some(shard) = self.shards.get_mut(shard_of(&key)) {
            Arc::make_mut(shard).insert(key, value);
        }
    }

    /// Removes `key`, copying its shard only if the key is there.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shards.get_mut(shard_of(key))?;
        if !shard.contains_key(key) {
            return None;
        }
        Arc::make_mut(shard).remove(key)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for Sharded<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Self::default();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_copy_only_the_touched_shard() {
        let a: Sharded<u64, u64> = (0..10_000).map(|i| (i, i * 2)).collect();
        assert_eq!((a.len(), a.get(&77)), (10_000, Some(&154)));
        let mut b = a.clone();
        b.insert(77, 0);
        assert_eq!(b.remove(&5), Some(10));
        assert_eq!(b.remove(&5), None);
        assert_eq!((a.get(&77), a.get(&5)), (Some(&154), Some(&10)), "the original is unchanged");
        assert_eq!((b.get(&77), b.get(&5), b.len()), (Some(&0), None, 9_999));
        let shared = a.shards.iter().zip(&b.shards).filter(|(x, y)| Arc::ptr_eq(x, y)).count();
        assert!(shared >= SHARDS - 2, "only the touched shards are copied ({shared} shared)");
    }
}
