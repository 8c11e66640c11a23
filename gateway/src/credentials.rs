//! The API-key index of a snapshot: SHA-256 of the key → who it belongs to. Split into 256
//! shards by the hash's first byte, each an `Arc`-shared sorted vector, so a change copies
//! only the shards it touches (one key: one shard, ~1/256 of the keys) and every unchanged
//! shard is shared with the previous snapshot. Lookups are a shard pick and a binary search.

use std::sync::Arc;

use uuid::Uuid;

use crate::config::model::{KeyDef, KeyHash};

const SHARDS: usize = 256;

/// What the gateway needs to know about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEntry {
    pub key_id: Uuid,
    pub consumer_id: Uuid,
    /// Unix seconds; `None` = never.
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

impl From<&KeyDef> for KeyEntry {
    fn from(k: &KeyDef) -> Self {
        Self { key_id: k.id, consumer_id: k.consumer_id, expires_at: k.expires_at, revoked: k.revoked }
    }
}

/// One shard: entries sorted by hash. A sorted vector costs exactly its entries in memory
/// (a hash map at 1M keys rounds its buckets up to nearly twice that), and a lookup is a
/// binary search over ~4,000 entries at 1M keys (12 comparisons).
type Shard = Vec<(KeyHash, KeyEntry)>;

/// The sharded key index.
#[derive(Clone)]
pub struct KeyIndex {
    shards: Vec<Arc<Shard>>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Arc::default()).collect() }
    }
}

fn shard_of(hash: &KeyHash) -> usize {
    usize::from(hash.0[0])
}

/// Inserts or replaces the entry for `hash`, keeping the shard sorted.
fn upsert(shard: &mut Shard, hash: KeyHash, entry: KeyEntry) {
    match shard.binary_search_by(|(h, _)| h.cmp(&hash)) {
        Ok(i) => {
            if let Some(slot) = shard.get_mut(i) {
                slot.1 = entry;
            }
        }
        Err(i) => shard.insert(i, (hash, entry)),
    }
}

impl KeyIndex {
    /// Indexes every key.
    pub fn build<'a>(keys: impl IntoIterator<Item = &'a KeyDef>) -> Self {
        let mut shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::new()).collect();
        for k in keys {
            if let Some(s) = shards.get_mut(shard_of(&k.key_hash)) {
                s.push((k.key_hash, KeyEntry::from(k)));
            }
        }
        for s in &mut shards {
            s.sort_unstable_by_key(|e| e.0);
            s.dedup_by(|a, b| a.0 == b.0);
            s.shrink_to_fit();
        }
        Self { shards: shards.into_iter().map(Arc::new).collect() }
    }

    /// The key with this hash, if any.
    pub fn get(&self, hash: &KeyHash) -> Option<&KeyEntry> {
        let shard = self.shards.get(shard_of(hash))?;
        let i = shard.binary_search_by(|(h, _)| h.cmp(hash)).ok()?;
        shard.get(i).map(|(_, e)| e)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    /// A new index without the `gone` hashes and with `upserts` (in that order), sharing
    /// every shard neither touches.
    pub fn update<'a>(&self, gone: &[KeyHash], upserts: impl IntoIterator<Item = &'a KeyDef>) -> Self {
        let mut next = self.clone();
        for hash in gone {
            if let Some(shard) = next.shards.get_mut(shard_of(hash))
                && let Ok(i) = shard.binary_search_by(|(h, _)| h.cmp(hash))
            {
                Arc::make_mut(shard).remove(i);
            }
        }
        for k in upserts {
            if let Some(shard) = next.shards.get_mut(shard_of(&k.key_hash)) {
                upsert(Arc::make_mut(shard), k.key_hash, KeyEntry::from(k));
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8, consumer: Uuid) -> KeyDef {
        let mut h = [n; 32];
        h[8] = n.wrapping_mul(31);
        KeyDef { id: Uuid::new_v4(), consumer_id: consumer, key_hash: KeyHash(h), expires_at: None, revoked: false }
    }

    #[test]
    fn update_equals_build_and_shares_untouched_shards() {
        let c = Uuid::new_v4();
        let keys: Vec<KeyDef> = (0..=255u8).map(|n| key(n, c)).collect();
        let index = KeyIndex::build(&keys);
        assert_eq!(index.len(), 256);
        let mut revoked = keys[7].clone();
        revoked.revoked = true;
        let mut added = key(7, Uuid::new_v4());
        added.key_hash.0[1] = 0xff; // same shard as key 7, another key
        let next = index.update(&[keys[7].key_hash, keys[9].key_hash], [&revoked, &added]);
        assert_eq!(next.get(&keys[7].key_hash).map(|e| e.revoked), Some(true));
        assert!(next.get(&keys[9].key_hash).is_none());
        assert_eq!(next.len(), 256, "one removed, one added");
        assert!(Arc::ptr_eq(&index.shards[200], &next.shards[200]), "untouched shards are shared");
        assert!(!Arc::ptr_eq(&index.shards[7], &next.shards[7]));
        assert_eq!(index.get(&keys[9].key_hash).map(|e| e.key_id), Some(keys[9].id), "the old index is unchanged");
    }
}
