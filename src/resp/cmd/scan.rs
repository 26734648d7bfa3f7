//! SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]. The cursor holds a slot and
//! an offset into it (`kv::read::scan_cursor`); a step stays inside the group owning
//! that slot, and when the group is done the next cursor points at the next group's
//! first slot (on a cluster-aware connection, the next of the groups the node is master
//! of, `Ctx::keyspace_groups`, as a Redis Cluster node scans its own keys). Keys
//! deleted during a scan may make it skip a key that sits after them in the same slot
//! (Redis guarantees more); keys are never returned twice within one slot walk.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, is, lower, syntax_error, tri};
use crate::kv::read::{parse_scan_cursor, ReadCommand, ScanStep};
use crate::resp::exec::{Merge, Part};
use crate::resp::frame::Frame;
use crate::shard::api::ShardOp;

/// SCAN's COUNT when none is given (Redis's default).
pub const SCAN_COUNT_DEFAULT: u64 = 10;
const TYPES: &[&str] = &["string", "list", "set", "zset", "hash", "stream"];

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let cursor = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|c| c.parse::<u64>().ok());
    let Some((slot, offset)) = cursor.and_then(parse_scan_cursor) else {
        return Job::Now(Frame::error("ERR invalid cursor"));
    };
    let (mut pattern, mut count, mut value_type) = (None, SCAN_COUNT_DEFAULT, None);
    let mut options = args[2..].chunks(2);
    for option in options.by_ref() {
        let [name, value] = option else {
            return Job::Now(syntax_error());
        };
        if is(name, "match") {
            pattern = Some(value.clone()).filter(|p| &p[..] != b"*");
        } else if is(name, "count") {
            let value = tri!(int_arg(value));
            if value < 1 {
                return Job::Now(syntax_error());
            }
            count = value as u64;
        } else if is(name, "type") {
            let name = lower(value);
            if !TYPES.contains(&name.as_str()) {
                return Job::Now(Frame::error(format!("ERR unknown type name '{name}'")));
            }
            value_type = Some(name);
        } else {
            return Job::Now(syntax_error());
        }
    }
    let groups = cx.keyspace_groups();
    let group = cx.backend.group_of_slot(slot);
    let (view, slot, offset) = match groups.iter().find(|g| g.id == group) {
        Some(view) => (view, slot, offset),
        // A cluster-aware connection's scan covers the node's own groups: from a slot of
        // another (cursor 0, or a group whose master changed) it goes on at the next own.
        None if cx.client.redirects => match groups.iter().find(|g| g.slot_first > slot) {
            Some(view) => (view, view.slot_first, 0),
            None => return Job::Now(Frame::Array(vec![Frame::text("0"), Frame::Array(vec![])])),
        },
        None => return Job::Now(Frame::error("ERR invalid cursor")),
    };
    let next_slot = groups.iter().find(|g| g.slot_first > view.slot_last).map(|g| g.slot_first);
    let step = ScanStep {
        slot,
        offset,
        slot_last: view.slot_last,
        count,
        pattern,
        value_type,
    };
    let op = ShardOp::read(ReadCommand::Scan(step), cx.now_ms());
    let part = Part {
        group: view.id,
        slot,
        op,
        positions: Vec::new(),
    };
    cx.ops(false, vec![part], Merge::Scan { next_slot })
}
