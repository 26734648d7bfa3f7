//! Read commands (GET, MGET, STRLEN, GETRANGE, EXISTS, TTL, PTTL, EXPIRETIME, PEXPIRETIME,
//! TYPE) over a `KvRead` at a given `now_ms`. The leader serves them after ReadIndex. A key
//! whose deadline is not after `now_ms` is invisible. Never writes, never reads a clock.

use bytes::Bytes;

use super::apply::KvRead;
use super::record::{Record, ValueType};
use super::reply::{KvError, Reply};
use super::slot::key_slot;

/// The live record of `key` (any type), or `None` when absent or expired.
pub fn lookup(view: &impl KvRead, now_ms: u64, key: &[u8]) -> Result<Option<Record>, KvError> {
    let Some(raw) = view.get(key_slot(key), key) else {
        return Ok(None);
    };
    let record = Record::decode(&raw).map_err(|e| KvError::CorruptRecord(e.to_string()))?;
    Ok((!record.is_expired(now_ms)).then_some(record))
}

/// Like `lookup`, but a key of another type is WRONGTYPE.
pub fn lookup_string(
    view: &impl KvRead,
    now_ms: u64,
    key: &[u8],
) -> Result<Option<Record>, KvError> {
    match lookup(view, now_ms, key)? {
        Some(record) if record.value_type != ValueType::String => Err(KvError::WrongType),
        found => Ok(found),
    }
}

fn answer(result: Result<Reply, KvError>) -> Reply {
    result.unwrap_or_else(Reply::Error)
}

/// GET.
pub fn get(view: &impl KvRead, now_ms: u64, key: &[u8]) -> Reply {
    answer(lookup_string(view, now_ms, key).map(|found| match found {
        Some(record) => Reply::Bulk(record.value),
        None => Reply::Nil,
    }))
}

/// MGET: a key that is absent or not a string reads as nil.
pub fn mget(view: &impl KvRead, now_ms: u64, keys: &[Bytes]) -> Reply {
    let values = keys.iter().map(|key| match lookup_string(view, now_ms, key) {
        Ok(Some(record)) => Reply::Bulk(record.value),
        Ok(None) | Err(KvError::WrongType) => Reply::Nil,
        Err(error) => Reply::Error(error),
    });
    Reply::Array(values.collect())
}

/// STRLEN.
pub fn strlen(view: &impl KvRead, now_ms: u64, key: &[u8]) -> Reply {
    answer(
        lookup_string(view, now_ms, key)
            .map(|found| Reply::Int(found.map_or(0, |record| record.value.len() as i64))),
    )
}

/// GETRANGE with Redis 7's index rules (negative indexes count from the end).
pub fn getrange(view: &impl KvRead, now_ms: u64, key: &[u8], start: i64, end: i64) -> Reply {
    let record = match lookup_string(view, now_ms, key) {
        Ok(Some(record)) => record,
        Ok(None) => return Reply::Bulk(Bytes::new()),
        Err(error) => return Reply::Error(error),
    };
    let len = record.value.len() as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return Reply::Bulk(Bytes::new());
    }
    let start = if start < 0 { len.saturating_add(start) } else { start }.max(0);
    let end = if end < 0 { len.saturating_add(end) } else { end }.clamp(0, len - 1);
    if start > end {
        return Reply::Bulk(Bytes::new());
    }
    Reply::Bulk(record.value.slice(start as usize..=end as usize))
}

/// EXISTS: counts every live key, a repeated key as often as it is named.
pub fn exists(view: &impl KvRead, now_ms: u64, keys: &[Bytes]) -> Reply {
    let mut count = 0;
    for key in keys {
        match lookup(view, now_ms, key) {
            Ok(Some(_)) => count += 1,
            Ok(None) => {}
            Err(error) => return Reply::Error(error),
        }
    }
    Reply::Int(count)
}

/// Which of the TTL family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TtlForm {
    /// TTL: seconds left, rounded.
    Seconds,
    /// PTTL: milliseconds left.
    Millis,
    /// EXPIRETIME: the deadline in unix seconds, rounded.
    DeadlineSeconds,
    /// PEXPIRETIME: the deadline in unix milliseconds.
    DeadlineMillis,
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 when absent, -1 when the key has no deadline.
pub fn ttl(view: &impl KvRead, now_ms: u64, key: &[u8], form: TtlForm) -> Reply {
    let record = match lookup(view, now_ms, key) {
        Ok(Some(record)) => record,
        Ok(None) => return Reply::Int(-2),
        Err(error) => return Reply::Error(error),
    };
    let Some(deadline_ms) = record.expire_at_ms else {
        return Reply::Int(-1);
    };
    let deadline_ms = i64::try_from(deadline_ms).unwrap_or(i64::MAX);
    let left_ms = deadline_ms.saturating_sub(i64::try_from(now_ms).unwrap_or(i64::MAX));
    Reply::Int(match form {
        TtlForm::Seconds => left_ms.saturating_add(500) / 1000,
        TtlForm::Millis => left_ms,
        TtlForm::DeadlineSeconds => deadline_ms.saturating_add(500) / 1000,
        TtlForm::DeadlineMillis => deadline_ms,
    })
}

/// TYPE: the type name, or `none`.
pub fn value_type(view: &impl KvRead, now_ms: u64, key: &[u8]) -> Reply {
    answer(lookup(view, now_ms, key).map(|found| {
        let name = found.map_or("none", |record| record.value_type.name());
        Reply::Status(name.to_string())
    }))
}

/// A read command as the router hands it to a group (and as it crosses the wire when
/// forwarded to the leader's node). Every key of one command belongs to the group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReadCommand {
    Get { key: Bytes },
    MGet { keys: Vec<Bytes> },
    StrLen { key: Bytes },
    GetRange { key: Bytes, start: i64, end: i64 },
    Exists { keys: Vec<Bytes> },
    Ttl { key: Bytes, form: TtlForm },
    Type { key: Bytes },
}

/// Runs a read command against a group's state as of `now_ms` (the serving node's clock).
pub fn execute(view: &impl KvRead, now_ms: u64, command: &ReadCommand) -> Reply {
    match command {
        ReadCommand::Get { key } => get(view, now_ms, key),
        ReadCommand::MGet { keys } => mget(view, now_ms, keys),
        ReadCommand::StrLen { key } => strlen(view, now_ms, key),
        ReadCommand::GetRange { key, start, end } => getrange(view, now_ms, key, *start, *end),
        ReadCommand::Exists { keys } => exists(view, now_ms, keys),
        ReadCommand::Ttl { key, form } => ttl(view, now_ms, key, *form),
        ReadCommand::Type { key } => value_type(view, now_ms, key),
    }
}
