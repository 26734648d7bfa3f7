//! Applying a committed `Request` to a group's key-value state: deduplicate by client
//! session, then run the command with Redis 7 string semantics. Pure and deterministic:
//! it reads through a `KvRead`, writes only into the batch's `Overlay`, and takes time
//! only from `Request::now_ms`. It must never do I/O or read a clock.

use std::cell::Cell;
use std::ops::{ControlFlow, RangeInclusive};

use bytes::{Bytes, BytesMut};

use super::bits;
use super::command::NO_CLIENT_ID;
use super::command::{ExpireCondition, GetExTtl, KvCommand, Request, SetCondition};
use super::notify::{KeyEvents, EXPIRED, GENERIC, NEW, STRING};
use super::number::{format_f64, parse_f64, parse_i64};
use super::overlay::{Layered, Overlay};
use super::read;
use super::range::write_keys;
use super::read::{KeyCount, Tally};
use super::record::Record;
use super::reply::{KvError, Reply};
use super::session;
use super::slot::key_slot;

/// Largest string value (Redis's `proto-max-bulk-len`, whose default is 512 MiB). A value
/// crosses the wire whole in one peer frame (a write's log entry, a forwarded read's
/// answer), and each node's one thread copies it there: a 32 MiB SET stalled a node past
/// an election time-out on a 2-core machine, 8 MiB took 0.2 s. TiKV bounds a Raft entry
/// at 8 MiB too. The node's `limits.bulk_bytes_max` may not exceed it.
pub const STRING_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// Read access to a group's committed state-machine data.
pub trait KvRead {
    /// The record under (slot, key).
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes>;
    /// The session record of a client of this group.
    fn session(&self, client_id: u64) -> Option<Bytes>;
    /// Every session of this group (at most the session bound). Called only when a new
    /// client arrives, to pick the session to evict.
    fn sessions(&self) -> Vec<(u64, Bytes)>;
    /// At most `limit` keys stored in `slots` strictly after `after` (from the start of
    /// `slots` when `None`), in (slot, key) order: one bounded page of KEYS, SCAN,
    /// RANDOMKEY and CLUSTER GETKEYSINSLOT. Expired keys are included until deleted.
    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)>;
    /// The keys stored in `slots`, expired ones included until deleted, and with
    /// `Tally::Deadlines` the deadlines after its clock (DBSIZE, INFO's keyspace, CLUSTER
    /// COUNTKEYSINSLOT).
    fn count_keys(&self, slots: RangeInclusive<u16>, tally: Tally) -> KeyCount;
    /// Hands `visit` each (slot, key, record) stored in `slots` strictly after `after`, in
    /// (slot, key) order, expired ones included, until it breaks or the slots end (the
    /// active expiry's walk, `kv::expiry`). This default pages through `scan` and `get`; a
    /// store that can look at its rows in place does better.
    fn walk(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        visit: &mut dyn FnMut(u16, &[u8], &[u8]) -> ControlFlow<()>,
    ) {
        let mut from = after.map(|(slot, key)| (slot, Bytes::copy_from_slice(key)));
        loop {
            let after = from.as_ref().map(|(slot, key)| (*slot, &key[..]));
            let page = self.scan(slots.clone(), after, WALK_PAGE_KEYS);
            for (slot, key) in &page {
                let Some(record) = self.get(*slot, key) else { continue };
                if visit(*slot, key, &record).is_break() {
                    return;
                }
            }
            if page.len() < WALK_PAGE_KEYS {
                return;
            }
            from = page.into_iter().last();
        }
    }
}

/// Keys `KvRead::walk`'s default reads per `scan`.
const WALK_PAGE_KEYS: usize = 256;

/// Apply one committed request; its writes go to `overlay`. A retried request (seq not
/// above the client's last) changes nothing: the last seq gets its cached reply again,
/// older ones `ERR request already applied`.
pub fn apply<V: KvRead>(view: &V, overlay: &mut Overlay, req: &Request) -> Reply {
    apply_notified(view, overlay, req, None)
}

/// `apply`, pushing the keyspace events the command raises into `events` (see `notify`). A
/// retry raises none. What `events` asks for never changes the writes or the reply.
pub fn apply_notified<V: KvRead>(
    view: &V,
    overlay: &mut Overlay,
    req: &Request,
    events: Option<&mut KeyEvents>,
) -> Reply {
    if req.client_id == NO_CLIENT_ID {
        return execute(&mut Ctx::new(view, overlay, req.now_ms, events), &req.command);
    }
    let known = session::find(view, overlay, req.client_id);
    if let Some(last) = &known {
        if req.seq == last.last_seq {
            return last.reply.clone();
        }
        if req.seq < last.last_seq {
            return Reply::Error(KvError::AlreadyApplied);
        }
    }
    let reply = execute(&mut Ctx::new(view, overlay, req.now_ms, events), &req.command);
    session::remember(view, overlay, req, known.is_none(), &reply);
    reply
}

/// Whether `req` is a retry of one of its client's requests already applied (its seq is
/// not above the last one the session holds): `apply` answers it without executing.
pub fn is_retry<V: KvRead>(view: &V, overlay: &Overlay, req: &Request) -> bool {
    req.client_id != NO_CLIENT_ID
        && session::find(view, overlay, req.client_id).is_some_and(|s| req.seq <= s.last_seq)
}

struct Ctx<'a, V> {
    view: &'a V,
    overlay: &'a mut Overlay,
    now_ms: u64,
    /// Bytes of records the command has read and written so far (`TRANSACTION_WORK_BYTES_MAX`
    /// bounds a transaction's).
    work: Cell<u64>,
    /// Where its keyspace events go, if anywhere. Node-local: what it asks must never change
    /// a write, a reply or `work` (so its own reads are not metered).
    events: Option<&'a mut KeyEvents>,
}

impl<'a, V: KvRead> Ctx<'a, V> {
    fn new(
        view: &'a V,
        overlay: &'a mut Overlay,
        now_ms: u64,
        events: Option<&'a mut KeyEvents>,
    ) -> Ctx<'a, V> {
        Ctx { view, overlay, now_ms, work: Cell::new(0), events }
    }

    /// Raises `event` on `key` (kept if its class is published).
    fn raise(&mut self, class: u16, event: &'static str, key: &Bytes) {
        if let Some(events) = self.events.as_deref_mut() {
            events.raise(class, event, key);
        }
    }

    /// Forgets the events raised after the first `mark` (a transaction undone).
    fn forget_events_after(&mut self, mark: usize) {
        if let Some(events) = self.events.as_deref_mut() {
            events.truncate(mark);
        }
    }

    fn wants(&self, class: u16) -> bool {
        self.events.as_ref().is_some_and(|events| events.flags().wants(class))
    }

    /// What `key` holds, read without metering (for events only). A record that does not
    /// decode counts as live: no event calls it new or expired.
    fn stored_unmetered(&self, key: &[u8]) -> Stored {
        match self.overlay.over(self.view).get(key_slot(key), key).map(|r| Record::decode(&r)) {
            None => Stored::Nothing,
            Some(Ok(record)) if record.is_expired(self.now_ms) => Stored::Expired,
            Some(_) => Stored::Live,
        }
    }

    /// `stored_unmetered` if events of any of `classes` are published; else `Nothing`,
    /// unread.
    fn stored_if_wanted(&self, key: &[u8], classes: u16) -> Stored {
        if self.wants(classes) {
            self.stored_unmetered(key)
        } else {
            Stored::Nothing
        }
    }

    fn exists_unmetered(&self, key: &[u8]) -> bool {
        self.stored_unmetered(key) == Stored::Live
    }

    /// Before `key` is written over or deleted: raises `expired` if it still holds a record
    /// whose deadline has passed, as Redis's lazy expiry deletes it first (the active expiry
    /// will not find it any more).
    fn raise_expired_if_stored(&mut self, key: &Bytes) {
        if self.wants(EXPIRED) && self.stored_unmetered(key) == Stored::Expired {
            self.raise(EXPIRED, "expired", key);
        }
    }

    /// Before `key`, known to hold no live value, is created: `expired` for a record left
    /// past its deadline, then `new`.
    fn raise_created(&mut self, key: &Bytes) {
        self.raise_expired_if_stored(key);
        self.raise(NEW, "new", key);
    }

    /// Before `key` is stored: `raise_created` if it holds no live value.
    fn raise_new_if_absent(&mut self, key: &Bytes) {
        if !self.wants(NEW) && !self.wants(EXPIRED) {
            return;
        }
        match self.stored_unmetered(key) {
            Stored::Live => {}
            Stored::Expired => {
                self.raise(EXPIRED, "expired", key);
                self.raise(NEW, "new", key);
            }
            Stored::Nothing => self.raise(NEW, "new", key),
        }
    }

    /// The state as the command sees it (the batch's writes on the committed view), counting
    /// the records it reads.
    fn state(&self) -> Metered<'_, Layered<'_, V>> {
        Metered { view: self.overlay.over(self.view), work: &self.work }
    }

    fn lookup(&self, key: &[u8]) -> Result<Option<Record>, KvError> {
        read::lookup(&self.state(), self.now_ms, key)
    }

    fn lookup_string(&self, key: &[u8]) -> Result<Option<Record>, KvError> {
        read::lookup_string(&self.state(), self.now_ms, key)
    }

    /// Store `record`, or delete the key if the record's deadline has already passed.
    fn store(&mut self, key: &Bytes, record: &Record) {
        if record.is_expired(self.now_ms) {
            self.delete(key);
        } else {
            let record = record.encode();
            add_work(&self.work, record.len());
            self.overlay.put(key_slot(key), key.clone(), record);
        }
    }

    fn delete(&mut self, key: &Bytes) {
        self.overlay.delete(key_slot(key), key.clone());
    }
}

/// What a key holds, for events.
#[derive(PartialEq, Eq)]
enum Stored {
    Nothing,
    /// A record whose deadline has passed, not deleted yet.
    Expired,
    Live,
}

fn add_work(work: &Cell<u64>, bytes: usize) {
    work.set(work.get().saturating_add(bytes as u64));
}

/// A view that counts the bytes of the records it hands out in a meter.
struct Metered<'a, R> {
    view: R,
    work: &'a Cell<u64>,
}

impl<R: KvRead> KvRead for Metered<'_, R> {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        let record = self.view.get(slot, key);
        add_work(self.work, record.as_ref().map_or(0, Bytes::len));
        record
    }

    fn session(&self, client_id: u64) -> Option<Bytes> {
        self.view.session(client_id)
    }

    fn sessions(&self) -> Vec<(u64, Bytes)> {
        self.view.sessions()
    }

    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)> {
        self.view.scan(slots, after, limit)
    }

    fn count_keys(&self, slots: RangeInclusive<u16>, tally: Tally) -> KeyCount {
        self.view.count_keys(slots, tally)
    }
}

fn execute<V: KvRead>(cx: &mut Ctx<'_, V>, command: &KvCommand) -> Reply {
    let result = match command {
        KvCommand::Set { key, value, expire_at_ms, keep_ttl, condition, get } => {
            let options = SetOptions {
                expire_at_ms: *expire_at_ms,
                keep_ttl: *keep_ttl,
                condition: *condition,
                get: *get,
            };
            set(cx, key, value, options)
        }
        KvCommand::GetSet { key, value } => set(cx, key, value, SetOptions::GETSET),
        KvCommand::GetDel { key } => getdel(cx, key),
        KvCommand::GetEx { key, ttl } => getex(cx, key, *ttl),
        KvCommand::SetRange { key, offset, value } => setrange(cx, key, *offset, value),
        KvCommand::Append { key, value } => append(cx, key, value),
        KvCommand::IncrBy { key, delta } => incrby(cx, key, *delta),
        KvCommand::IncrByFloat { key, delta } => incrbyfloat(cx, key, *delta),
        KvCommand::Del { keys } => del(cx, keys),
        KvCommand::Expire { key, deadline_ms, condition } => {
            expire(cx, key, *deadline_ms, *condition)
        }
        KvCommand::Persist { key } => persist(cx, key),
        KvCommand::Rename { key, new_key } => rename(cx, key, new_key, false),
        KvCommand::RenameNx { key, new_key } => rename(cx, key, new_key, true),
        KvCommand::SetBit { key, offset, bit } => setbit(cx, key, *offset, *bit),
        KvCommand::BitOp { op, dest, keys } => bitop(cx, *op, dest, keys),
        KvCommand::BitField { key, ops } => bitfield(cx, key, ops),
        KvCommand::Copy { source, dest, replace } => copy(cx, source, dest, *replace),
        KvCommand::Restore { key, value, deadline_ms, replace } => {
            restore(cx, key, value, *deadline_ms, *replace)
        }
        KvCommand::MSet { pairs } => mset(cx, pairs, false),
        KvCommand::MSetNx { pairs } => mset(cx, pairs, true),
        KvCommand::FlushSlots { slot_first, slot_last } => {
            flush_slots(cx, *slot_first..=*slot_last)
        }
        KvCommand::DeleteExpired { key, deadline_ms } => delete_expired(cx, key, *deadline_ms),
        KvCommand::Meta(op) => Ok(apply_meta(cx, op)),
        // The shard applies splits; reaching here means a caller skipped it.
        KvCommand::Split { .. } => Err(KvError::NotHere),
        // Each in order on the same overlay: a later command sees the earlier ones' writes.
        KvCommand::Batch { commands } => {
            Ok(Reply::Array(commands.iter().map(|c| batch_member(cx, c)).collect()))
        }
        KvCommand::Read(read) => Ok(read::execute(&cx.state(), cx.now_ms, read)),
        KvCommand::Transaction { commands } => transaction(cx, commands),
        // Only a transaction holds one.
        KvCommand::Watched { .. } => Err(KvError::NotHere),
    };
    result.unwrap_or_else(Reply::Error)
}

/// One command of a `Batch`: what `execute` answers, except that a command a batch may not
/// hold (a client never builds one) is refused rather than run.
fn batch_member<V: KvRead>(cx: &mut Ctx<'_, V>, command: &KvCommand) -> Reply {
    if command.batchable() {
        execute(cx, command)
    } else {
        Reply::Error(KvError::NotHere)
    }
}

/// Value bytes a transaction's replies may hold (its reads', and its writes' that answer a
/// value): its answer is kept in the client's session and crosses the wire as one message.
/// It decides what apply does: every replica, and every replay of the log, must use the
/// same value, so changing it needs a new log version.
pub const TRANSACTION_REPLY_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Bytes of records a transaction's commands may read and write at apply, together: each
/// record read counts its length, each record stored its encoded length (an APPEND to a
/// 1 MiB value counts about 2 MiB). A transaction queues up to 10,000 commands of a few
/// bytes each (`resp::cmd::multi::MULTI_COMMANDS_MAX`), and without this bound 10,000
/// APPENDs to an 8 MiB value would copy 160 GiB, and 10,000 COPYs of it hold 80 GiB in the
/// batch, on every replica and on every replay of the log. This keeps a transaction's stall
/// at tens of milliseconds and what it holds near this many bytes. Checked after each
/// command, so the command that passes it adds its own work (a command's work is bounded by
/// its arguments alone: a BITOP naming one 8 MiB key a thousand times reads it a thousand
/// times, in a transaction or not). A record counts its whole length even where the
/// command reads a part of it (STRLEN, EXISTS, TTL). Like the reply bound, it decides what
/// apply does.
pub const TRANSACTION_WORK_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// MULTI/EXEC: each command in order on the same overlay; a command a transaction may not
/// hold (a client never builds one) is refused rather than run. Past the reply bound, or the
/// work bound, the overlay's entries of the keys the transaction wrote are put back as they
/// were (its commands write nothing else: no flush, no session): nothing of it is applied.
/// If a `Watched` key's digest is not the one watched any more, nothing runs and the answer
/// is nil (EXEC's null array); if their values pass `read::WATCH_DIGEST_BYTES_MAX` before one
/// differs, nothing runs and the answer is that error. The `Watched` members answer
/// nothing.
fn transaction<V: KvRead>(cx: &mut Ctx<'_, V>, commands: &[KvCommand]) -> Result<Reply, KvError> {
    let watched: Vec<(&Bytes, Option<i64>)> = commands
        .iter()
        .filter_map(|command| match command {
            KvCommand::Watched { key, digest } => Some((key, *digest)),
            _ => None,
        })
        .collect();
    if !read::unchanged(&cx.overlay.over(cx.view), cx.now_ms, &watched)? {
        return Ok(Reply::Nil);
    }
    let mut undo = Vec::new();
    let raised = cx.events.as_ref().map_or(0, |events| events.len());
    let mut replies = Vec::with_capacity(commands.len());
    let mut bytes = 0u64;
    for command in commands {
        let keys = write_keys(command);
        let reply = match command {
            KvCommand::Watched { .. } => continue,
            KvCommand::Read(read) if read.batchable() => execute(cx, command),
            KvCommand::Read(_) | KvCommand::Batch { .. } | KvCommand::Transaction { .. } => {
                Reply::Error(KvError::NotHere)
            }
            _ if keys.is_empty() => Reply::Error(KvError::NotHere),
            key_write => {
                undo.extend(cx.overlay.entries(keys.iter().map(|key| (key_slot(key), *key))));
                execute(cx, key_write)
            }
        };
        bytes = bytes.saturating_add(reply.value_bytes());
        if bytes > TRANSACTION_REPLY_BYTES_MAX {
            cx.overlay.restore(undo);
            cx.forget_events_after(raised);
            return Err(KvError::TransactionReplyTooLarge(TRANSACTION_REPLY_BYTES_MAX));
        }
        if cx.work.get() > TRANSACTION_WORK_BYTES_MAX {
            cx.overlay.restore(undo);
            cx.forget_events_after(raised);
            return Err(KvError::TransactionWorkTooLarge(TRANSACTION_WORK_BYTES_MAX));
        }
        replies.push(reply);
    }
    Ok(Reply::Array(replies))
}

#[derive(Clone, Copy)]
struct SetOptions {
    expire_at_ms: Option<u64>,
    keep_ttl: bool,
    condition: SetCondition,
    get: bool,
}

impl SetOptions {
    const GETSET: SetOptions = SetOptions {
        expire_at_ms: None,
        keep_ttl: false,
        condition: SetCondition::Always,
        get: true,
    };
}

/// SET (and GETSET): overwrites a value of any type unless GET is given, which needs a
/// string. A deadline already passed leaves the key absent, as Redis 7 does.
fn set<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    value: &Bytes,
    options: SetOptions,
) -> Result<Reply, KvError> {
    if options.keep_ttl && options.expire_at_ms.is_some() {
        return Err(KvError::Syntax);
    }
    if options.expire_at_ms == Some(0) {
        return Err(KvError::InvalidExpireTime("set".to_string()));
    }
    // A plain SET replaces whatever is there: it needs no read of the old record.
    let looked_up = options.get || options.keep_ttl || options.condition != SetCondition::Always;
    let old = if options.get {
        cx.lookup_string(key)?
    } else if looked_up {
        cx.lookup(key)?
    } else {
        None
    };
    let existed = old.is_some();
    let answer = match (&old, options.get) {
        (Some(record), true) => Reply::Bulk(record.value.clone()),
        (None, true) => Reply::Nil,
        (_, false) => Reply::Ok,
    };
    let blocked = match options.condition {
        SetCondition::Always => false,
        SetCondition::IfAbsent => old.is_some(),
        SetCondition::IfPresent => old.is_none(),
    };
    if blocked {
        return Ok(if options.get { answer } else { Reply::Nil });
    }
    let expire_at_ms = match options.keep_ttl {
        true => old.and_then(|record| record.expire_at_ms),
        false => options.expire_at_ms,
    };
    let record = Record::string(value.clone(), expire_at_ms);
    if !looked_up {
        cx.raise_new_if_absent(key);
    } else if !existed {
        cx.raise_created(key);
    }
    cx.store(key, &record);
    // As Redis 7.0: `set`, then `expire` for a deadline given. A deadline already passed
    // leaves the key absent: its `expired` comes at once (Redis's, when its expiry gets to
    // the key).
    cx.raise(STRING, "set", key);
    if options.expire_at_ms.is_some() {
        cx.raise(GENERIC, "expire", key);
    }
    if record.is_expired(cx.now_ms) {
        cx.raise(EXPIRED, "expired", key);
    }
    Ok(answer)
}

fn getdel<V: KvRead>(cx: &mut Ctx<'_, V>, key: &Bytes) -> Result<Reply, KvError> {
    let Some(record) = cx.lookup_string(key)? else {
        return Ok(Reply::Nil);
    };
    cx.delete(key);
    cx.raise(GENERIC, "del", key);
    Ok(Reply::Bulk(record.value))
}

fn getex<V: KvRead>(cx: &mut Ctx<'_, V>, key: &Bytes, ttl: GetExTtl) -> Result<Reply, KvError> {
    if ttl == (GetExTtl::At { deadline_ms: 0 }) {
        return Err(KvError::InvalidExpireTime("getex".to_string()));
    }
    let Some(mut record) = cx.lookup_string(key)? else {
        return Ok(Reply::Nil);
    };
    let value = record.value.clone();
    match ttl {
        GetExTtl::Keep => {}
        GetExTtl::Persist if record.expire_at_ms.is_none() => {}
        GetExTtl::Persist => {
            record.expire_at_ms = None;
            cx.store(key, &record);
            cx.raise(GENERIC, "persist", key);
        }
        GetExTtl::At { deadline_ms } => {
            record.expire_at_ms = Some(deadline_ms);
            cx.store(key, &record);
            cx.raise(GENERIC, deadline_event(&record, cx.now_ms), key);
        }
    }
    Ok(Reply::Bulk(value))
}

/// The event of a deadline set on a live key: `del` if it has passed (the key is gone),
/// else `expire`.
fn deadline_event(record: &Record, now_ms: u64) -> &'static str {
    if record.is_expired(now_ms) {
        "del"
    } else {
        "expire"
    }
}

/// Error if a string of `len_bytes` would exceed the maximum string size.
fn check_string_len(len_bytes: Option<u64>) -> Result<usize, KvError> {
    match len_bytes {
        Some(len) if len <= STRING_BYTES_MAX => Ok(len as usize),
        _ => Err(KvError::StringTooLong),
    }
}

/// SETRANGE: zero-pads up to `offset`; keeps the TTL; an empty value writes nothing.
fn setrange<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    offset: u64,
    value: &Bytes,
) -> Result<Reply, KvError> {
    let old = cx.lookup_string(key)?;
    if value.is_empty() {
        return Ok(Reply::Int(old.map_or(0, |record| record.value.len() as i64)));
    }
    let created = old.is_none();
    let (mut buffer, expire_at_ms, end) = grown(old, offset.checked_add(value.len() as u64))?;
    buffer[end - value.len()..end].copy_from_slice(value);
    let new_len = buffer.len() as i64;
    store_string(cx, key, buffer.freeze(), expire_at_ms, created, "setrange");
    Ok(Reply::Int(new_len))
}

/// APPEND: keeps the TTL.
fn append<V: KvRead>(cx: &mut Ctx<'_, V>, key: &Bytes, value: &Bytes) -> Result<Reply, KvError> {
    let old = cx.lookup_string(key)?;
    let created = old.is_none();
    let (old_value, expire_at_ms) =
        old.map_or((Bytes::new(), None), |record| (record.value, record.expire_at_ms));
    check_string_len((old_value.len() as u64).checked_add(value.len() as u64))?;
    let mut buffer = BytesMut::with_capacity(old_value.len() + value.len());
    buffer.extend_from_slice(&old_value);
    buffer.extend_from_slice(value);
    let new_len = buffer.len() as i64;
    store_string(cx, key, buffer.freeze(), expire_at_ms, created, "append");
    Ok(Reply::Int(new_len))
}

/// Stores a string command's result, raising `new` if it `created` the key, then `event`.
fn store_string<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    value: Bytes,
    expire_at_ms: Option<u64>,
    created: bool,
    event: &'static str,
) {
    if created {
        cx.raise_created(key);
    }
    cx.store(key, &Record::string(value, expire_at_ms));
    cx.raise(STRING, event, key);
}

/// INCRBY and friends: the value must be a canonical 64-bit integer; keeps the TTL.
fn incrby<V: KvRead>(cx: &mut Ctx<'_, V>, key: &Bytes, delta: i64) -> Result<Reply, KvError> {
    let old = cx.lookup_string(key)?;
    let current = match &old {
        Some(record) => parse_i64(&record.value).ok_or(KvError::NotInteger)?,
        None => 0,
    };
    let new = current.checked_add(delta).ok_or(KvError::Overflow)?;
    let created = old.is_none();
    let expire_at_ms = old.and_then(|record| record.expire_at_ms);
    store_string(cx, key, Bytes::from(new.to_string()), expire_at_ms, created, "incrby");
    Ok(Reply::Int(new))
}

/// INCRBYFLOAT: stores and answers the printed sum; keeps the TTL.
fn incrbyfloat<V: KvRead>(cx: &mut Ctx<'_, V>, key: &Bytes, delta: f64) -> Result<Reply, KvError> {
    let old = cx.lookup_string(key)?;
    let current = match &old {
        Some(record) => parse_f64(&record.value).ok_or(KvError::NotFloat)?,
        None => 0.0,
    };
    let new = current + delta;
    if !new.is_finite() {
        return Err(KvError::NanOrInfinity);
    }
    let text = Bytes::from(format_f64(new));
    let created = old.is_none();
    let expire_at_ms = old.and_then(|record| record.expire_at_ms);
    store_string(cx, key, text.clone(), expire_at_ms, created, "incrbyfloat");
    Ok(Reply::Bulk(text))
}

/// DEL: counts the live keys it removed (a repeated key once).
fn del<V: KvRead>(cx: &mut Ctx<'_, V>, keys: &[Bytes]) -> Result<Reply, KvError> {
    let mut removed = 0;
    for key in keys {
        if cx.lookup(key)?.is_some() {
            cx.delete(key);
            cx.raise(GENERIC, "del", key);
            removed += 1;
        }
    }
    Ok(Reply::Int(removed))
}

/// EXPIRE family: the NX/XX/GT/LT checks come first, then a deadline not after now
/// deletes the key (answering 1), as Redis's `expireGenericCommand`.
fn expire<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    deadline_ms: u64,
    condition: ExpireCondition,
) -> Result<Reply, KvError> {
    let Some(mut record) = cx.lookup(key)? else {
        return Ok(Reply::Int(0));
    };
    let current = record.expire_at_ms;
    let allowed = match condition {
        ExpireCondition::Always => true,
        ExpireCondition::Nx => current.is_none(),
        ExpireCondition::Xx => current.is_some(),
        ExpireCondition::Gt => current.is_some_and(|current| deadline_ms > current),
        ExpireCondition::Lt => current.is_none_or(|current| deadline_ms < current),
        ExpireCondition::XxLt => current.is_some_and(|current| deadline_ms < current),
    };
    if !allowed {
        return Ok(Reply::Int(0));
    }
    record.expire_at_ms = Some(deadline_ms);
    cx.store(key, &record);
    cx.raise(GENERIC, deadline_event(&record, cx.now_ms), key);
    Ok(Reply::Int(1))
}

fn persist<V: KvRead>(cx: &mut Ctx<'_, V>, key: &Bytes) -> Result<Reply, KvError> {
    match cx.lookup(key)? {
        Some(mut record) if record.expire_at_ms.is_some() => {
            record.expire_at_ms = None;
            cx.store(key, &record);
            cx.raise(GENERIC, "persist", key);
            Ok(Reply::Int(1))
        }
        _ => Ok(Reply::Int(0)),
    }
}

/// RENAME / RENAMENX within one slot; the value keeps its TTL.
fn rename<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    new_key: &Bytes,
    only_if_absent: bool,
) -> Result<Reply, KvError> {
    if key_slot(key) != key_slot(new_key) {
        return Err(KvError::CrossSlot);
    }
    let record = cx.lookup(key)?.ok_or(KvError::NoSuchKey)?;
    let done = if only_if_absent { Reply::Int(1) } else { Reply::Ok };
    if key == new_key {
        return Ok(if only_if_absent { Reply::Int(0) } else { Reply::Ok });
    }
    if only_if_absent && cx.lookup(new_key)?.is_some() {
        return Ok(Reply::Int(0));
    }
    cx.raise_expired_if_stored(new_key);
    cx.delete(key);
    cx.store(new_key, &record);
    // Redis deletes the destination, then adds it: always `new`.
    cx.raise(NEW, "new", new_key);
    cx.raise(GENERIC, "rename_from", key);
    cx.raise(GENERIC, "rename_to", new_key);
    Ok(done)
}

/// SETBIT: zero-pads the string to reach the bit (a missing key becomes one, even to
/// clear a bit); keeps the TTL.
fn setbit<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    offset: u64,
    bit: bool,
) -> Result<Reply, KvError> {
    let old = cx.lookup_string(key)?;
    let within = |record: &Record| ((offset >> 3) as usize) < record.value.len();
    if old.as_ref().is_some_and(|r| within(r) && bits::get_bit(&r.value, offset) == bit) {
        // Nothing changes: no copy of the value, no write, no event.
        return Ok(Reply::Int(i64::from(bit)));
    }
    let created = old.is_none();
    let (mut buffer, expire_at_ms, _) = grown(old, Some((offset >> 3) + 1))?;
    let was = bits::set_bit(&mut buffer, offset, bit);
    store_string(cx, key, buffer.freeze(), expire_at_ms, created, "setbit");
    Ok(Reply::Int(i64::from(was)))
}

/// A copy of `old`'s string (empty if none) to change, zero-padded to at least `len`
/// bytes (`None`: past `u64`, refused as past the largest string), with its deadline and
/// `len` checked.
fn grown(
    old: Option<Record>,
    len: Option<u64>,
) -> Result<(BytesMut, Option<u64>, usize), KvError> {
    let len = check_string_len(len)?;
    let (value, expire_at_ms) =
        old.map_or((Bytes::new(), None), |record| (record.value, record.expire_at_ms));
    let mut buffer = BytesMut::with_capacity(len.max(value.len()));
    buffer.extend_from_slice(&value);
    if buffer.len() < len {
        buffer.resize(len, 0);
    }
    Ok((buffer, expire_at_ms, len))
}

/// BITFIELD with writes: zero-pads the string to reach the last bit they write (a missing
/// key becomes one, even if no write happens); keeps the TTL; stores nothing if nothing
/// changed.
fn bitfield<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    ops: &[bits::FieldOp],
) -> Result<Reply, KvError> {
    let last = ops.iter().filter_map(bits::FieldOp::last_written_bit).max();
    let Some(last) = last else {
        return Err(KvError::Syntax);
    };
    let old = cx.lookup_string(key)?;
    let before = old.as_ref().map_or_else(Bytes::new, |record| record.value.clone());
    let existed = old.is_some();
    let (mut buffer, expire_at_ms, _) = grown(old, Some((last >> 3) + 1))?;
    let reply = bits::bitfield(&mut buffer, ops);
    if !existed || buffer[..] != before[..] {
        store_string(cx, key, buffer.freeze(), expire_at_ms, !existed, "setbit");
    }
    Ok(reply)
}

/// BITOP: `dest` loses its TTL; an empty result deletes it. Answers the result's length.
fn bitop<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    op: bits::BitOpKind,
    dest: &Bytes,
    keys: &[Bytes],
) -> Result<Reply, KvError> {
    if keys.is_empty() || (op == bits::BitOpKind::Not && keys.len() != 1) {
        return Err(KvError::Syntax);
    }
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        values.push(cx.lookup_string(key)?.map_or_else(Bytes::new, |record| record.value));
    }
    let sources: Vec<&[u8]> = values.iter().map(|value| &value[..]).collect();
    let result = bits::combine(op, &sources);
    let len = result.len() as i64;
    if result.is_empty() {
        // Redis deletes the destination without looking at its deadline (`del` for any
        // record), unless reading it as a source expired it first.
        match cx.stored_if_wanted(dest, EXPIRED | GENERIC) {
            Stored::Expired if keys.contains(dest) => cx.raise(EXPIRED, "expired", dest),
            Stored::Expired | Stored::Live => cx.raise(GENERIC, "del", dest),
            Stored::Nothing => {}
        }
        cx.delete(dest);
    } else {
        cx.raise_new_if_absent(dest);
        cx.store(dest, &Record::string(Bytes::from(result), None));
        cx.raise(STRING, "set", dest);
    }
    Ok(Reply::Int(len))
}

/// RESTORE: a deadline already passed leaves the key absent (deleted with `replace`).
fn restore<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    value: &Bytes,
    deadline_ms: Option<u64>,
    replace: bool,
) -> Result<Reply, KvError> {
    if !replace && cx.lookup(key)?.is_some() {
        return Err(KvError::BusyKey);
    }
    check_string_len(Some(value.len() as u64))?;
    let record = Record::string(value.clone(), deadline_ms);
    // Without REPLACE, Redis looks the key up (expiring it); with it, it deletes whatever
    // record is there without an event, and raises `del` for it if the new deadline passed.
    let stored = cx.stored_if_wanted(key, EXPIRED | GENERIC);
    if !replace && stored == Stored::Expired {
        cx.raise(EXPIRED, "expired", key);
    }
    if record.is_expired(cx.now_ms) {
        if replace && stored != Stored::Nothing {
            cx.raise(GENERIC, "del", key);
        }
        cx.store(key, &record);
    } else {
        cx.store(key, &record);
        cx.raise(NEW, "new", key);
        cx.raise(GENERIC, "restore", key);
    }
    Ok(Reply::Ok)
}

/// COPY: the value and its deadline; 0 if `source` is missing or `dest` exists without
/// `replace`.
fn copy<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    source: &Bytes,
    dest: &Bytes,
    replace: bool,
) -> Result<Reply, KvError> {
    if key_slot(source) != key_slot(dest) {
        return Err(KvError::CrossSlot);
    }
    if source == dest {
        return Err(KvError::SameObject);
    }
    let Some(record) = cx.lookup(source)? else {
        return Ok(Reply::Int(0));
    };
    if !replace && cx.lookup(dest)?.is_some() {
        return Ok(Reply::Int(0));
    }
    cx.raise_expired_if_stored(dest);
    cx.store(dest, &record);
    cx.raise(NEW, "new", dest);
    cx.raise(GENERIC, "copy_to", dest);
    Ok(Reply::Int(1))
}

/// MSET / MSETNX: values without TTL; MSETNX writes nothing if any key exists.
fn mset<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    pairs: &[(Bytes, Bytes)],
    only_if_none_exist: bool,
) -> Result<Reply, KvError> {
    if only_if_none_exist {
        for (key, _) in pairs {
            if cx.lookup(key)?.is_some() {
                return Ok(Reply::Int(0));
            }
        }
        // Redis's check expires every key past its deadline before the first is set.
        if cx.wants(EXPIRED) {
            let mut seen = std::collections::HashSet::new();
            for (key, _) in pairs {
                if seen.insert(key) {
                    cx.raise_expired_if_stored(key);
                }
            }
        }
    }
    for (key, value) in pairs {
        if !only_if_none_exist {
            cx.raise_new_if_absent(key);
        } else if cx.wants(NEW) && !cx.exists_unmetered(key) {
            cx.raise(NEW, "new", key);
        }
        cx.store(key, &Record::string(value.clone(), None));
        cx.raise(STRING, "set", key);
    }
    Ok(if only_if_none_exist { Reply::Int(1) } else { Reply::Ok })
}

/// Applies a change of the cluster map to its record (the metadata group's only one); a
/// group without the record (not the metadata group) answers an error.
fn apply_meta<V: KvRead>(cx: &mut Ctx<'_, V>, op: &crate::kv::meta::MetaOp) -> Reply {
    use crate::kv::meta::{ClusterMap, MAP_KEY, META_SLOT};
    let Some(raw) = cx.overlay.over(cx.view).get(META_SLOT, MAP_KEY) else {
        return Reply::Error(KvError::Meta("ERR this group holds no cluster map".into()));
    };
    let mut map = match ClusterMap::from_record(&raw) {
        Ok(map) => map,
        Err(e) => return Reply::Error(e),
    };
    let version = map.version;
    let reply = map.apply(op);
    if map.version != version {
        cx.overlay.put(META_SLOT, Bytes::from_static(MAP_KEY), map.to_record());
    }
    reply
}

/// FLUSHALL / FLUSHDB of the group's part of the keyspace: one range delete of the slots,
/// whatever number of keys they hold (`Overlay::clear_slots`).
fn flush_slots<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    slots: RangeInclusive<u16>,
) -> Result<Reply, KvError> {
    cx.overlay.clear_slots(slots);
    Ok(Reply::Ok)
}

/// Active expiry: delete only if the key still carries this passed deadline.
fn delete_expired<V: KvRead>(
    cx: &mut Ctx<'_, V>,
    key: &Bytes,
    deadline_ms: u64,
) -> Result<Reply, KvError> {
    let Some(raw) = cx.overlay.over(cx.view).get(key_slot(key), key) else {
        return Ok(Reply::Int(0));
    };
    let record = Record::decode(&raw).map_err(|e| KvError::CorruptRecord(e.to_string()))?;
    if record.expire_at_ms != Some(deadline_ms) || deadline_ms > cx.now_ms {
        return Ok(Reply::Int(0));
    }
    cx.delete(key);
    cx.raise(EXPIRED, "expired", key);
    Ok(Reply::Int(1))
}
