//! The leader's side: proposals, pipelined replication with inflight windows and fast
//! backtracking, the commit rule of §5.4.2, heartbeats and check-quorum, ReadIndex and the
//! lease, leader transfer, and membership changes.

use std::collections::BTreeSet;

use bytes::Bytes;
use tracing::{debug, info};

use crate::raft::config::{InjectedBug, ReadMode};
use crate::raft::error::{RaftError, Result};
use crate::raft::progress::ProgressState;
use crate::raft::quorum;
use crate::raft::read_only::PendingRead;
use crate::raft::replica::{ConfChangeStep, Raft};
use crate::raft::storage::Storage;
use crate::raft::types::*;

impl<S: Storage> Raft<S> {
    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_timeout_ticks_min {
            self.reset_election_elapsed();
            if self.cfg.check_quorum && !self.quorum_recently_active() {
                info!(group = %self.cfg.group, node = %self.id, term = %self.term,
                    "check-quorum: lost contact with a quorum, stepping down");
                self.become_follower(self.term, NodeId::NONE);
                return;
            }
            if let Some(to) = self.lead_transferee.take() {
                info!(group = %self.cfg.group, node = %self.id, %to, "leader transfer timed out");
            }
        }
        let timeout = self.cfg.snapshot_timeout_ticks;
        for p in self.progress.values_mut() {
            if p.state == ProgressState::Snapshot {
                p.snapshot_ticks += 1;
                if p.snapshot_ticks > timeout {
                    p.become_probe();
                }
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            // Sent after every waiting read registered, the round may carry them (once the
            // no-op committed): reads held behind a round whose answers were lost wait for
            // one heartbeat interval at most.
            self.bcast_heartbeat(self.read_barrier_done());
        }
    }

    /// Whether a quorum answered within the last period; resets the marks for the next one.
    fn quorum_recently_active(&mut self) -> bool {
        let me = self.id;
        let mut active = BTreeSet::from([me]);
        for (&id, p) in self.progress.iter_mut() {
            if id != me && p.recent_active {
                active.insert(id);
            }
            if id != me {
                p.recent_active = false;
            }
        }
        quorum::has_quorum(&self.conf, &active)
    }

    pub(crate) fn step_leader(&mut self, m: Message) -> Result<()> {
        let from = m.from;
        if !self.progress.contains_key(&from) {
            return Ok(()); // not a member (any more)
        }
        match m.body {
            MessageBody::AppendResponse { reject, index, hint_index, hint_term } => {
                self.handle_append_response(from, reject, index, hint_index, hint_term);
            }
            MessageBody::HeartbeatResponse { read_round } => {
                self.handle_heartbeat_response(from, read_round);
            }
            MessageBody::ReadIndex { context } => {
                // The request is in this term (others never reach here): `from` endorses it.
                if self.endorsement_confirms(from) {
                    self.answer_read(PendingRead { from, context }, self.log.committed());
                } else if self.read_only.pending_count() >= self.cfg.max_pending_reads {
                    let body = MessageBody::ReadIndexResponse { context, index: LogIndex(0), reject: true };
                    self.send(from, self.term, body);
                } else {
                    self.read_only.add_waiting(PendingRead { from, context });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Appends new entries of this term to the leader's log; they are broadcast at the
    /// next Ready, so proposals made between two Readies travel in one message.
    pub(crate) fn append_entries(&mut self, payloads: Vec<EntryPayload>) {
        let mut index = self.log.last_index();
        let term = self.term;
        let entries: Vec<Entry> = payloads
            .into_iter()
            .map(|payload| {
                index = index.next();
                Entry { term, index, payload }
            })
            .collect();
        for e in &entries {
            let bytes = e.size_bytes();
            self.uncommitted.push_back((e.index, bytes));
            self.uncommitted_bytes += bytes;
        }
        self.log.append(entries);
        self.needs_broadcast = true;
    }

    /// Proposes application data. Refused (definitely not appended) when not leader,
    /// during a leader transfer, or over the uncommitted-bytes bound.
    pub fn propose(&mut self, data: Vec<Bytes>) -> Result<()> {
        if self.role != Role::Leader {
            return Err(RaftError::ProposalDropped("not the leader"));
        }
        if self.lead_transferee.is_some() {
            return Err(RaftError::ProposalDropped("leader transfer in progress"));
        }
        if self.conf.is_joint() {
            // Only the entry that leaves the joint configuration may follow it. Entries after
            // it would reach outgoing voters, which stop campaigning once they apply the
            // leave entry, yet their longer logs would make them refuse the votes that the
            // nodes still in the joint configuration need from them: no leader, ever.
            return Err(RaftError::ProposalDropped("leaving a joint configuration"));
        }
        let bytes: u64 = data.iter().map(|d| d.len() as u64 + ENTRY_OVERHEAD_BYTES).sum();
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + bytes > self.cfg.max_uncommitted_entries_bytes
        {
            return Err(RaftError::ProposalDropped("too many uncommitted bytes"));
        }
        self.append_entries(data.into_iter().map(EntryPayload::Normal).collect());
        Ok(())
    }

    /// The leader's own entries up to `index` are durable.
    pub(crate) fn self_persisted(&mut self, index: LogIndex) {
        if self.role != Role::Leader {
            return;
        }
        let me = self.id;
        if let Some(p) = self.progress.get_mut(&me) {
            if p.maybe_update(index) && self.maybe_commit() {
                self.needs_broadcast = true;
            }
        }
    }

    /// Advances the commit index to what a quorum has — but only by counting replicas of an
    /// entry of the current term (§5.4.2, Figure 8); older entries commit with it.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let progress = &self.progress;
        let mci = quorum::committed_index(&self.conf, |id| {
            progress.get(&id).map(|p| p.matched).unwrap_or(LogIndex(0))
        });
        if mci <= self.log.committed() || mci == LogIndex(u64::MAX) {
            return false;
        }
        let current = self.log.term_or_zero(mci) == self.term;
        if !current && !self.has_bug(InjectedBug::CommitPriorTermByCounting) {
            return false;
        }
        self.log.commit_to(mci);
        while self.uncommitted.front().is_some_and(|&(i, _)| i <= mci) {
            if let Some((_, b)) = self.uncommitted.pop_front() {
                self.uncommitted_bytes -= b;
            }
        }
        debug!(group = %self.cfg.group, node = %self.id, commit = %mci, "commit index advanced");
        if self.committed_entry_in_current_term() {
            self.release_waiting_reads_if_single();
        }
        true
    }

    /// Sends an append (or a snapshot) to `to` if its window allows. With `allow_empty`, an
    /// empty append carries the commit index. Returns true if something was sent.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let Some(p) = self.progress.get(&to) else { return false };
        if p.is_paused() || to == self.id {
            return false;
        }
        let next = p.next_index;
        let prev_term = self.log.term(next.prev());
        let entries = self.log.entries_from(next, self.cfg.max_entries_bytes_per_msg);
        let (Ok(prev_log_term), Ok(entries)) = (prev_term, entries) else {
            return self.send_snapshot(to);
        };
        if entries.is_empty() && !allow_empty {
            return false;
        }
        let last = entries.last().map(|e| e.index);
        if let Some(p) = self.progress.get_mut(&to) {
            p.update_on_send(last);
        }
        let commit_index = self.log.committed();
        let body = MessageBody::Append { prev_log_index: next.prev(), prev_log_term, entries, commit_index };
        self.send(to, self.term, body);
        true
    }

    fn send_snapshot(&mut self, to: NodeId) -> bool {
        let active = self.progress.get(&to).map(|p| p.recent_active).unwrap_or(false);
        if !active {
            return false;
        }
        let snapshot = match self.log.snapshot() {
            Ok(s) if !s.is_empty() => s,
            Ok(_) | Err(RaftError::SnapshotTemporarilyUnavailable) => return false,
            Err(e) => panic!("group {}: reading the snapshot failed: {e}", self.cfg.group),
        };
        let index = snapshot.metadata.index;
        info!(group = %self.cfg.group, node = %self.id, %to, %index, "sending snapshot");
        if let Some(p) = self.progress.get_mut(&to) {
            p.become_snapshot(index);
        }
        self.send(to, self.term, MessageBody::Snapshot { snapshot });
        true
    }

    /// Heartbeats to every follower, as a numbered round (with the waiting reads if
    /// `with_reads`). The commit index sent is capped at what each follower has.
    pub(crate) fn bcast_heartbeat(&mut self, with_reads: bool) {
        let round = self.read_only.start_round(
            self.ticks,
            self.log.committed(),
            self.id,
            with_reads,
            crate::raft::replica::READ_ROUNDS_MAX,
        );
        let ids: Vec<(NodeId, LogIndex)> =
            self.progress.iter().map(|(&id, p)| (id, p.matched)).collect();
        for (id, matched) in ids {
            if id == self.id {
                continue;
            }
            let commit_index = matched.min(self.log.committed());
            self.send(id, self.term, MessageBody::Heartbeat { commit_index, read_round: round });
        }
        self.release_waiting_reads_if_single();
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        reject: bool,
        index: LogIndex,
        hint_index: LogIndex,
        hint_term: Term,
    ) {
        if reject {
            let probe_at = if hint_term > Term(0) {
                self.log.find_conflict_by_term(hint_index, hint_term)
            } else {
                hint_index
            };
            let Some(p) = self.progress.get_mut(&from) else { return };
            p.recent_active = true;
            if p.maybe_decr_to(index, probe_at) {
                debug!(group = %self.cfg.group, node = %self.id, %from, rejected = %index,
                    next = %p.next_index, "follower log mismatch: backing off");
                if p.state == ProgressState::Replicate {
                    p.become_probe();
                }
                self.maybe_send_append(from, true);
            }
            return;
        }
        let Some(p) = self.progress.get_mut(&from) else { return };
        p.recent_active = true;
        let was_paused = p.is_paused();
        if !p.maybe_update(index) {
            return;
        }
        match p.state {
            ProgressState::Probe => p.become_replicate(),
            ProgressState::Snapshot if p.matched >= p.pending_snapshot => p.become_probe(),
            ProgressState::Snapshot => {}
            ProgressState::Replicate => p.free_inflights_to(index),
        }
        if self.maybe_commit() {
            self.needs_broadcast = true;
        } else if was_paused {
            self.maybe_send_append(from, false);
        }
        while self.maybe_send_append(from, false) {}
        let caught_up = self.progress.get(&from).map(|p| p.matched) == Some(self.log.last_index());
        if self.lead_transferee == Some(from) && caught_up {
            info!(group = %self.cfg.group, node = %self.id, to = %from, "sending TimeoutNow");
            self.send(from, self.term, MessageBody::TimeoutNow);
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        let last = self.log.last_index();
        let Some(p) = self.progress.get_mut(&from) else { return };
        p.on_heartbeat_response();
        if p.matched < last {
            // Allow an empty append: in Replicate, `next_index` may already be past appends
            // that were lost. Only a (possibly empty) append at `next_index - 1` makes the
            // follower reject, so that the leader backs off and resends (or sends a
            // snapshot); without it an idle leader never repairs such a follower.
            self.maybe_send_append(from, true);
        }
        let conf = &self.conf;
        if let Some(released) = self.read_only.ack(round, from, |acks| quorum::has_quorum(conf, acks)) {
            if !self.lease_revoked {
                let anchor = self.lease_anchor_tick.unwrap_or(0).max(released.sent_tick);
                self.lease_anchor_tick = Some(anchor);
            }
            for (read, index) in released.reads {
                self.answer_read(read, index);
            }
        }
    }

    fn answer_read(&mut self, read: PendingRead, index: LogIndex) {
        if read.from == self.id {
            self.read_states.push(ReadState { index, context: read.context });
        } else {
            let body = MessageBody::ReadIndexResponse { context: read.context, index, reject: false };
            self.send(read.from, self.term, body);
        }
    }

    /// A single voter is its own quorum: its reads need no round, only the barrier.
    fn release_waiting_reads_if_single(&mut self) {
        if !quorum::is_sole_voter(&self.conf, self.id) {
            return;
        }
        if !self.read_barrier_done() {
            return;
        }
        let commit = self.log.committed();
        for read in self.read_only.take_waiting() {
            self.answer_read(read, commit);
        }
        for (read, index) in self.read_only.release_all() {
            self.answer_read(read, index);
        }
    }

    /// The tick at which the lease a quorum last acknowledged ends, in lease-based mode.
    fn lease_end_tick(&self) -> Option<u64> {
        let valid = self.cfg.read_mode == ReadMode::LeaseBased && !self.lease_revoked;
        self.lease_anchor_tick.filter(|_| valid).map(|t| {
            t + self.cfg.election_timeout_ticks_min.saturating_sub(self.cfg.lease_clock_drift_ticks)
        })
    }

    fn lease_valid(&self) -> bool {
        self.lease_end_tick().is_some_and(|end| self.ticks < end)
    }

    /// Whole ticks for which `read_index` answers a read at once at the commit index on
    /// this leader's lease (lease-based mode, the no-op of this term committed), if nothing
    /// steps the core meanwhile; `None` if it would not answer one at once now. A runtime
    /// may answer such reads itself while it leaves the core untouched, for that long.
    pub fn lease_ticks_left(&self) -> Option<u64> {
        if self.role != Role::Leader || !self.read_barrier_done() {
            return None;
        }
        let end = self.lease_end_tick().filter(|&end| self.ticks < end)?;
        Some(end - self.ticks)
    }

    /// Requests a linearizable read. The answer is a `ReadState` (here) once leadership is
    /// confirmed; the read may be served when the state machine has applied its index.
    pub fn read_index(&mut self, context: Bytes) -> Result<()> {
        if self.role != Role::Leader {
            if self.leader_id == NodeId::NONE {
                return Err(RaftError::ProposalDropped("no leader known"));
            }
            let leader = self.leader_id;
            self.send(leader, self.term, MessageBody::ReadIndex { context });
            return Ok(());
        }
        if self.read_only.pending_count() >= self.cfg.max_pending_reads {
            return Err(RaftError::ProposalDropped("too many pending reads"));
        }
        if self.read_barrier_done() && self.lease_valid() {
            let index = self.log.committed();
            self.read_states.push(ReadState { index, context });
            return Ok(());
        }
        let me = self.id;
        self.read_only.add_waiting(PendingRead { from: me, context });
        Ok(())
    }

    /// A read forwarded by voter `endorser` whose replica was in `term` when it forwarded
    /// the read, which was after the read began. That is the answer a heartbeat round
    /// would have asked of `endorser`: until then it had voted and acknowledged appends in
    /// no later term. When this leader and the endorser make a quorum (any two voters of
    /// three), no later leader can have committed anything before the read began, since
    /// its quorum would hold one of them; so the commit index is the read's index at once,
    /// with no round. Otherwise (another term, a learner, a bigger group, before the
    /// no-op commits) the read waits for a round as `read_index` has it. True when the read
    /// was answered at once.
    pub fn read_index_endorsed(&mut self, context: Bytes, by: Endorsement) -> Result<bool> {
        if self.endorsement_answers_now(by) {
            self.answer_read(PendingRead { from: self.id, context }, self.log.committed());
            return Ok(true);
        }
        self.read_index(context).map(|()| false)
    }

    /// Whether `read_index_endorsed` answers a read endorsed `by` at once now, at the
    /// commit index. A runtime may answer such reads itself while it leaves the core
    /// untouched.
    pub fn endorsement_answers_now(&self, by: Endorsement) -> bool {
        self.role == Role::Leader && by.term == self.term && self.endorsement_confirms(by.node)
    }

    /// Whether the endorsement of `endorser` (a node whose word is in this leader's term)
    /// confirms leadership for a read now: see `read_index_endorsed`.
    fn endorsement_confirms(&self, endorser: NodeId) -> bool {
        endorser != self.id
            && self.read_barrier_done()
            && (quorum::has_quorum_of(&self.conf, |id| id == self.id || id == endorser)
                || self.has_bug(InjectedBug::EndorsementWithoutQuorum))
    }

    /// Starts a heartbeat round for the reads registered since the last one, once the
    /// no-op of this term has committed (before that, the commit index may be stale) and no
    /// round carrying reads still waits for its quorum (the reads then go with the next).
    pub(crate) fn flush_reads(&mut self) {
        if self.has_reads_to_flush() {
            self.bcast_heartbeat(true);
        }
    }

    /// Reads wait for a heartbeat round and may start one now (the no-op has committed, and
    /// no round carrying reads is still waiting for its quorum).
    /// `has_ready` asks this rather than "are reads waiting": reads that must wait for the
    /// no-op give the runtime nothing to do, and claiming otherwise makes a runtime that
    /// loops `while has_ready()` spin on empty Readies.
    pub(crate) fn has_reads_to_flush(&self) -> bool {
        self.role == Role::Leader
            && self.read_only.has_waiting()
            && !self.read_only.read_round_in_flight()
            && self.read_barrier_done()
    }

    /// Reads may be given a commit index: the no-op of this term has committed.
    fn read_barrier_done(&self) -> bool {
        self.committed_entry_in_current_term() || self.has_bug(InjectedBug::ReadBeforeNoopCommit)
    }

    /// Hands leadership to `to` (dissertation §3.10): proposals stop, `to` is brought up to
    /// date, then told to campaign at once.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<()> {
        if self.role != Role::Leader {
            return Err(RaftError::ProposalDropped("not the leader"));
        }
        if to == self.id || !self.conf.voters.contains(&to) {
            return Err(RaftError::InvalidConfChange(format!("cannot transfer to {to}")));
        }
        if self.lead_transferee == Some(to) {
            return Ok(());
        }
        info!(group = %self.cfg.group, node = %self.id, %to, "leader transfer started");
        self.lead_transferee = Some(to);
        self.reset_election_elapsed();
        // TimeoutNow lets `to` win while voters still hear from us, so no lease for the
        // rest of this term (a delayed TimeoutNow may arrive after the transfer gave up).
        self.lease_anchor_tick = None;
        self.lease_revoked = true;
        let caught_up = self.progress.get(&to).map(|p| p.matched) == Some(self.log.last_index());
        if caught_up {
            self.send(to, self.term, MessageBody::TimeoutNow);
        } else {
            self.maybe_send_append(to, true);
        }
        Ok(())
    }

    /// Proposes a membership change. One step that changes the voters by at most one node
    /// is a simple change; anything else enters a joint configuration, which the leader
    /// leaves by itself once it is committed (dissertation §4.3).
    pub fn propose_conf_change(&mut self, steps: &[ConfChangeStep]) -> Result<()> {
        if self.role != Role::Leader {
            return Err(RaftError::ProposalDropped("not the leader"));
        }
        if self.lead_transferee.is_some() {
            return Err(RaftError::ProposalDropped("leader transfer in progress"));
        }
        if self.pending_conf_index > self.log.applied() || self.conf.is_joint() {
            return Err(RaftError::ProposalDropped("a membership change is pending"));
        }
        if !self.committed_entry_in_current_term() {
            return Err(RaftError::ProposalDropped("leader has not committed its first entry"));
        }
        let target = next_conf(&self.conf, steps)?;
        self.pending_conf_index = self.log.last_index().next();
        self.append_entries(vec![EntryPayload::ConfChange(target)]);
        Ok(())
    }

    /// A committed membership change takes effect (it is handed out to be applied).
    pub(crate) fn apply_conf_change(&mut self, conf: ConfState) {
        info!(group = %self.cfg.group, node = %self.id, ?conf, "membership change applied");
        self.set_conf(conf);
        if self.role != Role::Leader {
            return;
        }
        self.needs_broadcast = true; // new members start receiving the log at once
        if self.conf.is_joint() {
            self.append_leave_joint();
        } else if !self.conf.voters.contains(&self.id) {
            info!(group = %self.cfg.group, node = %self.id, "removed from the group: stepping down");
            self.become_follower(self.term, NodeId::NONE);
        } else {
            // Fewer voters may make a quorum of what is already replicated.
            self.maybe_commit();
        }
    }
}

impl<S: Storage> Raft<S> {
    fn append_leave_joint(&mut self) {
        let leave = ConfState {
            voters: self.conf.voters.clone(),
            learners: self.conf.learners.clone(),
            voters_outgoing: Default::default(),
        };
        self.pending_conf_index = self.log.last_index().next();
        self.append_entries(vec![EntryPayload::ConfChange(leave)]);
    }

    /// A leader whose applied configuration is joint proposes leaving it (dissertation
    /// §4.3). `apply_conf_change` does this when the leader itself applies the joint entry;
    /// this covers a leader that inherited the joint configuration: its predecessor applied
    /// the joint entry and appended the leave entry, but lost leadership before that entry
    /// reached this node, which had already applied the joint entry as a follower. Without
    /// this the group stayed joint forever and refused every later membership change. It
    /// waits until the log it had at election is applied (`pending_conf_index`), since that
    /// log may already hold the leave entry or a later change.
    pub(crate) fn maybe_leave_joint(&mut self) {
        let all_applied = self.pending_conf_index <= self.log.applied();
        if self.role == Role::Leader && self.conf.is_joint() && all_applied {
            self.append_leave_joint();
        }
    }
}

/// The configuration that `steps` make of `conf`.
pub fn next_conf(conf: &ConfState, steps: &[ConfChangeStep]) -> Result<ConfState> {
    let mut voters = conf.voters.clone();
    let mut learners = conf.learners.clone();
    for step in steps {
        match *step {
            ConfChangeStep::AddVoter(id) => {
                learners.remove(&id);
                voters.insert(id);
            }
            ConfChangeStep::AddLearner(id) => {
                if voters.contains(&id) {
                    return Err(RaftError::InvalidConfChange(format!(
                        "{id} is a voter: remove it before adding it as a learner"
                    )));
                }
                learners.insert(id);
            }
            ConfChangeStep::RemoveNode(id) => {
                voters.remove(&id);
                learners.remove(&id);
            }
        }
    }
    if voters.is_empty() {
        return Err(RaftError::InvalidConfChange("no voters would remain".into()));
    }
    if voters.iter().any(|&id| id == NodeId::NONE) || learners.contains(&NodeId::NONE) {
        return Err(RaftError::InvalidConfChange("node id 0 is reserved".into()));
    }
    let changed = voters.symmetric_difference(&conf.voters).count();
    let joint = changed > 1;
    Ok(ConfState {
        voters,
        learners,
        voters_outgoing: if joint { conf.voters.clone() } else { Default::default() },
    })
}

impl<S: Storage> Raft<S> {
    /// Broadcast at a Ready: new entries to every follower, and when the commit index moved,
    /// an empty append to followers that have nothing new, so they learn it.
    pub(crate) fn bcast_append_with_commit(&mut self, commit_moved: bool) {
        let ids: Vec<NodeId> = self.progress.keys().copied().collect();
        for id in ids {
            let mut sent = false;
            while self.maybe_send_append(id, false) {
                sent = true;
            }
            if !sent && commit_moved {
                self.maybe_send_append(id, true);
            }
        }
    }
}
