//! Message handling and ticks: the term rules of §5.1, voting (§5.2, §5.4.1, pre-vote),
//! the follower side of AppendEntries (§5.3) and InstallSnapshot (§7), and elections on
//! time-out.

use tracing::{debug, info};

use crate::raft::config::InjectedBug;
use crate::raft::error::Result;
use crate::raft::quorum::{self, VoteResult};
use crate::raft::replica::{CampaignKind, Raft};
use crate::raft::storage::Storage;
use crate::raft::types::*;

impl<S: Storage> Raft<S> {
    /// Advances the lease clock by `ticks` at once, and the election timer by as many at
    /// the next `settle_stall`, unless a leader's message, a vote or a new role reset the
    /// timer meanwhile: time that passed while the node could not act (its thread stalled),
    /// never more than real time. A lease must end in real time, so its clock counts that
    /// time now. The peers' messages of that time wait unread behind the stall: counted
    /// now, the election timer would start elections, and check-quorum step-downs, for a
    /// silence that was this node's own. Counted once they have been read, and only if none
    /// of them reset the timer, a leader that died meanwhile is still found in real time. A
    /// timer may count less than real time (a follower then waits longer before it votes,
    /// which a lease needs to be long enough), never more: so a reset drops the credit.
    pub fn advance_clock(&mut self, ticks: u64) {
        self.ticks += ticks;
        self.stall_credit += ticks;
    }

    /// Counts on the election timer the stall `advance_clock` left owed, if no reset
    /// dropped it: to be called once the messages that waited behind the stall were read.
    pub fn settle_stall(&mut self) {
        self.election_elapsed += std::mem::take(&mut self.stall_credit);
    }

    /// Sets the election timer back to zero, dropping any stall owed to it.
    pub(crate) fn reset_election_elapsed(&mut self) {
        self.election_elapsed = 0;
        self.stall_credit = 0;
    }

    /// Advances logical time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.reset_election_elapsed();
            let kind =
                if self.cfg.pre_vote { CampaignKind::PreElection } else { CampaignKind::Election };
            self.campaign(kind);
        }
    }

    /// Handles one message from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if m.to != self.id {
            return Err(crate::raft::RaftError::NotForThisNode(format!("to {}", m.to)));
        }
        if m.term > self.term {
            if !self.step_higher_term(&m) {
                return Ok(());
            }
        } else if m.term < self.term {
            self.step_lower_term(&m);
            return Ok(());
        }
        match &m.body {
            MessageBody::PreVote { last_log_index, last_log_term }
            | MessageBody::Vote { last_log_index, last_log_term, .. } => {
                self.handle_vote_request(&m, *last_log_index, *last_log_term);
                Ok(())
            }
            _ => match self.role {
                Role::Leader => self.step_leader(m),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m),
                Role::Follower => self.step_follower(m),
            },
        }
    }

    /// A message from a higher term. Returns false if it is to be ignored.
    fn step_higher_term(&mut self, m: &Message) -> bool {
        let force = matches!(m.body, MessageBody::Vote { transfer: true, .. });
        let is_vote_request =
            matches!(m.body, MessageBody::PreVote { .. } | MessageBody::Vote { .. });
        if is_vote_request && !force && self.in_lease() {
            debug!(group = %self.cfg.group, node = %self.id, from = %m.from,
                "ignoring vote request while a leader is alive");
            return false;
        }
        match m.body {
            MessageBody::PreVote { .. } => {}
            MessageBody::PreVoteResponse { reject: false } => {}
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::Snapshot { .. } => {
                info!(group = %self.cfg.group, node = %self.id, term = %m.term,
                    leader = %m.from, "new term from leader");
                self.become_follower(m.term, m.from);
            }
            _ => {
                info!(group = %self.cfg.group, node = %self.id, term = %m.term, from = %m.from,
                    "new term");
                self.become_follower(m.term, NodeId::NONE);
            }
        }
        true
    }

    fn step_lower_term(&mut self, m: &Message) {
        match m.body {
            // Tell a stale leader about the new term so it steps down (needed when
            // check-quorum or pre-vote keep the new term from reaching it otherwise).
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. }
                if self.cfg.check_quorum || self.cfg.pre_vote =>
            {
                let body = MessageBody::AppendResponse {
                    reject: false,
                    index: LogIndex(0),
                    hint_index: LogIndex(0),
                    hint_term: Term(0),
                };
                self.msgs.push(Message { from: self.id, to: m.from, term: self.term, body });
            }
            MessageBody::PreVote { .. } => {
                let body = MessageBody::PreVoteResponse { reject: true };
                self.send(m.from, self.term, body);
            }
            _ => {}
        }
    }

    fn handle_vote_request(&mut self, m: &Message, last_index: LogIndex, last_term: Term) {
        let pre = matches!(m.body, MessageBody::PreVote { .. });
        let can_vote = self.voted_for == m.from
            || (self.voted_for == NodeId::NONE && self.leader_id == NodeId::NONE)
            || (pre && m.term > self.term);
        let up_to_date = self.has_bug(InjectedBug::VoteWithoutLogCheck)
            || self.log.is_up_to_date(last_index, last_term);
        let grant = can_vote && up_to_date;
        let body = |reject| {
            if pre {
                MessageBody::PreVoteResponse { reject }
            } else {
                MessageBody::VoteResponse { reject }
            }
        };
        if grant {
            // A granted pre-vote answers with the term asked for, so the pre-candidate can
            // tell it from answers to older campaigns.
            self.send(m.from, m.term, body(false));
            if !pre {
                self.reset_election_elapsed();
                self.voted_for = m.from;
            }
        } else {
            self.send(m.from, self.term, body(true));
        }
    }

    fn step_candidate(&mut self, m: Message) -> Result<()> {
        match m.body {
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::Snapshot { .. } => {
                self.become_follower(m.term, m.from);
                self.step_follower(m)
            }
            MessageBody::PreVoteResponse { reject } if self.role == Role::PreCandidate => {
                self.tally(m.from, !reject)
            }
            MessageBody::VoteResponse { reject } if self.role == Role::Candidate => {
                self.tally(m.from, !reject)
            }
            _ => Ok(()),
        }
    }

    fn tally(&mut self, from: NodeId, granted: bool) -> Result<()> {
        self.votes.entry(from).or_insert(granted);
        match quorum::vote_result(&self.conf, &self.votes) {
            VoteResult::Won if self.role == Role::PreCandidate => {
                self.campaign(CampaignKind::Election)
            }
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, NodeId::NONE),
            VoteResult::Pending => {}
        }
        Ok(())
    }

    fn step_follower(&mut self, m: Message) -> Result<()> {
        match m.body {
            MessageBody::Append { prev_log_index, prev_log_term, entries, commit_index } => {
                self.reset_election_elapsed();
                self.leader_id = m.from;
                self.handle_append(m.from, prev_log_index, prev_log_term, entries, commit_index);
            }
            MessageBody::Heartbeat { commit_index, read_round } => {
                self.reset_election_elapsed();
                self.leader_id = m.from;
                self.log.commit_to(commit_index);
                self.send(m.from, self.term, MessageBody::HeartbeatResponse { read_round });
            }
            MessageBody::Snapshot { snapshot } => {
                self.reset_election_elapsed();
                self.leader_id = m.from;
                self.handle_snapshot(m.from, snapshot);
            }
            MessageBody::TimeoutNow => {
                if self.promotable() {
                    info!(group = %self.cfg.group, node = %self.id, "leader transfer: campaigning");
                    self.campaign(CampaignKind::Transfer);
                }
            }
            MessageBody::ReadIndexResponse { context, index, reject } => {
                if reject {
                    self.rejected_reads.push(context);
                } else {
                    self.read_states.push(ReadState { index, context });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_append(
        &mut self,
        leader: NodeId,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
    ) {
        let ok = |index| MessageBody::AppendResponse {
            reject: false,
            index,
            hint_index: LogIndex(0),
            hint_term: Term(0),
        };
        if prev_index < self.log.committed() {
            // Everything up to our commit index is known to match; a stale or duplicated
            // append must not touch it.
            let committed = self.log.committed();
            self.send(leader, self.term, ok(committed));
            return;
        }
        let truncate = !self.has_bug(InjectedBug::SkipConflictTruncation);
        match self.log.maybe_append(prev_index, prev_term, commit, entries, truncate) {
            Some(last) => self.send(leader, self.term, ok(last)),
            None => {
                let hint_index = self.log.find_conflict_by_term(prev_index, prev_term);
                let hint_term = self.log.term_or_zero(hint_index);
                debug!(group = %self.cfg.group, node = %self.id, %prev_index, %prev_term,
                    %hint_index, %hint_term, "log mismatch: rejecting append");
                let body =
                    MessageBody::AppendResponse { reject: true, index: prev_index, hint_index, hint_term };
                self.send(leader, self.term, body);
            }
        }
    }

    fn handle_snapshot(&mut self, leader: NodeId, snapshot: Snapshot) {
        let (index, term) = (snapshot.metadata.index, snapshot.metadata.term);
        let answer = |index| MessageBody::AppendResponse {
            reject: false,
            index,
            hint_index: LogIndex(0),
            hint_term: Term(0),
        };
        if index <= self.log.committed() {
            let committed = self.log.committed();
            self.send(leader, self.term, answer(committed));
            return;
        }
        if self.log.match_term(index, term) {
            // We already hold the snapshot's last entry: just fast-forward the commit index.
            self.log.commit_to(index);
            self.send(leader, self.term, answer(index));
            return;
        }
        info!(group = %self.cfg.group, node = %self.id, %index, %term, "installing snapshot");
        let conf = snapshot.metadata.conf_state.clone();
        self.log.restore(snapshot);
        self.set_conf(conf);
        self.send(leader, self.term, answer(index));
    }
}
