//! GETBIT key offset, and SETBIT key offset value.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{bit_offset, tri};
use crate::kv::number::parse_i64;
use crate::kv::read::ReadCommand;
use crate::kv::{key_slot, KvCommand};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let offset = tri!(bit_offset(cx, &args[2], None));
    let key = args[1].clone();
    if args.len() == 3 {
        return cx.read(key_slot(&key), ReadCommand::GetBit { key, offset });
    }
    let bit = match parse_i64(&args[3]) {
        Some(0) => false,
        Some(1) => true,
        _ => return Job::Now(Frame::error("ERR bit is not an integer or out of range")),
    };
    cx.write(key_slot(&key), KvCommand::SetBit { key, offset, bit })
}
