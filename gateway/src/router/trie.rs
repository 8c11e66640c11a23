//! The segment trie of one host tier. Each node has its literal children in a hash map, at
//! most one parameter child, and the routes that end there: exact/template routes (the path
//! ends at this node) and prefix routes (the path continues, or ends, at or below this node).
//!
//! A lookup costs one hash probe per request segment, plus backtracking into parameter
//! children; since the trie is a tree, no node is visited twice, so the work is bounded by
//! the request's depth and the part of the trie it can reach, never by the number of routes.
//!
//! The trie is persistent: children are shared (`Arc`), and an edit copies only the nodes on
//! the edited path (`Arc::make_mut`) and, in each, the chunk of its child map that changes
//! (`cowmap.rs`); a router derived from another by a few route changes shares the rest.

use std::cmp::Reverse;
use std::sync::Arc;

use smallvec::SmallVec;
use uuid::Uuid;

use super::cowmap::CowMap;
use super::pattern::Seg;
use super::route::CompiledRoute;

/// A route path in the trie: the compiled route and the index of its path pattern.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub route: Arc<CompiledRoute>,
    pub path: usize,
}

/// A hit: the entry, and for a prefix route the number of segments its prefix covers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Found<'n> {
    pub entry: &'n Entry,
    pub prefix_depth: Option<usize>,
}

/// One trie node; the root is the empty path.
#[derive(Debug, Default, Clone)]
pub(super) struct Node {
    literals: CowMap<Arc<str>, Arc<Node>>,
    param: Option<Arc<Node>>,
    /// Best first, by [`Entry::rank`].
    exact: Vec<Entry>,
    /// Best first, by [`Entry::rank`].
    prefix: Vec<Entry>,
}

/// Prefix candidates kept on the stack during one lookup; more spill to the heap, which needs
/// more than eight prefix routes along the request's own path.
type Candidates<'n> = SmallVec<[(usize, &'n Node); 8]>;

/// How an insertion keeps a node's entry list ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Order {
    /// Append; the caller sorts the whole trie once at the end ([`Node::sort`]).
    Later,
    /// Insert at the entry's place in the sorted list.
    Now,
}

impl Entry {
    /// The tie-break between routes with the same path shape, best first: higher priority,
    /// more conditions, lower route id, then the route's own path order.
    fn rank(&self) -> (Reverse<i32>, Reverse<usize>, Uuid, usize) {
        let r = &self.route;
        (Reverse(r.priority), Reverse(r.conditions()), r.id, self.path)
    }
}

impl Node {
    /// Adds `entry` under the pattern `segs`, copying shared nodes on the way.
    pub fn insert(&mut self, segs: &[Seg], prefix: bool, entry: Entry, order: Order) {
        let Some((first, rest)) = segs.split_first() else {
            let list = if prefix { &mut self.prefix } else { &mut self.exact };
            match order {
                Order::Later => list.push(entry),
                Order::Now => {
                    let rank = entry.rank();
                    list.insert(list.partition_point(|e| e.rank() <= rank), entry);
                }
            }
            return;
        };
        let insert = |child: &mut Option<Arc<Node>>| {
            Arc::make_mut(child.get_or_insert_with(Arc::default)).insert(rest, prefix, entry, order);
        };
        match first {
            Seg::Literal(text) => self.literals.alter(text.clone(), insert),
            Seg::Param => insert(&mut self.param),
        }
    }

    /// Removes the entries of route `id` under the pattern `segs`, copying shared nodes on
    /// the way and dropping the nodes left empty.
    pub fn remove(&mut self, segs: &[Seg], prefix: bool, id: Uuid) {
        let Some((first, rest)) = segs.split_first() else {
            let list = if prefix { &mut self.prefix } else { &mut self.exact };
            list.retain(|e| e.route.id != id);
            return;
        };
        match first {
            Seg::Literal(text) => self.literals.alter(text.clone(), |child| Node::prune(child, rest, prefix, id)),
            Seg::Param => Node::prune(&mut self.param, rest, prefix, id),
        }
    }

    /// Removes the entries of route `id` under the pattern `segs` below `child`, and the
    /// child itself if that leaves it empty.
    pub fn prune(child: &mut Option<Arc<Node>>, segs: &[Seg], prefix: bool, id: Uuid) {
        if let Some(node) = child {
            let node = Arc::make_mut(node);
            node.remove(segs, prefix, id);
            if node.is_empty() {
                *child = None;
            }
        }
    }

    /// Whether the node holds nothing: no entries and no children.
    pub fn is_empty(&self) -> bool {
        self.literals.is_empty() && self.param.is_none() && self.exact.is_empty() && self.prefix.is_empty()
    }

    /// Orders the entries of every node best first (see [`Entry::rank`]), which fixes the
    /// tie-breaks between routes with the same path shape.
    pub fn sort(&mut self) {
        self.exact.sort_by_key(Entry::rank);
        self.prefix.sort_by_key(Entry::rank);
        self.literals.for_each_mut(&mut |child| Arc::make_mut(child).sort());
        if let Some(child) = &mut self.param {
            Arc::make_mut(child).sort();
        }
    }

    /// Finds the best entry for the request `segs` that `accept` agrees to: any exact or
    /// template match first (literal children before the parameter child at every segment),
    /// then prefix matches, longest prefix first and literal before parameter among equals.
    pub fn find<'n>(&'n self, segs: &[&str], accept: &mut impl FnMut(&Entry) -> bool) -> Option<Found<'n>> {
        let mut prefixes = Candidates::new();
        if let Some(entry) = self.find_exact(segs, 0, accept, &mut prefixes) {
            return Some(Found { entry, prefix_depth: None });
        }
        sort_deepest_first(&mut prefixes);
        prefixes.iter().find_map(|&(depth, node)| {
            let entry = node.prefix.iter().find(|e| accept(e))?;
            Some(Found { entry, prefix_depth: Some(depth) })
        })
    }

    /// Depth-first search for an exact/template match, collecting on the way (in pre-order,
    /// literal before parameter) the nodes that hold prefix routes.
    fn find_exact<'n>(
        &'n self,
        segs: &[&str],
        depth: usize,
        accept: &mut impl FnMut(&Entry) -> bool,
        prefixes: &mut Candidates<'n>,
    ) -> Option<&'n Entry> {
        if !self.prefix.is_empty() {
            prefixes.push((depth, self));
        }
        let Some(seg) = segs.get(depth) else {
            return self.exact.iter().find(|e| accept(e));
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
