//! DBSIZE: the sum of the stored keys of every group (a cluster-aware connection's: of the
//! groups the node is master of, `Ctx::keyspace_groups`).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::kv::read::ReadCommand;
use crate::resp::exec::{Merge, Part};
use crate::shard::api::ShardOp;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    let count = |slot_first, slot_last| ReadCommand::DbSize { slot_first, slot_last };
    let parts = count_parts(cx, count);
    cx.ops(false, parts, Merge::SumInt)
}

/// One count read per group of the keyspace (`Ctx::keyspace_groups`), `count` of its first
/// and last slot.
pub fn count_parts<B: Backend>(
    cx: &Ctx<'_, B>,
    count: impl Fn(u16, u16) -> ReadCommand,
) -> Vec<Part> {
    let now_ms = cx.now_ms();
    let parts = cx.keyspace_groups().into_iter().map(|g| {
        let command = count(g.slot_first, g.slot_last);
        let op = ShardOp::read(command, now_ms);
        Part {
            group: g.id,
            slot: g.slot_first,
            op,
            positions: Vec::new(),
        }
    });
    parts.collect()
}
