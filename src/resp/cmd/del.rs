//! DEL / UNLINK key [key ...] (UNLINK frees nothing later: deletes are applied entries).
//! Split across groups for plain connections, one request id for all parts; `-CROSSSLOT`
//! for cluster-aware ones when the keys hash to different slots.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{split_by_group, tri};
use crate::kv::KvCommand;
use crate::resp::exec::{Merge, Part};
use crate::shard::api::ShardOp;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let keys = &args[1..];
    if cx.client.redirects {
        let slot = tri!(cx.one_slot(keys));
        return cx.write(
            slot,
            KvCommand::Del {
                keys: keys.to_vec(),
            },
        );
    }
    let request = cx.request(KvCommand::Del { keys: Vec::new() });
    let parts = split_by_group(cx.backend, keys)
        .into_iter()
        .map(|(slot, positions)| {
            let keys = positions.iter().map(|&p| keys[p].clone()).collect();
            let mut request = request.clone();
            request.command = KvCommand::Del { keys };
            let op = ShardOp::Write(request);
            Part {
                group: cx.backend.group_of_slot(slot),
                slot,
                op,
                positions,
            }
        })
        .collect();
    cx.ops(true, parts, Merge::SumInt)
}
