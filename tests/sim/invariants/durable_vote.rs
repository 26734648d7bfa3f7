//! The durable hard state only moves forward (§5.2 and Figure 2): the persisted term never
//! decreases, a server votes for at most one candidate in a given term (so `voted_for`,
//! once persisted for a term, never changes within it), and the persisted commit index
//! never decreases. Checked at every persist, across crashes, since the store survives.

use shardkv::raft::{HardState, NodeId};

use super::{violation, At};

pub fn check(at: At, before: HardState, after: HardState) {
    let what = || format!("persisted hard state went {before:?} -> {after:?}");
    if after.term < before.term {
        violation(at, "durable term monotonic, Figure 2", what());
    }
    let same_term = after.term == before.term;
    if same_term && before.voted_for != NodeId::NONE && after.voted_for != before.voted_for {
        violation(at, "one vote per term §5.2", what());
    }
    if after.commit_index < before.commit_index {
        violation(at, "durable commit monotonic, Figure 2", what());
    }
}
