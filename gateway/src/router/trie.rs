//! The segment trie of one host tier. Each node has its literal children in a hash map, at
//! most one parameter child, and the routes that end there: exact/template routes (the path
//! ends at this node) and prefix routes (the path continues, or ends, at or below this node).
//!
//! A lookup costs one hash probe per request segment, plus backtracking into parameter
//! children; since the trie is a tree, no node is visited twice, so the work is bounded by
//! the request's depth and the part of the trie it can reach, never by the number of routes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use smallvec::SmallVec;

use super::pattern::Seg;

/// A route path in the trie: indices of the compiled route and of its path pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub route: usize,
    pub path: usize,
}

/// A hit: the entry, and for a prefix route the number of segments its prefix covers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found {
    pub entry: Entry,
    pub prefix_depth: Option<usize>,
}

/// One trie node; the root is the empty path.
#[derive(Debug, Default)]
pub(super) struct Node {
    literals: FxHashMap<Box<str>, Node>,
    param: Option<Box<Node>>,
    exact: Vec<Entry>,
    prefix: Vec<Entry>,
}

/// Prefix candidates kept on the stack during one lookup; more spill to the heap, which needs
/// more than eight prefix routes along the request's own path.
type Candidates<'n> = SmallVec<[(usize, &'n Node); 8]>;

impl Node {
    /// Adds `entry` under the pattern `segs`.
    pub fn insert(&mut self, segs: &[Seg], prefix: bool, entry: Entry) {
        let Some((first, rest)) = segs.split_first() else {
            if prefix {
                self.prefix.push(entry)
            } else {
                self.exact.push(entry)
            }
            return;
        };
        let child = match first {
            Seg::Literal(text) => self.literals.entry(text.clone()).or_default(),
            Seg::Param => self.param.get_or_insert_with(Box::default),
        };
        child.insert(rest, prefix, entry);
    }

    /// Orders the entries of every node by `cmp` (best first), which fixes the tie-breaks
    /// between routes with the same path shape.
    pub fn sort(&mut self, cmp: &dyn Fn(&Entry, &Entry) -> Ordering) {
        self.exact.sort_by(cmp);
        self.prefix.sort_by(cmp);
        self.literals.values_mut().for_each(|child| child.sort(cmp));
        if let Some(child) = &mut self.param {
            child.sort(cmp);
        }
    }

    /// Finds the best entry for the request `segs` that `accept` agrees to: any exact or
    /// template match first (literal children before the parameter child at every segment),
    /// then prefix matches, longest prefix first and literal before parameter among equals.
    pub fn find(&self, segs: &[&str], accept: &mut impl FnMut(Entry) -> bool) -> Option<Found> {
        let mut prefixes = Candidates::new();
        if let Some(entry) = self.find_exact(segs, 0, accept, &mut prefixes) {
            return Some(Found { entry, prefix_depth: None });
        }
        sort_deepest_first(&mut prefixes);
        prefixes.iter().find_map(|&(depth, node)| {
            let entry = node.prefix.iter().copied().find(|e| accept(*e))?;
            Some(Found { entry, prefix_depth: Some(depth) })
        })
    }

    /// Depth-first search for an exact/template match, collecting on the way (in pre-order,
    /// literal before parameter) the nodes that hold prefix routes.
    fn find_exact<'n>(
        &'n self,
        segs: &[&str],
        depth: usize,
        accept: &mut impl FnMut(Entry) -> bool,
        prefixes: &mut Candidates<'n>,
    ) -> Option<Entry> {
        if !self.prefix.is_empty() {
            prefixes.push((depth, self));
        }
        let Some(seg) = segs.get(depth) else {
            return self.exact.iter().copied().find(|e| accept(*e));
        };
        if let Some(hit) = self.literals.get(*seg).and_then(|c| c.find_exact(segs, depth + 1, accept, prefixes)) {
            return Some(hit);
        }
        match &self.param {
            Some(child) if !seg.is_empty() => child.find_exact(segs, depth + 1, accept, prefixes),
            _ => None,
        }
    }
}

/// Stable insertion sort by depth, deepest first: the list is short, and unlike
/// `slice::sort_by` this never allocates.
fn sort_deepest_first(list: &mut Candidates<'_>) {
    for i in 1..list.len() {
        let mut j = i;
        while j > 0 && list[j - 1].0 < list[j].0 {
            list.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// A hash map with [`FxHasher`].
pub(super) type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The Fx hash (rustc's): a few cycles per word instead of SipHash's tens. Not DoS-resistant,
/// which is fine here: the keys are the admin's route segments and host names, and a request
/// only probes the table, so a client cannot fill a bucket.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ rest.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    /// The multiply mixes each word only into the bits above it; the rotation brings the
    /// well-mixed high bits down to where the table takes its bucket index.
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}
