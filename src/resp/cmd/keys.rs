//! KEYS pattern: every group's matching live keys, page by page (bounded per page and in
//! total, see `exec::KEYS_REPLY_KEYS_MAX`).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let groups = cx
        .keyspace_groups()
        .into_iter()
        .map(|g| (g.id, g.slot_first, g.slot_last))
        .collect();
    Job::Keys {
        pattern: args[1].clone(),
        groups,
        now_ms: cx.now_ms(),
    }
}
