//! GETEX key [EX s|PX ms|EXAT unix-s|PXAT unix-ms|PERSIST]; without an option it is a
//! plain read.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::set::{deadline_ms, ExpiryUnit};
use super::{is, syntax_error, tri};
use crate::kv::command::GetExTtl;
use crate::kv::read::ReadCommand;
use crate::kv::{key_slot, KvCommand};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let key = args[1].clone();
    let slot = key_slot(&key);
    let ttl = match &args[2..] {
        [] => return cx.read(slot, ReadCommand::Get { key }),
        [option] if is(option, "persist") => GetExTtl::Persist,
        [option, value] => match ExpiryUnit::of(option) {
            Some(unit) => GetExTtl::At {
                deadline_ms: tri!(deadline_ms(cx.now_ms(), value, unit, "getex")),
            },
            None => return Job::Now(syntax_error()),
        },
        _ => return Job::Now(syntax_error()),
    };
    cx.write(slot, KvCommand::GetEx { key, ttl })
}
