//! Majorities, for plain and joint configurations (dissertation §4.3): a joint decision
//! needs a majority of the incoming voters *and* of the outgoing voters.

use std::collections::{BTreeMap, BTreeSet};

use crate::raft::types::{ConfState, LogIndex, NodeId};

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

fn majority_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won; // an empty half agrees with everything
    }
    let (mut yes, mut missing) = (0, 0);
    for id in voters {
        match votes.get(id) {
            Some(true) => yes += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let q = voters.len() / 2 + 1;
    if yes >= q {
        VoteResult::Won
    } else if yes + missing >= q {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// Counts votes over both halves of the configuration.
pub fn vote_result(conf: &ConfState, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let a = majority_vote(&conf.voters, votes);
    let b = majority_vote(&conf.voters_outgoing, votes);
    match (a, b) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

fn majority_index(voters: &BTreeSet<NodeId>, index_of: &impl Fn(NodeId) -> LogIndex) -> LogIndex {
    if voters.is_empty() {
        return LogIndex(u64::MAX);
    }
    let mut v: Vec<LogIndex> = voters.iter().map(|&id| index_of(id)).collect();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v[voters.len() / 2]
}

/// The largest index that a quorum (of both halves) has reached.
pub fn committed_index(conf: &ConfState, index_of: impl Fn(NodeId) -> LogIndex) -> LogIndex {
    majority_index(&conf.voters, &index_of).min(majority_index(&conf.voters_outgoing, &index_of))
}

/// True if the nodes in `acks` form a quorum of both halves.
pub fn has_quorum(conf: &ConfState, acks: &BTreeSet<NodeId>) -> bool {
    has_quorum_of(conf, |id| acks.contains(&id))
}

/// `has_quorum` of the voters `acked` says yes of (no set to build).
pub fn has_quorum_of(conf: &ConfState, acked: impl Fn(NodeId) -> bool) -> bool {
    let full = |voters: &BTreeSet<NodeId>| {
        voters.is_empty() || voters.iter().filter(|&&id| acked(id)).count() > voters.len() / 2
    };
    full(&conf.voters) && full(&conf.voters_outgoing)
}

/// True if `id` alone is a quorum (a group with a single voter).
pub fn is_sole_voter(conf: &ConfState, id: NodeId) -> bool {
    let only = |voters: &BTreeSet<NodeId>| voters.iter().all(|&v| v == id);
    !conf.voters.is_empty() && only(&conf.voters) && only(&conf.voters_outgoing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[u64], outgoing: &[u64]) -> ConfState {
        ConfState {
            voters: voters.iter().map(|&v| NodeId(v)).collect(),
            voters_outgoing: outgoing.iter().map(|&v| NodeId(v)).collect(),
            ..ConfState::default()
        }
    }

    #[test]
    fn a_sole_voter_is_its_own_quorum_in_both_halves_only() {
        assert!(is_sole_voter(&conf(&[1], &[]), NodeId(1)));
        assert!(!is_sole_voter(&conf(&[1], &[]), NodeId(2)));
        assert!(!is_sole_voter(&conf(&[1, 2], &[]), NodeId(1)));
        assert!(!is_sole_voter(&conf(&[1], &[1, 2]), NodeId(1)));
        assert!(!is_sole_voter(&conf(&[], &[]), NodeId(1)));
    }

    #[test]
    fn joint_quorum_needs_a_majority_of_each_half() {
        let c = conf(&[1, 2, 3], &[3, 4, 5]);
        let acks = |ids: &[u64]| ids.iter().map(|&i| NodeId(i)).collect::<BTreeSet<_>>();
        assert!(has_quorum(&c, &acks(&[1, 3, 4])));
        assert!(!has_quorum(&c, &acks(&[1, 2, 3])));
        assert!(!has_quorum(&c, &acks(&[3, 4, 5])));
    }
}
