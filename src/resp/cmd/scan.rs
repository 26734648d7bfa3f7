//! SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]. The cursor holds a slot and an
//! offset into it (`kv::read::scan_cursor`); a step stays inside the group owning that
//! slot, and when the group is done the next cursor points at the next group's first
//! slot. Keys deleted during a scan may make it skip a key that sits after them in the
//! same slot (Redis guarantees more); keys are never returned twice within one slot walk.

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
    let groups = cx.groups();
    let group = cx.backend.group_of_slot(slot);
    let Some(view) = groups.iter().find(|g| g.id == group) else {
        return Job::Now(Frame::error("ERR invalid cursor"));
    };
    let next_slot = view
        .slot_last
        .checked_add(1)
        .filter(|s| *s < crate::kv::slot::SLOT_COUNT);
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
        group,
        slot,
        op,
        positions: Vec::new(),
    };
    cx.ops(false, vec![part], Merge::Scan { next_slot })
}
