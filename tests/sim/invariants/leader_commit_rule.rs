//! Leaders commit by counting replicas only entries of their own term (§5.4.2, Figure 8):
//! "Raft never commits log entries from previous terms by counting replicas. Only log
//! entries from the leader's current term are committed by counting replicas." So whenever
//! a leader's commit index advances, it must land on an entry of the leader's term.
//! (A leader's commit index inherited from its follower days is not an advance.)

use shardkv::raft::{LogIndex, MemStorage, RawNode, Role};

use super::{violation, At};

pub fn check(at: At, raw: &RawNode<MemStorage>, before: LogIndex, after: LogIndex) {
    if raw.role() != Role::Leader || after <= before {
        return;
    }
    let term = raw.term();
    match raw.log_term(after) {
        Some(t) if t == term => {}
        t => violation(
            at,
            "leader commit rule §5.4.2",
            format!(
                "leader of term {term} advanced its commit {before} -> {after} onto term {t:?}"
            ),
        ),
    }
}
