//! BITFIELD key [GET type offset | [OVERFLOW WRAP|SAT|FAIL] SET type offset value |
//! INCRBY type offset increment ...], and BITFIELD_RO key [GET type offset ...]. Every word
//! is read before anything runs, as Redis reads them; GETs alone are a read.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{bit_offset, int_arg, is, syntax_error, tri};
use crate::kv::bits::{FieldAction, FieldOp, Overflow};
use crate::kv::number::parse_i64;
use crate::kv::read::ReadCommand;
use crate::kv::{key_slot, KvCommand};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut at = 2;
    while at < args.len() {
        let (word, left) = (&args[at], args.len() - at - 1);
        let takes_value = if is(word, "get") && left >= 2 {
            false
        } else if (is(word, "set") || is(word, "incrby")) && left >= 3 {
            true
        } else if is(word, "overflow") && left >= 1 {
            overflow = match Overflow::parse(&args[at + 1]) {
                Some(overflow) => overflow,
                None => return Job::Now(Frame::error("ERR Invalid OVERFLOW type specified")),
            };
            at += 2;
            continue;
        } else {
            return Job::Now(syntax_error());
        };
        let (signed, bits) = tri!(field_type(&args[at + 1]));
        let offset = tri!(bit_offset(cx, &args[at + 2], Some(bits)));
        let action = match takes_value {
            false => FieldAction::Get,
            true => {
                let number = tri!(int_arg(&args[at + 3]));
                if is(word, "set") {
                    FieldAction::Set(number)
                } else {
                    FieldAction::IncrBy(number)
                }
            }
        };
        ops.push(FieldOp { action, signed, bits, offset, overflow });
        at += if takes_value { 4 } else { 3 };
    }
    let key = args[1].clone();
    if ops.iter().all(|op| op.action == FieldAction::Get) {
        return cx.read(key_slot(&key), ReadCommand::BitField { key, ops });
    }
    if is(&args[0], "bitfield_ro") {
        return Job::Now(Frame::error("ERR BITFIELD_RO only supports the GET subcommand"));
    }
    cx.write(key_slot(&key), KvCommand::BitField { key, ops })
}

/// `i1` to `i64`, `u1` to `u63` (a lower-case letter, as Redis reads it).
fn field_type(word: &[u8]) -> Result<(bool, u32), Frame> {
    let invalid = || {
        Frame::error(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not \
             supported but i64 is.",
        )
    };
    let (signed, widest) = match word.first() {
        Some(b'i') => (true, 64),
        Some(b'u') => (false, 63),
        _ => return Err(invalid()),
    };
    match parse_i64(&word[1..]) {
        Some(bits) if (1..=widest).contains(&bits) => Ok((signed, bits as u32)),
        _ => Err(invalid()),
    }
}
