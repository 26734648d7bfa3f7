//! `RawNode`: the interface the runtime drives. Feed it ticks, messages, proposals and
//! reads; take a `Ready`; persist, send, apply; report back with `advance` (or, for a
//! runtime that persists asynchronously, `on_persisted` / `on_applied`).

use bytes::Bytes;

use crate::raft::config::Config;
use crate::raft::error::Result;
use crate::raft::progress::ProgressState;
use crate::raft::replica::{ConfChangeStep, Raft};
use crate::raft::storage::Storage;
use crate::raft::types::*;

/// Everything one round of the runtime's loop must do, in this order:
/// 1. send `messages` (they do not depend on this Ready being durable);
/// 2. persist `snapshot`, then `entries` (truncating any conflicting suffix), `hard_state`
///    and `conf_state` — atomically or in that order — and make them durable;
/// 3. only then send `persisted_messages` (vote grants, append answers, vote requests);
/// 4. apply `committed_entries` in order; serve `read_states` once applied up to their index;
///    send the reads of `rejected_reads` elsewhere (the leader refused to give them an index);
/// 5. call `advance` (or `on_persisted` after 2 and `on_applied` after 4).
#[derive(Debug, Default)]
#[must_use = "a Ready must be persisted, sent, applied and advanced"]
pub struct Ready {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    /// The configuration changed (a committed membership change is among
    /// `committed_entries`, or a snapshot was installed): persist it.
    pub conf_state: Option<ConfState>,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    /// Contexts of this follower's ReadIndex requests that the leader refused (too many
    /// reads pending there): no index will come for them.
    pub rejected_reads: Vec<Bytes>,
}

/// The leader's view of one follower, for status and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerStatus {
    pub matched: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    pub recent_active: bool,
}

/// A snapshot of a replica's state, for status, metrics and the simulation's checkers.
#[derive(Clone, Debug)]
pub struct Status {
    pub id: NodeId,
    pub hard_state: HardState,
    pub soft_state: SoftState,
    pub applied: LogIndex,
    pub last_index: LogIndex,
    pub conf_state: ConfState,
    /// Filled on the leader.
    pub followers: Vec<(NodeId, FollowerStatus)>,
}

/// One replica of one group.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    last_broadcast_commit: LogIndex,
}

impl<S: Storage> RawNode<S> {
    /// Opens a replica over its storage (empty for a new group, whose storage must hold
    /// the initial configuration).
    pub fn new(cfg: Config, store: S) -> Result<RawNode<S>> {
        let raft = Raft::new(cfg, store)?;
        let prev_hard_state = raft.hard_state();
        let prev_soft_state = raft.soft_state();
        let last_broadcast_commit = raft.log.committed();
        Ok(RawNode { raft, prev_soft_state, prev_hard_state, last_broadcast_commit })
    }

    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// `Raft::advance_clock`: the lease clock counts `ticks` now, the election timer at the
    /// next `settle_stall` unless the timer was reset meanwhile.
    pub fn advance_clock(&mut self, ticks: u64) {
        self.raft.advance_clock(ticks);
    }

    /// `Raft::settle_stall`.
    pub fn settle_stall(&mut self) {
        self.raft.settle_stall();
    }

    pub fn step(&mut self, m: Message) -> Result<()> {
        self.raft.step(m)
    }

    /// Proposes one command. `Ok` means appended to the leader's log, not committed.
    pub fn propose(&mut self, data: Bytes) -> Result<()> {
        self.raft.propose(vec![data])
    }

    /// Proposes several commands at once (one log append).
    pub fn propose_batch(&mut self, data: Vec<Bytes>) -> Result<()> {
        self.raft.propose(data)
    }

    pub fn read_index(&mut self, context: Bytes) -> Result<()> {
        self.raft.read_index(context)
    }

    /// A read forwarded by voter `endorser` while its replica was in `term`: served at the
    /// commit index at once when leader and endorser make a quorum (`Raft::read_index_endorsed`);
    /// true if it was.
    pub fn read_index_endorsed(&mut self, context: Bytes, by: Endorsement) -> Result<bool> {
        self.raft.read_index_endorsed(context, by)
    }

    /// On a leader: a heartbeat round carrying reads (its own or followers' read index
    /// requests) waits for its quorum.
    pub fn read_round_in_flight(&self) -> bool {
        self.raft.role == Role::Leader && self.raft.read_only.read_round_in_flight()
    }

    pub fn transfer_leader(&mut self, to: NodeId) -> Result<()> {
        self.raft.transfer_leader(to)
    }

    pub fn propose_conf_change(&mut self, steps: &[ConfChangeStep]) -> Result<()> {
        self.raft.propose_conf_change(steps)
    }

    /// Starts an election at once (bootstrap, tests).
    pub fn campaign(&mut self) {
        if self.raft.role != Role::Leader && self.raft.conf.is_voter(self.raft.id) {
            self.raft.campaign(crate::raft::replica::CampaignKind::Election);
        }
    }

    /// The transport could not deliver a snapshot to `to`: probe it again.
    pub fn report_snapshot_failure(&mut self, to: NodeId) {
        if let Some(p) = self.raft.progress.get_mut(&to) {
            if p.state == ProgressState::Snapshot {
                p.become_probe();
            }
        }
    }

    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.log.has_unstable()
            || r.log.has_next_committed()
            || !r.msgs.is_empty()
            || !r.msgs_after_persist.is_empty()
            || !r.read_states.is_empty()
            || !r.rejected_reads.is_empty()
            || r.needs_broadcast
            || r.hard_state() != self.prev_hard_state
            || r.soft_state() != self.prev_soft_state
            || r.has_reads_to_flush()
    }

    /// Collects what the runtime must do now (see `Ready`).
    pub fn ready(&mut self) -> Ready {
        let mut rd = Ready::default();
        let r = &mut self.raft;
        let (snapshot, entries) = r.log.take_unstable();
        if let Some(s) = &snapshot {
            rd.conf_state = Some(s.metadata.conf_state.clone());
        }
        rd.committed_entries = r.log.next_committed(r.cfg.max_committed_bytes_per_ready);
        for e in &rd.committed_entries {
            if let EntryPayload::ConfChange(conf) = &e.payload {
                r.apply_conf_change(conf.clone());
                rd.conf_state = Some(conf.clone());
            }
        }
        r.flush_reads();
        if r.role == Role::Leader {
            let commit_moved = r.log.committed() > self.last_broadcast_commit;
            if r.needs_broadcast || commit_moved {
                r.bcast_append_with_commit(commit_moved);
                self.last_broadcast_commit = r.log.committed();
            }
        }
        r.needs_broadcast = false;
        // Entries appended while collecting (leaving a joint configuration) go out now too.
        let (_, more) = r.log.take_unstable();
        rd.snapshot = snapshot;
        rd.entries = entries;
        rd.entries.extend(more);
        let hs = r.hard_state();
        if hs != self.prev_hard_state {
            rd.hard_state = Some(hs);
            self.prev_hard_state = hs;
        }
        let ss = r.soft_state();
        if ss != self.prev_soft_state {
            rd.soft_state = Some(ss);
            self.prev_soft_state = ss;
        }
        rd.messages = std::mem::take(&mut r.msgs);
        rd.persisted_messages = std::mem::take(&mut r.msgs_after_persist);
        rd.read_states = std::mem::take(&mut r.read_states);
        rd.rejected_reads = std::mem::take(&mut r.rejected_reads);
        rd
    }

    /// The whole Ready was persisted and applied.
    pub fn advance(&mut self, rd: &Ready) {
        if let Some(s) = &rd.snapshot {
            self.on_snapshot_persisted(s.metadata.index);
        }
        if let Some(last) = rd.entries.last() {
            self.on_persisted(last.index, last.term);
        }
        if let Some(last) = rd.committed_entries.last() {
            self.on_applied(last.index);
        }
    }

    /// Entries up to `(index, term)` handed out earlier are durable.
    pub fn on_persisted(&mut self, index: LogIndex, term: Term) {
        self.raft.log.stable_to(index, term);
        let persisted = self.raft.log.persisted();
        self.raft.self_persisted(persisted);
    }

    /// The snapshot at `index` handed out earlier is installed and durable.
    pub fn on_snapshot_persisted(&mut self, index: LogIndex) {
        self.raft.log.stable_snap_to(index);
        self.raft.log.applied_to(index.min(self.raft.log.persisted()));
    }

    /// The state machine has applied everything up to `index`.
    pub fn on_applied(&mut self, index: LogIndex) {
        self.raft.log.applied_to(index);
        self.raft.maybe_leave_joint();
    }

    pub fn status(&self) -> Status {
        let r = &self.raft;
        let followers = if r.role == Role::Leader {
            r.progress
                .iter()
                .map(|(&id, p)| {
                    let fs = FollowerStatus {
                        matched: p.matched,
                        next_index: p.next_index,
                        state: p.state,
                        recent_active: p.recent_active,
                    };
                    (id, fs)
                })
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: r.id,
            hard_state: r.hard_state(),
            soft_state: r.soft_state(),
            applied: r.log.applied(),
            last_index: r.log.last_index(),
            conf_state: r.conf.clone(),
            followers,
        }
    }

    pub fn id(&self) -> NodeId {
        self.raft.id
    }
    pub fn role(&self) -> Role {
        self.raft.role
    }
    pub fn term(&self) -> Term {
        self.raft.term
    }
    pub fn leader_id(&self) -> NodeId {
        self.raft.leader_id
    }
    /// The voter a leader is handing its leadership to, while it does.
    pub fn lead_transferee(&self) -> Option<NodeId> {
        self.raft.lead_transferee
    }
    /// See `Raft::endorsement_answers_now`.
    pub fn endorsement_answers_now(&self, by: Endorsement) -> bool {
        self.raft.endorsement_answers_now(by)
    }
    /// See `Raft::lease_ticks_left`.
    pub fn lease_ticks_left(&self) -> Option<u64> {
        self.raft.lease_ticks_left()
    }
    pub fn commit_index(&self) -> LogIndex {
        self.raft.log.committed()
    }
    pub fn applied_index(&self) -> LogIndex {
        self.raft.log.applied()
    }
    pub fn last_index(&self) -> LogIndex {
        self.raft.log.last_index()
    }
    pub fn first_index(&self) -> LogIndex {
        self.raft.log.first_index()
    }
    /// The term of the entry at `index`, if the log (stable or not) holds it.
    pub fn log_term(&self, index: LogIndex) -> Option<Term> {
        self.raft.log.term(index).ok()
    }
    /// Entries in `[low, high)` from the log (stable or not).
    pub fn log_entries(&self, low: LogIndex, high: LogIndex) -> Result<Vec<Entry>> {
        self.raft.log.slice(low, high, u64::MAX)
    }
    pub fn conf_state(&self) -> &ConfState {
        &self.raft.conf
    }
    pub fn store(&self) -> &S {
        &self.raft.log.store
    }
    /// The runtime writes durable state through this (the core itself never writes).
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.raft.log.store
    }
    /// Gives the storage back (a simulated crash keeps it and drops the rest).
    pub fn into_store(self) -> S {
        self.raft.log.store
    }
}
