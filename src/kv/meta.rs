//! The cluster map: the layout as replicated state. The metadata group (`META_GROUP`)
//! holds it as one record in a slot past every hash slot (`META_SLOT`), so no client key
//! ever reaches it, and every change to it is a logged command of that group (`MetaOp`):
//! a node joining, a group id handed out for a split, a group's leader reporting its
//! slots and replicas. Reads of it are linearizable reads of the group, like any other.
//!
//! Applying a `MetaOp` is pure and deterministic, like every other command. A group's
//! report carries an epoch, the group's own applied index when it reported: reports of
//! one group that arrive out of order never let an older one win.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::kv::range::SlotRange;
use crate::kv::record::Record;
use crate::kv::reply::{KvError, Reply};
use crate::kv::slot::SLOT_COUNT;
use crate::raft::types::GroupId;

/// The metadata group's id (layout groups are numbered from 1).
pub const META_GROUP: GroupId = GroupId(0);
/// The slot the metadata group's records live in: one past the last hash slot.
pub const META_SLOT: u16 = SLOT_COUNT;
/// The metadata group's slot range.
pub const META_RANGE: SlotRange = SlotRange { first: META_SLOT, last: META_SLOT };
/// The key of the cluster map's record in `META_SLOT`.
pub const MAP_KEY: &[u8] = b"cluster-map";
/// Nodes the map records at most; a join past it is refused.
pub const MAP_NODES_MAX: usize = 1024;
/// Groups the map records at most; a report or id past it is refused.
pub const MAP_GROUPS_MAX: usize = 65_536;

/// How clients and peers reach a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapNode {
    pub peer: SocketAddr,
    pub resp: SocketAddr,
}

/// A group as its leader last reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapGroup {
    /// Inclusive; the metadata group's is `META_RANGE`.
    pub slots: [u16; 2],
    /// Voters and learners.
    pub replicas: Vec<u64>,
    /// The group's applied index at its last report (0: from the initial layout).
    pub epoch: u64,
}

/// The cluster map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Bumped by every change; a reader that knows it can skip an unchanged map.
    pub version: u64,
    pub nodes: BTreeMap<u64, MapNode>,
    /// Every group, the metadata group included.
    pub groups: BTreeMap<u64, MapGroup>,
    /// Every group id below it was handed out (or is in the initial layout).
    pub next_group: u64,
}

/// A change to the cluster map, logged by the metadata group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaOp {
    /// A node joins, or announces itself again (the same addresses: no change).
    AddNode { id: u64, peer: SocketAddr, resp: SocketAddr },
    /// Forgets a node that holds no replica any more (a decommissioned machine); refused
    /// while any group, the metadata group included, names it.
    RemoveNode { id: u64 },
    /// Hands out a group id nobody else gets (for the child of a split). Answers it.
    AllocGroup,
    /// A group's leader reports the group's slots and replicas as of its applied index
    /// `epoch`; an older report than the map's is ignored.
    ReportGroup { group: u64, epoch: u64, slots: [u16; 2], replicas: Vec<u64> },
}

impl ClusterMap {
    pub fn decode(bytes: &[u8]) -> Result<ClusterMap, KvError> {
        rmp_serde::from_slice(bytes)
            .map_err(|e| KvError::CorruptRecord(format!("cluster map: {e}")))
    }

    pub fn encode(&self) -> Bytes {
        Bytes::from(rmp_serde::to_vec(self).expect("a cluster map always encodes"))
    }

    /// The record stored under (`META_SLOT`, `MAP_KEY`).
    pub fn to_record(&self) -> Bytes {
        Record::string(self.encode(), None).encode()
    }

    pub fn from_record(raw: &Bytes) -> Result<ClusterMap, KvError> {
        let record = Record::decode(raw).map_err(|e| KvError::CorruptRecord(e.to_string()))?;
        ClusterMap::decode(&record.value)
    }

    /// Applies one change; answers it (an error leaves the map as it was).
    pub fn apply(&mut self, op: &MetaOp) -> Reply {
        match op {
            MetaOp::AddNode { id, peer, resp } => {
                let node = MapNode { peer: *peer, resp: *resp };
                match self.nodes.get(id) {
                    Some(known) if *known == node => return Reply::Ok,
                    Some(known) => {
                        return meta_error(format!(
                            "ERR node {id} is a member with other addresses \
                            (peer {}, resp {})",
                            known.peer, known.resp
                        ))
                    }
                    None if *id == 0 => return meta_error("ERR node id 0 is reserved".into()),
                    None if self.nodes.len() >= MAP_NODES_MAX => {
                        return meta_error(format!("ERR the cluster has {MAP_NODES_MAX} nodes"))
                    }
                    None => {}
                }
                let usable = |a: &SocketAddr| !a.ip().is_unspecified() && a.port() != 0;
                if !usable(peer) || !usable(resp) || peer == resp {
                    return meta_error(format!(
                        "ERR node {id}: peer and RESP addresses must be two reachable \
                        addresses (not 0.0.0.0, not port 0)"
                    ));
                }
                if let Some((other, _)) =
                    self.nodes.iter().find(|(_, n)| n.peer == *peer || n.resp == *resp)
                {
                    return meta_error(format!("ERR node {other} already uses these addresses"));
                }
                self.nodes.insert(*id, node);
            }
            MetaOp::RemoveNode { id } => {
                if !self.nodes.contains_key(id) {
                    return Reply::Ok;
                }
                let holding: Vec<String> = self
                    .groups
                    .iter()
                    .filter(|(_, g)| g.replicas.contains(id))
                    .map(|(g, _)| g.to_string())
                    .collect();
                if !holding.is_empty() {
                    return meta_error(format!(
                        "ERR node {id} still holds replicas of groups {}: move them away first",
                        holding.join(",")
                    ));
                }
                self.nodes.remove(id);
            }
            MetaOp::AllocGroup => {
                if self.groups.len() >= MAP_GROUPS_MAX {
                    return meta_error(format!("ERR the cluster has {MAP_GROUPS_MAX} groups"));
                }
                let floor = self.groups.keys().max().map_or(1, |m| m + 1);
                let id = self.next_group.max(floor);
                if i64::try_from(id).is_err() {
                    return meta_error("ERR group ids are exhausted".into());
                }
                self.next_group = id + 1;
                self.version += 1;
                return Reply::Int(id as i64);
            }
            MetaOp::ReportGroup { group, epoch, slots, replicas } => {
                if let Some(known) = self.groups.get(group) {
                    if known.epoch >= *epoch {
                        return Reply::Ok;
                    }
                } else if self.groups.len() >= MAP_GROUPS_MAX {
                    return meta_error(format!("ERR the cluster has {MAP_GROUPS_MAX} groups"));
                }
                let valid = if *group == META_GROUP.get() {
                    *slots == [META_SLOT, META_SLOT]
                } else {
                    slots[0] <= slots[1] && slots[1] < SLOT_COUNT
                };
                if !valid || replicas.is_empty() {
                    return meta_error(format!("ERR bad report of group {group}"));
                }
                let reported = MapGroup { slots: *slots, replicas: replicas.clone(), epoch: *epoch };
                self.groups.insert(*group, reported);
                self.next_group = self.next_group.max(group + 1);
            }
        }
        self.version += 1;
        Reply::Ok
    }

}

impl ClusterMap {
    /// The owner of each hash slot by the reports (`None`: no report names it yet, as
    /// between a parent's shrink and its child's first report). Where two reports overlap
    /// (a child reported before its parent's shrink) the higher id wins: a split's child
    /// always has a higher id than its parent.
    pub fn slot_owners(&self) -> Vec<Option<u64>> {
        let mut owner = vec![None; usize::from(SLOT_COUNT)];
        for (&id, g) in self.groups.iter().filter(|(id, _)| **id != META_GROUP.get()) {
            for slot in g.slots[0]..=g.slots[1].min(SLOT_COUNT - 1) {
                owner[usize::from(slot)] = Some(id);
            }
        }
        owner
    }
}

fn meta_error(text: String) -> Reply {
    Reply::Error(KvError::Meta(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn three_nodes() -> ClusterMap {
        let layout = crate::router::layout::Layout::even(3, 4, 3);
        let nodes = (1..=3)
            .map(|i| (i, MapNode { peer: addr(7100 + i as u16), resp: addr(7000 + i as u16) }))
            .collect();
        layout.initial_map(&nodes)
    }

    #[test]
    fn the_initial_map_has_the_layout_and_the_metadata_group() {
        let map = three_nodes();
        assert_eq!(map.groups.len(), 5);
        assert_eq!(map.groups[&0].replicas, vec![1, 2, 3]);
        assert_eq!(map.next_group, 5);
        assert_eq!(crate::router::layout::Layout::from_map(&map).groups.len(), 4);
        let round = ClusterMap::from_record(&map.to_record()).unwrap();
        assert_eq!(round, map);
    }

    #[test]
    fn a_node_joins_once_and_its_addresses_are_its_own() {
        let mut map = three_nodes();
        let join = MetaOp::AddNode { id: 4, peer: addr(7104), resp: addr(7004) };
        assert_eq!(map.apply(&join), Reply::Ok);
        let v = map.version;
        assert_eq!(map.apply(&join), Reply::Ok, "joining again changes nothing");
        assert_eq!(map.version, v);
        let moved = MetaOp::AddNode { id: 4, peer: addr(7204), resp: addr(7004) };
        assert!(matches!(map.apply(&moved), Reply::Error(_)));
        let thief = MetaOp::AddNode { id: 5, peer: addr(7104), resp: addr(7005) };
        assert!(matches!(map.apply(&thief), Reply::Error(_)));
        assert!(matches!(
            map.apply(&MetaOp::AddNode { id: 0, peer: addr(1), resp: addr(2) }),
            Reply::Error(_)
        ));
        let anywhere = SocketAddr::from(([0, 0, 0, 0], 7105));
        for (peer, resp) in [(anywhere, addr(7005)), (addr(7105), addr(0)), (addr(7105), addr(7105))] {
            let bad = MetaOp::AddNode { id: 5, peer, resp };
            assert!(matches!(map.apply(&bad), Reply::Error(_)), "{peer} {resp}");
        }
        assert_eq!(map.nodes.len(), 4);
    }

    #[test]
    fn a_node_is_forgotten_only_once_it_holds_no_replica() {
        let mut map = three_nodes();
        assert!(matches!(map.apply(&MetaOp::RemoveNode { id: 3 }), Reply::Error(_)));
        let join = MetaOp::AddNode { id: 4, peer: addr(7104), resp: addr(7004) };
        assert_eq!(map.apply(&join), Reply::Ok);
        assert_eq!(map.apply(&MetaOp::RemoveNode { id: 4 }), Reply::Ok);
        assert!(!map.nodes.contains_key(&4));
        let v = map.version;
        assert_eq!(map.apply(&MetaOp::RemoveNode { id: 4 }), Reply::Ok, "again: no change");
        assert_eq!(map.version, v);
    }

    #[test]
    fn group_ids_are_handed_out_once_and_above_every_known_group() {
        let mut map = three_nodes();
        assert_eq!(map.apply(&MetaOp::AllocGroup), Reply::Int(5));
        assert_eq!(map.apply(&MetaOp::AllocGroup), Reply::Int(6));
        let report = MetaOp::ReportGroup { group: 9, epoch: 1, slots: [0, 10], replicas: vec![1] };
        assert_eq!(map.apply(&report), Reply::Ok);
        assert_eq!(map.apply(&MetaOp::AllocGroup), Reply::Int(10));
    }

    #[test]
    fn an_older_report_never_replaces_a_newer_one() {
        let mut map = three_nodes();
        let newer = MetaOp::ReportGroup { group: 1, epoch: 9, slots: [0, 100], replicas: vec![2] };
        let older = MetaOp::ReportGroup { group: 1, epoch: 5, slots: [0, 4095], replicas: vec![1] };
        assert_eq!(map.apply(&newer), Reply::Ok);
        assert_eq!(map.apply(&older), Reply::Ok);
        assert_eq!(map.groups[&1].slots, [0, 100]);
        assert_eq!(map.groups[&1].replicas, vec![2]);
        let bad = MetaOp::ReportGroup { group: 2, epoch: 99, slots: [5, 16384], replicas: vec![1] };
        assert!(matches!(map.apply(&bad), Reply::Error(_)));
        let meta = MetaOp::ReportGroup { group: 0, epoch: 3, slots: [0, 1], replicas: vec![1] };
        assert!(matches!(map.apply(&meta), Reply::Error(_)));
    }
}
