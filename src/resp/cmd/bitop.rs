//! BITOP AND|OR|XOR|NOT destkey key [key ...]: every key in one slot (`-CROSSSLOT`).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{syntax_error, tri};
use crate::kv::bits::BitOpKind;
use crate::kv::KvCommand;
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    // The keys first, as Redis Cluster routes them before the command reads a word.
    let slot = tri!(cx.one_slot(&args[2..]));
    let Some(op) = BitOpKind::parse(&args[1]) else {
        return Job::Now(syntax_error());
    };
    if op == BitOpKind::Not && args.len() != 4 {
        return Job::Now(Frame::error("ERR BITOP NOT must be called with a single source key."));
    }
    let (dest, keys) = (args[2].clone(), args[3..].to_vec());
    cx.write(slot, KvCommand::BitOp { op, dest, keys })
}
