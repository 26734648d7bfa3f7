//! SHARDKV GROUPS | SPLIT | TRANSFER-LEADER: the operator commands `shardkv admin` sends
//! to any node (not Redis commands; Redis clients never send them).
//!
//! - `SHARDKV GROUPS`: every group as this node knows it:
//!   `[id, first slot, last slot, leader id or nil, [replica ids]]`.
//! - `SHARDKV SPLIT group [slot]`: split `group` at `slot` (default: the slot that halves
//!   its keys) into a new group, numbered one above the highest this node knows; answers
//!   `[child, first slot, last slot]` once the split applied on the group's leader.
//! - `SHARDKV TRANSFER-LEADER group node`: asks the group's leader to hand over to `node`;
//!   `+OK` once the transfer started (the new leader is announced within an election
//!   time-out; `SHARDKV GROUPS` shows it).

use bytes::Bytes;

use super::cluster::slot_arg;
use super::{int_arg, lower, tri, unknown_subcommand, wrong_args, Ctx};
use crate::raft::types::{GroupId, NodeId};
use crate::resp::backend::Backend;
use crate::resp::exec::{Job, Merge, Part};
use crate::resp::frame::Frame;
use crate::shard::api::ShardOp;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let sub = lower(&args[1]);
    let arity_ok = match sub.as_str() {
        "groups" => args.len() == 2,
        "split" => args.len() == 3 || args.len() == 4,
        "transfer-leader" => args.len() == 4,
        _ => return Job::Now(unknown_subcommand(&args[1], "shardkv")),
    };
    if !arity_ok {
        return Job::Now(wrong_args(&format!("shardkv|{sub}")));
    }
    if sub == "groups" {
        return Job::Now(groups(cx));
    }
    let group = tri!(id_arg(&args[2], "group"));
    let Some(view) = cx.groups().into_iter().find(|g| g.id == GroupId(group)) else {
        return Job::Now(Frame::error(format!("ERR no group {group}")));
    };
    let op = if sub == "split" {
        let at = match args.get(3) {
            Some(arg) => Some(tri!(slot_arg(arg))),
            None => None,
        };
        let highest = cx.groups().iter().map(|g| g.id.get()).max().unwrap_or(0);
        ShardOp::Split {
            at,
            child: GroupId(highest + 1),
        }
    } else {
        ShardOp::TransferLeader {
            to: NodeId(tri!(id_arg(&args[3], "node"))),
        }
    };
    let part = Part {
        group: view.id,
        slot: view.slot_first,
        op,
        positions: Vec::new(),
    };
    cx.ops(true, vec![part], Merge::One)
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
