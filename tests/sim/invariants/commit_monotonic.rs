//! The commit index never decreases within one process life (Figure 2: commitIndex is
//! "initialized to 0, increases monotonically"). A restart may start lower (it is volatile
//! state recovered from the persisted hard state); `committed_immutable` covers that case.

use shardkv::raft::LogIndex;

use super::{violation, At};

pub fn check(at: At, last: LogIndex, now: LogIndex) {
    if now < last {
        violation(at, "commit monotonic, Figure 2", format!("commit index went {last} -> {now}"));
    }
}
