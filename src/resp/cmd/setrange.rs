//! SETRANGE key offset value.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, tri};
use crate::kv::{key_slot, KvCommand};
use crate::resp::frame::Frame;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let offset = tri!(int_arg(&args[2]));
    let Ok(offset) = u64::try_from(offset) else {
        return Job::Now(Frame::error("ERR offset is out of range"));
    };
    let (key, value) = (args[1].clone(), args[3].clone());
    cx.write(key_slot(&key), KvCommand::SetRange { key, offset, value })
}
