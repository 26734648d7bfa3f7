//! Committed entries never change or disappear (§5.4, Figure 3 "state machine safety" and
//! the commitment rule of §5.4.2): every index a replica reports committed must hold the
//! entry the group first saw committed there, including after a crash and restart, when
//! the replica recovers its log and commit index from its durable store.

use shardkv::raft::{Entry, LogIndex, MemStorage, RawNode, Storage};

use super::{entry_digest, log_matching, violation, At, CommittedEntry, GroupRecord};

/// The replica's commit index moved from `from` to `to`: record or compare each entry.
pub fn observe_commit(
    record: &mut GroupRecord,
    at: At,
    raw: &RawNode<MemStorage>,
    from: LogIndex,
    to: LogIndex,
) {
    let lo = from.next().max(raw.first_index());
    if lo > to {
        return;
    }
    let entries = raw.log_entries(lo, to.next()).unwrap_or_else(|e| {
        let what = format!("committed [{lo}, {to}] unreadable: {e}");
        violation(at, "committed immutable §5.4", what)
    });
    for e in &entries {
        match record.committed.get(&e.index) {
            Some(recorded) => compare(at, recorded, e),
            None => {
                let c = CommittedEntry {
                    term: e.term,
                    digest: entry_digest(e),
                    observed_term: raw.term(),
                };
                record.committed.insert(e.index, c);
            }
        }
    }
}

fn compare(at: At, recorded: &CommittedEntry, e: &Entry) {
    log_matching::check(at, e.index, recorded, e);
    if e.term != recorded.term {
        violation(
            at,
            "committed immutable §5.4",
            format!(
                "committed entry {} was term {}, this replica commits term {} there",
                e.index, recorded.term, e.term
            ),
        );
    }
}

/// After a restart, the durable log up to the durable commit index must match the record.
pub fn check_restart(record: &GroupRecord, at: At, raw: &RawNode<MemStorage>) {
    let store = raw.store();
    let commit = store.hard_state().commit_index;
    let first = store.first_index().expect("mem storage first index");
    if first > commit {
        return;
    }
    let entries = store.entries(first, commit.next(), u64::MAX).unwrap_or_else(|e| {
        violation(
            at,
            "committed immutable §5.4",
            format!("durable commit index {commit} but entries [{first}, {commit}] lost: {e}"),
        )
    });
    for e in &entries {
        if let Some(recorded) = record.committed.get(&e.index) {
            compare(at, recorded, e);
        }
    }
}
