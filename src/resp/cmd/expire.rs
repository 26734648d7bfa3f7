//! EXPIRE / PEXPIRE key relative-time, EXPIREAT / PEXPIREAT key unix-time, each with
//! [NX|XX|GT|LT]. A deadline in the past deletes the key (applied by the group).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, is, lower, tri};
use crate::kv::command::ExpireCondition;
use crate::kv::{key_slot, KvCommand, KvError};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let name = lower(&args[0]);
    let condition = tri!(condition(&args[3..]));
    let value = tri!(int_arg(&args[2]));
    let invalid = || Job::Now(Frame::from(KvError::InvalidExpireTime(name.clone())));
    let millis = match name.as_str() {
        "expire" | "expireat" => value.checked_mul(1000),
        _ => Some(value),
    };
    let Some(millis) = millis else {
        return invalid();
    };
    let deadline = match name.as_str() {
        "expire" | "pexpire" => millis.checked_add(cx.now_ms() as i64),
        _ => Some(millis),
    };
    let Some(deadline) = deadline else {
        return invalid();
    };
    let key = args[1].clone();
    let deadline_ms = deadline.max(0) as u64;
    cx.write(
        key_slot(&key),
        KvCommand::Expire {
            key,
            deadline_ms,
            condition,
        },
    )
}

/// NX, XX, GT, LT with Redis 7's compatibility errors.
fn condition(options: &[Bytes]) -> Result<ExpireCondition, Frame> {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in options {
        match () {
            _ if is(option, "nx") => nx = true,
            _ if is(option, "xx") => xx = true,
            _ if is(option, "gt") => gt = true,
            _ if is(option, "lt") => lt = true,
            _ => {
                let option = String::from_utf8_lossy(option);
                return Err(Frame::error(format!("ERR Unsupported option {option}")));
            }
        }
    }
    if nx && (xx || gt || lt) {
        let text = "ERR NX and XX, GT or LT options at the same time are not compatible";
        return Err(Frame::error(text));
    }
    if gt && lt {
        return Err(Frame::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(match (nx, xx, gt, lt) {
        (true, ..) => ExpireCondition::Nx,
        (_, _, true, _) => ExpireCondition::Gt,
        (_, true, _, true) => ExpireCondition::XxLt,
        (_, _, _, true) => ExpireCondition::Lt,
        (_, true, _, _) => ExpireCondition::Xx,
        _ => ExpireCondition::Always,
    })
}
