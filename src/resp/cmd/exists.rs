//! EXISTS key [key ...]: split across groups for plain connections; `-CROSSSLOT` for
//! cluster-aware ones when the keys hash to different slots.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{split_by_group, tri};
use crate::kv::read::ReadCommand;
use crate::resp::exec::{Merge, Part};
use crate::shard::api::ShardOp;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let keys = &args[1..];
    if cx.client.redirects {
        let slot = tri!(cx.one_slot(keys));
        return cx.read(
            slot,
            ReadCommand::Exists {
                keys: keys.to_vec(),
            },
        );
    }
    let now_ms = cx.now_ms();
    let parts = split_by_group(cx.backend, keys)
        .into_iter()
        .map(|(slot, positions)| {
            let keys = positions.iter().map(|&p| keys[p].clone()).collect();
            let op = ShardOp::Read {
                command: ReadCommand::Exists { keys },
                now_ms,
            };
            Part {
                group: cx.backend.group_of_slot(slot),
                slot,
                op,
                positions,
            }
        })
        .collect();
    cx.ops(false, parts, Merge::SumInt)
}
