//! `shardkv status`: one row per group — slot range, leader, term, commit index, the lag of
//! each replica behind the leader, and a health word — built from the `/metrics` of one or
//! more nodes. A node's registry shows only its own replicas, and the per-replica lag only
//! where it leads, so pass every node for a complete table. Below it, the peer handshakes
//! refused since each node started (`refusals`): a node its peers refuse (a wiped data
//! directory back under its old id) still accepts client connections but takes no part in
//! replication, so it serves no read or write, and this is where an operator sees it
//! without reading logs. Reads, never changes, a node.

use std::collections::BTreeMap;

use serde::Serialize;

use super::scrape::Sample;

/// A follower further behind its leader than this many entries makes a group `lagging`.
pub const LAG_ENTRIES_WARN: u64 = 1_000;

/// One replica's distance behind its leader; `None` when no scraped leader reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaLag {
    pub node: u64,
    pub lag_entries: Option<u64>,
}

/// One group as the scraped nodes see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupRow {
    pub group: u64,
    pub slot_first: u16,
    pub slot_last: u16,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    pub replicas: Vec<ReplicaLag>,
    /// `ok`, `no-leader`, `lagging`, or `partial` (the leader's node was not scraped).
    pub health: String,
}

#[derive(Default)]
struct Seen {
    slots: (u16, u16),
    term: u64,
    commit: u64,
    leader: Option<u64>,
    nodes: BTreeMap<u64, Option<u64>>,
}

fn num(s: &Sample, label: &str) -> Option<u64> {
    s.label(label)?.parse().ok()
}

fn gather(samples: &[Sample], groups: &mut BTreeMap<u64, Seen>) {
    for s in samples {
        let (Some(group), Some(node)) = (num(s, "group"), num(s, "node")) else {
            continue;
        };
        let g = groups.entry(group).or_default();
        let v = s.value.max(0.0) as u64;
        g.nodes.entry(node).or_insert(None);
        match s.name.as_str() {
            "shardkv_raft_term" => g.term = g.term.max(v),
            "shardkv_raft_commit_index" => g.commit = g.commit.max(v),
            "shardkv_group_slot_first" => g.slots.0 = v as u16,
            "shardkv_group_slot_last" => g.slots.1 = v as u16,
            "shardkv_raft_is_leader" if v == 1 => {
                g.leader = Some(node);
                g.nodes.insert(node, Some(0));
            }
            "shardkv_raft_follower_match_lag_entries" => {
                if let Some(follower) = num(s, "follower") {
                    g.nodes.insert(follower, Some(v));
                }
            }
            _ => {}
        }
    }
}

/// The rows of every group in the scrapes of one or more nodes.
pub fn rows(scrapes: &[Vec<Sample>]) -> Vec<GroupRow> {
    let mut groups = BTreeMap::new();
    for samples in scrapes {
        gather(samples, &mut groups);
    }
    groups
        .into_iter()
        .map(|(group, g)| {
            let replicas: Vec<ReplicaLag> = g
                .nodes
                .iter()
                .map(|(&node, &lag_entries)| ReplicaLag { node, lag_entries })
                .collect();
            let health = match g.leader {
                None => "no-leader",
                Some(_) if replicas.iter().any(|r| r.lag_entries.is_none()) => "partial",
                Some(_)
                    if replicas
                        .iter()
                        .any(|r| r.lag_entries > Some(LAG_ENTRIES_WARN)) =>
                {
                    "lagging"
                }
                Some(_) => "ok",
            };
            GroupRow {
                group,
                slot_first: g.slots.0,
                slot_last: g.slots.1,
                leader: g.leader,
                term: g.term,
                commit_index: g.commit,
                replicas,
                health: health.to_string(),
            }
        })
        .collect()
}

/// Which side of a refused peer handshake a node counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefusalSide {
    /// The peer refused this node (`shardkv_transport_refused_by_peer_total`).
    RefusedBy,
    /// This node refused the peer (`shardkv_transport_refused_handshakes_total`).
    Refused,
}

/// Peer handshakes refused between two nodes since `node` started, as `node` counted them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerRefusal {
    pub node: u64,
    pub peer: u64,
    pub side: RefusalSide,
    pub count: u64,
}

/// Every non-zero count of refused peer handshakes in the scrapes, by node, then peer.
/// Refusals of connections that never named a node (no `peer` label) are left out: they
/// are strangers, not members.
pub fn refusals(scrapes: &[Vec<Sample>]) -> Vec<PeerRefusal> {
    let mut out = Vec::new();
    for s in scrapes.iter().flatten() {
        let side = match s.name.as_str() {
            "shardkv_transport_refused_by_peer_total" => RefusalSide::RefusedBy,
            "shardkv_transport_refused_handshakes_total" => RefusalSide::Refused,
            _ => continue,
        };
        let count = s.value.max(0.0) as u64;
        if let (Some(node), Some(peer), true) = (num(s, "node"), num(s, "peer"), count > 0) {
            out.push(PeerRefusal { node, peer, side, count });
        }
    }
    out.sort();
    out
}

/// The refusals for a person at a terminal: empty when there are none.
pub fn refusals_text(refusals: &[PeerRefusal]) -> String {
    if refusals.is_empty() {
        return String::new();
    }
    let mut out = String::from("\npeer handshakes refused since each node started:\n");
    for r in refusals {
        let line = match r.side {
            RefusalSide::RefusedBy => format!(
                "  node {} was refused by node {} {} time(s): node {} does not admit node {}'s \
                 data directory (see node {}'s log for why)\n",
                r.node, r.peer, r.count, r.peer, r.node, r.node
            ),
            RefusalSide::Refused => format!(
                "  node {} refused node {} {} time(s) (another data directory, a wrong secret, \
                 wire version or frame bound, garbage, a time-out: see node {}'s log)\n",
                r.node, r.peer, r.count, r.node
            ),
        };
        out.push_str(&line);
    }
    out
}

/// The table for a person at a terminal.
pub fn table(rows: &[GroupRow]) -> String {
    let mut out = format!(
        "{:>6}  {:>11}  {:>6}  {:>6}  {:>10}  {:<28}  {}\n",
        "GROUP", "SLOTS", "LEADER", "TERM", "COMMIT", "LAG (node:entries)", "HEALTH"
    );
    for r in rows {
        let leader = r.leader.map_or("-".to_string(), |n| n.to_string());
        let lags: Vec<String> = r
            .replicas
            .iter()
            .map(|l| {
                format!(
                    "{}:{}",
                    l.node,
                    l.lag_entries.map_or("?".into(), |v| v.to_string())
                )
            })
            .collect();
        // The metadata group owns no hash slot: it holds the cluster map.
        let slots = if r.slot_first >= crate::kv::slot::SLOT_COUNT {
            "(cluster map)".to_string()
        } else {
            format!("{:>5}-{:<5}", r.slot_first, r.slot_last)
        };
        out.push_str(&format!(
            "{:>6}  {:>11}  {:>6}  {:>6}  {:>10}  {:<28}  {}\n",
            r.group,
            slots,
            leader,
            r.term,
            r.commit_index,
            lags.join(" "),
            r.health
        ));
    }
    out
}

/// The rows as a JSON array, for scripts.
pub fn json(rows: &[GroupRow]) -> String {
    serde_json::to_string_pretty(rows).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::scrape::parse;

    #[test]
    fn refusals_are_listed_by_node_and_peer_and_zeros_left_out() {
        let node2 = parse(
            "shardkv_transport_refused_by_peer_total{node=\"2\",peer=\"3\"} 4\n\
             shardkv_transport_refused_by_peer_total{node=\"2\",peer=\"1\"} 2\n\
             shardkv_transport_refused_handshakes_total{node=\"2\",peer=\"1\"} 0\n",
        );
        let node1 = parse(
            "shardkv_transport_refused_handshakes_total{node=\"1\",peer=\"2\"} 2\n\
             shardkv_transport_refused_handshakes_total{node=\"1\"} 9\n\
             shardkv_transport_connects_total{node=\"1\",peer=\"2\"} 5\n",
        );
        let found = refusals(&[node2, node1]);
        let refusal = |node, peer, side, count| PeerRefusal { node, peer, side, count };
        assert_eq!(
            found,
            vec![
                refusal(1, 2, RefusalSide::Refused, 2),
                refusal(2, 1, RefusalSide::RefusedBy, 2),
                refusal(2, 3, RefusalSide::RefusedBy, 4),
            ]
        );
        let text = refusals_text(&found);
        assert!(text.contains("node 2 was refused by node 3 4 time(s)"), "{text}");
        assert!(text.contains("node 1 refused node 2 2 time(s)"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("  node")).count(), 3, "{text}");
    }

    #[test]
    fn no_refusals_print_nothing() {
        let quiet = parse("shardkv_transport_refused_by_peer_total{node=\"1\",peer=\"2\"} 0\n");
        assert!(refusals(&[quiet]).is_empty());
        assert_eq!(refusals_text(&[]), "");
    }
}
