//! Membership, as the replica runs it: the leader proposes an operator's change through
//! the Raft core (a learner first, joint consensus for more than one voter) and answers
//! once it applied; the leader reports who the replicas are and how far each has the log;
//! a replica that applies a configuration without itself (a leader that removed itself; a
//! follower seldom learns the commit of its own removal) or that the node retires
//! (`DROP-REPLICA`) tells the node, once nothing of it is left to write, and the node
//! deletes its state.
//!
//! Must never: answer a change before it applied, or leave a removed replica serving.

use tokio::sync::oneshot;
use tracing::info;

use crate::kv::Reply;
use crate::raft::{next_conf, ConfChangeStep, ConfState, LogIndex, NodeId, RaftError, Role};
use crate::shard::actor::{PendingWrite, ShardActor};
use crate::shard::api::{MemberKind, MemberStep, Members, ShardError, ShardResult};

impl ShardActor {
    /// Leader: proposes `steps`; the answer waits for the apply of the change.
    pub(crate) fn propose_members(&mut self, steps: &[MemberStep], tx: oneshot::Sender<ShardResult>) {
        if let Some(err) = self.refusal() {
            let _ = tx.send(Err(err));
            return;
        }
        let group = self.cfg.group;
        let current = self.raw.conf_state().clone();
        if let Err(reason) = self.check_steps(&current, steps) {
            let _ = tx.send(Err(ShardError::Refused { group, reason }));
            return;
        }
        let raft_steps: Vec<ConfChangeStep> = steps.iter().map(|s| s.to_raft()).collect();
        let target = match next_conf(&current, &raft_steps) {
            Ok(target) => target,
            Err(e) => {
                let _ = tx.send(Err(ShardError::Refused { group, reason: e.to_string() }));
                return;
            }
        };
        if target.voters == current.voters && target.learners == current.learners {
            // Already so (a retried request): nothing to propose.
            let _ = tx.send(Ok(Reply::Ok));
            return;
        }
        match self.raw.propose_conf_change(&raft_steps) {
            Ok(()) => {
                info!(group = %group, ?steps, "membership change proposed");
                let index = self.raw.last_index();
                let proposed = std::time::Instant::now();
                let pending = PendingWrite { term: self.raw.term(), proposed, tx };
                self.writes.insert(index, pending);
            }
            Err(RaftError::ProposalDropped(reason)) => {
                let _ = tx.send(Err(ShardError::Busy { group, reason: reason.to_string() }));
            }
            Err(e) => {
                let _ = tx.send(Err(ShardError::Refused { group, reason: e.to_string() }));
            }
        }
    }

    /// What the core would allow but an operator must not do: make a node vote that is not
    /// a learner of the group (it may not exist, and a quorum counting it may never form),
    /// name a node twice, or add a node while the group's log still starts at index 1 (a
    /// group written before groups began at a snapshot point: the new replica would be
    /// sent entries, not the snapshot that gives it its slots).
    fn check_steps(&self, conf: &ConfState, steps: &[MemberStep]) -> Result<(), String> {
        let nodes: Vec<NodeId> = steps.iter().map(|s| s.node()).collect();
        if nodes.iter().enumerate().any(|(i, n)| nodes[..i].contains(n)) {
            return Err("a change names the same node twice".into());
        }
        for step in steps {
            match *step {
                MemberStep::AddVoter(n) if !conf.voters.contains(&n) && !conf.learners.contains(&n) => {
                    return Err(format!("node {n} is not a learner of the group: add it as one first"));
                }
                MemberStep::AddLearner(n) if !conf.all_nodes().contains(&n) => {
                    if self.raw.first_index() <= LogIndex(1) {
                        return Err("the group's log starts at index 1, so a new replica would \
                            not get a snapshot; wait for a log compaction"
                            .into());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Leader: answers `Members` once a ReadIndex round confirmed the leadership, so a
    /// deposed leader that has not noticed cannot answer with an old configuration (the
    /// node deletes a replica on this answer).
    pub(crate) fn start_members_read(&mut self, tx: oneshot::Sender<ShardResult>) {
        if let Some(err) = self.refusal() {
            let _ = tx.send(Err(err));
            return;
        }
        let group = self.cfg.group;
        if self.member_reads.len() >= self.cfg.pending_requests_max {
            let reason = "too many pending member reads".to_string();
            let _ = tx.send(Err(ShardError::Busy { group, reason }));
            return;
        }
        let id = self.next_read_id;
        self.next_read_id += 1;
        match self.raw.read_index(bytes::Bytes::copy_from_slice(&id.to_be_bytes())) {
            Ok(()) => {
                self.member_reads.insert(id, tx);
            }
            Err(e) => {
                let _ = tx.send(Err(ShardError::Busy { group, reason: e.to_string() }));
            }
        }
    }

    /// Leader: who the replicas are and how far each has the log.
    pub(crate) fn members(&self) -> ShardResult {
        if let Some(err) = self.refusal() {
            return Err(err);
        }
        let conf = self.raw.conf_state();
        let status = self.raw.status();
        let me = self.cfg.node;
        let replicas = conf
            .all_nodes()
            .into_iter()
            .map(|node| {
                let kind = if conf.voters.contains(&node) {
                    MemberKind::Voter
                } else if conf.voters_outgoing.contains(&node) {
                    MemberKind::Outgoing
                } else {
                    MemberKind::Learner
                };
                let matched = if node == me {
                    self.raw.last_index()
                } else {
                    let found = status.followers.iter().find(|(id, _)| *id == node);
                    found.map_or(crate::raft::LogIndex(0), |(_, f)| f.matched)
                };
                (node, kind, matched.get())
            })
            .collect();
        let members = Members {
            leader: me,
            commit_index: self.raw.commit_index().get(),
            joint: conf.is_joint(),
            replicas,
        };
        Ok(members.to_reply())
    }

    /// True once this replica applied a configuration that no longer names its node (and
    /// the core holds nothing newer that is not yet handed out).
    pub(crate) fn removed_from_group(&self) -> bool {
        self.initialized
            && self.raw.role() != Role::Leader
            && !self.raw.has_ready()
            && !self.raw.conf_state().all_nodes().contains(&self.cfg.node)
    }
}
