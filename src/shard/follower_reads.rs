//! Follower reads. A read the node's own request path hands to its replica of the key's
//! group (`ShardOp::Read::follower_ok`) is served by that replica when it follows a known
//! leader (`[reads] follower`), instead of travelling to the leader and back: the follower
//! asks the leader for a read index (Raft's ReadIndex from a follower: the leader confirms
//! its leadership, by a heartbeat round or on this follower's own word when the two are a
//! quorum, and answers its commit index), waits until it has applied that index, and reads
//! its own state. That is linearizable as a read at the leader is: the index covers every
//! write acknowledged before the read began, and the follower's state at it holds them all.
//!
//! One round is in flight per replica. Reads that arrive meanwhile wait and share the next
//! round: one message to the leader and one answer for all of them. A round the leader
//! leaves unanswered for an election time-out, or one cut off by a change of leader or
//! term, or one the leader refuses (too many reads pending there), fails its reads with
//! `NotLeader`; the request path then forwards them to the leader, as it does for every
//! read a follower cannot take. So does an answer that finds the follower more than
//! `FOLLOWER_READ_LAG_ENTRIES_MAX` entries behind the read index (it is catching up, and
//! the leader answers sooner).
//!
//! Must never: serve a read before its replica applied the index the leader gave for it,
//! or give a read the index of a round asked before the read arrived (that index may miss
//! a write acknowledged in between).

use std::time::Instant;

use bytes::Bytes;

use crate::raft::{LogIndex, NodeId, Role, Term};
use crate::shard::actor::{PendingRead, ShardActor};
use crate::shard::limits::FOLLOWER_READ_LAG_ENTRIES_MAX;

/// The follower's reads: those waiting for the next round and the round in flight.
#[derive(Default)]
pub(crate) struct FollowerReads {
    waiting: Vec<(u64, PendingRead)>,
    round: Option<Round>,
}

/// A read index asked of the leader for `reads`.
struct Round {
    /// The ReadIndex context: an id from the replica's read ids.
    context: u64,
    reads: Vec<(u64, PendingRead)>,
    asked: Instant,
    /// The leader asked, and its term.
    leader: NodeId,
    term: Term,
}

impl FollowerReads {
    /// Reads waiting or in a round.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.round.as_ref().map_or(0, |r| r.reads.len())
    }

    /// Every read, waiting or in a round (to fail them).
    pub(crate) fn take_all(&mut self) -> Vec<PendingRead> {
        let round = self.round.take().map(|r| r.reads).unwrap_or_default();
        let waiting = std::mem::take(&mut self.waiting);
        round.into_iter().chain(waiting).map(|(_, r)| r).collect()
    }
}

impl ShardActor {
    /// This replica serves reads as a follower now: a follower of a known leader, in
    /// working order.
    pub(crate) fn serves_follower_reads(&self) -> bool {
        self.cfg.follower_reads
            && self.failed.is_none()
            && self.initialized
            && !self.removed
            && !self.retiring
            && self.raw.role() == Role::Follower
            && self.leader_hint().is_some()
    }

    /// Queues a read for the next round (see `ask_follower_round`).
    pub(crate) fn queue_follower_read(&mut self, id: u64, read: PendingRead) {
        self.follower_reads.waiting.push((id, read));
    }

    /// Asks the leader for a read index for every waiting read, unless a round is in
    /// flight (they wait for its answer). Reads that can no longer be served here (the
    /// replica stopped following a known leader) are refused.
    pub(crate) fn ask_follower_round(&mut self) {
        if self.follower_reads.round.is_some() || self.follower_reads.waiting.is_empty() {
            return;
        }
        let reads = std::mem::take(&mut self.follower_reads.waiting);
        let Some(leader) = self.leader_hint().filter(|_| self.serves_follower_reads()) else {
            return self.refuse_follower_reads(reads);
        };
        let context = self.next_read_id;
        self.next_read_id += 1;
        match self.raw.read_index(Bytes::copy_from_slice(&context.to_be_bytes())) {
            Ok(()) => {
                let term = self.raw.term();
                let asked = Instant::now();
                self.follower_reads.round = Some(Round { context, reads, asked, leader, term });
            }
            Err(_) => self.refuse_follower_reads(reads),
        }
    }

    /// The leader answered read index `index` to `context`: if that is the round in
    /// flight, its reads wait for the apply of `index` (or are refused if this replica
    /// lags far behind it). True if it was.
    pub(crate) fn follower_round_answered(&mut self, context: u64, index: LogIndex) -> bool {
        let Some(round) = self.take_round(context) else { return false };
        if index > self.applied.plus(FOLLOWER_READ_LAG_ENTRIES_MAX) {
            self.refuse_follower_reads(round.reads);
            return true;
        }
        self.cfg.metrics.reads_follower.inc_by(round.reads.len() as u64);
        for (id, read) in round.reads {
            self.confirmed_reads.insert((index, id), read);
        }
        true
    }

    /// Ends the round in flight if its leader or term is gone, or if the leader left it
    /// unanswered for an election time-out; its reads are refused (the request path
    /// forwards them). Called on every Ready and tick.
    pub(crate) fn check_follower_round(&mut self) {
        let Some(round) = &self.follower_reads.round else { return };
        let moved_on = self.leader_hint() != Some(round.leader) || self.raw.term() != round.term;
        let ticks = u32::try_from(self.cfg.election_ticks_min).unwrap_or(u32::MAX);
        let patience = self.cfg.tick * ticks;
        if moved_on || round.asked.elapsed() >= patience {
            let round = self.follower_reads.round.take().expect("checked above");
            self.refuse_follower_reads(round.reads);
        }
    }

    /// The leader refused a read index asked with `context` (too many reads pending
    /// there): if that is the round in flight, its reads go to the leader's node now
    /// rather than after an election time-out. True if it was.
    pub(crate) fn follower_round_rejected(&mut self, context: u64) -> bool {
        let Some(round) = self.take_round(context) else { return false };
        self.refuse_follower_reads(round.reads);
        true
    }

    /// The round in flight, taken, if `context` is its read id.
    fn take_round(&mut self, context: u64) -> Option<Round> {
        self.follower_reads.round.take_if(|round| round.context == context)
    }

    fn refuse_follower_reads(&mut self, reads: Vec<(u64, PendingRead)>) {
        let not_leader = self.not_leader();
        for (_, read) in reads {
            let _ = read.tx.send(Err(not_leader.clone()));
        }
    }
}
