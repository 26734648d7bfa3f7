//! BITCOUNT key [start end [BYTE|BIT]], and BITPOS key bit [start [end [BYTE|BIT]]]: the
//! range is read once the key is found (`kv::bits`), as Redis reads it.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, is, tri};
use crate::kv::key_slot;
use crate::kv::read::ReadCommand;
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let key = args[1].clone();
    if is(&args[0], "bitcount") {
        // Redis reads the range only once it found the key: the read does.
        let args = args[2..].to_vec();
        return cx.read(key_slot(&key), ReadCommand::BitCount { key, args });
    }
    let bit = match tri!(int_arg(&args[2])) {
        0 => false,
        1 => true,
        _ => return Job::Now(Frame::error("ERR The bit argument must be 1 or 0.")),
    };
    let args = args[3..].to_vec();
    cx.read(key_slot(&key), ReadCommand::BitPos { key, bit, args })
}
