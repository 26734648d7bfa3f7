//! SLOWLOG GET [count] | LEN | RESET: this node's slow commands (`resp::slowlog`), timed
//! from their preparation to their reply, replication and fsync included.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;
use crate::resp::frame::Frame;

use super::{clip, lower, unknown_subcommand, wrong_args};
use crate::kv::number::parse_i64;

/// Entries SLOWLOG GET answers without a count.
const GET_COUNT_DEFAULT: usize = 10;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let log = &cx.shared.slowlog;
    let frame = match (lower(&args[1]).as_str(), args.len()) {
        ("get", 2) => log.newest(Some(GET_COUNT_DEFAULT)),
        ("get", 3) => match parse_i64(&args[2]) {
            Some(-1) => log.newest(None),
            Some(count) if count >= 0 => log.newest(Some(count as usize)),
            _ => Frame::error("ERR count should be greater than or equal to -1"),
        },
        ("get", _) => Frame::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
            clip(&args[1])
        )),
        ("len", 2) => Frame::Int(log.len() as i64),
        ("reset", 2) => {
            log.reset();
            Frame::ok()
        }
        (sub @ ("len" | "reset"), _) => wrong_args(&format!("slowlog|{sub}")),
        _ => unknown_subcommand(&args[1], "slowlog"),
    };
    Job::Now(frame)
}
