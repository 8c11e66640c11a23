//! The API keys of a configuration, held once: SHA-256 of the key → who it belongs to. The
//! configuration keeps its keys in this index, and every snapshot shares it (a clone copies
//! 256 pointers), so 1M keys take ~88 MB once instead of a map by id beside an index by hash.
//!
//! Split into 256 shards by the hash's first byte, each an `Arc`-shared sorted vector: a
//! change copies only the shards it touches (one key: one shard, ~1/256 of the keys) and every
//! other shard stays shared with earlier snapshots and a disk save in progress. Lookups by
//! hash are a shard pick and a binary search. Lookups by key id scan (they happen only when a
//! key row is deleted, which the control plane does only by deleting its consumer): a key's
//! hash never changes (`api_keys.key_hash` is written once), so an updated row replaces its
//! entry by hash.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::{KeyDef, KeyHash};

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

impl KeyEntry {
    /// The key row this entry stands for.
    pub fn def(&self, key_hash: KeyHash) -> KeyDef {
        KeyDef {
            id: self.key_id,
            consumer_id: self.consumer_id,
            key_hash,
            expires_at: self.expires_at,
            revoked: self.revoked,
        }
    }
}

/// One shard: entries sorted by hash. A sorted vector costs exactly its entries in memory
/// (a hash map at 1M keys rounds its buckets up to nearly twice that), and a lookup is a
/// binary search over ~4,000 entries at 1M keys (12 comparisons).
type Shard = Vec<(KeyHash, KeyEntry)>;

/// The sharded key index.
#[derive(Clone, PartialEq)]
pub struct KeyIndex {
    shards: Vec<Arc<Shard>>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Arc::default()).collect() }
    }
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex").field("len", &self.len()).finish()
    }
}

fn shard_of(hash: &KeyHash) -> usize {
    usize::from(hash.0[0])
}

/// Builds an index from keys given in any order (a key given twice: the last one counts).
pub struct Builder {
    shards: Vec<Shard>,
}

impl Builder {
    /// A builder expecting about `keys` keys (so the shards are allocated once).
    pub fn with_capacity(keys: usize) -> Self {
        let each = keys / SHARDS + keys / SHARDS / 8 + 1;
        Builder { shards: (0..SHARDS).map(|_| Shard::with_capacity(each)).collect() }
    }

    pub fn push(&mut self, k: &KeyDef) {
        if let Some(s) = self.shards.get_mut(shard_of(&k.key_hash)) {
            s.push((k.key_hash, KeyEntry::from(k)));
        }
    }

    pub fn finish(self) -> KeyIndex {
        let shards = self
            .shards
            .into_iter()
            .map(|mut s| {
                // Stable: of equal hashes the last pushed comes last, and is the one kept.
                s.sort_by_key(|e| e.0);
                s.reverse();
                s.dedup_by(|later, earlier| later.0 == earlier.0);
                s.reverse();
                s.shrink_to_fit();
                Arc::new(s)
            })
            .collect();
        KeyIndex { shards }
    }
}

impl KeyIndex {
    /// Indexes every key.
    pub fn build(keys: impl IntoIterator<Item = impl std::borrow::Borrow<KeyDef>>) -> Self {
        let keys = keys.into_iter();
        let mut b = Builder::with_capacity(keys.size_hint().0);
        keys.for_each(|k| b.push(k.borrow()));
        b.finish()
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

    /// Every key, in hash order.
    pub fn values(&self) -> impl Iterator<Item = KeyDef> + '_ {
        self.shards.iter().flat_map(|s| s.iter().map(|(h, e)| e.def(*h)))
    }

    /// The key with this id (a scan: see the module documentation).
    pub fn by_id(&self, id: Uuid) -> Option<KeyDef> {
        self.shards.iter().flat_map(|s| s.iter()).find(|(_, e)| e.key_id == id).map(|(h, e)| e.def(*h))
    }

    /// Inserts `k`, replacing the key with the same hash; copies its shard if shared.
    pub fn insert(&mut self, k: &KeyDef) {
        let Some(shard) = self.shards.get_mut(shard_of(&k.key_hash)) else { return };
        let entry = KeyEntry::from(k);
        match shard.binary_search_by(|(h, _)| h.cmp(&k.key_hash)) {
            Ok(i) => {
                if shard.get(i).is_some_and(|(_, e)| *e != entry)
                    && let Some(slot) = Arc::make_mut(shard).get_mut(i)
                {
                    slot.1 = entry;
                }
            }
            Err(i) => Arc::make_mut(shard).insert(i, (k.key_hash, entry)),
        }
    }

    /// Removes the keys `gone` says so of, copying only the shards that lose one; returns
    /// their hashes.
    pub fn remove_where(&mut self, gone: impl Fn(&KeyEntry) -> bool) -> Vec<KeyHash> {
        let mut removed = Vec::new();
        for shard in &mut self.shards {
            if shard.iter().any(|(_, e)| gone(e)) {
                Arc::make_mut(shard).retain(|(h, e)| {
                    let drop = gone(e);
                    if drop {
                        removed.push(*h);
                    }
                    !drop
                });
            }
        }
        removed
    }

    /// Whether this index and `other` share the shard of `hash` (tests of copy-on-write).
    #[cfg(test)]
    pub(crate) fn shares_shard(&self, other: &KeyIndex, hash: &KeyHash) -> bool {
        let i = shard_of(hash);
        Arc::ptr_eq(&self.shards[i], &other.shards[i])
    }
}

impl FromIterator<KeyDef> for KeyIndex {
    fn from_iter<I: IntoIterator<Item = KeyDef>>(keys: I) -> Self {
        Self::build(keys)
    }
}

/// As a map of key id → key, the form configurations had before the index (and JSON copies
/// still have).
impl Serialize for KeyIndex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.values().map(|k| (k.id, k)))
    }
}

impl<'de> Deserialize<'de> for KeyIndex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<Uuid, KeyDef>::deserialize(d)?;
        Ok(KeyIndex::build(map.values()))
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
    fn changes_copy_only_the_shards_they_touch() {
        let c = Uuid::new_v4();
        let keys: Vec<KeyDef> = (0..=255u8).map(|n| key(n, c)).collect();
        let index = KeyIndex::build(&keys);
        assert_eq!(index.len(), 256);
        let mut next = index.clone();
        let mut revoked = keys[7].clone();
        revoked.revoked = true;
        next.insert(&revoked);
        let mut added = key(7, Uuid::new_v4());
        added.key_hash.0[1] = 0xff; // same shard as key 7, another key
        next.insert(&added);
        let gone = keys[9].id;
        assert_eq!(next.remove_where(|e| e.key_id == gone), [keys[9].key_hash]);
        assert_eq!(next.get(&keys[7].key_hash).map(|e| e.revoked), Some(true));
        assert!(next.get(&keys[9].key_hash).is_none());
        assert_eq!(next.len(), 256, "one removed, one added");
        assert!(index.shares_shard(&next, &keys[200].key_hash), "untouched shards are shared");
        assert!(!index.shares_shard(&next, &keys[7].key_hash));
        assert_eq!(index.get(&keys[9].key_hash).map(|e| e.key_id), Some(keys[9].id), "the old index is unchanged");
        let before = next.clone();
        next.insert(&revoked);
        assert!(before.shares_shard(&next, &revoked.key_hash), "an unchanged row copies nothing");
        assert!(next.remove_where(|_| false).is_empty());
        assert!(before.shares_shard(&next, &keys[3].key_hash), "removing nothing copies nothing");
    }

    #[test]
    fn values_give_back_the_rows_and_the_last_of_a_hash_wins() {
        let c = Uuid::new_v4();
        let mut keys: Vec<KeyDef> = (0..40u8).map(|n| key(n, c)).collect();
        let mut again = keys[5].clone();
        again.id = Uuid::new_v4();
        keys.push(again.clone());
        let index: KeyIndex = keys.iter().cloned().collect();
        assert_eq!(index.len(), 40);
        assert_eq!(index.by_id(again.id), Some(again.clone()));
        assert_eq!(index.by_id(keys[5].id), None, "replaced by the later row with its hash");
        let mut rows: Vec<KeyDef> = index.values().collect();
        rows.sort_by_key(|k| k.key_hash);
        let mut want: Vec<KeyDef> = keys[..5].iter().chain(&keys[6..]).cloned().collect();
        want.sort_by_key(|k| k.key_hash);
        assert_eq!(rows, want);
        let json = serde_json::to_string(&index).unwrap();
        assert_eq!(serde_json::from_str::<KeyIndex>(&json).unwrap(), index, "round trip as a map by id");
    }
}
