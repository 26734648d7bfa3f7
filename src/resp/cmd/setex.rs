//! SETEX key seconds value, PSETEX key milliseconds value.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::set::{deadline_ms, ExpiryUnit};
use super::{lower, tri};
use crate::kv::command::SetCondition;
use crate::kv::{key_slot, KvCommand};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let name = lower(&args[0]);
    let unit = if name == "setex" {
        ExpiryUnit::Seconds
    } else {
        ExpiryUnit::Millis
    };
    let deadline = tri!(deadline_ms(cx.now_ms(), &args[2], unit, &name));
    let (key, value) = (args[1].clone(), args[3].clone());
    let command = KvCommand::Set {
        key: key.clone(),
        value,
        expire_at_ms: Some(deadline),
        keep_ttl: false,
        condition: SetCondition::Always,
        get: false,
    };
    cx.write(key_slot(&key), command)
}
