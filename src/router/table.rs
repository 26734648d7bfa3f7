//! The routing state connection tasks read on every request, lock-free: slot → group,
//! group → replicas and cached leader, node → addresses. Written only by the router actor
//! (layout loads, leader changes); read through `dashmap` shards by everyone else. Owns no
//! I/O and never blocks on a replica.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::kv::meta::{META_GROUP, META_SLOT};
use crate::kv::range::{SlotRange, SplitOff};
use crate::kv::slot::SLOT_COUNT;
use crate::raft::types::{GroupId, NodeId, Term};
use crate::router::layout::Layout;

/// `RoutingTable::slots` of a slot no group owns. No group has this id: layouts are TOML,
/// whose integers stop at `i64::MAX`, and split children take ids that `SHARDKV
/// ALLOC-GROUP` counts up from 1, which the command's argument bounds the same way.
const UNOWNED: u64 = u64::MAX;

/// What the table knows about one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRoute {
    pub group: GroupId,
    /// Inclusive slot range.
    pub slots: (u16, u16),
    /// Nodes holding a replica (voters first, in layout order).
    pub replicas: Vec<NodeId>,
    /// The leader as last reported; `None` while unknown.
    pub leader: Option<NodeId>,
    /// Term of that report (a report of an older term never overrides a newer one).
    pub term: Term,
}

/// How clients and peers reach a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeAddrs {
    pub resp: SocketAddr,
    pub peer: SocketAddr,
}

/// The shared routing table.
#[derive(Debug)]
pub struct RoutingTable {
    me: NodeId,
    /// The owner of each hash slot by slot number (`UNOWNED` for none): one atomic load
    /// per lookup on the request path, no lock and no hashing.
    slots: Box<[AtomicU64]>,
    groups: DashMap<GroupId, GroupRoute>,
    nodes: DashMap<NodeId, NodeAddrs>,
    /// Bumped on every change, so a reader can tell a view is stale.
    version: AtomicU64,
}

impl RoutingTable {
    /// A table for node `me` from a validated layout and the nodes' addresses.
    pub fn new(me: NodeId, layout: &Layout, nodes: &[(NodeId, NodeAddrs)]) -> Arc<RoutingTable> {
        let table = RoutingTable {
            me,
            slots: (0..SLOT_COUNT).map(|_| AtomicU64::new(UNOWNED)).collect(),
            groups: DashMap::new(),
            nodes: nodes.iter().copied().collect(),
            version: AtomicU64::new(0),
        };
        for (slot, group) in layout.slot_table().into_iter().enumerate() {
            let slot = u16::try_from(slot).expect("a layout has 16384 slots");
            table.set_slot(slot, group);
        }
        for g in &layout.groups {
            let route = GroupRoute {
                group: GroupId(g.id),
                slots: (g.slots[0], g.slots[1]),
                replicas: g.replicas.iter().map(|&n| NodeId(n)).collect(),
                leader: None,
                term: Term(0),
            };
            table.groups.insert(GroupId(g.id), route);
        }
        let meta = GroupRoute {
            group: META_GROUP,
            slots: (META_SLOT, META_SLOT),
            replicas: layout.meta_replicas().into_iter().map(NodeId).collect(),
            leader: None,
            term: Term(0),
        };
        table.groups.insert(META_GROUP, meta);
        Arc::new(table)
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The group owning `slot`.
    pub fn group_of_slot(&self, slot: u16) -> Option<GroupId> {
        let owner = self.slots.get(usize::from(slot))?.load(Ordering::Acquire);
        (owner != UNOWNED).then_some(GroupId(owner))
    }

    fn set_slot(&self, slot: u16, group: GroupId) {
        if let Some(owner) = self.slots.get(usize::from(slot)) {
            owner.store(group.get(), Ordering::Release);
        }
    }

    pub fn group(&self, group: GroupId) -> Option<GroupRoute> {
        self.groups.get(&group).map(|r| r.clone())
    }

    /// `f` of `group`'s route, read in place (no copy of its replicas), if the table has it.
    pub fn with_group<R>(&self, group: GroupId, f: impl FnOnce(&GroupRoute) -> R) -> Option<R> {
        self.groups.get(&group).map(|r| f(&r))
    }

    /// Every data group, by id (the metadata group owns no hash slot: see `group`).
    pub fn groups(&self) -> Vec<GroupRoute> {
        let mut all: Vec<GroupRoute> = self
            .groups
            .iter()
            .filter(|r| r.group != META_GROUP)
            .map(|r| r.clone())
            .collect();
        all.sort_by_key(|r| r.group);
        all
    }

    pub fn leader(&self, group: GroupId) -> Option<NodeId> {
        self.groups.get(&group).and_then(|r| r.leader)
    }

    pub fn node(&self, node: NodeId) -> Option<NodeAddrs> {
        self.nodes.get(&node).map(|a| *a)
    }

    /// Every node, by id.
    pub fn nodes(&self) -> Vec<(NodeId, NodeAddrs)> {
        let mut all: Vec<(NodeId, NodeAddrs)> =
            self.nodes.iter().map(|e| (*e.key(), *e.value())).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Records a node that joined the cluster. Returns whether it was new (a known node
    /// keeps its addresses).
    pub fn add_node(&self, node: NodeId, addrs: NodeAddrs) -> bool {
        if self.nodes.contains_key(&node) {
            return false;
        }
        self.nodes.insert(node, addrs);
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Forgets a node the cluster map no longer has. Returns whether it was known.
    pub fn remove_node(&self, node: NodeId) -> bool {
        if self.nodes.remove(&node).is_none() {
            return false;
        }
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Learns from the cluster map what no replica of this node reports first-hand:
    /// `owners` (each hash slot's group, `ClusterMap::slot_owners`) and the slots and
    /// replicas of `groups`. A group `hosted` here is left alone, and so is every slot it
    /// owns in this table: its own replica applies its splits and configurations before
    /// any report of them reaches the map. A slot no report names keeps its owner. A group
    /// keeps its leader cache. Returns whether anything changed.
    pub fn learn_map(
        &self,
        owners: &[Option<GroupId>],
        groups: &[(GroupId, (u16, u16), Vec<NodeId>)],
        hosted: &dyn Fn(GroupId) -> bool,
    ) -> bool {
        let mut changed = false;
        let mut owned: std::collections::BTreeMap<GroupId, (u16, u16)> = Default::default();
        for (slot, owner) in owners.iter().enumerate().take(usize::from(SLOT_COUNT)) {
            let (Some(group), slot) = (*owner, slot as u16) else { continue };
            owned.entry(group).and_modify(|r| r.1 = slot).or_insert((slot, slot));
            let current = self.group_of_slot(slot);
            if current == Some(group) || current.is_some_and(hosted) {
                continue;
            }
            self.set_slot(slot, group);
            changed = true;
        }
        for (group, slots, replicas) in groups.iter().filter(|(g, _, _)| !hosted(*g)) {
            let slots = owned.get(group).copied().unwrap_or(*slots);
            let mut route = self.groups.entry(*group).or_insert_with(|| {
                changed = true;
                GroupRoute {
                    group: *group,
                    slots,
                    replicas: replicas.clone(),
                    leader: None,
                    term: Term(0),
                }
            });
            if route.slots != slots || route.replicas != *replicas {
                route.slots = slots;
                route.replicas = replicas.clone();
                changed = true;
            }
        }
        if changed {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    /// Records a split: `child.range` now belongs to `child.group` (on `child.replicas`),
    /// and `parent` keeps the slots below it. Returns whether anything changed (a split
    /// already known changes nothing).
    pub fn apply_split(&self, parent: GroupId, child: &SplitOff) -> bool {
        let SlotRange { first, last } = child.range;
        if let Some(route) = self.groups.get(&child.group) {
            if route.slots == (first, last) {
                return false;
            }
        }
        if let Some(mut route) = self.groups.get_mut(&parent) {
            if route.slots.0 < first && route.slots.1 >= first {
                route.slots.1 = first - 1;
            }
        }
        let route = GroupRoute {
            group: child.group,
            slots: (first, last),
            replicas: child.replicas.clone(),
            leader: None,
            term: Term(0),
        };
        self.groups.insert(child.group, route);
        for slot in first..=last {
            self.set_slot(slot, child.group);
        }
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Records a group's replicas as one of its replicas on this node applied them
    /// (voters first, then learners). Returns whether it changed.
    pub fn set_replicas(&self, group: GroupId, replicas: Vec<NodeId>) -> bool {
        let Some(mut route) = self.groups.get_mut(&group) else { return false };
        if route.replicas == replicas {
            return false;
        }
        route.replicas = replicas;
        drop(route);
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Records that `leader` just answered as the group's leader (a request it served).
    /// Keeps the term of the last report: a later report still orders against it.
    pub fn learn_leader(&self, group: GroupId, leader: NodeId) -> bool {
        let Some(mut route) = self.groups.get_mut(&group) else { return false };
        if route.leader == Some(leader) {
            return false;
        }
        route.leader = Some(leader);
        drop(route);
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Records a leader report. A report older than the one held is ignored; a report of
    /// "no leader" in the same or a newer term clears the cache. Returns whether it changed.
    pub fn set_leader(&self, group: GroupId, leader: Option<NodeId>, term: Term) -> bool {
        let Some(mut route) = self.groups.get_mut(&group) else { return false };
        let newer = term > route.term;
        let same_term_news = term == route.term && leader.is_some() && route.leader != leader;
        let lost = term >= route.term && leader.is_none() && route.leader.is_some();
        if !(newer || same_term_news || lost) {
            return false;
        }
        route.leader = leader;
        route.term = term;
        drop(route);
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Arc<RoutingTable> {
        let layout = Layout::even(3, 8, 3);
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let nodes: Vec<(NodeId, NodeAddrs)> = (1..=3u16)
            .map(|i| {
                (NodeId(u64::from(i)), NodeAddrs { resp: addr(7000 + i), peer: addr(7100 + i) })
            })
            .collect();
        RoutingTable::new(NodeId(1), &layout, &nodes)
    }

    #[test]
    fn every_slot_maps_to_the_group_of_its_range() {
        let t = table();
        assert_eq!(t.group_of_slot(0), Some(GroupId(1)));
        assert_eq!(t.group_of_slot(2047), Some(GroupId(1)));
        assert_eq!(t.group_of_slot(2048), Some(GroupId(2)));
        assert_eq!(t.group_of_slot(16383), Some(GroupId(8)));
        assert_eq!(t.groups().len(), 8);
    }

    #[test]
    fn leader_reports_of_older_terms_are_ignored() {
        let t = table();
        assert!(t.set_leader(GroupId(3), Some(NodeId(2)), Term(5)));
        assert!(!t.set_leader(GroupId(3), Some(NodeId(1)), Term(4)));
        assert_eq!(t.leader(GroupId(3)), Some(NodeId(2)));
        assert!(t.set_leader(GroupId(3), None, Term(6)));
        assert_eq!(t.leader(GroupId(3)), None);
        assert!(t.set_leader(GroupId(3), Some(NodeId(3)), Term(6)));
        assert_eq!(t.leader(GroupId(3)), Some(NodeId(3)));
        assert!(!t.set_leader(GroupId(99), Some(NodeId(3)), Term(9)));
    }

    #[test]
    fn a_split_hands_the_upper_slots_to_the_child_once() {
        let t = table();
        let child = SplitOff {
            group: GroupId(9),
            range: SlotRange::new(1024, 2047),
            replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
        };
        let before = t.version();
        assert!(t.apply_split(GroupId(1), &child));
        assert!(!t.apply_split(GroupId(1), &child), "a known split changes nothing");
        assert_eq!(t.version(), before + 1);
        assert_eq!(t.group_of_slot(1023), Some(GroupId(1)));
        assert_eq!(t.group_of_slot(1024), Some(GroupId(9)));
        assert_eq!(t.group_of_slot(2047), Some(GroupId(9)));
        assert_eq!(t.group(GroupId(1)).map(|r| r.slots), Some((0, 1023)));
        assert_eq!(t.group(GroupId(9)).map(|r| r.replicas.len()), Some(3));
    }
}
