//! DUMP key, and RESTORE (and RESTORE-ASKING, the same here) key ttl serialized-value
//! [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]: the payload is Redis 7.0's
//! (`kv::dump`), so values move between redis-server and shardkv with the tools that
//! copy them so. IDLETIME and FREQ are read and checked, and keep nothing (no LRU or LFU
//! is kept).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::{Job, Merge};

use super::{int_arg, is, syntax_error, tri};
use crate::kv::dump;
use crate::kv::number::parse_i64;
use crate::kv::read::ReadCommand;
use crate::kv::{key_slot, KvCommand, KvError};
use crate::resp::frame::Frame;

/// The bytes a RESTORE of `value` under `key` takes in a log entry, counted as
/// `cmd::argument_bytes` counts a command's arguments.
pub fn logged_bytes(key: &[u8], value: &[u8]) -> u64 {
    let per_arg = crate::shard::limits::ENCODING_BYTES_PER_ITEM;
    key.len() as u64 + value.len() as u64 + 2 * per_arg
}

/// DUMP: the payload of a string value, nil for a missing key.
pub fn prepare_dump<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let key = args[1].clone();
    cx.read_merged(key_slot(&key), ReadCommand::Get { key }, Merge::Dump)
}

pub fn prepare_restore<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let (mut replace, mut absolute, mut idle, mut freq) = (false, false, false, false);
    let mut at = 4;
    while at < args.len() {
        let (word, more) = (&args[at], at + 1 < args.len());
        if is(word, "replace") {
            replace = true;
        } else if is(word, "absttl") {
            absolute = true;
        } else if is(word, "idletime") && more && !freq {
            if tri!(int_arg(&args[at + 1])) < 0 {
                return Job::Now(Frame::error("ERR Invalid IDLETIME value, must be >= 0"));
            }
            (idle, at) = (true, at + 1);
        } else if is(word, "freq") && more && !idle {
            if !(0..=255).contains(&tri!(int_arg(&args[at + 1]))) {
                let text = "ERR Invalid FREQ value, must be >= 0 and <= 255";
                return Job::Now(Frame::error(text));
            }
            (freq, at) = (true, at + 1);
        } else {
            return Job::Now(syntax_error());
        }
        at += 1;
    }
    let key = args[1].clone();
    let slot = key_slot(&key);
    let bytes_max = cx.shared.options.limits.bulk_bytes_max;
    let read = match parse_i64(&args[2]) {
        None => Err(Frame::from(KvError::NotInteger)),
        Some(ttl) if ttl < 0 => Err(Frame::error("ERR Invalid TTL value, must be >= 0")),
        Some(ttl) => match dump::restore(&args[3], bytes_max) {
            Ok(value) => Ok((ttl as u64, value)),
            Err(refused) => Err(Frame::error(refused.text())),
        },
    };
    let (ttl, value) = match read {
        Ok(read) => read,
        // Redis answers BUSYKEY before it reads the time and the payload.
        Err(error) if replace => return Job::Now(error),
        Err(error) => {
            let exists = ReadCommand::Exists { keys: vec![key] };
            return cx.read_merged(slot, exists, Merge::BusyOr(error));
        }
    };
    // The log entry holds the value decoded: bound it as the write it is.
    let logged = logged_bytes(&key, &value);
    let write_bytes_max = cx.shared.options.limits.write_bytes_max;
    if logged > write_bytes_max {
        return Job::Now(Frame::error(format!(
            "ERR RESTORE of {logged} bytes (its key and decoded value, {} more each for their \
             encoding) exceeds the largest write a shard replicates, {write_bytes_max} bytes \
             (limits.write_bytes_max); it was not applied",
            crate::shard::limits::ENCODING_BYTES_PER_ITEM
        )));
    }
    let deadline_ms = match (ttl, absolute) {
        (0, _) => None,
        (at, true) => Some(at),
        // Past i64, Redis's sum wraps below now: the key is gone at once. So here.
        (ttl, false) => Some(
            cx.now_ms().checked_add(ttl).filter(|at| i64::try_from(*at).is_ok()).unwrap_or(0),
        ),
    };
    cx.write(slot, KvCommand::Restore { key, value, deadline_ms, replace })
}
