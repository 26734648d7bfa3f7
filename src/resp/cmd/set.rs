//! SET key value [NX|XX] [GET] [EX s|PX ms|EXAT unix-s|PXAT unix-ms|KEEPTTL], with
//! Redis 7's option rules; relative TTLs become absolute deadlines here.

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::{int_arg, is, syntax_error, tri};
use crate::kv::command::SetCondition;
use crate::kv::{key_slot, KvCommand, KvError};
use crate::resp::frame::Frame;

/// How an expiry argument is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpiryUnit {
    Seconds,
    Millis,
    UnixSeconds,
    UnixMillis,
}

impl ExpiryUnit {
    pub fn of(option: &[u8]) -> Option<ExpiryUnit> {
        [("ex", ExpiryUnit::Seconds), ("px", ExpiryUnit::Millis)]
            .into_iter()
            .chain([
                ("exat", ExpiryUnit::UnixSeconds),
                ("pxat", ExpiryUnit::UnixMillis),
            ])
            .find(|(name, _)| is(option, name))
            .map(|(_, unit)| unit)
    }
}

/// A positive expiry argument as an absolute deadline, or Redis's
/// `invalid expire time in '<command>' command`.
pub fn deadline_ms(now_ms: u64, arg: &[u8], unit: ExpiryUnit, command: &str) -> Result<u64, Frame> {
    let value = int_arg(arg)?;
    let invalid = || Frame::from(KvError::InvalidExpireTime(command.to_string()));
    if value <= 0 {
        return Err(invalid());
    }
    let millis = match unit {
        ExpiryUnit::Seconds | ExpiryUnit::UnixSeconds => value.checked_mul(1000),
        ExpiryUnit::Millis | ExpiryUnit::UnixMillis => Some(value),
    };
    let millis = millis.ok_or_else(invalid)?;
    let deadline = match unit {
        ExpiryUnit::Seconds | ExpiryUnit::Millis => millis.checked_add(now_ms as i64),
        ExpiryUnit::UnixSeconds | ExpiryUnit::UnixMillis => Some(millis),
    };
    deadline.map(|d| d as u64).ok_or_else(invalid)
}

/// Takes the expiry option `unit` with its `value` as Redis does: the same option may come
/// again (the last one counts, and only its value is read); two different ones are a
/// syntax error.
pub fn take_expiry<'a>(
    expiry: &mut Option<(ExpiryUnit, &'a Bytes)>,
    unit: ExpiryUnit,
    value: &'a Bytes,
) -> Result<(), Frame> {
    if expiry.is_some_and(|(given, _)| given != unit) {
        return Err(syntax_error());
    }
    *expiry = Some((unit, value));
    Ok(())
}

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let (mut condition, mut get, mut keep_ttl) = (SetCondition::Always, false, false);
    let mut expiry: Option<(ExpiryUnit, &Bytes)> = None;
    let mut i = 3;
    while i < args.len() {
        let option = &args[i];
        let next = args.get(i + 1);
        if is(option, "nx") && condition != SetCondition::IfPresent {
            condition = SetCondition::IfAbsent;
        } else if is(option, "xx") && condition != SetCondition::IfAbsent {
            condition = SetCondition::IfPresent;
        } else if is(option, "get") {
            get = true;
        } else if is(option, "keepttl") && expiry.is_none() {
            keep_ttl = true;
        } else if let (Some(unit), Some(value), false) = (ExpiryUnit::of(option), next, keep_ttl)
        {
            tri!(take_expiry(&mut expiry, unit, value));
            i += 1;
        } else {
            return Job::Now(syntax_error());
        }
        i += 1;
    }
    let now_ms = cx.now_ms();
    let expire_at_ms = match expiry {
        Some((unit, value)) => Some(tri!(deadline_ms(now_ms, value, unit, "set"))),
        None => None,
    };
    let (key, value) = (args[1].clone(), args[2].clone());
    let command = KvCommand::Set {
        key: key.clone(),
        value,
        expire_at_ms,
        keep_ttl,
        condition,
        get,
    };
    cx.write(key_slot(&key), command)
}
