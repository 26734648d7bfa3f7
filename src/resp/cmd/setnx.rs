//! SETNX key value: `1` when set, `0` when the key existed.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::kv::command::SetCondition;
use crate::kv::{key_slot, KvCommand};
use crate::resp::exec::Merge;
use crate::shard::api::ShardOp;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let (key, value) = (args[1].clone(), args[2].clone());
    let slot = key_slot(&key);
    let command = KvCommand::Set {
        key,
        value,
        expire_at_ms: None,
        keep_ttl: false,
        condition: SetCondition::IfAbsent,
        get: false,
    };
    let op = ShardOp::Write(cx.request(command));
    cx.routed(slot, op, true, Merge::SetNx)
}
