//! INCR, DECR, INCRBY, DECRBY key [amount].

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, lower, tri};
use crate::kv::{key_slot, KvCommand};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let delta = match lower(&args[0]).as_str() {
        "incr" => 1,
        "decr" => -1,
        "incrby" => tri!(int_arg(&args[2])),
        _ => match tri!(int_arg(&args[2])).checked_neg() {
            Some(delta) => delta,
            None => return Job::Now(Frame::error("ERR decrement would overflow")),
        },
    };
    let key = args[1].clone();
    cx.write(key_slot(&key), KvCommand::IncrBy { key, delta })
}
