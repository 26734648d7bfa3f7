//! State-machine safety (§5.4.3, Figure 3): if a server has applied a log entry at a given
//! index, no other server will ever apply a different log entry for the same index.
//! Each replica's applied entry and its state-machine digest after it are compared with
//! the first ones recorded at that index; a snapshot must carry the recorded state.

use shardkv::raft::{Entry, LogIndex};

use super::{entry_digest, violation, At, GroupRecord};

pub fn check_apply(record: &mut GroupRecord, at: At, e: &Entry, state_digest: u64) {
    let digest = entry_digest(e);
    if let Some(c) = record.committed.get(&e.index) {
        if c.digest != digest {
            violation(
                at,
                "state machine safety §5.4.3",
                format!(
                    "applies entry {} (term {}) that differs from the committed one",
                    e.index, e.term
                ),
            );
        }
    }
    match record.applied.get(&e.index) {
        Some(&(d, s)) if d != digest || s != state_digest => violation(
            at,
            "state machine safety §5.4.3",
            format!(
                "applied at {}: entry {digest:x} state {state_digest:x}, another replica had \
                 entry {d:x} state {s:x}",
                e.index
            ),
        ),
        Some(_) => {}
        None => {
            record.applied.insert(e.index, (digest, state_digest));
        }
    }
}

pub fn check_snapshot(record: &mut GroupRecord, at: At, index: LogIndex, state_digest: u64) {
    if let Some(&(_, s)) = record.applied.get(&index) {
        if s != state_digest {
            violation(
                at,
                "state machine safety §5.4.3",
                format!("snapshot at {index} has state {state_digest:x}, replicas applied {s:x}"),
            );
        }
    }
}
