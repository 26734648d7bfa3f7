//! MSET / MSETNX key value [key value ...]: atomic, so every key must hash to one slot
//! (`-CROSSSLOT` otherwise, as Redis Cluster), whatever the connection's mode.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{lower, tri, wrong_args};
use crate::kv::KvCommand;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let name = lower(&args[0]);
    // Redis Cluster checks the keys' slots before the command counts its arguments (a key
    // left without a value still counts); shardkv does for every connection, as MSET
    // needs one slot in any mode (`cmd::prepare` has answered `-MOVED` already).
    let slot = tri!(cx.one_slot(args[1..].iter().step_by(2)));
    if args.len() % 2 == 0 {
        return Job::Now(wrong_args(&name));
    }
    let pairs: Vec<(Bytes, Bytes)> = args[1..]
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    let command = match name.as_str() {
        "mset" => KvCommand::MSet { pairs },
        _ => KvCommand::MSetNx { pairs },
    };
    cx.write(slot, command)
}
