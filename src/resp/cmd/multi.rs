//! MULTI, EXEC, DISCARD: a transaction, as far as one shard group makes it atomic.
//!
//! After MULTI each command is prepared as it comes (its arity, authentication and, for a
//! cluster-aware connection, its routing checked then, as Redis checks them) and queued,
//! answered `+QUEUED`. EXEC runs the queue as one: its shard operations as one request on
//! their group (`KvCommand::Batch`, one log entry, or `ReadCommand::Batch`, one read index;
//! `exec::run_transaction`), and answers every command's reply in order. A command refused
//! when queued (unknown, wrong arity, NOAUTH, `-MOVED`, `-CROSSSLOT`) makes EXEC answer
//! `-EXECABORT`, as in Redis; other errors found when queued (a syntax error) are that
//! command's answer inside EXEC's, as Redis's are.
//!
//! Where shardkv is narrower than Redis, the command is refused when queued (and EXEC
//! aborts), so that a transaction never runs in part:
//! - its keys must live in one shard group (on a cluster-aware connection, in one slot, as
//!   Redis Cluster requires), and a command whose keys span groups (DBSIZE, KEYS, SCAN,
//!   FLUSHALL, a multi-key command across groups) cannot be queued;
//! - the commands must be all writes or all reads, and no write may answer a value (SET
//!   GET, GETSET, GETDEL, GETEX): a log entry's replies stay small, as a pipeline batch's;
//! - WATCH is not supported.
//!
//! Connection commands queued (PING, ECHO, CLIENT SETNAME...) take effect when queued, and
//! their answers wait for EXEC's.

use bytes::Bytes;

use super::Ctx;
use crate::kv::KvError;
use crate::raft::types::GroupId;
use crate::resp::backend::Backend;
use crate::resp::exec::{batchable, Job, Ops, Transaction};
use crate::resp::frame::Frame;
use crate::resp::stats::{is_rejected, rejected_text};

/// Most commands one transaction queues: past it the command is refused and EXEC aborts.
pub const MULTI_COMMANDS_MAX: usize = 10_000;

/// A transaction being queued, between MULTI and EXEC or DISCARD.
#[derive(Debug, Default)]
pub struct Multi {
    tx: Transaction,
    /// The group (and slot) of the first shard operation, and whether it writes: every
    /// later one must match.
    group: Option<(GroupId, u16, bool)>,
    /// A command was refused: EXEC discards the transaction.
    dirty: bool,
}

/// Commands that run at once inside a transaction rather than being queued.
pub fn runs_inside(name: &str) -> bool {
    matches!(name, "exec" | "discard" | "multi" | "quit" | "reset")
}

pub fn prepare_multi<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    if cx.client.multi.is_some() {
        return Job::Now(Frame::error("ERR MULTI calls can not be nested"));
    }
    cx.client.multi = Some(Multi::default());
    Job::Now(Frame::ok())
}

pub fn prepare_discard<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    match cx.client.multi.take() {
        Some(_) => Job::Now(Frame::ok()),
        None => Job::Now(Frame::error("ERR DISCARD without MULTI")),
    }
}

pub fn prepare_exec<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    match cx.client.multi.take() {
        None => Job::Now(Frame::error("ERR EXEC without MULTI")),
        Some(multi) if multi.dirty => Job::Now(Frame::error(
            "EXECABORT Transaction discarded because of previous errors.",
        )),
        Some(mut multi) => {
            multi.tx.exec_ms = cx.now_ms();
            Job::Transaction(multi.tx)
        }
    }
}

/// `job` of `name`, a command that runs at once inside a transaction (`runs_inside`):
/// refused (a wrong arity), it aborts the transaction, and EXEC refused discards it at
/// once, answering why, as Redis's does.
pub fn ran_inside(multi: &mut Option<Multi>, name: &str, job: Job) -> Job {
    let Job::Now(Frame::Error(text)) = &job else { return job };
    if !rejected_text(text) {
        return job;
    }
    if name == "exec" {
        *multi = None;
        let why = text.strip_prefix("ERR ").unwrap_or(text);
        return Job::Now(Frame::error(format!("EXECABORT Transaction discarded because of: {why}")));
    }
    if let Some(queue) = multi {
        queue.dirty = true;
    }
    job
}

impl Multi {
    /// Queues the prepared `job` of command `name`: what the client is answered now.
    pub fn queue(&mut self, name: &str, job: Job) -> Frame {
        if self.tx.len >= MULTI_COMMANDS_MAX {
            let text = format!("ERR a transaction queues at most {MULTI_COMMANDS_MAX} commands");
            return self.refuse(Frame::error(text));
        }
        match job {
            Job::Now(frame) if is_rejected(&frame) => return self.refuse(frame),
            Job::Now(frame) => self.tx.now.push((self.tx.len, frame)),
            Job::Run(ops) => {
                if let Err(refusal) = self.fits(name, &ops) {
                    return self.refuse(refusal);
                }
                self.tx.ops.push((self.tx.len, ops));
            }
            Job::Close(frame) => return frame,
            Job::Keys { .. } | Job::Transaction(_) => {
                return self.refuse(spans_groups(name));
            }
        }
        self.tx.len += 1;
        Frame::Simple("QUEUED".into())
    }

    fn refuse(&mut self, frame: Frame) -> Frame {
        self.dirty = true;
        frame
    }

    /// Whether `ops` may join the transaction, else the refusal.
    fn fits(&mut self, name: &str, ops: &Ops) -> Result<(), Frame> {
        let [part] = &ops.parts[..] else {
            return Err(spans_groups(name));
        };
        if !batchable(ops) {
            return Err(Frame::error(format!(
                "ERR '{name}' answers a value and cannot be queued in a transaction here \
                 (only writes that answer no value, or reads, are)"
            )));
        }
        let (group, slot, write) = *self.group.get_or_insert((part.group, part.slot, ops.write));
        if part.group != group || (ops.redirects && part.slot != slot) {
            return Err(Frame::from(KvError::CrossSlot));
        }
        if ops.write != write {
            return Err(Frame::error(
                "ERR a transaction here is all writes or all reads; this one would mix them",
            ));
        }
        Ok(())
    }
}

fn spans_groups(name: &str) -> Frame {
    Frame::error(format!(
        "ERR '{name}' reaches several shard groups and cannot be queued in a transaction"
    ))
}
