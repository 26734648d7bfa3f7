//! APPEND key value.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::kv::{key_slot, KvCommand};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let (key, value) = (args[1].clone(), args[2].clone());
    cx.write(key_slot(&key), KvCommand::Append { key, value })
}
