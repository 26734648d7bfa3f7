//! FLUSHALL / FLUSHDB [ASYNC|SYNC]: every group deletes the keys of its slot range; one
//! request id for all parts.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{is, syntax_error};
use crate::kv::KvCommand;
use crate::resp::exec::{Merge, Part};
use crate::shard::api::ShardOp;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    match &args[1..] {
        [] => {}
        [mode] if is(mode, "async") || is(mode, "sync") => {}
        _ => return Job::Now(syntax_error()),
    }
    let groups = cx.groups();
    let request = cx.request(KvCommand::FlushSlots {
        slot_first: 0,
        slot_last: 0,
    });
    let parts = groups
        .into_iter()
        .map(|g| {
            let mut request = request.clone();
            request.command = KvCommand::FlushSlots {
                slot_first: g.slot_first,
                slot_last: g.slot_last,
            };
            Part {
                group: g.id,
                slot: g.slot_first,
                op: ShardOp::Write(request),
                positions: Vec::new(),
            }
        })
        .collect();
    cx.ops(true, parts, Merge::AllOk)
}
