//! [`CowMap`] against `std`'s `HashMap` over seeded random edits (through every layout, with
//! keys whose hashes often collide in full), the persistence of the maps an edit started
//! from, and what an edit copies.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use fastrand::Rng;
use uuid::Uuid;

use super::CowMap;

/// A key whose hash is its value modulo 5: many keys share a full hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Colliding(u32);

impl Hash for Colliding {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.0 % 5).hash(state);
    }
}

/// Fails unless `map` holds exactly `model`, checking `probes` keys besides.
fn assert_same<K: Hash + Eq + Clone + std::fmt::Debug>(map: &CowMap<K, u32>, model: &HashMap<K, u32>, probes: &[K]) {
    assert_eq!(map.len(), model.len());
    for k in probes {
        assert_eq!(map.get(k), model.get(k), "{k:?}");
    }
    let mut values = Vec::new();
    map.clone().for_each_mut(&mut |v| values.push(*v));
    let mut want: Vec<u32> = model.values().copied().collect();
    values.sort_unstable();
    want.sort_unstable();
    assert_eq!(values, want);
}

/// Random inserts, removals and in-place edits on keys from `keys`, checked at every step,
/// as is the map each step started from.
fn random_edits<K: Hash + Eq + Clone + std::fmt::Debug>(seed: u64, keys: &[K]) {
    let mut rng = Rng::with_seed(seed);
    let (mut map, mut model) = (CowMap::default(), HashMap::new());
    for step in 0..3_000 {
        let (before, before_model) = (map.clone(), model.clone());
        let Some(key) = keys.get(rng.usize(..keys.len())).cloned() else { continue };
        let v = u32::try_from(step).unwrap();
        match rng.u8(..4) {
            0 => assert_eq!(map.remove(key.clone()), model.remove(&key)),
            1 => {
                map.alter(key.clone(), |slot| *slot = slot.map(|old| old + 1));
                model.entry(key).and_modify(|old| *old += 1);
            }
            _ => assert_eq!(map.insert(key.clone(), v), model.insert(key, v)),
        }
        if step % 50 == 0 {
            assert_same(&map, &model, keys);
            assert_same(&before, &before_model, keys);
        }
    }
    assert_same(&map, &model, keys);
}

#[test]
fn behaves_like_a_hash_map() {
    let strings: Vec<String> = (0..400).map(|i| format!("seg{i}")).collect();
    random_edits(0x7011_0a01, &strings);
    let uuids: Vec<Uuid> = (0..2_000).map(|i| Uuid::from_u128(i * 7)).collect();
    random_edits(0x7011_0a02, &uuids);
}

#[test]
fn full_hash_collisions_are_kept_apart() {
    let keys: Vec<Colliding> = (0..60).map(Colliding).collect();
    random_edits(0x7011_0a03, &keys);
}

#[test]
fn removing_every_key_leaves_an_empty_table() {
    let mut map = CowMap::default();
    for i in 0..5_000u32 {
        map.insert(i, i);
    }
    assert!(chunk_count(&map) >= 32, "{}", chunk_count(&map));
    let full = map.clone();
    for i in 0..5_000u32 {
        assert_eq!(map.remove(i), Some(i));
    }
    assert!(map.is_empty() && matches!(map, CowMap::Small(_)));
    assert_eq!((full.len(), full.get(&4_999)), (5_000, Some(&4_999)));
}

#[test]
fn an_edit_copies_one_chunk() {
    let mut map = CowMap::default();
    for i in 0..100_000u32 {
        map.insert(i, i);
    }
    let mut next = map.clone();
    next.insert(7, 0);
    let (CowMap::Chunked { chunks: old, .. }, CowMap::Chunked { chunks: new, .. }) = (&map, &next) else {
        panic!("a map of 100,000 keys is chunked");
    };
    let same = |a: &super::Table<u32, u32>, b: &super::Table<u32, u32>| match (&a.slots, &b.slots) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        _ => false,
    };
    let shared = old.iter().zip(new.iter()).filter(|(a, b)| same(a, b)).count();
    // Built key by key, the layout lags a step behind √n: 128 chunks of about 780 keys.
    assert_eq!((old.len(), shared), (128, 127));
    assert!(old.iter().all(|c| c.len < 1_000), "chunks are balanced");
}

fn chunk_count(map: &CowMap<u32, u32>) -> usize {
    match map {
        CowMap::Small(_) => 1,
        CowMap::Chunked { chunks, .. } => chunks.len(),
    }
}
