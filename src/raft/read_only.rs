//! Linearizable reads (dissertation §6.4). Every heartbeat broadcast is a numbered round;
//! when a quorum answers round R the leader knows it was still leader when R was sent, so
//! every read registered at or before R may be served once the commit index recorded for
//! it is applied. Reads share rounds (batching): those that arrive while a round carrying
//! reads is in flight all wait for the next, started once it is answered, or for the next
//! tick's heartbeat round, which takes them too; so a round at a time carries reads.
//! A quorum-acknowledged round also starts the leader lease used by `ReadMode::LeaseBased`.
//! Reads a voter endorsed in the leader's term, where leader and endorser are a quorum,
//! never come here once the leader's no-op has committed: the leader answers them at once
//! (`Raft::read_index_endorsed`, a follower's `ReadIndex`).

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;

use crate::raft::types::{LogIndex, NodeId};

/// A read waiting for its round: who asked (this node or a follower) and its context.
#[derive(Clone, Debug)]
pub struct PendingRead {
    pub from: NodeId,
    pub context: Bytes,
}

/// One heartbeat round.
#[derive(Debug)]
struct Round {
    id: u64,
    sent_tick: u64,
    commit_index: LogIndex,
    acks: BTreeSet<NodeId>,
    reads: Vec<PendingRead>,
}

/// Reads released by a quorum, with the index each may be served at.
pub struct Released {
    pub reads: Vec<(PendingRead, LogIndex)>,
    /// Tick at which the newest acknowledged round was sent (lease anchor).
    pub sent_tick: u64,
}

/// The leader's read bookkeeping.
#[derive(Debug, Default)]
pub struct ReadOnly {
    next_round: u64,
    rounds: VecDeque<Round>,
    /// Reads registered since the last round that took reads (waiting for the next
    /// broadcast: the end of the round carrying reads still in flight, or the next tick's;
    /// or for the new leader's first commit).
    waiting: Vec<PendingRead>,
    pending_count: usize,
}

impl ReadOnly {
    /// True if reads wait for the next round.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// True while a round carrying reads waits for its quorum. Reads registered meanwhile
    /// wait for it to end and then share the next round, so a leader answering many
    /// reads sends one round per round trip, not one per Ready.
    pub fn read_round_in_flight(&self) -> bool {
        self.rounds.iter().any(|r| !r.reads.is_empty())
    }

    /// Reads registered and not yet released.
    pub fn pending_count(&self) -> usize {
        self.pending_count
    }

    /// Takes the reads not yet in a round.
    pub fn take_waiting(&mut self) -> Vec<PendingRead> {
        self.pending_count -= self.waiting.len();
        std::mem::take(&mut self.waiting)
    }

    pub fn add_waiting(&mut self, read: PendingRead) {
        self.pending_count += 1;
        self.waiting.push(read);
    }

    /// Starts a round carrying the waiting reads (if `with_reads`); returns its id.
    /// Rounds without reads that no quorum answered are forgotten beyond `rounds_max`.
    pub fn start_round(
        &mut self,
        tick: u64,
        commit_index: LogIndex,
        self_id: NodeId,
        with_reads: bool,
        rounds_max: usize,
    ) -> u64 {
        self.next_round += 1;
        let reads = if with_reads { std::mem::take(&mut self.waiting) } else { Vec::new() };
        self.rounds.push_back(Round {
            id: self.next_round,
            sent_tick: tick,
            commit_index,
            acks: BTreeSet::from([self_id]),
            reads,
        });
        while self.rounds.len() > rounds_max {
            match self.rounds.iter().position(|r| r.reads.is_empty()) {
                Some(i) => {
                    self.rounds.remove(i);
                }
                None => break,
            }
        }
        self.next_round
    }

    /// Records `from`'s answer to `round`; if a quorum has now answered it, releases it and
    /// every older round.
    pub fn ack(
        &mut self,
        round: u64,
        from: NodeId,
        is_quorum: impl Fn(&BTreeSet<NodeId>) -> bool,
    ) -> Option<Released> {
        let pos = self.rounds.iter().position(|r| r.id == round)?;
        self.rounds[pos].acks.insert(from);
        if !is_quorum(&self.rounds[pos].acks) {
            return None;
        }
        let sent_tick = self.rounds[pos].sent_tick;
        let mut reads = Vec::new();
        for r in self.rounds.drain(..=pos) {
            reads.extend(r.reads.into_iter().map(|read| (read, r.commit_index)));
        }
        self.pending_count -= reads.len();
        Some(Released { reads, sent_tick })
    }

    /// Releases every round at once (a single-voter group needs no answers).
    pub fn release_all(&mut self) -> Vec<(PendingRead, LogIndex)> {
        let mut reads = Vec::new();
        for r in self.rounds.drain(..) {
            reads.extend(r.reads.into_iter().map(|read| (read, r.commit_index)));
        }
        self.pending_count -= reads.len();
        reads
    }

    /// Drops everything (leadership lost): the askers time out and retry elsewhere.
    pub fn reset(&mut self) {
        *self = ReadOnly { next_round: self.next_round, ..ReadOnly::default() };
    }
}
