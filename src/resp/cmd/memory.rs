//! MEMORY USAGE key [SAMPLES count] (`kv::read::memory_usage`: the key, its stored record
//! and a per-entry overhead, so that `redis-cli --memkeys` ranks keys) and MEMORY HELP.
//! Routed by its key, as Redis Cluster routes it, before its options are read.

use bytes::Bytes;

use super::{int_arg, is, lower, syntax_error, tri, unknown_subcommand, wrong_args, Ctx};
use crate::kv::key_slot;
use crate::kv::read::ReadCommand;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    match lower(&args[1]).as_str() {
        "usage" if args.len() < 3 => Job::Now(wrong_args("memory|usage")),
        "usage" => usage(cx, &args[2], &args[3..]),
        _ => Job::Now(unknown_subcommand(&args[1], "memory")),
    }
}

fn usage<B: Backend>(cx: &mut Ctx<'_, B>, key: &Bytes, options: &[Bytes]) -> Job {
    let slot = key_slot(key);
    if let Some(moved) = cx.moved(slot, true) {
        return Job::Now(moved);
    }
    // SAMPLES counts the elements of nested values sampled; a string has none.
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let count = options.next().filter(|_| is(option, "samples"));
        let Some(count) = count else {
            return Job::Now(syntax_error());
        };
        if tri!(int_arg(count)) < 0 {
            return Job::Now(syntax_error());
        }
    }
    cx.read(slot, ReadCommand::MemoryUsage { key: key.clone() })
}
