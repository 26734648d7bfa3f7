//! SHARDKV …: the operator commands `shardkv admin` sends to any node (not Redis
//! commands; Redis clients never send them).
//!
//! - `SHARDKV GROUPS`: every group as this node knows it:
//!   `[id, first slot, last slot, leader id or nil, [replica ids]]`.
//! - `SHARDKV NODES`: every node of the cluster: `[id, RESP address]`.
//! - `SHARDKV SPLIT group [slot] CHILD id`: split `group` at `slot` (default: the slot
//!   that halves its keys) into the new group `id` (handed out by `ALLOC-GROUP`); answers
//!   `[child, first slot, last slot]` once the split applied on the group's leader.
//! - `SHARDKV ALLOC-GROUP`: a group id nobody else is given (a logged operation of the
//!   metadata group, group 0, which holds the cluster map).
//! - `SHARDKV JOIN node peer-address resp-address`: records a node in the cluster map
//!   (`shardkv server --join` sends it); `+OK`, also when the node is recorded already.
//! - `SHARDKV FORGET-NODE node`: removes a node that holds no replica (of any group,
//!   the metadata group included) from the cluster map; every node stops routing to,
//!   dialling and accepting it.
//! - `SHARDKV MAP`: the cluster map (rmp-serde of `kv::meta::ClusterMap`), read through
//!   the metadata group's leader.
//! - `SHARDKV TRANSFER-LEADER group node`: asks the group's leader to hand over to `node`;
//!   once the transfer started, the term of the leader that started it (the new leader,
//!   announced within an election time-out, leads a later one; `SHARDKV GROUPS` shows
//!   it).
//! - `SHARDKV MEMBERS group`: the group's replicas as its leader sees them:
//!   `[leader, commit index, joint 0|1, [[node, voter|learner|outgoing, match index]...]]`.
//! - `SHARDKV ADD-LEARNER | PROMOTE | REMOVE-NODE group node`, `SHARDKV REPLACE group
//!   from to`: one membership change through the group's leader (REPLACE is one joint
//!   change: `to` votes and `from` leaves); `+OK` once it applied.
//! - `SHARDKV OPEN-REPLICA group`, `SHARDKV DROP-REPLICA group`: on the node asked only:
//!   start an empty replica that waits for the leader's snapshot; delete this node's
//!   replica once the leader confirms the node is no longer a member.

use std::net::SocketAddr;

use bytes::Bytes;

use super::cluster::slot_arg;
use super::{int_arg, lower, tri, unknown_subcommand, wrong_args, Ctx};
use crate::kv::meta::{MetaOp, META_GROUP, META_SLOT};
use crate::kv::read::ReadCommand;
use crate::kv::KvCommand;
use crate::raft::types::{GroupId, NodeId};
use crate::resp::backend::Backend;
use crate::resp::exec::{Job, Merge, Part};
use crate::resp::frame::Frame;
use crate::shard::api::{MemberStep, ShardOp};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let sub = lower(&args[1]);
    let arity_ok = match sub.as_str() {
        "groups" | "nodes" | "alloc-group" | "map" => args.len() == 2,
        "split" => (3..=6).contains(&args.len()),
        "join" => args.len() == 5,
        "forget-node" => args.len() == 3,
        "members" | "open-replica" | "drop-replica" => args.len() == 3,
        "transfer-leader" | "add-learner" | "promote" | "remove-node" => args.len() == 4,
        "replace" => args.len() == 5,
        _ => return Job::Now(unknown_subcommand(&args[1], "shardkv")),
    };
    if !arity_ok {
        return Job::Now(wrong_args(&format!("shardkv|{sub}")));
    }
    match sub.as_str() {
        "groups" => return Job::Now(groups(cx)),
        "nodes" => return Job::Now(nodes(cx)),
        "alloc-group" => return meta_write(cx, MetaOp::AllocGroup),
        "join" => {
            let id = tri!(id_arg(&args[2], "node"));
            let addr = |i: usize| {
                std::str::from_utf8(&args[i]).ok().and_then(|a| a.parse::<SocketAddr>().ok())
            };
            let (Some(peer), Some(resp)) = (addr(3), addr(4)) else {
                return Job::Now(Frame::error("ERR invalid address (IP:port expected)"));
            };
            return meta_write(cx, MetaOp::AddNode { id, peer, resp });
        }
        "forget-node" => {
            let id = tri!(id_arg(&args[2], "node"));
            return meta_write(cx, MetaOp::RemoveNode { id });
        }
        "map" => {
            let command = ReadCommand::ClusterMap { known: 0, linearizable: true };
            let op = ShardOp::read(command, cx.now_ms());
            let part = Part { group: META_GROUP, slot: META_SLOT, op, positions: Vec::new() };
            return cx.ops(false, vec![part], Merge::One);
        }
        _ => {}
    }
    // Group 0 is the metadata group: its replicas move like any other's.
    let group = GroupId(tri!(group_arg(&args[2])));
    let node = |i: usize| id_arg(&args[i], "node").map(NodeId);
    let op = match sub.as_str() {
        "split" => {
            let (at, rest) = match args.get(3) {
                Some(arg) if lower(arg) != "child" => (Some(tri!(slot_arg(arg))), &args[4..]),
                _ => (None, &args[3..]),
            };
            let child = match rest {
                [word, id] if lower(word) == "child" => {
                    let child = GroupId(tri!(id_arg(id, "group")));
                    // Ids come from ALLOC-GROUP; a group this node knows is never reused.
                    if cx.groups().iter().any(|g| g.id == child) {
                        return Job::Now(Frame::error(format!("ERR group {child} exists")));
                    }
                    child
                }
                [] => {
                    return Job::Now(Frame::error(
                        "ERR SPLIT needs CHILD id (a group id from SHARDKV ALLOC-GROUP)",
                    ))
                }
                _ => return Job::Now(Frame::error("ERR syntax error")),
            };
            ShardOp::Split { at, child }
        }
        "transfer-leader" => ShardOp::TransferLeader { to: tri!(node(3)) },
        "members" => ShardOp::Members,
        "add-learner" => members(vec![MemberStep::AddLearner(tri!(node(3)))]),
        "promote" => members(vec![MemberStep::AddVoter(tri!(node(3)))]),
        "remove-node" => members(vec![MemberStep::Remove(tri!(node(3)))]),
        "replace" => {
            let (from, to) = (tri!(node(3)), tri!(node(4)));
            members(vec![MemberStep::AddVoter(to), MemberStep::Remove(from)])
        }
        "open-replica" => ShardOp::OpenReplica,
        _ => ShardOp::DropReplica,
    };
    // A node-local operation may name a group this node does not route yet.
    let local = matches!(op, ShardOp::OpenReplica | ShardOp::DropReplica);
    let view = cx.groups().into_iter().find(|g| g.id == group);
    let slot = match (view, local) {
        _ if group == META_GROUP => META_SLOT,
        (Some(view), _) => view.slot_first,
        (None, true) => 0,
        (None, false) => return Job::Now(Frame::error(format!("ERR no group {group}"))),
    };
    let part = Part { group, slot, op, positions: Vec::new() };
    cx.ops(true, vec![part], Merge::One)
}

/// A change of the cluster map, through the metadata group's leader.
fn meta_write<B: Backend>(cx: &mut Ctx<'_, B>, op: MetaOp) -> Job {
    let op = ShardOp::Write(cx.request(KvCommand::Meta(op)));
    let part = Part { group: META_GROUP, slot: META_SLOT, op, positions: Vec::new() };
    cx.ops(true, vec![part], Merge::One)
}

fn members(steps: Vec<MemberStep>) -> ShardOp {
    ShardOp::ChangeMembers { steps }
}

fn nodes<B: Backend>(cx: &Ctx<'_, B>) -> Frame {
    let rows = cx.backend.cluster_view().nodes.into_iter().map(|n| {
        Frame::Array(vec![
            Frame::Int(n.id.get() as i64),
            Frame::Bulk(Bytes::from(n.resp_addr.to_string())),
        ])
    });
    Frame::Array(rows.collect())
}

fn groups<B: Backend>(cx: &Ctx<'_, B>) -> Frame {
    let rows = cx.groups().into_iter().map(|g| {
        let leader = g.leader.map_or(Frame::Null, |l| Frame::Int(l.get() as i64));
        let replicas = g
            .replicas
            .iter()
            .map(|r| Frame::Int(r.get() as i64))
            .collect();
        Frame::Array(vec![
            Frame::Int(g.id.get() as i64),
            Frame::Int(i64::from(g.slot_first)),
            Frame::Int(i64::from(g.slot_last)),
            leader,
            Frame::Array(replicas),
        ])
    });
    Frame::Array(rows.collect())
}

/// A group id: 0 (the metadata group) or a data group's.
fn group_arg(arg: &[u8]) -> Result<u64, Frame> {
    let id = int_arg(arg).map_err(|_| Frame::error("ERR invalid group id"))?;
    u64::try_from(id).map_err(|_| Frame::error("ERR invalid group id"))
}

fn id_arg(arg: &[u8], what: &str) -> Result<u64, Frame> {
    let id = int_arg(arg).map_err(|_| Frame::error(format!("ERR invalid {what} id")))?;
    u64::try_from(id)
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| Frame::error(format!("ERR invalid {what} id")))
}
