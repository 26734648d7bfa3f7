//! MULTI, EXEC, DISCARD: a transaction, atomic within one shard group.
//!
//! After MULTI each command is prepared as it comes, to check it as Redis does when it
//! queues one (its arity, authentication and, for a cluster-aware connection, its routing),
//! and answered `+QUEUED`. A command refused then (unknown, wrong arity, NOAUTH, `-MOVED`,
//! `-CROSSSLOT`) makes EXEC answer `-EXECABORT`, as in Redis; other errors found then (a
//! syntax error) are that command's answer inside EXEC's, as Redis's are.
//!
//! EXEC prepares the queued key commands again, at its own clock (so that relative TTLs
//! count from EXEC, as in Redis), and runs them as one request of their group
//! (`exec::run_transaction`): writes and reads together as one `KvCommand::Transaction`
//! (one log entry, applied in order, all or nothing), reads alone as one
//! `ReadCommand::Batch` (one read index). Their keys must live in one group (in one slot
//! on a cluster-aware connection, as Redis Cluster requires), else EXEC answers
//! `-CROSSSLOT`, as Redis Cluster's does.
//!
//! Narrower than Redis, refused when queued so that a transaction never runs in part:
//! commands that are not reads or writes of named keys on one group (INFO's keyspace,
//! DBSIZE, KEYS, SCAN, RANDOMKEY, FLUSHALL, CLUSTER COUNTKEYSINSLOT/GETKEYSINSLOT, a
//! multi-key command across groups); more than `MULTI_COMMANDS_MAX` commands, or
//! arguments and kept answers past `limits.write_bytes_max` (the transaction is one log
//! entry). Connection commands queued (PING, ECHO, TIME, CLIENT SETNAME...) run when
//! queued; their answers wait for EXEC's.
//!
//! WATCH reads its keys' digests (`kv::read::digests`: type, deadline and value) at once,
//! linearizably; EXEC's transaction carries them (`KvCommand::Watched`) and applies nothing,
//! answering a null array, if one differs when it applies (a transaction of reads alone, or
//! of none, reads them again at its read index). Narrower than Redis: a write that leaves a
//! key as it was (a SET of the same value) does not abort it; the watched keys must live in
//! the transaction's group (its slot, on a cluster-aware connection), else EXEC answers
//! `-CROSSSLOT`; at most `WATCH_KEYS_MAX` keys, their bytes counted with the queue's against
//! `limits.write_bytes_max`, their values digested up to `WATCH_DIGEST_BYTES_MAX`. A WATCH
//! that answered an error watches nothing (its keys still count in those bounds and in the
//! group check, until EXEC, DISCARD or UNWATCH).

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use super::Ctx;
use crate::kv::read::ReadCommand;
use crate::kv::{key_slot, KvError};
use crate::resp::backend::Backend;
use crate::resp::exec::{Job, Merge, Ops, Transaction};
use crate::resp::frame::{Frame, Proto};
use crate::resp::stats::is_rejected;
use crate::shard::api::ShardOp;
use crate::shard::limits::ENCODING_BYTES_PER_ITEM;

/// Most commands one transaction queues: past it the command is refused and EXEC aborts.
pub const MULTI_COMMANDS_MAX: usize = 10_000;

/// Keys one connection watches at once (Redis has no bound): each is read when watched
/// and compared inside the transaction's log entry. Their bytes are bounded too, by
/// `limits.write_bytes_max`, and their values by `read::WATCH_DIGEST_BYTES_MAX`.
pub const WATCH_KEYS_MAX: usize = 1_000;

/// Bytes a watched key's digest takes in the log entry, counted with its key.
const DIGEST_BYTES: u64 = 9;

/// The bytes a watched key takes in the transaction's log entry.
fn key_bytes(key: &Bytes) -> u64 {
    key.len() as u64 + ENCODING_BYTES_PER_ITEM + DIGEST_BYTES
}

/// The bytes the keys `watched` take in the transaction's log entry: a transaction's
/// queue starts with them (`limits.write_bytes_max` bounds the whole entry).
fn watched_bytes(watched: &[Watch]) -> u64 {
    watched.iter().flat_map(|w| &w.keys).map(key_bytes).sum()
}

/// The keys of one WATCH, and their digests once its read answers (`None`: it failed, and
/// answered the client an error: its keys are not watched, as in Redis).
#[derive(Debug)]
pub struct Watch {
    pub keys: Vec<Bytes>,
    pub digests: oneshot::Receiver<Option<Vec<Frame>>>,
}

/// Refusals of a write before it runs that Redis does not have (`cmd::write_too_large`):
/// queued, they abort the transaction as Redis's own refusals do.
const SHARDKV_REFUSALS: [&str; 5] = [
    "ERR write of ",
    super::pubsub::IN_MULTI,
    super::pubsub::TOO_LARGE,
    super::monitor::IN_MULTI,
    super::config::SET_IN_MULTI,
];

/// A transaction being queued, between MULTI and EXEC or DISCARD.
#[derive(Debug, Default)]
pub struct Multi {
    queued: Vec<Queued>,
    /// The queued commands' argument bytes (counted as `cmd::write_too_large` counts
    /// them; a RESTORE's decoded value, if larger) and the encoded bytes of the answers
    /// kept.
    bytes: u64,
    /// A command was refused: EXEC discards the transaction.
    dirty: bool,
}

#[derive(Debug)]
enum Queued {
    /// Answered when queued (a connection command, or a command's own error).
    Now(Frame),
    /// A key command, prepared again at EXEC: its arguments and command-table index.
    Again { args: Vec<Bytes>, index: Option<usize> },
}

/// Commands that run at once inside a transaction rather than being queued.
pub fn runs_inside(name: &str) -> bool {
    matches!(name, "exec" | "discard" | "multi" | "quit" | "reset" | "watch")
}

pub fn prepare_multi<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    if cx.client.multi.is_some() {
        return Job::Now(Frame::error("ERR MULTI calls can not be nested"));
    }
    let bytes = watched_bytes(&cx.client.watched);
    cx.client.multi = Some(Multi { bytes, ..Multi::default() });
    Job::Now(Frame::ok())
}

pub fn prepare_discard<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    match cx.client.multi.take() {
        Some(_) => {
            cx.client.watched.clear();
            Job::Now(Frame::ok())
        }
        None => Job::Now(Frame::error("ERR DISCARD without MULTI")),
    }
}

pub fn prepare_exec<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    let Some(multi) = cx.client.multi.take() else {
        return Job::Now(Frame::error("ERR EXEC without MULTI"));
    };
    let watched = std::mem::take(&mut cx.client.watched);
    if multi.dirty {
        let text = "EXECABORT Transaction discarded because of previous errors.";
        return Job::Now(Frame::error(text));
    }
    let job = exec(cx, multi.queued, watched);
    // Preparing the queued commands again showed each as the connection's last command.
    cx.client.entry.show(cx.client.name.as_ref(), "exec", cx.client.proto);
    job
}

/// WATCH: reads the keys' digests now; EXEC compares them.
pub fn prepare_watch<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    if cx.client.multi.is_some() {
        return Job::Now(Frame::error("ERR WATCH inside MULTI is not allowed"));
    }
    let watching = cx.client.watched.iter().map(|w| w.keys.len()).sum::<usize>();
    if watching + (args.len() - 1) > WATCH_KEYS_MAX {
        let text = format!("ERR a connection watches at most {WATCH_KEYS_MAX} keys");
        return Job::Now(Frame::error(text));
    }
    // A key named twice is read once. One watched by an earlier WATCH is read again (that
    // one may have failed, or not answered yet); EXEC keeps the first digest of each key.
    let mut keys: Vec<Bytes> = Vec::new();
    for key in &args[1..] {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    // Each watched key goes in the transaction's log entry, with its digest.
    let bytes_max = cx.shared.options.limits.write_bytes_max;
    if watched_bytes(&cx.client.watched) + keys.iter().map(key_bytes).sum::<u64>() > bytes_max {
        return Job::Now(Frame::error(format!(
            "ERR the watched keys exceed {bytes_max} bytes \
             (limits.write_bytes_max: they go in the transaction's log entry)"
        )));
    }
    let merge = Merge::MGet { len: keys.len() };
    let job = cx.multi_key_read(&keys, |keys| ReadCommand::Digests { keys }, merge);
    let Job::Run(ops) = job else { return job };
    let (tx, digests) = oneshot::channel();
    cx.client.watched.push(Watch { keys, digests });
    Job::Watch(ops, tx)
}

/// UNWATCH. Queued inside a transaction, as in Redis, where it unwatches nothing before
/// EXEC compares.
pub fn prepare_unwatch<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    if cx.client.multi.is_none() {
        cx.client.watched.clear();
    }
    Job::Now(Frame::ok())
}

/// The transaction of `queued`, its key commands prepared again now, and of the keys
/// `watched`; or the one error that answers EXEC (a command's keys moved since it was
/// queued, keys of several groups).
fn exec<B: Backend>(cx: &mut Ctx<'_, B>, queued: Vec<Queued>, watched: Vec<Watch>) -> Job {
    let mut tx = Transaction { redirects: cx.client.redirects, ..Transaction::default() };
    let mut at: Option<(crate::raft::types::GroupId, u16)> = None;
    // Whether a key of `group` and `slot` may join the transaction's first one.
    let mut joins = |group, slot, redirects: bool| {
        let (first_group, first_slot) = *at.get_or_insert((group, slot));
        group == first_group && (!redirects || slot == first_slot)
    };
    for (position, queued) in queued.into_iter().enumerate() {
        let (args, index) = match queued {
            Queued::Now(frame) => {
                tx.now.push((position, frame));
                continue;
            }
            Queued::Again { args, index } => (args, index),
        };
        let ops = match super::prepare_now(cx, &args, index) {
            Job::Run(ops) if ops.parts.len() == 1 => ops,
            Job::Now(frame) if is_rejected(&frame) => return Job::Now(frame),
            Job::Now(frame) => {
                tx.now.push((position, frame));
                continue;
            }
            // Its keys were of one group when queued; a split has since parted them.
            _ => return Job::Now(Frame::from(KvError::CrossSlot)),
        };
        let part = &ops.parts[0];
        if !joins(part.group, part.slot, ops.redirects) {
            return Job::Now(Frame::from(KvError::CrossSlot));
        }
        tx.ops.push((position, ops));
    }
    for key in watched.iter().flat_map(|w| &w.keys) {
        let slot = key_slot(key);
        if !joins(cx.backend.group_of_slot(slot), slot, cx.client.redirects) {
            return Job::Now(Frame::from(KvError::CrossSlot));
        }
    }
    if !watched.is_empty() {
        tx.watched = watched;
        tx.watch_at = at;
    }
    Job::Transaction(tx)
}

/// `job` of `name`, a command that runs at once inside a transaction (`runs_inside`):
/// refused (a wrong arity), it aborts the transaction, and EXEC refused discards it at
/// once, answering why, as Redis's does.
pub fn ran_inside(multi: &mut Option<Multi>, name: &str, job: Job) -> Job {
    let Job::Now(frame @ Frame::Error(text)) = &job else { return job };
    if !is_rejected(frame) {
        return job;
    }
    if name == "exec" {
        // Still queued: EXEC itself was refused, before it ran (a refusal of its commands,
        // `-CROSSSLOT` or `-MOVED`, is its answer as it is, as Redis Cluster's is).
        if multi.take().is_none() {
            return job;
        }
        let why = text.strip_prefix("ERR ").unwrap_or(text);
        return Job::Now(Frame::error(format!("EXECABORT Transaction discarded because of: {why}")));
    }
    if let Some(queue) = multi {
        queue.dirty = true;
    }
    job
}

impl Multi {
    /// Queues command `name` (`args`, at command-table `index`), whose prepared job is
    /// `job`: what the client is answered now. `bytes_max`: `limits.write_bytes_max`.
    pub fn queue(
        &mut self,
        name: &str,
        args: &[Bytes],
        index: Option<usize>,
        job: Job,
        bytes_max: u64,
    ) -> Frame {
        if self.queued.len() >= MULTI_COMMANDS_MAX {
            let text = format!("ERR a transaction queues at most {MULTI_COMMANDS_MAX} commands");
            return self.refuse(Frame::error(text));
        }
        let (queued, bytes) = match job {
            Job::Now(frame) if refused_now(&frame) => return self.refuse(frame),
            Job::Now(frame) => {
                let mut encoded = BytesMut::new();
                frame.encode(Proto::Resp3, &mut encoded);
                (Queued::Now(frame), encoded.len() as u64)
            }
            Job::Run(ops) if key_command(&ops) => {
                let bytes = super::argument_bytes(args).max(restored_bytes(&ops));
                (Queued::Again { args: args.to_vec(), index }, bytes)
            }
            Job::Close(frame) => return frame,
            Job::Run(_) if name == "lcs" => {
                return self.refuse(Frame::error(
                    "ERR LCS cannot be queued in a transaction: its work is bounded per \
                     command, so it runs alone",
                ));
            }
            Job::Run(_)
            | Job::Keys { .. }
            | Job::Transaction(_)
            | Job::Watch(..)
            | Job::Wait(_) => {
                return self.refuse(Frame::error(format!(
                    "ERR '{name}' is not a read or write of named keys of one shard group \
                     and cannot be queued in a transaction"
                )));
            }
        };
        if self.bytes.saturating_add(bytes) > bytes_max {
            return self.refuse(Frame::error(format!(
                "ERR a transaction's commands exceed {bytes_max} bytes \
                 (limits.write_bytes_max: it is one log entry)"
            )));
        }
        self.bytes += bytes;
        self.queued.push(queued);
        Frame::Simple("QUEUED".into())
    }

    fn refuse(&mut self, frame: Frame) -> Frame {
        self.dirty = true;
        frame
    }
}

/// Whether a command answered `frame` when queued is refused: Redis's refusals before a
/// command runs, and shardkv's own (`SHARDKV_REFUSALS`).
pub(crate) fn refused_now(frame: &Frame) -> bool {
    let shardkv_refusal = |text: &str| SHARDKV_REFUSALS.iter().any(|p| text.starts_with(p));
    is_rejected(frame) || matches!(frame, Frame::Error(text) if shardkv_refusal(text))
}

/// The bytes a RESTORE's decoded value takes in the log entry (its compressed payload was
/// counted as its argument); 0 for any other command.
fn restored_bytes(ops: &Ops) -> u64 {
    ops.parts
        .iter()
        .map(|part| match &part.op {
            ShardOp::Write(request) => match &request.command {
                crate::kv::KvCommand::Restore { key, value, .. } => {
                    super::dump::logged_bytes(key, value)
                }
                _ => 0,
            },
            _ => 0,
        })
        .sum()
}

/// Whether `ops` reads or writes named keys of one group (what a transaction holds).
fn key_command(ops: &Ops) -> bool {
    match &ops.parts[..] {
        [part] => match &part.op {
            ShardOp::Write(request) => !crate::kv::range::write_keys(&request.command).is_empty(),
            ShardOp::Read { command, .. } => command.batchable(),
            _ => false,
        },
        _ => false,
    }
}
