//! PERSIST key.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use crate::kv::{key_slot, KvCommand};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let key = args[1].clone();
    cx.write(key_slot(&key), KvCommand::Persist { key })
}
