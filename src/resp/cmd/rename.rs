//! RENAME / RENAMENX key newkey: both keys must hash to one slot (`-CROSSSLOT`).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{is, tri};
use crate::kv::KvCommand;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let (key, new_key) = (args[1].clone(), args[2].clone());
    let slot = tri!(cx.one_slot([&key, &new_key]));
    let command = match is(&args[0], "rename") {
        true => KvCommand::Rename { key, new_key },
        false => KvCommand::RenameNx { key, new_key },
    };
    cx.write(slot, command)
}
