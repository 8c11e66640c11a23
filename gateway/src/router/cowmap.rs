//! A hash map copied on write in chunks, for the router's tables: looked up on every request
//! about as fast as a plain hash map, and changed by a config update without being copied
//! whole.
//!
//! A map is one open-addressed table while small, else about √n tables ("chunks") of about
//! √n keys, picked by the top bits of the key's hash. Tables are shared (`Arc`), so changing
//! one key copies the list of chunks and the one table it lives in — some 2√n pointers, not
//! n. Each slot keeps its key's full hash, so a probe compares keys only when hashes agree,
//! and a lookup costs one hash, one load for the chunk and one per probed slot.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use crate::fx::FxBuildHasher;

/// Up to this many keys, a map is one table.
const SMALL: usize = 64;

/// A table has at least this many slots per key: a probe mostly ends at its first or
/// second slot.
const LOAD: usize = 2;

/// A copy-on-write hash map; see the module docs.
#[derive(Debug, Clone)]
pub(super) enum CowMap<K, V> {
    Small(Table<K, V>),
    Chunked {
        /// `2^bits` chunks; a key lives in the chunk given by the top `bits` of its hash.
        bits: u32,
        chunks: Arc<[Table<K, V>]>,
        len: usize,
    },
}

/// An open-addressed table: a power-of-two number of slots, at least [`LOAD`] per key; a
/// key's probe starts at the low bits of its hash and runs to the first empty slot.
#[derive(Debug, Clone)]
pub(super) struct Table<K, V> {
    len: usize,
    /// `None` while empty, so an empty table does not allocate.
    slots: Option<Arc<[Slot<K, V>]>>,
}

/// A key's full hash, the key, its value.
type Slot<K, V> = Option<(u64, K, V)>;

impl<K, V> Default for CowMap<K, V> {
    fn default() -> Self {
        Self::Small(Table::default())
    }
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Self { len: 0, slots: None }
    }
}

/// The Fx hash of `key`, finished so that both ends are well mixed: chunks use the top
/// bits, slots the low ones.
#[inline]
fn hash_of<Q: Hash + ?Sized>(key: &Q) -> u64 {
    let h = FxBuildHasher::default().hash_one(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 32)
}

#[inline]
fn chunk_of(h: u64, bits: u32) -> usize {
    // `h >> (64 - bits)`, also right (0) for `bits == 0`, without a branch.
    ((h >> 1) >> 63u32.saturating_sub(bits)) as usize
}

/// The number of chunk bits for `len` keys: about √len chunks.
fn bits_for(len: usize) -> u32 {
    len.max(16).ilog2().div_ceil(2)
}

impl<K: Hash + Eq + Clone, V: Clone> CowMap<K, V> {
    /// Number of keys.
    pub fn len(&self) -> usize {
        match self {
            Self::Small(table) => table.len,
            Self::Chunked { len, .. } => *len,
        }
    }

    /// Whether the map has no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value for `key`.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let h = hash_of(key);
        match self {
            Self::Small(table) => table.get(h, key),
            Self::Chunked { bits, chunks, .. } => chunks.get(chunk_of(h, *bits))?.get(h, key),
        }
    }

    /// Edits the value of `key`: `f` gets it (`None` if absent) and may change, set or clear
    /// it; the map then holds what `f` left. Copies only the table of `key` if shared.
    pub fn alter<R>(&mut self, key: K, f: impl FnOnce(&mut Option<V>) -> R) -> R {
        let h = hash_of(&key);
        let r = match self {
            Self::Small(table) => table.alter(h, key, f),
            Self::Chunked { bits, chunks, len } => {
                let Some(table) = Arc::make_mut(chunks).get_mut(chunk_of(h, *bits)) else { return f(&mut None) };
                let before = table.len;
                let r = table.alter(h, key, f);
                *len = (*len + table.len).saturating_sub(before);
                r
            }
        };
        self.rebalance();
        r
    }

    /// Sets the value of `key`; returns the previous one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.alter(key, |slot| slot.replace(value))
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: K) -> Option<V> {
        self.alter(key, Option::take)
    }

    /// Calls `f` on every value, copying shared tables first.
    pub fn for_each_mut(&mut self, f: &mut impl FnMut(&mut V)) {
        match self {
            Self::Small(table) => table.for_each_mut(f),
            Self::Chunked { chunks, .. } => Arc::make_mut(chunks).iter_mut().for_each(|t| t.for_each_mut(f)),
        }
    }

    /// Re-splits the map when its size left the range its layout suits: one table up to
    /// [`SMALL`] keys (back to one below half of that), else about √n chunks (re-split once
    /// n grew or shrank some sixteenfold). The copy is paid for by the edits that led there.
    fn rebalance(&mut self) {
        let len = self.len();
        let bits = match self {
            Self::Small(_) if len <= SMALL => return,
            Self::Chunked { .. } if len < SMALL / 2 => 0,
            Self::Chunked { bits, .. } if bits_for(len).abs_diff(*bits) <= 1 => return,
            _ => bits_for(len),
        };
        let mut tables: Vec<Vec<(u64, K, V)>> = (0..1usize << bits).map(|_| Vec::new()).collect();
        let all = match std::mem::take(self) {
            Self::Small(table) => table.into_entries(),
            Self::Chunked { chunks, .. } => chunks.iter().flat_map(|t| t.clone().into_entries()).collect(),
        };
        for entry in all {
            if let Some(list) = tables.get_mut(chunk_of(entry.0, bits)) {
                list.push(entry);
            }
        }
        let mut tables = tables.into_iter().map(|list| {
            let room = list.len();
            Table::build(list, room)
        });
        *self = match bits {
            0 => Self::Small(tables.next().unwrap_or_default()),
            _ => Self::Chunked { bits, chunks: tables.collect(), len },
        };
    }
}

impl<K: Eq + Clone, V: Clone> Table<K, V> {
    #[inline]
    fn get<Q>(&self, h: u64, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slots = self.slots.as_deref()?;
        let mask = slots.len().wrapping_sub(1);
        let mut i = h as usize & mask;
        for _ in 0..slots.len() {
            let (sh, k, v) = slots.get(i)?.as_ref()?;
            if *sh == h && k.borrow() == key {
                return Some(v);
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// `Ok` with the slot holding `key`, or `Err` with the empty slot ending its probe.
    fn probe(slots: &[Slot<K, V>], h: u64, key: &K) -> Option<Result<usize, usize>> {
        let mask = slots.len().wrapping_sub(1);
        let mut i = h as usize & mask;
        for _ in 0..slots.len() {
            match slots.get(i)? {
                Some((sh, k, _)) if *sh == h && k == key => return Some(Ok(i)),
                Some(_) => i = (i + 1) & mask,
                None => return Some(Err(i)),
            }
        }
        None
    }

    /// Edits `key` (see [`CowMap::alter`]), copying the slots first if shared.
    fn alter<R>(&mut self, h: u64, key: K, f: impl FnOnce(&mut Option<V>) -> R) -> R {
        if (self.len + 1) * LOAD > self.slots.as_ref().map_or(0, |s| s.len()) {
            // Room for one more first: a probe must always end at an empty slot.
            let len = self.len + 1;
            *self = Table::build(std::mem::take(self).into_entries(), len);
        }
        let Some(slots) = self.slots.as_mut().map(Arc::make_mut) else { return f(&mut None) };
        let Some(at) = Self::probe(slots, h, &key) else { return f(&mut None) };
        let (Ok(i) | Err(i)) = at;
        let Some(slot) = slots.get_mut(i) else { return f(&mut None) };
        let mut value = slot.take().map(|(_, _, v)| v);
        let r = f(&mut value);
        match (value, at) {
            (Some(v), _) => {
                *slot = Some((h, key, v));
                self.len += usize::from(at.is_err());
            }
            (None, Ok(_)) => {
                backshift(slots, i);
                self.len -= 1;
            }
            (None, Err(_)) => {}
        }
        r
    }

    fn for_each_mut(&mut self, f: &mut impl FnMut(&mut V)) {
        for (_, _, v) in self.slots.as_mut().map(Arc::make_mut).into_iter().flatten().flatten() {
            f(v);
        }
    }

    /// The entries, moved out if the slots are not shared, else cloned.
    fn into_entries(self) -> Vec<(u64, K, V)> {
        let Some(mut slots) = self.slots else { return Vec::new() };
        match Arc::get_mut(&mut slots) {
            Some(owned) => owned.iter_mut().filter_map(Option::take).collect(),
            None => slots.iter().flatten().cloned().collect(),
        }
    }

    /// A table of `entries` (distinct keys) with room for `room_for` keys at most half full.
    fn build(entries: Vec<(u64, K, V)>, room_for: usize) -> Self {
        if room_for == 0 {
            return Self::default();
        }
        let mut slots: Vec<Slot<K, V>> = (0..(room_for * LOAD).next_power_of_two()).map(|_| None).collect();
        let mask = slots.len() - 1;
        let len = entries.len();
        for (h, k, v) in entries {
            let mut i = h as usize & mask;
            while slots.get(i).is_some_and(Option::is_some) {
                i = (i + 1) & mask;
            }
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some((h, k, v));
            }
        }
        Self { len, slots: Some(slots.into()) }
    }
}

/// Empties the slot at `hole` and moves later entries of the probe run back into it, so
/// every remaining key stays reachable from its start slot (deletion in linear probing).
fn backshift<K, V>(slots: &mut [Slot<K, V>], mut hole: usize) {
    let mask = slots.len().wrapping_sub(1);
    let mut j = hole;
    for _ in 0..slots.len() {
        j = (j + 1) & mask;
        let Some(Some((h, ..))) = slots.get(j) else { return };
        // The entry at `j` may fill the hole if the hole lies on its probe, from its start.
        if (j.wrapping_sub(*h as usize) & mask) >= (j.wrapping_sub(hole) & mask) {
            slots.swap(hole, j);
            hole = j;
        }
    }
}

#[cfg(test)]
#[path = "cowmap_tests.rs"]
mod tests;
