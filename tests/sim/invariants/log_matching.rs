//! Log matching on committed prefixes (§5.3, Figure 3): if two logs contain an entry with
//! the same index and term, the logs are identical in all entries up through that index.
//! Checked where it matters for clients: a replica's committed entry that has the same
//! (index, term) as the group's recorded committed entry must be the same entry.

use shardkv::raft::{Entry, LogIndex};

use super::{entry_digest, violation, At, CommittedEntry};

/// Panics if `e` has the recorded term at `index` but different contents.
pub fn check(at: At, index: LogIndex, recorded: &CommittedEntry, e: &Entry) {
    if e.term == recorded.term && entry_digest(e) != recorded.digest {
        violation(
            at,
            "log matching §5.3",
            format!("entry {index} of term {} differs from the committed one: {e:?}", e.term),
        );
    }
}
