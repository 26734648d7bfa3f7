//! RANDOMKEY: every group proposes a live key from a random starting point; one of them,
//! picked at random, answers (nil when the database is empty).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use std::hash::{BuildHasher, RandomState};

use crate::kv::read::ReadCommand;
use crate::resp::exec::{Merge, Part};
use crate::shard::api::ShardOp;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    let random = RandomState::new();
    let now_ms = cx.now_ms();
    let groups = cx.keyspace_groups();
    let count = groups.len().max(1);
    let parts = groups
        .into_iter()
        .map(|g| {
            let seed = random.hash_one((g.id.0, now_ms));
            let (slot_first, slot_last) = (g.slot_first, g.slot_last);
            let command = ReadCommand::RandomKey {
                slot_first,
                slot_last,
                seed,
            };
            let op = ShardOp::read(command, now_ms);
            Part {
                group: g.id,
                slot: g.slot_first,
                op,
                positions: Vec::new(),
            }
        })
        .collect();
    let start = (random.hash_one(now_ms) % count as u64) as usize;
    cx.ops(false, parts, Merge::RandomKey { start })
}
