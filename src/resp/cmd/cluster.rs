//! CLUSTER SLOTS | SHARDS | NODES | INFO | MYID | KEYSLOT | COUNTKEYSINSLOT |
//! GETKEYSINSLOT. Every group is shown as a Redis Cluster shard: its leader as master,
//! the other replicas as replicas, with their RESP addresses. A group without a leader
//! shows its first replica as master (a client sent there gets `-CLUSTERDOWN` or
//! `-MOVED`). A node that leads several groups is a master of several slot ranges.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, lower, tri, unknown_subcommand, wrong_args};
use crate::kv::read::ReadCommand;
use crate::kv::slot::{key_slot, SLOT_COUNT};
use crate::raft::types::NodeId;
use crate::resp::backend::{cluster_node_name, ClusterView, GroupView};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let sub = lower(&args[1]);
    let arity = match sub.as_str() {
        "slots" | "shards" | "nodes" | "info" | "myid" => 2,
        "keyslot" | "countkeysinslot" => 3,
        "getkeysinslot" => 4,
        _ => return Job::Now(unknown_subcommand(&args[1], "cluster")),
    };
    if args.len() != arity {
        return Job::Now(wrong_args(&format!("cluster|{sub}")));
    }
    let view = cx.backend.cluster_view();
    match sub.as_str() {
        "slots" => Job::Now(slots(&view)),
        "shards" => Job::Now(shards(&view)),
        "nodes" => Job::Now(Frame::Verbatim(nodes(&view))),
        "info" => Job::Now(Frame::Verbatim(info(&view))),
        "myid" => Job::Now(Frame::text(&cluster_node_name(view.node_id))),
        "keyslot" => Job::Now(Frame::Int(i64::from(key_slot(&args[2])))),
        "countkeysinslot" => {
            let slot = tri!(int_arg(&args[2]));
            let Some(slot) = in_slot_range(slot) else {
                return Job::Now(Frame::error("ERR Invalid slot"));
            };
            cx.read_anywhere(slot, ReadCommand::CountKeysInSlot { slot })
        }
        _ => {
            let slot = tri!(int_arg(&args[2]));
            let count = tri!(int_arg(&args[3]));
            let (Some(slot), true) = (in_slot_range(slot), count >= 0) else {
                return Job::Now(Frame::error("ERR Invalid slot or number of keys"));
            };
            cx.read_anywhere(
                slot,
                ReadCommand::GetKeysInSlot {
                    slot,
                    count: count as u64,
                },
            )
        }
    }
}

fn in_slot_range(slot: i64) -> Option<u16> {
    u16::try_from(slot).ok().filter(|s| *s < SLOT_COUNT)
}

pub(super) fn slot_arg(arg: &[u8]) -> Result<u16, Frame> {
    let slot = int_arg(arg).map_err(|_| Frame::error("ERR Invalid slot"))?;
    in_slot_range(slot).ok_or_else(|| Frame::error("ERR Invalid slot"))
}

/// The master first, then the other replicas.
fn members(group: &GroupView) -> Vec<NodeId> {
    let master = group.master();
    let mut members: Vec<NodeId> = master.into_iter().collect();
    members.extend(group.replicas.iter().filter(|r| Some(**r) != master));
    members
}

fn slots(view: &ClusterView) -> Frame {
    let entries = view.groups.iter().map(|g| {
        let mut entry = vec![
            Frame::Int(i64::from(g.slot_first)),
            Frame::Int(i64::from(g.slot_last)),
        ];
        for id in members(g) {
            let Some(addr) = view.resp_addr(id) else {
                continue;
            };
            entry.push(Frame::Array(vec![
                Frame::text(&addr.ip().to_string()),
                Frame::Int(i64::from(addr.port())),
                Frame::text(&cluster_node_name(id)),
            ]));
        }
        Frame::Array(entry)
    });
    Frame::Array(entries.collect())
}

fn shards(view: &ClusterView) -> Frame {
    let shards = view.groups.iter().map(|g| {
        let slots = vec![
            Frame::Int(i64::from(g.slot_first)),
            Frame::Int(i64::from(g.slot_last)),
        ];
        let nodes = members(g).into_iter().enumerate().filter_map(|(i, id)| {
            let addr = view.resp_addr(id)?;
            let role = if i == 0 { "master" } else { "replica" };
            let health = if g.leader.is_some() { "online" } else { "fail" };
            Some(Frame::Map(vec![
                (Frame::text("id"), Frame::text(&cluster_node_name(id))),
                (Frame::text("port"), Frame::Int(i64::from(addr.port()))),
                (Frame::text("ip"), Frame::text(&addr.ip().to_string())),
                (Frame::text("endpoint"), Frame::text(&addr.ip().to_string())),
                (Frame::text("role"), Frame::text(role)),
                (Frame::text("replication-offset"), Frame::Int(0)),
                (Frame::text("health"), Frame::text(health)),
            ]))
        });
        Frame::Map(vec![
            (Frame::text("slots"), Frame::Array(slots)),
            (Frame::text("nodes"), Frame::Array(nodes.collect())),
        ])
    });
    Frame::Array(shards.collect())
}

/// CLUSTER NODES: one line per node; a node is master of the groups it leads.
fn nodes(view: &ClusterView) -> String {
    let mut text = String::new();
    for node in &view.nodes {
        let led: Vec<String> = view
            .groups
            .iter()
            .filter(|g| members(g).first() == Some(&node.id))
            .map(|g| format!("{}-{}", g.slot_first, g.slot_last))
            .collect();
        let myself = if node.id == view.node_id {
            "myself,"
        } else {
            ""
        };
        let addr = node.resp_addr;
        let bus = u32::from(addr.port()) + 10_000;
        text.push_str(&format!(
            "{} {addr}@{bus} {myself}master - 0 0 0 connected {}\n",
            cluster_node_name(node.id),
            led.join(" ")
        ));
    }
    text
}

fn info(view: &ClusterView) -> String {
    let led: u64 = view
        .groups
        .iter()
        .filter(|g| g.leader.is_some())
        .map(|g| u64::from(g.slot_last - g.slot_first) + 1)
        .sum();
    let state = if led == u64::from(SLOT_COUNT) {
        "ok"
    } else {
        "fail"
    };
    format!(
        "cluster_enabled:1\r\ncluster_state:{state}\r\ncluster_slots_assigned:{SLOT_COUNT}\r\n\
         cluster_slots_ok:{led}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\n\
         cluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:0\r\n\
         cluster_my_epoch:0\r\n",
        u64::from(SLOT_COUNT) - led,
        view.nodes.len(),
        view.groups.len()
    )
}
