//! TTL, PTTL, EXPIRETIME, PEXPIRETIME key.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::lower;
use crate::kv::key_slot;
use crate::kv::read::{ReadCommand, TtlForm};

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let form = match lower(&args[0]).as_str() {
        "ttl" => TtlForm::Seconds,
        "pttl" => TtlForm::Millis,
        "expiretime" => TtlForm::DeadlineSeconds,
        _ => TtlForm::DeadlineMillis,
    };
    let key = args[1].clone();
    cx.read(key_slot(&key), ReadCommand::Ttl { key, form })
}
