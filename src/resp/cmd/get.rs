//! GET key.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::kv::key_slot;
use crate::kv::read::ReadCommand;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let key = args[1].clone();
    cx.read(key_slot(&key), ReadCommand::Get { key })
}
