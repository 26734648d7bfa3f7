//! GETRANGE key start end, and SUBSTR, its old name.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, tri};
use crate::kv::key_slot;
use crate::kv::read::ReadCommand;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let start = tri!(int_arg(&args[2]));
    let end = tri!(int_arg(&args[3]));
    let key = args[1].clone();
    cx.read(key_slot(&key), ReadCommand::GetRange { key, start, end })
}
