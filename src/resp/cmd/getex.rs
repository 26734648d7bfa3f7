//! GETEX key [EX s|PX ms|EXAT unix-s|PXAT unix-ms|PERSIST]; without an option it is a
//! plain read. An invalid time answers nil on a missing key, as in Redis, and the error
//! otherwise.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::{Job, Merge};

use super::set::{deadline_ms, take_expiry, ExpiryUnit};
use super::{is, syntax_error, tri};
use crate::kv::command::GetExTtl;
use crate::kv::read::ReadCommand;
use crate::kv::{key_slot, KvCommand};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let key = args[1].clone();
    let slot = key_slot(&key);
    // Redis's option rules: PERSIST or one kind of expiry option; either may come again
    // (the last expiry option counts, and only its value is read).
    let (mut persist, mut expiry): (bool, Option<(ExpiryUnit, &Bytes)>) = (false, None);
    let mut i = 2;
    while i < args.len() {
        let option = &args[i];
        if is(option, "persist") && expiry.is_none() {
            persist = true;
        } else if let (Some(unit), Some(value), false) =
            (ExpiryUnit::of(option), args.get(i + 1), persist)
        {
            tri!(take_expiry(&mut expiry, unit, value));
            i += 1;
        } else {
            return Job::Now(syntax_error());
        }
        i += 1;
    }
    let ttl = match expiry {
        None if persist => GetExTtl::Persist,
        None => return cx.read(slot, ReadCommand::Get { key }),
        Some((unit, value)) => match deadline_ms(cx.now_ms(), value, unit, "getex") {
            Ok(deadline_ms) => GetExTtl::At { deadline_ms },
            // Redis answers a missing key before it reads the time: a read then says which
            // of nil or the error is the answer, with no write to the log.
            Err(error) => {
                return cx.read_merged(slot, ReadCommand::Get { key }, Merge::NilOr(error));
            }
        },
    };
    cx.write(slot, KvCommand::GetEx { key, ttl })
}
