//! EXISTS key [key ...], and TOUCH key [key ...] (the same count: no access time is kept to
//! update): split across groups for plain connections; `-CROSSSLOT` for
//! cluster-aware ones when the keys hash to different slots.

use bytes::Bytes;

use super::Ctx;
use crate::kv::read::ReadCommand;
use crate::resp::backend::Backend;
use crate::resp::exec::{Job, Merge};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let keys = &args[1..];
    cx.multi_key_read(keys, |keys| ReadCommand::Exists { keys }, Merge::SumInt)
}
