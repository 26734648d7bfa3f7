//! GETBIT key offset, and SETBIT key offset value.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::tri;
use crate::kv::number::parse_i64;
use crate::kv::read::ReadCommand;
use crate::kv::{key_slot, KvCommand};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let offset = tri!(offset(cx, &args[2]));
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

/// A bit offset: not negative, and within a string of `proto-max-bulk-len` bytes (the
/// node's `limits.bulk_bytes_max`), as Redis bounds it.
fn offset<B: Backend>(cx: &Ctx<'_, B>, arg: &[u8]) -> Result<u64, Frame> {
    let bytes_max = cx.shared.options.limits.bulk_bytes_max;
    parse_i64(arg)
        .and_then(|offset| u64::try_from(offset).ok())
        .filter(|offset| offset >> 3 < bytes_max)
        .ok_or_else(|| Frame::error("ERR bit offset is not an integer or out of range"))
}
