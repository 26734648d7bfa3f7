//! The layout of a cluster: its nodes, its groups, each group's slot range and replicas.
//! Parsed from TOML and validated: the groups' slot ranges must cover all 16384 slots
//! exactly once, every replica must name a declared node, ids must be unique.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::kv::meta::{ClusterMap, MapGroup, MapNode, META_GROUP, META_SLOT};
use crate::kv::slot::SLOT_COUNT;
use crate::raft::{GroupId, NodeId};

/// What is wrong with a layout.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("layout is not valid TOML: {0}")]
    Syntax(String),
    #[error("layout declares no nodes")]
    NoNodes,
    #[error("layout declares no groups")]
    NoGroups,
    #[error("node id {0} is declared twice (ids are unique and non-zero)")]
    DuplicateNode(u64),
    #[error("node id 0 is reserved")]
    ZeroNode,
    #[error("group id {0} is declared twice (groups are numbered from 1)")]
    DuplicateGroup(u64),
    #[error("group id 0 is reserved: groups are numbered from 1")]
    ZeroGroup,
    #[error("group {group}: slot range {first}-{last} is empty or past slot 16383")]
    BadRange { group: u64, first: u16, last: u16 },
    #[error("group {group} has no replicas")]
    NoReplicas { group: u64 },
    #[error("group {group} names replica {node} twice")]
    DuplicateReplica { group: u64, node: u64 },
    #[error("group {group} names node {node}, which the layout does not declare")]
    UnknownNode { group: u64, node: u64 },
    #[error("slots {first}-{last} belong to no group (a gap)")]
    Gap { first: u16, last: u16 },
    #[error("slot {slot} belongs to both group {a} and group {b} (an overlap)")]
    Overlap { slot: u16, a: u64, b: u64 },
}

/// One node of the layout. A layout file names ids only (each node's configuration says
/// where its peers listen); a layout made from the cluster map also gives the addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLayout {
    pub id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<SocketAddr>,
}

impl NodeLayout {
    pub fn new(id: u64) -> NodeLayout {
        NodeLayout { id, peer: None, resp: None }
    }
}

/// One group: an inclusive slot range and the nodes holding its replicas (voters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLayout {
    pub id: u64,
    pub slots: [u16; 2],
    pub replicas: Vec<u64>,
}

/// A validated layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    #[serde(rename = "node")]
    pub nodes: Vec<NodeLayout>,
    #[serde(rename = "group")]
    pub groups: Vec<GroupLayout>,
    /// The nodes holding the metadata group's replicas (the cluster map); empty: the first
    /// `META_REPLICAS_DEFAULT` nodes by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta: Vec<u64>,
}

/// Replicas of the metadata group when the layout does not name them.
pub const META_REPLICAS_DEFAULT: usize = 3;

impl Layout {
    /// Parses and validates layout TOML.
    pub fn parse(text: &str) -> Result<Layout, LayoutError> {
        let layout: Layout =
            toml::from_str(text).map_err(|e| LayoutError::Syntax(e.to_string()))?;
        layout.validate()?;
        Ok(layout)
    }

    /// An even layout: `groups` groups over equal slot ranges, `replicas` replicas each,
    /// placed round-robin so every node holds the same number (± 1).
    pub fn even(nodes: u64, groups: u64, replicas: u64) -> Layout {
        assert!(nodes >= 1 && groups >= 1 && (1..=nodes).contains(&replicas));
        let slots = u64::from(SLOT_COUNT);
        let groups_v = (0..groups)
            .map(|g| {
                let first = (slots * g / groups) as u16;
                let last = (slots * (g + 1) / groups - 1) as u16;
                let replicas = (0..replicas).map(|r| (g + r) % nodes + 1).collect();
                GroupLayout { id: g + 1, slots: [first, last], replicas }
            })
            .collect();
        let nodes = (1..=nodes).map(NodeLayout::new).collect();
        Layout { nodes, groups: groups_v, meta: Vec::new() }
    }

    /// The checks of `parse`.
    pub fn validate(&self) -> Result<(), LayoutError> {
        let nodes = self.validate_nodes()?;
        if self.groups.is_empty() {
            return Err(LayoutError::NoGroups);
        }
        let mut owner: BTreeMap<u16, (u16, u64)> = BTreeMap::new(); // first -> (last, group)
        let mut ids = BTreeSet::new();
        for g in &self.groups {
            self.validate_group(g, &nodes)?;
            if !ids.insert(g.id) {
                return Err(LayoutError::DuplicateGroup(g.id));
            }
            owner.insert(g.slots[0], (g.slots[1], g.id));
        }
        let mut next: u32 = 0;
        let mut prev_group = 0;
        for (&first, &(last, group)) in &owner {
            if u32::from(first) > next {
                let gap_last = first - 1;
                return Err(LayoutError::Gap { first: next as u16, last: gap_last });
            }
            if u32::from(first) < next {
                return Err(LayoutError::Overlap { slot: first, a: prev_group, b: group });
            }
            next = u32::from(last) + 1;
            prev_group = group;
        }
        if next < u32::from(SLOT_COUNT) {
            return Err(LayoutError::Gap { first: next as u16, last: SLOT_COUNT - 1 });
        }
        Ok(())
    }

    fn validate_nodes(&self) -> Result<BTreeSet<u64>, LayoutError> {
        if self.nodes.is_empty() {
            return Err(LayoutError::NoNodes);
        }
        let mut ids = BTreeSet::new();
        for n in &self.nodes {
            if n.id == 0 {
                return Err(LayoutError::ZeroNode);
            }
            if !ids.insert(n.id) {
                return Err(LayoutError::DuplicateNode(n.id));
            }
        }
        let mut seen = BTreeSet::new();
        for &node in &self.meta {
            if !ids.contains(&node) {
                return Err(LayoutError::UnknownNode { group: META_GROUP.get(), node });
            }
            if !seen.insert(node) {
                return Err(LayoutError::DuplicateReplica { group: META_GROUP.get(), node });
            }
        }
        Ok(ids)
    }

    /// The nodes of the metadata group's first configuration.
    pub fn meta_replicas(&self) -> Vec<u64> {
        if !self.meta.is_empty() {
            return self.meta.clone();
        }
        let mut ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        ids.sort_unstable();
        ids.truncate(META_REPLICAS_DEFAULT);
        ids
    }

    /// The cluster map a new cluster starts with: this layout's groups (epoch 0), the
    /// metadata group on `meta_replicas`, and the nodes' addresses. Every node of the
    /// metadata group computes the same map from the same layout and addresses.
    pub fn initial_map(&self, addrs: &BTreeMap<u64, MapNode>) -> ClusterMap {
        let mut groups: BTreeMap<u64, MapGroup> = self
            .groups
            .iter()
            .map(|g| (g.id, MapGroup { slots: g.slots, replicas: g.replicas.clone(), epoch: 0 }))
            .collect();
        let meta = MapGroup {
            slots: [META_SLOT, META_SLOT],
            replicas: self.meta_replicas(),
            epoch: 0,
        };
        groups.insert(META_GROUP.get(), meta);
        let next_group = groups.keys().max().map_or(1, |m| m + 1);
        ClusterMap { version: 1, nodes: addrs.clone(), groups, next_group }
    }

    /// The layout the cluster map describes, with the nodes' addresses (slot owners as
    /// `ClusterMap::slot_owners` gives them). Slots no report names yet leave a gap, which
    /// `validate` refuses: such a map is read again a moment later.
    pub fn from_map(map: &ClusterMap) -> Layout {
        let mut ranges: BTreeMap<u64, [u16; 2]> = BTreeMap::new();
        for (slot, owner) in map.slot_owners().into_iter().enumerate() {
            let (Some(id), slot) = (owner, slot as u16) else { continue };
            ranges.entry(id).and_modify(|r| r[1] = slot).or_insert([slot, slot]);
        }
        let groups = ranges
            .into_iter()
            .map(|(id, slots)| GroupLayout { id, slots, replicas: map.groups[&id].replicas.clone() })
            .collect();
        let nodes = map
            .nodes
            .iter()
            .map(|(&id, n)| NodeLayout { id, peer: Some(n.peer), resp: Some(n.resp) })
            .collect();
        let meta = map.groups.get(&META_GROUP.get()).map(|g| g.replicas.clone());
        Layout { nodes, groups, meta: meta.unwrap_or_default() }
    }

    fn validate_group(&self, g: &GroupLayout, nodes: &BTreeSet<u64>) -> Result<(), LayoutError> {
        if g.id == 0 {
            return Err(LayoutError::ZeroGroup);
        }
        let [first, last] = g.slots;
        if first > last || last >= SLOT_COUNT {
            return Err(LayoutError::BadRange { group: g.id, first, last });
        }
        if g.replicas.is_empty() {
            return Err(LayoutError::NoReplicas { group: g.id });
        }
        let mut seen = BTreeSet::new();
        for &node in &g.replicas {
            if !nodes.contains(&node) {
                return Err(LayoutError::UnknownNode { group: g.id, node });
            }
            if !seen.insert(node) {
                return Err(LayoutError::DuplicateReplica { group: g.id, node });
            }
        }
        Ok(())
    }

    /// The group owning each slot (index = slot), for the router's lock-free lookup table.
    pub fn slot_table(&self) -> Vec<GroupId> {
        let mut table = vec![GroupId(0); usize::from(SLOT_COUNT)];
        for g in &self.groups {
            for slot in g.slots[0]..=g.slots[1] {
                table[usize::from(slot)] = GroupId(g.id);
            }
        }
        table
    }

    /// The groups with a replica on `node`.
    pub fn groups_on(&self, node: NodeId) -> Vec<GroupId> {
        let on = |g: &&GroupLayout| g.replicas.contains(&node.get());
        self.groups.iter().filter(on).map(|g| GroupId(g.id)).collect()
    }

    /// The layout as TOML, with one line per group (the form of the files in `shards/`).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        if !self.meta.is_empty() {
            let meta: Vec<String> = self.meta.iter().map(u64::to_string).collect();
            let _ = writeln!(out, "meta = [{}]\n", meta.join(", "));
        }
        for n in &self.nodes {
            let _ = writeln!(out, "[[node]]\nid = {}", n.id);
            if let Some(peer) = n.peer {
                let _ = writeln!(out, "peer = \"{peer}\"");
            }
            if let Some(resp) = n.resp {
                let _ = writeln!(out, "resp = \"{resp}\"");
            }
            out.push('\n');
        }
        for g in &self.groups {
            let replicas: Vec<String> = g.replicas.iter().map(u64::to_string).collect();
            let _ = writeln!(
                out,
                "[[group]]\nid = {}\nslots = [{}, {}]\nreplicas = [{}]\n",
                g.id,
                g.slots[0],
                g.slots[1],
                replicas.join(", ")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: [(&str, &str, (u64, u64, u64)); 2] = [
        ("local-3x8.toml", include_str!("../../shards/local-3x8.toml"), (3, 8, 3)),
        ("cluster-5x64.toml", include_str!("../../shards/cluster-5x64.toml"), (5, 64, 3)),
    ];

    #[test]
    fn shipped_layouts_parse_and_match_the_even_generator() {
        for (name, text, (nodes, groups, replicas)) in SHIPPED {
            let layout = Layout::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(layout, Layout::even(nodes, groups, replicas), "{name}");
            let table = layout.slot_table();
            assert!(table.iter().all(|g| g.get() >= 1), "{name}: every slot has a group");
        }
    }

    #[test]
    fn even_layout_spreads_replicas_evenly() {
        let l = Layout::even(5, 64, 3);
        let counts: Vec<usize> = (1..=5).map(|n| l.groups_on(NodeId(n)).len()).collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "replicas per node {counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 64 * 3);
    }

    fn layout_with(groups: &str) -> Result<Layout, LayoutError> {
        Layout::parse(&format!("[[node]]\nid = 1\n[[node]]\nid = 2\n{groups}"))
    }

    #[test]
    fn a_gap_is_refused_naming_the_missing_slots() {
        let e = layout_with(
            "[[group]]\nid = 1\nslots = [0, 99]\nreplicas = [1]\n\
             [[group]]\nid = 2\nslots = [200, 16383]\nreplicas = [2]\n",
        );
        assert_eq!(e, Err(LayoutError::Gap { first: 100, last: 199 }));
        let tail = layout_with("[[group]]\nid = 1\nslots = [0, 16000]\nreplicas = [1]\n");
        assert_eq!(tail, Err(LayoutError::Gap { first: 16001, last: 16383 }));
    }

    #[test]
    fn an_overlap_is_refused_naming_both_groups() {
        let e = layout_with(
            "[[group]]\nid = 1\nslots = [0, 100]\nreplicas = [1]\n\
             [[group]]\nid = 2\nslots = [100, 16383]\nreplicas = [2]\n",
        );
        assert_eq!(e, Err(LayoutError::Overlap { slot: 100, a: 1, b: 2 }));
    }

    #[test]
    fn unknown_nodes_and_bad_ids_are_refused() {
        let e = layout_with("[[group]]\nid = 1\nslots = [0, 16383]\nreplicas = [1, 7]\n");
        assert_eq!(e, Err(LayoutError::UnknownNode { group: 1, node: 7 }));
        let e = layout_with("[[group]]\nid = 0\nslots = [0, 16383]\nreplicas = [1]\n");
        assert_eq!(e, Err(LayoutError::ZeroGroup));
        let e = layout_with("[[group]]\nid = 1\nslots = [0, 16384]\nreplicas = [1]\n");
        assert!(matches!(e, Err(LayoutError::BadRange { .. })));
        let e = layout_with("[[group]]\nid = 1\nslots = [0, 16383]\nreplicas = [2, 2]\n");
        assert_eq!(e, Err(LayoutError::DuplicateReplica { group: 1, node: 2 }));
    }

    #[test]
    fn malformed_toml_and_unknown_fields_are_syntax_errors() {
        assert!(matches!(Layout::parse("[[node]\nid = 1"), Err(LayoutError::Syntax(_))));
        let extra = "[[node]]\nid = 1\ncolour = 'red'\n";
        assert!(matches!(Layout::parse(extra), Err(LayoutError::Syntax(_))));
    }
}
