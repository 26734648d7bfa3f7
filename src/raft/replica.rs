//! One replica's Raft protocol state and its transitions (the paper's Figure 2, plus
//! pre-vote, check-quorum, ReadIndex, pipelining, snapshots, joint consensus and leader
//! transfer). Driven by `RawNode`; no I/O, no clock, no unseeded randomness.

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use tracing::info;

use crate::raft::config::{Config, InjectedBug, ReadMode};
use crate::raft::error::Result;
use crate::raft::log::RaftLog;
use crate::raft::progress::Progress;
use crate::raft::quorum::{self, VoteResult};
use crate::raft::read_only::ReadOnly;
use crate::raft::storage::Storage;
use crate::raft::types::*;

/// Heartbeat rounds without reads kept waiting for a quorum.
pub(crate) const READ_ROUNDS_MAX: usize = 64;

/// Why a campaign starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CampaignKind {
    PreElection,
    Election,
    /// Started by TimeoutNow: skips pre-vote and may disturb a live leader.
    Transfer,
}

/// One membership step, as proposed by an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfChangeStep {
    AddVoter(NodeId),
    AddLearner(NodeId),
    RemoveNode(NodeId),
}

/// The protocol state of one replica.
pub struct Raft<S: Storage> {
    pub(crate) cfg: Config,
    pub(crate) id: NodeId,
    pub(crate) term: Term,
    pub(crate) voted_for: NodeId,
    pub(crate) log: RaftLog<S>,
    pub(crate) role: Role,
    pub(crate) leader_id: NodeId,
    pub(crate) conf: ConfState,
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) votes: BTreeMap<NodeId, bool>,
    /// Messages that may leave now.
    pub(crate) msgs: Vec<Message>,
    /// Messages that may leave only once the hard state and entries handed out with them
    /// are durable (vote grants, append answers, our own vote requests).
    pub(crate) msgs_after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    /// Contexts of ReadIndex requests the leader refused, for the next Ready.
    pub(crate) rejected_reads: Vec<bytes::Bytes>,
    pub(crate) election_elapsed: u64,
    pub(crate) heartbeat_elapsed: u64,
    pub(crate) randomized_election_timeout: u64,
    /// Logical time, for the lease.
    pub(crate) ticks: u64,
    /// Ticks of a stall the lease clock counted and the election timer not yet
    /// (`advance_clock`); dropped by any reset of the timer.
    pub(crate) stall_credit: u64,
    pub(crate) lease_anchor_tick: Option<u64>,
    /// Set once a leader transfer started in this term: the lease is off until the term ends.
    pub(crate) lease_revoked: bool,
    pub(crate) lead_transferee: Option<NodeId>,
    pub(crate) pending_conf_index: LogIndex,
    /// (index, bytes) of the leader's uncommitted entries, for the proposal bound.
    pub(crate) uncommitted: std::collections::VecDeque<(LogIndex, u64)>,
    pub(crate) uncommitted_bytes: u64,
    pub(crate) read_only: ReadOnly,
    /// New entries or commit to broadcast at the next Ready (proposal batching).
    pub(crate) needs_broadcast: bool,
    pub(crate) rng: ChaCha8Rng,
}

impl<S: Storage> Raft<S> {
    pub fn new(cfg: Config, store: S) -> Result<Raft<S>> {
        cfg.validate()?;
        let state = store.initial_state()?;
        let hs = state.hard_state;
        let log = RaftLog::new(store, cfg.group, hs.commit_index, cfg.applied);
        let mut r = Raft {
            id: cfg.id,
            term: hs.term,
            voted_for: hs.voted_for,
            log,
            role: Role::Follower,
            leader_id: NodeId::NONE,
            conf: ConfState::default(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            read_states: Vec::new(),
            rejected_reads: Vec::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_timeout_ticks_min,
            ticks: 0,
            stall_credit: 0,
            lease_anchor_tick: None,
            lease_revoked: false,
            lead_transferee: None,
            pending_conf_index: LogIndex(0),
            uncommitted: Default::default(),
            uncommitted_bytes: 0,
            read_only: ReadOnly::default(),
            needs_broadcast: false,
            rng: ChaCha8Rng::seed_from_u64(cfg.rng_seed),
            cfg,
        };
        r.set_conf(state.conf_state);
        r.reset_randomized_election_timeout();
        Ok(r)
    }

    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, voted_for: self.voted_for, commit_index: self.log.committed() }
    }

    pub fn soft_state(&self) -> SoftState {
        SoftState { leader_id: self.leader_id, role: self.role }
    }

    pub(crate) fn promotable(&self) -> bool {
        self.conf.is_voter(self.id)
    }

    pub(crate) fn has_bug(&self, bug: InjectedBug) -> bool {
        self.cfg.injected_bug == Some(bug)
    }

    fn reset_randomized_election_timeout(&mut self) {
        let span = self.cfg.election_timeout_ticks_max - self.cfg.election_timeout_ticks_min;
        self.randomized_election_timeout =
            self.cfg.election_timeout_ticks_min + self.rng.next_u64() % span;
    }

    /// Adopts a configuration and rebuilds the progress map (new members start probing).
    pub(crate) fn set_conf(&mut self, conf: ConfState) {
        let next = self.log.last_index().next();
        let inflight_max = self.cfg.max_inflight_msgs;
        let all = conf.all_nodes();
        self.progress.retain(|id, _| all.contains(id));
        for id in all {
            self.progress.entry(id).or_insert_with(|| {
                let mut p = Progress::new(next, inflight_max);
                p.recent_active = true;
                p
            });
        }
        self.conf = conf;
    }

    pub(crate) fn send(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let after_persist = matches!(
            body,
            MessageBody::Vote { .. }
                | MessageBody::VoteResponse { .. }
                | MessageBody::AppendResponse { .. }
        );
        let m = Message { from: self.id, to, term, body };
        if after_persist {
            self.msgs_after_persist.push(m);
        } else {
            self.msgs.push(m);
        }
    }

    pub(crate) fn reset(&mut self, term: Term) {
        if self.term != term {
            self.term = term;
            self.voted_for = NodeId::NONE;
        }
        self.leader_id = NodeId::NONE;
        self.reset_election_elapsed();
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.lead_transferee = None;
        self.lease_anchor_tick = None;
        self.lease_revoked = false;
        self.votes.clear();
        self.read_only.reset();
        self.uncommitted.clear();
        self.uncommitted_bytes = 0;
        let last = self.log.last_index();
        let inflight_max = self.cfg.max_inflight_msgs;
        for (&id, p) in self.progress.iter_mut() {
            *p = Progress::new(last.next(), inflight_max);
            p.recent_active = true;
            if id == self.id {
                p.matched = self.log.persisted().min(last);
            }
        }
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId) {
        let was_leader = self.role == Role::Leader;
        self.reset(term);
        self.role = Role::Follower;
        self.leader_id = leader;
        if was_leader {
            info!(group = %self.cfg.group, node = %self.id, term = %term, "leader stepped down");
        }
    }

    fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "group {}: leader cannot pre-campaign", self.cfg.group);
        self.votes.clear();
        self.leader_id = NodeId::NONE;
        self.role = Role::PreCandidate;
    }

    fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "group {}: leader cannot campaign", self.cfg.group);
        self.reset(self.term.next());
        self.voted_for = self.id;
        self.role = Role::Candidate;
        info!(group = %self.cfg.group, node = %self.id, term = %self.term, "campaigning");
    }

    pub(crate) fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "group {}: only a candidate wins", self.cfg.group);
        self.reset(self.term);
        self.leader_id = self.id;
        self.role = Role::Leader;
        for (&id, p) in self.progress.iter_mut() {
            if id == self.id {
                p.become_replicate();
            }
        }
        // Conservative: a conf change may be among the uncommitted entries we inherit.
        self.pending_conf_index = self.log.last_index();
        // The no-op barrier (§8): reads and conf changes wait until an entry of this term
        // commits, which also commits everything before it.
        self.append_entries(vec![EntryPayload::Noop]);
        info!(group = %self.cfg.group, node = %self.id, term = %self.term, "became leader");
    }

    pub(crate) fn campaign(&mut self, kind: CampaignKind) {
        let (term, pre) = if kind == CampaignKind::PreElection {
            self.become_pre_candidate();
            (self.term.next(), true)
        } else {
            self.become_candidate();
            (self.term, false)
        };
        self.votes.insert(self.id, true);
        match quorum::vote_result(&self.conf, &self.votes) {
            VoteResult::Won => {
                if pre {
                    return self.campaign(CampaignKind::Election);
                }
                return self.become_leader();
            }
            VoteResult::Lost | VoteResult::Pending => {}
        }
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> =
            self.conf.voters.union(&self.conf.voters_outgoing).copied().collect();
        let me = self.id;
        for id in voters.into_iter().filter(|&id| id != me) {
            let body = if pre {
                MessageBody::PreVote { last_log_index, last_log_term }
            } else {
                let transfer = kind == CampaignKind::Transfer;
                MessageBody::Vote { last_log_index, last_log_term, transfer }
            };
            self.send(id, term, body);
        }
    }

    pub(crate) fn committed_entry_in_current_term(&self) -> bool {
        self.log.term_or_zero(self.log.committed()) == self.term
    }

    /// A follower that heard from a leader within the minimum election time-out refuses to
    /// help depose it (check-quorum's lease, dissertation §4.2.3).
    pub(crate) fn in_lease(&self) -> bool {
        let recent = self.election_elapsed < self.cfg.election_timeout_ticks_min;
        let restarted_guard = self.cfg.read_mode == ReadMode::LeaseBased && self.ticks < self.cfg.election_timeout_ticks_min;
        self.cfg.check_quorum && recent && (self.leader_id != NodeId::NONE || restarted_guard)
    }
}
