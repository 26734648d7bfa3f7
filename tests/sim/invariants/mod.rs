//! Safety invariants checked while the simulation runs, one file per invariant, each citing
//! the Raft paper (Ongaro & Ousterhout 2014). This module owns the per-group record of what
//! was ever observed (leaders by term, the committed log, the state after each applied
//! index) that the checks compare against. A violation panics with the seed, the group and
//! a description; the runner turns the panic into a failed seed with a replay command.

pub mod commit_monotonic;
pub mod committed_immutable;
pub mod durable_vote;
pub mod election_safety;
pub mod leader_commit_rule;
pub mod leader_completeness;
pub mod log_matching;
pub mod ordering;
pub mod state_machine_safety;

use std::collections::BTreeMap;

use shardkv::raft::{
    Entry, EntryPayload, HardState, LogIndex, MemStorage, NodeId, RawNode, Role, Term,
};

use super::state_machine::Fnv64;

/// One committed entry as first observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommittedEntry {
    pub term: Term,
    pub digest: u64,
    /// The term of the replica that first saw it committed: the leader that committed it,
    /// since followers learn the commit index from a leader after it advanced.
    pub observed_term: Term,
}

/// Everything observed about one group over the whole run (across crashes).
#[derive(Debug, Default)]
pub struct GroupRecord {
    pub leaders: BTreeMap<Term, NodeId>,
    pub committed: BTreeMap<LogIndex, CommittedEntry>,
    /// Per applied index: (entry digest, state-machine digest after applying it).
    pub applied: BTreeMap<LogIndex, (u64, u64)>,
}

/// The records of all groups, and the seed for violation messages.
pub struct Checks {
    pub seed: u64,
    pub groups: Vec<GroupRecord>,
}

/// Where a check runs: seed, group and node, for the panic message.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub seed: u64,
    pub group: u64,
    pub node: NodeId,
}

/// Panics with the seed, the place and what broke.
pub fn violation(at: At, invariant: &str, what: String) -> ! {
    panic!(
        "seed {}: INVARIANT VIOLATED [{invariant}] group {} node {}: {what}",
        at.seed, at.group, at.node
    )
}

/// A digest of an entry's term and payload.
pub fn entry_digest(e: &Entry) -> u64 {
    let mut h = Fnv64::new();
    h.write_u64(e.term.get());
    match &e.payload {
        EntryPayload::Noop => h.write_u64(1),
        EntryPayload::Normal(data) => {
            h.write_u64(2);
            h.write(data);
        }
        EntryPayload::ConfChange(conf) => {
            h.write_u64(3);
            h.write(&rmp_serde::to_vec(conf).expect("conf state encodes"));
        }
    }
    h.finish()
}

impl Checks {
    pub fn new(seed: u64, groups: usize) -> Checks {
        Checks { seed, groups: (0..groups).map(|_| GroupRecord::default()).collect() }
    }

    fn at(&self, g: usize, node: NodeId) -> At {
        At { seed: self.seed, group: g as u64 + 1, node }
    }

    /// Runs the per-step checks on one replica after it stepped, ticked or advanced.
    /// `last_commit` is the replica's commit index as last observed in this process life.
    pub fn observe(&mut self, g: usize, raw: &RawNode<MemStorage>, last_commit: &mut LogIndex) {
        let at = self.at(g, raw.id());
        let record = &mut self.groups[g];
        if raw.role() == Role::Leader && election_safety::check(record, at, raw.term()) {
            leader_completeness::check(record, at, raw);
        }
        let commit = raw.commit_index();
        commit_monotonic::check(at, *last_commit, commit);
        if commit > *last_commit {
            leader_commit_rule::check(at, raw, *last_commit, commit);
            committed_immutable::observe_commit(record, at, raw, *last_commit, commit);
            *last_commit = commit;
        }
    }

    /// A replica advanced past a Ready it fully persisted and applied.
    pub fn after_advance(&self, g: usize, raw: &RawNode<MemStorage>, sm_applied: u64) {
        ordering::check(self.at(g, raw.id()), raw, sm_applied);
    }

    /// A replica restarted over its durable store: its committed prefix must be intact.
    pub fn on_restart(&mut self, g: usize, raw: &RawNode<MemStorage>) {
        let at = self.at(g, raw.id());
        committed_immutable::check_restart(&self.groups[g], at, raw);
    }

    /// A replica is about to persist `after` over the durable `before`.
    pub fn on_persist_hard_state(&self, g: usize, n: NodeId, before: HardState, after: HardState) {
        durable_vote::check(self.at(g, n), before, after);
    }

    /// A replica applied the entry `e`, leaving its state machine with `state_digest`.
    pub fn on_apply(&mut self, g: usize, node: NodeId, e: &Entry, state_digest: u64) {
        let at = self.at(g, node);
        state_machine_safety::check_apply(&mut self.groups[g], at, e, state_digest);
    }

    /// A replica installed a snapshot at `index` whose state has `state_digest`.
    pub fn on_snapshot(&mut self, g: usize, node: NodeId, index: LogIndex, state_digest: u64) {
        let at = self.at(g, node);
        state_machine_safety::check_snapshot(&mut self.groups[g], at, index, state_digest);
    }
}
