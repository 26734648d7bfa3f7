//! The log's points are ordered (Figure 2 and §7): snapshot index ≤ applied index ≤
//! commit index ≤ last index, with first index = snapshot index + 1. Checked after each
//! `advance`, when the runtime has persisted and applied the Ready (between `ready()` and
//! `advance()` an installed snapshot legitimately runs ahead of the applied index).

use shardkv::raft::{MemStorage, RawNode};

use super::{violation, At};

pub fn check(at: At, raw: &RawNode<MemStorage>, sm_applied: u64) {
    let (first, applied) = (raw.first_index(), raw.applied_index());
    let (commit, last) = (raw.commit_index(), raw.last_index());
    let ordered = first.prev() <= applied && applied <= commit && commit <= last;
    if !ordered || applied.get() != sm_applied {
        violation(
            at,
            "log ordering, Figure 2 and §7",
            format!(
                "snapshot {} applied {applied} (state machine {sm_applied}) commit {commit} \
                 last {last}",
                first.prev()
            ),
        );
    }
}
