//! The host tiers of a router — one trie per exact host, one per wildcard suffix, one for
//! routes without hosts — and how a compiled route enters and leaves them.
//!
//! Every level is shared and copied on write, so adding or removing a route copies only the
//! host-map chunk and the trie nodes on its way.

use std::sync::Arc;

use super::cowmap::CowMap;
use super::pattern::HostPattern;
use super::route::CompiledRoute;
use super::trie::{Entry, Node, Order};

/// Tries keyed by host name, or by wildcard suffix (`.example.com` for `*.example.com`).
pub(super) type HostMap = CowMap<Arc<str>, Arc<Node>>;

/// The tries of all host tiers.
#[derive(Debug, Default, Clone)]
pub(super) struct Tiers {
    pub exact: HostMap,
    pub wildcard: HostMap,
    pub any: Arc<Node>,
}

impl Tiers {
    /// Adds every path of `route` to the tries of its hosts (or to the host-less one).
    pub fn add(&mut self, route: &Arc<CompiledRoute>, order: Order) {
        for (index, path) in route.paths.iter().enumerate() {
            let entry = Entry { route: route.clone(), path: index };
            if route.hosts.is_empty() {
                Arc::make_mut(&mut self.any).insert(&path.segs, path.prefix, entry.clone(), order);
            }
            for host in &route.hosts {
                let (map, key) = self.map_of(host);
                map.alter(key.clone(), |trie| {
                    let trie = Arc::make_mut(trie.get_or_insert_with(Arc::default));
                    trie.insert(&path.segs, path.prefix, entry.clone(), order);
                });
            }
        }
    }

    /// Removes every path of `route` (as it was added), dropping host tries left empty.
    pub fn remove(&mut self, route: &CompiledRoute) {
        for path in &route.paths {
            if route.hosts.is_empty() {
                Arc::make_mut(&mut self.any).remove(&path.segs, path.prefix, route.id);
            }
            for host in &route.hosts {
                let (map, key) = self.map_of(host);
                map.alter(key.clone(), |trie| Node::prune(trie, &path.segs, path.prefix, route.id));
            }
        }
    }

    /// Orders every entry list; after adding with [`Order::Later`].
    pub fn sort(&mut self) {
        for map in [&mut self.exact, &mut self.wildcard] {
            map.for_each_mut(&mut |trie| Arc::make_mut(trie).sort());
        }
        Arc::make_mut(&mut self.any).sort();
    }

    fn map_of<'h>(&mut self, host: &'h HostPattern) -> (&mut HostMap, &'h Arc<str>) {
        match host {
            HostPattern::Exact(name) => (&mut self.exact, name),
            HostPattern::Wildcard(suffix) => (&mut self.wildcard, suffix),
        }
    }
}
