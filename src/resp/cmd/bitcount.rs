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

/// Words after the key (BITCOUNT) or the bit (BITPOS) sent on with the read: one more than
/// either reads is a syntax error, whatever follows.
const RANGE_WORDS_MAX: usize = 4;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let key = args[1].clone();
    let range = |from: usize| args[from..].iter().take(RANGE_WORDS_MAX).cloned().collect();
    if is(&args[0], "bitcount") {
        // Redis reads the range only once it found the key: the read does.
        return cx.read(key_slot(&key), ReadCommand::BitCount { key, args: range(2) });
    }
    let bit = match tri!(int_arg(&args[2])) {
        0 => false,
        1 => true,
        _ => return Job::Now(Frame::error("ERR The bit argument must be 1 or 0.")),
    };
    cx.read(key_slot(&key), ReadCommand::BitPos { key, bit, args: range(3) })
}
