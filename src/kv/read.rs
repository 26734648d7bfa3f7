//! Read commands (GET, MGET, STRLEN, GETRANGE, EXISTS, TTL, PTTL, EXPIRETIME, PEXPIRETIME,
//! TYPE, GETBIT, BITCOUNT, BITPOS, BITFIELD's GETs, LCS, and the key scans of KEYS, SCAN,
//! DBSIZE, RANDOMKEY, CLUSTER COUNTKEYSINSLOT and GETKEYSINSLOT) over a `KvRead` at a given
//! `now_ms`. The leader serves them after ReadIndex. A key whose deadline is not after
//! `now_ms` is invisible. Never writes, never reads a clock; every scan examines a bounded
//! page of keys.

use bytes::Bytes;

use super::apply::KvRead;
use super::bits::{self, LcsAnswer};
use super::glob::glob_match;
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
    let values = keys
        .iter()
        .map(|key| match lookup_string(view, now_ms, key) {
            Ok(Some(record)) => Reply::Bulk(record.value),
            Ok(None) | Err(KvError::WrongType) => Reply::Nil,
            Err(error) => Reply::Error(error),
        });
    Reply::Array(values.collect())
}

/// Value bytes one WATCH, or one transaction's `Watched` keys, may digest: each replica
/// digests the watched keys when the transaction applies, on its thread. Two of the largest
/// values (`STRING_BYTES_MAX`). It decides what apply does, so changing it needs a new log
/// version.
pub const WATCH_DIGEST_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// What WATCH remembers of each of `keys`, and EXEC's transaction compares
/// (`KvCommand::Watched`): nil when it holds no live value, else a digest of its type,
/// deadline and value (the first 8 bytes of their SHA-256, as a signed integer), which
/// every replica computes alike. A write that leaves all three as they were (a SET of the
/// same value) goes unnoticed, where Redis counts any write to the key. Past
/// `WATCH_DIGEST_BYTES_MAX` of values, an error.
pub fn digests(view: &impl KvRead, now_ms: u64, keys: &[Bytes]) -> Reply {
    let mut digested = 0u64;
    let digests = keys.iter().map(|key| digest(view, now_ms, key, &mut digested));
    answer(digests.collect::<Result<Vec<_>, _>>().map(|d| {
        Reply::Array(d.into_iter().map(|d| d.map_or(Reply::Nil, Reply::Int)).collect())
    }))
}

/// Whether every key of `watched` still has its digest (`None`: no live value): false at
/// the first that does not, so a change is told even where the digests of all would pass
/// `WATCH_DIGEST_BYTES_MAX`, which is an error only while they all still match.
pub fn unchanged(
    view: &impl KvRead,
    now_ms: u64,
    watched: &[(&Bytes, Option<i64>)],
) -> Result<bool, KvError> {
    let mut digested = 0u64;
    for (key, was) in watched {
        if digest(view, now_ms, key, &mut digested)? != *was {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The digest of `key`'s live record (`None`: none), counting its value's bytes into
/// `digested`: past `WATCH_DIGEST_BYTES_MAX`, an error.
fn digest(
    view: &impl KvRead,
    now_ms: u64,
    key: &[u8],
    digested: &mut u64,
) -> Result<Option<i64>, KvError> {
    let Some(record) = lookup(view, now_ms, key)? else {
        return Ok(None);
    };
    *digested = digested.saturating_add(record.value.len() as u64);
    if *digested > WATCH_DIGEST_BYTES_MAX {
        return Err(KvError::WatchTooLarge(WATCH_DIGEST_BYTES_MAX));
    }
    Ok(Some(record_digest(&record)))
}

fn record_digest(record: &Record) -> i64 {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update([record.value_type as u8]);
    // No deadline and a deadline differ even where the value bytes run on alike.
    match record.expire_at_ms {
        Some(deadline_ms) => {
            hash.update([1u8]);
            hash.update(deadline_ms.to_be_bytes());
        }
        None => hash.update([0u8]),
    }
    hash.update(&record.value);
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
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
    let start = if start < 0 {
        len.saturating_add(start)
    } else {
        start
    }
    .max(0);
    let end = if end < 0 {
        len.saturating_add(end)
    } else {
        end
    }
    .clamp(0, len - 1);
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

/// Bytes an entry held in memory takes beyond its key and record: a table slot, two
/// `Bytes` handles and the allocator's share (the replicas' caches count it; MEMORY USAGE
/// adds it).
pub const ENTRY_OVERHEAD_BYTES: u64 = 96;

/// MEMORY USAGE: the bytes a live key takes, its key and stored record (value, type,
/// deadline) and `ENTRY_OVERHEAD_BYTES`, as a replica's cache counts it; nil for none.
pub fn memory_usage(view: &impl KvRead, now_ms: u64, key: &[u8]) -> Reply {
    let Some(raw) = view.get(key_slot(key), key) else {
        return Reply::Nil;
    };
    match Record::decode(&raw) {
        Ok(record) if record.is_expired(now_ms) => Reply::Nil,
        Ok(_) => Reply::Int((ENTRY_OVERHEAD_BYTES + (key.len() + raw.len()) as u64) as i64),
        Err(e) => Reply::Error(KvError::CorruptRecord(e.to_string())),
    }
}

/// A read command as the router hands it to a group (and as it crosses the wire when
/// forwarded to the leader's node). Every key of one command belongs to the group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReadCommand {
    Get {
        key: Bytes,
    },
    MGet {
        keys: Vec<Bytes>,
    },
    /// WATCH: the keys' `digests`, in order.
    Digests {
        keys: Vec<Bytes>,
    },
    StrLen {
        key: Bytes,
    },
    GetRange {
        key: Bytes,
        start: i64,
        end: i64,
    },
    Exists {
        keys: Vec<Bytes>,
    },
    GetBit {
        key: Bytes,
        offset: u64,
    },
    /// BITCOUNT: `args` are the words after the key, read only once the key exists, as
    /// Redis reads them (`bits::count`).
    BitCount {
        key: Bytes,
        args: Vec<Bytes>,
    },
    /// BITPOS: `args` are the words after the bit, read only once the key exists, as Redis
    /// reads them (`bits::position`).
    BitPos {
        key: Bytes,
        bit: bool,
        args: Vec<Bytes>,
    },
    /// BITFIELD of GETs alone, and BITFIELD_RO.
    BitField {
        key: Bytes,
        ops: Vec<bits::FieldOp>,
    },
    /// LCS of the two `keys`; refused when its table would pass `table_bytes_max`
    /// (`proto-max-bulk-len`, as in Redis).
    Lcs {
        keys: Vec<Bytes>,
        answer: LcsAnswer,
        table_bytes_max: u64,
    },
    Ttl {
        key: Bytes,
        form: TtlForm,
    },
    Type {
        key: Bytes,
    },
    /// MEMORY USAGE: `memory_usage`.
    MemoryUsage {
        key: Bytes,
    },
    /// One page of KEYS over `slot_first..=slot_last`, after `after` (exclusive).
    Keys {
        pattern: Bytes,
        slot_first: u16,
        slot_last: u16,
        after: Option<(u16, Bytes)>,
    },
    /// One SCAN step from `offset` keys into `slot` up to `slot_last`.
    Scan(ScanStep),
    /// Stored keys of `slot_first..=slot_last` (DBSIZE of one group).
    DbSize {
        slot_first: u16,
        slot_last: u16,
    },
    /// Stored keys of `slot_first..=slot_last`, those with a deadline after the read's
    /// clock, and their mean deadline (INFO's keyspace of one group): `KeyCount::reply`.
    Keyspace {
        slot_first: u16,
        slot_last: u16,
    },
    /// A live key of `slot_first..=slot_last`, starting the search at a point `seed` picks.
    RandomKey {
        slot_first: u16,
        slot_last: u16,
        seed: u64,
    },
    /// CLUSTER COUNTKEYSINSLOT.
    CountKeysInSlot {
        slot: u16,
    },
    /// CLUSTER GETKEYSINSLOT (at most `READ_PAGE_KEYS_MAX` keys).
    GetKeysInSlot {
        slot: u16,
        count: u64,
    },
    /// The cluster map (the metadata group only), encoded; nil if its version is `known`.
    /// Not `linearizable`: any replica answers from what it applied (a node's sync).
    ClusterMap {
        known: u64,
        linearizable: bool,
    },
    /// Key reads of one client's pipeline on one group, served together at one read index;
    /// answered with the array of their replies. Holds key reads only (`batchable`).
    Batch { commands: Vec<ReadCommand> },
}

impl ReadCommand {
    /// The keys a read of named keys names; `None` for any other read (ranges, slots, the
    /// cluster map, a batch).
    pub fn keys(&self) -> Option<&[Bytes]> {
        use ReadCommand as R;
        match self {
            R::Get { key }
            | R::StrLen { key }
            | R::GetRange { key, .. }
            | R::Ttl { key, .. }
            | R::GetBit { key, .. }
            | R::BitCount { key, .. }
            | R::BitPos { key, .. }
            | R::BitField { key, .. }
            | R::Type { key }
            | R::MemoryUsage { key } => Some(std::slice::from_ref(key)),
            R::MGet { keys } | R::Exists { keys } | R::Digests { keys } | R::Lcs { keys, .. } => {
                Some(keys)
            }
            _ => None,
        }
    }

    /// Whether the command may go in a `Batch` (and a transaction): a read of named keys,
    /// but LCS, whose work (up to a table of `proto-max-bulk-len` bytes) is bounded per
    /// command, not per batch: it runs alone.
    pub fn batchable(&self) -> bool {
        self.keys().is_some() && !matches!(self, ReadCommand::Lcs { .. })
    }
}

/// Value bytes the replies of one read batch may hold: a reply crosses the wire as one
/// message (forwarded reads), far below the transport's frame bound.
pub const READ_BATCH_REPLY_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The replies of a read batch, or `BatchReplyTooLarge` once they pass the bound.
fn read_batch(view: &impl KvRead, now_ms: u64, commands: &[ReadCommand]) -> Reply {
    let mut replies = Vec::with_capacity(commands.len());
    let mut bytes = 0u64;
    for c in commands {
        let reply = if c.batchable() {
            execute(view, now_ms, c)
        } else {
            Reply::Error(KvError::NotHere)
        };
        bytes = bytes.saturating_add(reply.value_bytes());
        if bytes > READ_BATCH_REPLY_BYTES_MAX {
            return Reply::Error(KvError::BatchReplyTooLarge(READ_BATCH_REPLY_BYTES_MAX));
        }
        replies.push(reply);
    }
    Reply::Array(replies)
}

/// What a count reads of each record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tally {
    /// The keys alone (DBSIZE, CLUSTER COUNTKEYSINSLOT, a split's halving slot): no record
    /// is read.
    Keys,
    /// The keys, and the deadlines after `after_ms` (INFO's keyspace: the keys with time
    /// left; expired ones stay stored until a write or the active expiry deletes them):
    /// each record's header is read, which makes a walk over redb's records half as long
    /// again.
    Deadlines { after_ms: u64 },
}

impl Tally {
    /// What `command`, a count read served at `now_ms`, needs.
    pub fn of(command: &ReadCommand, now_ms: u64) -> Tally {
        match command {
            ReadCommand::Keyspace { .. } => Tally::Deadlines { after_ms: now_ms },
            _ => Tally::Keys,
        }
    }

    /// The deadline of `record` that this tally counts.
    fn deadline(self, record: &[u8]) -> Option<u64> {
        match self {
            Tally::Keys => None,
            Tally::Deadlines { after_ms } => {
                Record::deadline_of(record).filter(|deadline_ms| *deadline_ms > after_ms)
            }
        }
    }
}

/// What a count of some slots' stored records finds (DBSIZE, INFO's keyspace, CLUSTER
/// COUNTKEYSINSLOT). Expired keys count until they are deleted, as Redis counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyCount {
    /// Stored keys.
    pub keys: u64,
    /// Those with a deadline the tally counts (INFO's `expires`).
    pub expires: u64,
    /// The sum of their deadlines, unix ms (their mean gives INFO's `avg_ttl`).
    pub deadlines_ms: u128,
}

impl KeyCount {
    /// Counts one more stored record.
    pub fn add(&mut self, record: &[u8], tally: Tally) {
        self.keys += 1;
        if let Some(deadline_ms) = tally.deadline(record) {
            self.expires += 1;
            self.deadlines_ms += u128::from(deadline_ms);
        }
    }

    /// Takes away a record counted before (one a pending write replaces or deletes).
    pub fn remove(&mut self, record: &[u8], tally: Tally) {
        self.keys = self.keys.saturating_sub(1);
        if let Some(deadline_ms) = tally.deadline(record) {
            self.expires = self.expires.saturating_sub(1);
            self.deadlines_ms = self.deadlines_ms.saturating_sub(u128::from(deadline_ms));
        }
    }

    /// The counts of two disjoint sets of keys, together.
    pub fn merge(self, other: KeyCount) -> KeyCount {
        KeyCount {
            keys: self.keys + other.keys,
            expires: self.expires + other.expires,
            deadlines_ms: self.deadlines_ms + other.deadlines_ms,
        }
    }

    /// The mean deadline of the keys that have one, unix ms.
    pub fn mean_deadline_ms(&self) -> Option<u64> {
        let mean = self.deadlines_ms.checked_div(u128::from(self.expires))?;
        Some(u64::try_from(mean).unwrap_or(u64::MAX))
    }

    /// The answer to `command`, a count read: the keys, or for `Keyspace`
    /// `[keys, expires, mean deadline ms (0 without deadlines)]`.
    pub fn reply(&self, command: &ReadCommand) -> Reply {
        let int = |n: u64| Reply::Int(i64::try_from(n).unwrap_or(i64::MAX));
        match command {
            ReadCommand::Keyspace { .. } => Reply::Array(vec![
                int(self.keys),
                int(self.expires),
                int(self.mean_deadline_ms().unwrap_or(0)),
            ]),
            _ => int(self.keys),
        }
    }

    /// A group's `Keyspace` answer as a count whose deadlines sum to its mean times its
    /// expires, to be merged with the other groups' (each mean is rounded down, so the
    /// merged mean is off by less than a millisecond).
    pub fn from_keyspace_reply(reply: &Reply) -> KeyCount {
        let Reply::Array(items) = reply else {
            return KeyCount::default();
        };
        let field = |i: usize| match items.get(i) {
            Some(Reply::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        let (keys, expires, mean_ms) = (field(0), field(1), field(2));
        let deadlines_ms = u128::from(mean_ms) * u128::from(expires);
        KeyCount { keys, expires, deadlines_ms }
    }
}

/// Runs a read command against a group's state as of `now_ms` (the serving node's clock).
pub fn execute(view: &impl KvRead, now_ms: u64, command: &ReadCommand) -> Reply {
    match command {
        ReadCommand::Batch { commands } => read_batch(view, now_ms, commands),
        ReadCommand::Get { key } => get(view, now_ms, key),
        ReadCommand::MGet { keys } => mget(view, now_ms, keys),
        ReadCommand::Digests { keys } => digests(view, now_ms, keys),
        ReadCommand::StrLen { key } => strlen(view, now_ms, key),
        ReadCommand::GetRange { key, start, end } => getrange(view, now_ms, key, *start, *end),
        ReadCommand::Exists { keys } => exists(view, now_ms, keys),
        ReadCommand::GetBit { key, offset } => answer(
            lookup_string(view, now_ms, key)
                .map(|found| found.is_some_and(|r| bits::get_bit(&r.value, *offset)))
                .map(|bit| Reply::Int(i64::from(bit))),
        ),
        ReadCommand::BitCount { key, args } => {
            answer(lookup_string(view, now_ms, key).and_then(|found| match found {
                Some(record) => bits::count(&record.value, args),
                None => Ok(Reply::Int(0)),
            }))
        }
        ReadCommand::BitPos { key, bit, args } => {
            answer(lookup_string(view, now_ms, key).and_then(|found| match found {
                Some(record) => bits::position(&record.value, *bit, args),
                None => Ok(Reply::Int(if *bit { -1 } else { 0 })),
            }))
        }
        ReadCommand::BitField { key, ops } => answer(lookup_string(view, now_ms, key).map(|found| {
            let value = found.map_or_else(Bytes::new, |record| record.value);
            Reply::Array(ops.iter().map(|op| bits::field_get(&value, op)).collect())
        })),
        ReadCommand::Lcs { keys, answer: form, table_bytes_max } => {
            answer(lcs(view, now_ms, keys, *form, *table_bytes_max))
        }
        ReadCommand::Ttl { key, form } => ttl(view, now_ms, key, *form),
        ReadCommand::Type { key } => value_type(view, now_ms, key),
        ReadCommand::MemoryUsage { key } => memory_usage(view, now_ms, key),
        ReadCommand::Keys {
            pattern,
            slot_first,
            slot_last,
            after,
        } => {
            let after = after.as_ref().map(|(slot, key)| (*slot, key.as_ref()));
            keys_page(view, now_ms, pattern, *slot_first..=*slot_last, after)
        }
        ReadCommand::Scan(step) => scan(view, now_ms, step),
        ReadCommand::ClusterMap { known, .. } => cluster_map(view, *known),
        ReadCommand::DbSize {
            slot_first,
            slot_last,
        }
        | ReadCommand::Keyspace {
            slot_first,
            slot_last,
        } => view.count_keys(*slot_first..=*slot_last, Tally::of(command, now_ms)).reply(command),
        ReadCommand::RandomKey {
            slot_first,
            slot_last,
            seed,
        } => random_key(view, now_ms, *slot_first..=*slot_last, *seed),
        ReadCommand::CountKeysInSlot { slot } => {
            view.count_keys(*slot..=*slot, Tally::Keys).reply(command)
        }
        ReadCommand::GetKeysInSlot { slot, count } => {
            let limit = (*count).min(READ_PAGE_KEYS_MAX as u64) as usize;
            let keys = view.scan(*slot..=*slot, None, limit);
            Reply::Array(keys.into_iter().map(|(_, key)| Reply::Bulk(key)).collect())
        }
    }
}

/// LCS: a missing key reads as empty.
fn lcs(
    view: &impl KvRead,
    now_ms: u64,
    keys: &[Bytes],
    form: LcsAnswer,
    table_bytes_max: u64,
) -> Result<Reply, KvError> {
    let mut values = Vec::with_capacity(2);
    for key in keys {
        values.push(lookup_string(view, now_ms, key)?.map_or_else(Bytes::new, |r| r.value));
    }
    let [a, b] = values.as_slice() else {
        return Err(KvError::Syntax);
    };
    match bits::lcs_table_bytes(a, b) {
        Some(bytes) if bytes <= table_bytes_max => Ok(bits::lcs(a, b, form)),
        _ => Err(KvError::LcsTooLarge),
    }
}

/// Most keys one page of a key scan examines (KEYS page, SCAN step, GETKEYSINSLOT).
pub const READ_PAGE_KEYS_MAX: usize = 1024;
/// Most keys RANDOMKEY examines looking for a live one.
pub const RANDOMKEY_PROBES_MAX: usize = 64;
/// Bits of a SCAN cursor that hold the offset within its slot; the slot sits above them.
pub const SCAN_CURSOR_OFFSET_BITS: u32 = 40;

/// One SCAN step inside one group.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanStep {
    /// Where the step starts: this slot, after skipping `offset` keys of it.
    pub slot: u16,
    pub offset: u64,
    /// The group's last slot: the step never looks beyond it.
    pub slot_last: u16,
    /// Keys to examine (COUNT), at most `READ_PAGE_KEYS_MAX`.
    pub count: u64,
    pub pattern: Option<Bytes>,
    /// TYPE filter: a type name as TYPE prints it.
    pub value_type: Option<String>,
}

/// A SCAN cursor: `slot` in the high bits, the offset of the next key in the slot below.
pub fn scan_cursor(slot: u16, offset: u64) -> u64 {
    (u64::from(slot) << SCAN_CURSOR_OFFSET_BITS) | (offset & ((1 << SCAN_CURSOR_OFFSET_BITS) - 1))
}

fn cluster_map(view: &impl KvRead, known: u64) -> Reply {
    use crate::kv::meta::{ClusterMap, MAP_KEY, META_SLOT};
    let Some(raw) = view.get(META_SLOT, MAP_KEY) else {
        return Reply::Error(KvError::Meta("ERR this group holds no cluster map".into()));
    };
    match ClusterMap::from_record(&raw) {
        Ok(map) if map.version == known => Reply::Nil,
        Ok(map) => Reply::Bulk(map.encode()),
        Err(e) => Reply::Error(e),
    }
}

/// The (slot, offset) of a cursor, or `None` when the slot is out of range.
pub fn parse_scan_cursor(cursor: u64) -> Option<(u16, u64)> {
    let slot = cursor >> SCAN_CURSOR_OFFSET_BITS;
    let slot = u16::try_from(slot)
        .ok()
        .filter(|s| *s < super::slot::SLOT_COUNT)?;
    Some((slot, cursor & ((1 << SCAN_CURSOR_OFFSET_BITS) - 1)))
}

fn is_live(view: &impl KvRead, now_ms: u64, key: &[u8]) -> Result<Option<Record>, KvError> {
    lookup(view, now_ms, key)
}

/// One KEYS page: `[matching live keys, resume point (nil when the range is done)]`.
fn keys_page(
    view: &impl KvRead,
    now_ms: u64,
    pattern: &[u8],
    slots: std::ops::RangeInclusive<u16>,
    after: Option<(u16, &[u8])>,
) -> Reply {
    let page = view.scan(slots, after, READ_PAGE_KEYS_MAX);
    let mut found = Vec::new();
    for (_, key) in &page {
        // Redis's KEYS skips matching for `*`, so even the empty key is listed.
        if pattern != b"*" && !glob_match(pattern, key) {
            continue;
        }
        match is_live(view, now_ms, key) {
            Ok(Some(_)) => found.push(Reply::Bulk(key.clone())),
            Ok(None) => {}
            Err(error) => return Reply::Error(error),
        }
    }
    let resume = match page.last() {
        Some((slot, key)) if page.len() == READ_PAGE_KEYS_MAX => {
            Reply::Array(vec![Reply::Int(i64::from(*slot)), Reply::Bulk(key.clone())])
        }
        _ => Reply::Nil,
    };
    Reply::Array(vec![Reply::Array(found), resume])
}

/// Skips `offset` keys of `slot`: the last key skipped (the step resumes after it) and
/// how many were skipped (fewer than `offset` when the slot shrank meanwhile).
fn skip_into_slot(view: &impl KvRead, slot: u16, offset: u64) -> (Option<(u16, Bytes)>, u64) {
    let mut after: Option<(u16, Bytes)> = None;
    let mut skipped = 0;
    while skipped < offset {
        let take = (offset - skipped).min(READ_PAGE_KEYS_MAX as u64) as usize;
        let from = after.as_ref().map(|(s, k)| (*s, k.as_ref()));
        let page = view.scan(slot..=slot, from, take);
        skipped += page.len() as u64;
        let done = page.len() < take;
        if let Some(last) = page.last() {
            after = Some(last.clone());
        }
        if done {
            break;
        }
    }
    (after, skipped)
}

/// One SCAN step: `[next cursor or nil when the group is done, matching live keys]`.
pub fn scan(view: &impl KvRead, now_ms: u64, step: &ScanStep) -> Reply {
    let count = step.count.clamp(1, READ_PAGE_KEYS_MAX as u64) as usize;
    let (after, skipped) = skip_into_slot(view, step.slot, step.offset);
    let from = after.as_ref().map(|(slot, key)| (*slot, key.as_ref()));
    let page = view.scan(step.slot..=step.slot_last.max(step.slot), from, count);
    let mut found = Vec::new();
    for (_, key) in &page {
        match scan_match(view, now_ms, step, key) {
            Ok(true) => found.push(Reply::Bulk(key.clone())),
            Ok(false) => {}
            Err(error) => return Reply::Error(error),
        }
    }
    let next = match page.last() {
        Some((slot, _)) if page.len() == count => {
            let in_slot = page.iter().filter(|(s, _)| s == slot).count() as u64;
            let base = if *slot == step.slot { skipped } else { 0 };
            Reply::Int(scan_cursor(*slot, base + in_slot) as i64)
        }
        _ => Reply::Nil,
    };
    Reply::Array(vec![next, Reply::Array(found)])
}

fn scan_match(
    view: &impl KvRead,
    now_ms: u64,
    step: &ScanStep,
    key: &[u8],
) -> Result<bool, KvError> {
    if step
        .pattern
        .as_ref()
        .is_some_and(|pattern| !glob_match(pattern, key))
    {
        return Ok(false);
    }
    let Some(record) = is_live(view, now_ms, key)? else {
        return Ok(false);
    };
    Ok(step
        .value_type
        .as_ref()
        .is_none_or(|name| name == record.value_type.name()))
}

/// RANDOMKEY inside one group: the first live key at or after a point `seed` picks,
/// wrapping around once; nil when none is found within `RANDOMKEY_PROBES_MAX` keys.
fn random_key(
    view: &impl KvRead,
    now_ms: u64,
    slots: std::ops::RangeInclusive<u16>,
    seed: u64,
) -> Reply {
    let (first, last) = (*slots.start(), *slots.end());
    let width = u64::from(last.saturating_sub(first)) + 1;
    let start = first + (seed % width) as u16;
    let mut page = view.scan(start..=last, None, RANDOMKEY_PROBES_MAX);
    if page.len() < RANDOMKEY_PROBES_MAX {
        let more = view.scan(first..=last, None, RANDOMKEY_PROBES_MAX - page.len());
        page.extend(more);
    }
    for (_, key) in page {
        match is_live(view, now_ms, &key) {
            Ok(Some(_)) => return Reply::Bulk(key),
            Ok(None) => {}
            Err(error) => return Reply::Error(error),
        }
    }
    Reply::Nil
}
