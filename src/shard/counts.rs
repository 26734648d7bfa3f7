//! Key counts (DBSIZE, INFO's keyspace, CLUSTER COUNTKEYSINSLOT) served off the replica's
//! thread. redb keeps no count per slot, so a count walks every record of its slots, about
//! 70 ns a key: a million keys held the replica's thread, and every other replica on it,
//! for 70 ms, and `redis-cli --stat` sends INFO every second.
//!
//! A count read whose index is applied waits in `Counts::waiting` (counted among the
//! replica's pending reads, so `pending_requests_max` bounds it); the waiting ones are
//! counted together on a blocking thread over one capture of the applied state (a redb read
//! transaction, and the undurable keys and cleared ranges of their slots), one batch at a
//! time per replica, each distinct slot range once: a flood of counts holds one read
//! transaction and one copy of the pending keys, and walks the records once. A count of a
//! state applied after a read's index is linearizable still (the read has not answered yet).
//! No batch starts while a snapshot is being installed (the applied state is then neither
//! redb's nor the undurable layer's until the install is durable) or once the replica failed.
//!
//! Must never: count slots the group no longer serves (each read is checked against the
//! group's range when its batch is captured), or count another state than the applied one.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::kv::overlay::{layered_count, pending_refs, Cleared};
use crate::kv::read::{KeyCount, ReadCommand, Tally};
use crate::kv::Reply;
use crate::shard::actor::{PendingRead, ShardActor};
use crate::shard::api::{ShardError, ShardResult};
use crate::shard::split::prepare_read;
use crate::storage::group_snapshot::latest_kv_view;

/// Count reads waiting for a batch, and the reads of the batch being counted.
#[derive(Default)]
pub(crate) struct Counts {
    waiting: Vec<PendingRead>,
    running: usize,
}

/// The slots a read counts the keys of, if it is a count.
fn counted_slots(command: &ReadCommand) -> Option<RangeInclusive<u16>> {
    match *command {
        ReadCommand::DbSize { slot_first, slot_last }
        | ReadCommand::Keyspace { slot_first, slot_last } => Some(slot_first..=slot_last),
        ReadCommand::CountKeysInSlot { slot } => Some(slot..=slot),
        _ => None,
    }
}

impl Counts {
    /// Takes `read` if it is a count (its index applied), to be counted off the thread.
    pub(crate) fn take(&mut self, read: PendingRead) -> Option<PendingRead> {
        if counted_slots(&read.command).is_none() {
            return Some(read);
        }
        self.waiting.push(read);
        None
    }

    /// Count reads not answered yet.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.running
    }

    /// Every waiting read, to be answered otherwise (the replica failed).
    pub(crate) fn take_waiting(&mut self) -> Vec<PendingRead> {
        std::mem::take(&mut self.waiting)
    }
}

/// The count reads of one slot range: each one's command (what its answer holds), clock
/// and where the answer goes.
type RangeReads = Vec<(ReadCommand, u64, oneshot::Sender<ShardResult>)>;

/// Answers every read of `txs` with a storage error.
fn fail(group: crate::raft::GroupId, txs: Vec<RangeReads>, reason: String) {
    for (_, _, tx) in txs.into_iter().flatten() {
        let _ = tx.send(Err(ShardError::Storage { group, reason: reason.clone() }));
    }
}

impl ShardActor {
    /// Starts counting every waiting count read, unless a batch is being counted (its end
    /// starts the next).
    pub(crate) fn start_counts(&mut self, ctx: &mut Context<ShardActor>) {
        if self.counts.running > 0
            || self.counts.waiting.is_empty()
            || self.failed.is_some()
            || self.installing_snapshot()
        {
            return;
        }
        let group = self.cfg.group;
        // The reads of each distinct slot range, counted once.
        let mut by_slots: BTreeMap<(u16, u16), RangeReads> = BTreeMap::new();
        for read in std::mem::take(&mut self.counts.waiting) {
            let prepared = prepare_read(group, &self.range, &read.command);
            match prepared.as_ref().map(counted_slots) {
                Ok(Some(counted)) => {
                    let reads = by_slots.entry((*counted.start(), *counted.end())).or_default();
                    reads.push((read.command, read.now_ms, read.tx));
                }
                Ok(None) => {
                    let reason = "a count read became another read".to_string();
                    let _ = read.tx.send(Err(ShardError::Storage { group, reason }));
                }
                Err(_) => {
                    let _ = read.tx.send(prepared.map(|_| Reply::Nil));
                }
            }
        }
        let (Some(first), Some(last)) = (
            by_slots.keys().map(|(first, _)| *first).min(),
            by_slots.keys().map(|(_, last)| *last).max(),
        ) else {
            return;
        };
        let (slots, txs): (Vec<(u16, u16)>, Vec<RangeReads>) = by_slots.into_iter().unzip();
        // A range's deadlines are read if one of its reads needs them, those after the
        // latest clock of its reads.
        let deadlines = |reads: &RangeReads| {
            let after = reads.iter().filter_map(|(command, now_ms, _)| {
                match Tally::of(command, *now_ms) {
                    Tally::Deadlines { after_ms } => Some(after_ms),
                    Tally::Keys => None,
                }
            });
            after.max().map_or(Tally::Keys, |after_ms| Tally::Deadlines { after_ms })
        };
        let tallies: Vec<Tally> = txs.iter().map(deadlines).collect();
        let view = match latest_kv_view(&self.deps.db, group) {
            Ok(view) => view,
            Err(e) => return fail(group, txs, e.to_string()),
        };
        let (pending, cleared) = self.undurable().pending_keys(first..=last);
        let counted = tokio::task::spawn_blocking(move || {
            let base = Cleared::new(&view, &cleared);
            let count = |((first, last), tally): ((u16, u16), Tally)| {
                layered_count(&base, pending_refs(&pending), first..=last, tally)
            };
            let counts: Vec<KeyCount> = slots.into_iter().zip(tallies).map(count).collect();
            view.check().map(|()| counts)
        });
        self.counts.running = txs.iter().map(Vec::len).sum();
        ctx.spawn(fut::wrap_future(counted).map(move |counted, act: &mut ShardActor, ctx| {
            act.counts.running = 0;
            match counted {
                Ok(Ok(counts)) => {
                    for (reads, count) in txs.into_iter().zip(counts) {
                        for (command, _, tx) in reads {
                            let _ = tx.send(Ok(count.reply(&command)));
                        }
                    }
                }
                Ok(Err(e)) => fail(group, txs, e.to_string()),
                Err(e) => fail(group, txs, format!("counting keys: {e}")),
            }
            act.start_counts(ctx);
        }));
    }
}
