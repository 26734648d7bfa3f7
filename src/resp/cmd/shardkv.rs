//! SHARDKV …: the operator commands `shardkv admin` sends to any node (not Redis
//! commands; Redis clients never send them).
//!
//! - `SHARDKV GROUPS`: every group as this node knows it:
//!   `[id, first slot, last slot, leader id or nil, [replica ids]]`.
//! - `SHARDKV NODES`: every node of the cluster: `[id, RESP address]`.
//! - `SHARDKV SPLIT group [slot]`: split `group` at `slot` (default: the slot that halves
//!   its keys) into a new group, numbered one above the highest this node knows; answers
//!   `[child, first slot, last slot]` once the split applied on the group's leader.
//! - `SHARDKV TRANSFER-LEADER group node`: asks the group's leader to hand over to `node`;
//!   `+OK` once the transfer started (the new leader is announced within an election
//!   time-out; `SHARDKV GROUPS` shows it).
//! - `SHARDKV MEMBERS group`: the group's replicas as its leader sees them:
//!   `[leader, commit index, joint 0|1, [[node, voter|learner|outgoing, match index]...]]`.
//! - `SHARDKV ADD-LEARNER | PROMOTE | REMOVE-NODE group node`, `SHARDKV REPLACE group
//!   from to`: one membership change through the group's leader (REPLACE is one joint
//!   change: `to` votes and `from` leaves); `+OK` once it applied.
//! - `SHARDKV OPEN-REPLICA group`, `SHARDKV DROP-REPLICA group`: on the node asked only:
//!   start an empty replica that waits for the leader's snapshot; delete this node's
//!   replica once the leader confirms the node is no longer a member.

use bytes::Bytes;

use super::cluster::slot_arg;
use super::{int_arg, lower, tri, unknown_subcommand, wrong_args, Ctx};
use crate::raft::types::{GroupId, NodeId};
use crate::resp::backend::Backend;
use crate::resp::exec::{Job, Merge, Part};
use crate::resp::frame::Frame;
use crate::shard::api::{MemberStep, ShardOp};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let sub = lower(&args[1]);
    let arity_ok = match sub.as_str() {
        "groups" | "nodes" => args.len() == 2,
        "split" => args.len() == 3 || args.len() == 4,
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
        _ => {}
    }
    let group = GroupId(tri!(id_arg(&args[2], "group")));
    let node = |i: usize| id_arg(&args[i], "node").map(NodeId);
    let op = match sub.as_str() {
        "split" => {
            let at = match args.get(3) {
                Some(arg) => Some(tri!(slot_arg(arg))),
                None => None,
            };
            let highest = cx.groups().iter().map(|g| g.id.get()).max().unwrap_or(0);
            ShardOp::Split { at, child: GroupId(highest + 1) }
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
        (Some(view), _) => view.slot_first,
        (None, true) => 0,
        (None, false) => return Job::Now(Frame::error(format!("ERR no group {group}"))),
    };
    let part = Part { group, slot, op, positions: Vec::new() };
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

fn id_arg(arg: &[u8], what: &str) -> Result<u64, Frame> {
    let id = int_arg(arg).map_err(|_| Frame::error(format!("ERR invalid {what} id")))?;
    u64::try_from(id)
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| Frame::error(format!("ERR invalid {what} id")))
}
