//! The conformance suite of `raft::Storage`: the behaviour every implementation (in-memory,
//! redb, simulated) must show, checked through one generic runner.
//!
//! Owns: `TestableStore`, the small write interface the suite drives an implementation
//! through, and the cases. Must never: reach into an implementation's internals; every
//! check goes through `raft::Storage` and `TestableStore`.

use bytes::Bytes;

use crate::raft::{
    ConfState, Entry, EntryPayload, HardState, LogIndex, MemStorage, NodeId, RaftError, Snapshot,
    SnapshotMetadata, Storage, Term,
};

/// The writes the suite needs, on top of `raft::Storage`.
pub trait TestableStore: Storage + Sized {
    /// Appends entries, truncating any conflicting suffix first.
    fn append(&mut self, entries: &[Entry]) -> Result<(), RaftError>;
    fn set_hard_state(&mut self, hs: HardState) -> Result<(), RaftError>;
    fn set_conf_state(&mut self, cs: ConfState) -> Result<(), RaftError>;
    /// Installs a snapshot received from a leader: replaces the whole log.
    fn apply_snapshot(&mut self, metadata: SnapshotMetadata) -> Result<(), RaftError>;
    /// Compacts the log up to `index`, recording a snapshot there.
    fn compact(&mut self, index: LogIndex, conf_state: ConfState) -> Result<(), RaftError>;
    /// Simulates a process restart: keeps what is durable, drops the rest.
    fn restart(self) -> Self;
}

impl TestableStore for MemStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), RaftError> {
        MemStorage::append(self, entries)
    }
    fn set_hard_state(&mut self, hs: HardState) -> Result<(), RaftError> {
        MemStorage::set_hard_state(self, hs);
        Ok(())
    }
    fn set_conf_state(&mut self, cs: ConfState) -> Result<(), RaftError> {
        MemStorage::set_conf_state(self, cs);
        Ok(())
    }
    fn apply_snapshot(&mut self, metadata: SnapshotMetadata) -> Result<(), RaftError> {
        MemStorage::apply_snapshot(self, Snapshot { metadata, data: Bytes::new() })
    }
    fn compact(&mut self, index: LogIndex, conf_state: ConfState) -> Result<(), RaftError> {
        self.compact_to_snapshot(index, conf_state, Bytes::new())
    }
    /// MemStorage's fields are its disk.
    fn restart(self) -> Self {
        self
    }
}

/// An entry with a payload that names it.
pub fn entry(index: u64, term: u64) -> Entry {
    let data = Bytes::from(format!("entry {index} of term {term}"));
    Entry { term: Term(term), index: LogIndex(index), payload: EntryPayload::Normal(data) }
}

/// Entries `from..=to`, all of `term`.
pub fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
    (from..=to).map(|i| entry(i, term)).collect()
}

fn conf(voters: &[u64]) -> ConfState {
    ConfState::with_voters(voters.iter().map(|&v| NodeId(v)))
}

/// Runs every case, each on a fresh store from `make`.
pub fn run_conformance<S: TestableStore>(make: impl Fn() -> S) {
    empty_store_has_an_empty_log(make());
    append_then_read_back(make());
    entries_stop_at_max_bytes_but_return_at_least_one(make());
    append_truncates_a_conflicting_suffix(make());
    append_refuses_a_gap_or_an_index_below_the_log(make());
    term_at_the_snapshot_boundary_is_the_snapshot_term(make());
    hard_state_and_conf_state_survive_a_restart(make());
    compaction_moves_first_index_and_survives_a_restart(make());
    compaction_refuses_stale_or_future_indexes(make());
    apply_snapshot_replaces_the_log(make());
    apply_snapshot_refuses_an_older_snapshot(make());
    long_log_beyond_any_cache_reads_back_after_restart(make());
    deep_truncation_below_recent_entries(make());
}

fn assert_log<S: Storage>(s: &S, first: u64, last: u64, term_of: impl Fn(u64) -> u64) {
    assert_eq!(s.first_index(), Ok(LogIndex(first)), "first index");
    assert_eq!(s.last_index(), Ok(LogIndex(last)), "last index");
    let all = s.entries(LogIndex(first), LogIndex(last + 1), u64::MAX).expect("entries");
    assert_eq!(all.len() as u64, last + 1 - first, "entry count");
    for (e, i) in all.iter().zip(first..) {
        assert_eq!(e, &entry(i, term_of(i)), "entry {i}");
        assert_eq!(s.term(LogIndex(i)), Ok(Term(term_of(i))), "term of {i}");
    }
}

fn empty_store_has_an_empty_log<S: TestableStore>(s: S) {
    assert_eq!(s.first_index(), Ok(LogIndex(1)));
    assert_eq!(s.last_index(), Ok(LogIndex(0)));
    assert_eq!(s.term(LogIndex(0)), Ok(Term(0)));
    assert_eq!(s.term(LogIndex(1)), Err(RaftError::Unavailable));
    assert_eq!(s.entries(LogIndex(1), LogIndex(1), u64::MAX), Ok(vec![]));
    assert_eq!(s.entries(LogIndex(1), LogIndex(2), u64::MAX), Err(RaftError::Unavailable));
    assert_eq!(s.entries(LogIndex(0), LogIndex(1), u64::MAX), Err(RaftError::Compacted));
    assert_eq!(s.initial_state().map(|r| r.hard_state), Ok(HardState::default()));
    assert!(s.snapshot().expect("snapshot").is_empty());
    let s = s.restart();
    assert_eq!(s.last_index(), Ok(LogIndex(0)));
}

fn append_then_read_back<S: TestableStore>(mut s: S) {
    let terms = [1, 1, 2, 2, 3];
    let log: Vec<Entry> = (1..=5).map(|i| entry(i, terms[i as usize - 1])).collect();
    s.append(&log[..2]).expect("append");
    s.append(&log[2..]).expect("append");
    s.append(&[]).expect("empty append");
    assert_log(&s, 1, 5, |i| terms[i as usize - 1]);
    assert_eq!(s.entries(LogIndex(2), LogIndex(4), u64::MAX), Ok(log[1..3].to_vec()));
    assert_eq!(s.entries(LogIndex(3), LogIndex(3), u64::MAX), Ok(vec![]));
    assert_eq!(s.term(LogIndex(6)), Err(RaftError::Unavailable));
    assert_eq!(s.entries(LogIndex(1), LogIndex(7), u64::MAX), Err(RaftError::Unavailable));
    assert_eq!(s.entries(LogIndex(4), LogIndex(3), u64::MAX), Err(RaftError::Unavailable));
    let s = s.restart();
    assert_log(&s, 1, 5, |i| terms[i as usize - 1]);
}

fn entries_stop_at_max_bytes_but_return_at_least_one<S: TestableStore>(mut s: S) {
    let log = entries(1, 10, 1);
    s.append(&log).expect("append");
    let one = log[0].size_bytes();
    let get = |max| s.entries(LogIndex(1), LogIndex(11), max).expect("entries");
    assert_eq!(get(0), log[..1].to_vec(), "at least one entry");
    assert_eq!(get(one - 1), log[..1].to_vec(), "at least one entry");
    assert_eq!(get(one), log[..1].to_vec());
    assert_eq!(get(3 * one), log[..3].to_vec());
    assert_eq!(get(3 * one + 1), log[..3].to_vec());
    assert_eq!(get(u64::MAX), log);
}

fn append_truncates_a_conflicting_suffix<S: TestableStore>(mut s: S) {
    s.append(&entries(1, 5, 1)).expect("append");
    s.append(&entries(3, 4, 2)).expect("append over a suffix");
    assert_log(&s, 1, 4, |i| if i >= 3 { 2 } else { 1 });
    assert_eq!(s.term(LogIndex(5)), Err(RaftError::Unavailable));
    // Re-appending what is there (a duplicated AppendEntries) changes nothing.
    s.append(&entries(2, 2, 1)).expect("append");
    assert_log(&s, 1, 2, |_| 1);
    s.append(&entries(3, 6, 3)).expect("append");
    let s = s.restart();
    assert_log(&s, 1, 6, |i| if i >= 3 { 3 } else { 1 });
}

fn append_refuses_a_gap_or_an_index_below_the_log<S: TestableStore>(mut s: S) {
    s.append(&entries(1, 3, 1)).expect("append");
    assert!(s.append(&entries(5, 6, 1)).is_err(), "a gap is refused");
    assert_log(&s, 1, 3, |_| 1);
    s.compact(LogIndex(2), conf(&[1])).expect("compact");
    assert!(s.append(&entries(2, 4, 2)).is_err(), "below first index is refused");
    assert_log(&s, 3, 3, |_| 1);
}

fn term_at_the_snapshot_boundary_is_the_snapshot_term<S: TestableStore>(mut s: S) {
    s.append(&entries(1, 3, 1)).expect("append");
    s.append(&entries(4, 6, 2)).expect("append");
    s.compact(LogIndex(4), conf(&[1, 2, 3])).expect("compact");
    assert_eq!(s.first_index(), Ok(LogIndex(5)));
    assert_eq!(s.term(LogIndex(4)), Ok(Term(2)), "term(first_index - 1)");
    assert_eq!(s.term(LogIndex(3)), Err(RaftError::Compacted));
    let s = s.restart();
    assert_eq!(s.term(LogIndex(4)), Ok(Term(2)), "term(first_index - 1) after restart");
}

fn hard_state_and_conf_state_survive_a_restart<S: TestableStore>(mut s: S) {
    let hs = HardState { term: Term(7), voted_for: NodeId(2), commit_index: LogIndex(3) };
    s.append(&entries(1, 4, 7)).expect("append");
    s.set_hard_state(hs).expect("hard state");
    let cs = ConfState {
        voters: [1, 2, 3].into_iter().map(NodeId).collect(),
        learners: [4].into_iter().map(NodeId).collect(),
        voters_outgoing: [1, 2, 5].into_iter().map(NodeId).collect(),
    };
    s.set_conf_state(cs.clone()).expect("conf state");
    let s = s.restart();
    let state = s.initial_state().expect("initial state");
    assert_eq!(state.hard_state, hs);
    assert_eq!(state.conf_state, cs);
}

fn compaction_moves_first_index_and_survives_a_restart<S: TestableStore>(mut s: S) {
    s.append(&entries(1, 10, 1)).expect("append");
    s.compact(LogIndex(5), conf(&[1, 2])).expect("compact");
    let check = |s: &S| {
        assert_log(s, 6, 10, |_| 1);
        assert_eq!(s.entries(LogIndex(5), LogIndex(7), u64::MAX), Err(RaftError::Compacted));
        assert_eq!(s.term(LogIndex(4)), Err(RaftError::Compacted));
        let meta = s.snapshot().expect("snapshot").metadata;
        assert_eq!(
            meta,
            SnapshotMetadata { index: LogIndex(5), term: Term(1), conf_state: conf(&[1, 2]) }
        );
    };
    check(&s);
    let mut s = s.restart();
    check(&s);
    s.append(&entries(11, 12, 2)).expect("append after restart");
    s.compact(LogIndex(10), conf(&[1, 2])).expect("compact again");
    let s = s.restart();
    assert_log(&s, 11, 12, |_| 2);
    assert_eq!(s.term(LogIndex(10)), Ok(Term(1)));
}

fn compaction_refuses_stale_or_future_indexes<S: TestableStore>(mut s: S) {
    s.append(&entries(1, 5, 1)).expect("append");
    s.compact(LogIndex(3), conf(&[1])).expect("compact");
    assert!(s.compact(LogIndex(3), conf(&[1])).is_err(), "same index again");
    assert!(s.compact(LogIndex(2), conf(&[1])).is_err(), "older index");
    assert!(s.compact(LogIndex(6), conf(&[1])).is_err(), "past the last index");
    assert_log(&s, 4, 5, |_| 1);
}

fn apply_snapshot_replaces_the_log<S: TestableStore>(mut s: S) {
    s.append(&entries(1, 5, 1)).expect("append");
    s.set_hard_state(HardState { term: Term(1), voted_for: NodeId(1), commit_index: LogIndex(2) })
        .expect("hard state");
    let meta =
        SnapshotMetadata { index: LogIndex(10), term: Term(4), conf_state: conf(&[1, 2, 3]) };
    s.apply_snapshot(meta.clone()).expect("apply snapshot");
    let check = |s: &S| {
        assert_eq!(s.first_index(), Ok(LogIndex(11)));
        assert_eq!(s.last_index(), Ok(LogIndex(10)));
        assert_eq!(s.term(LogIndex(10)), Ok(Term(4)));
        assert_eq!(s.entries(LogIndex(5), LogIndex(6), u64::MAX), Err(RaftError::Compacted));
        assert_eq!(s.snapshot().expect("snapshot").metadata, meta);
        let state = s.initial_state().expect("initial state");
        assert_eq!(state.conf_state, conf(&[1, 2, 3]));
        let hs = HardState { term: Term(4), voted_for: NodeId::NONE, commit_index: LogIndex(10) };
        assert_eq!(state.hard_state, hs);
    };
    check(&s);
    let mut s = s.restart();
    check(&s);
    s.append(&entries(11, 12, 4)).expect("append after the snapshot");
    assert_log(&s, 11, 12, |_| 4);
    // A snapshot inside the log also replaces all of it.
    let inside = SnapshotMetadata { index: LogIndex(11), term: Term(4), conf_state: conf(&[1]) };
    s.apply_snapshot(inside).expect("apply snapshot");
    let s = s.restart();
    assert_eq!(s.last_index(), Ok(LogIndex(11)));
    assert_eq!(s.first_index(), Ok(LogIndex(12)));
}

fn apply_snapshot_refuses_an_older_snapshot<S: TestableStore>(mut s: S) {
    let meta = SnapshotMetadata { index: LogIndex(8), term: Term(2), conf_state: conf(&[1]) };
    s.apply_snapshot(meta.clone()).expect("apply snapshot");
    let older = SnapshotMetadata { index: LogIndex(7), term: Term(2), conf_state: conf(&[1]) };
    assert_eq!(s.apply_snapshot(older), Err(RaftError::SnapshotOutOfDate));
    assert_eq!(s.snapshot().expect("snapshot").metadata, meta);
}

/// More entries than any implementation's in-memory cache should hold (the redb one
/// keeps 1024), so that old entries are read from the implementation's disk.
const LONG_LOG_ENTRIES: u64 = 2500;

fn long_log_beyond_any_cache_reads_back_after_restart<S: TestableStore>(mut s: S) {
    for start in (1..=LONG_LOG_ENTRIES).step_by(500) {
        s.append(&entries(start, start + 499, 1 + start / 1000)).expect("append");
    }
    let term_of = |i: u64| 1 + ((i - 1) / 500 * 500 + 1) / 1000;
    assert_log(&s, 1, LONG_LOG_ENTRIES, term_of);
    let s = s.restart();
    assert_log(&s, 1, LONG_LOG_ENTRIES, term_of);
    let some = s.entries(LogIndex(10), LogIndex(2000), 10 * entry(10, 1).size_bytes());
    assert_eq!(some.map(|v| v.len()), Ok(10));
}

fn deep_truncation_below_recent_entries<S: TestableStore>(mut s: S) {
    s.append(&entries(1, LONG_LOG_ENTRIES, 1)).expect("append");
    s.append(&entries(10, 12, 2)).expect("truncate deep in the log");
    assert_log(&s, 1, 12, |i| if i >= 10 { 2 } else { 1 });
    let mut s = s.restart();
    assert_log(&s, 1, 12, |i| if i >= 10 { 2 } else { 1 });
    s.compact(LogIndex(11), conf(&[1])).expect("compact");
    assert_log(&s, 12, 12, |_| 2);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::raft::GroupId;
    use crate::storage::{GroupCommitWriter, GroupWrite, NodeDb, RedbStorage};

    #[test]
    fn mem_storage_conforms() {
        run_conformance(MemStorage::default);
    }

    /// A redb store for the suite: group 7 of a database where groups 6 and 8 (its
    /// neighbours in key order) also have logs, to catch reads or deletes that cross groups.
    struct RedbTestStore {
        dir: tempfile::TempDir,
        writer: GroupCommitWriter,
        storage: RedbStorage,
    }

    const GROUP: GroupId = GroupId(7);

    impl RedbTestStore {
        fn new() -> RedbTestStore {
            let dir = tempfile::tempdir().expect("tempdir");
            let db = Arc::new(NodeDb::open(dir.path().join("node.redb")).expect("open"));
            let writer = GroupCommitWriter::new(Arc::clone(&db));
            let neighbours: Vec<GroupWrite> = [6, 8]
                .into_iter()
                .map(|g| GroupWrite { entries: entries(1, 20, 9), ..GroupWrite::new(GroupId(g)) })
                .collect();
            writer.write_batch(&neighbours).expect("neighbour logs");
            let storage = RedbStorage::open(db, GROUP).expect("storage");
            RedbTestStore { dir, writer, storage }
        }

        fn write(&mut self, w: GroupWrite) -> Result<(), RaftError> {
            self.writer.write_batch(&[w]).map(|_| ()).map_err(RaftError::from)
        }
    }

    impl Storage for RedbTestStore {
        fn initial_state(&self) -> crate::raft::Result<crate::raft::RaftState> {
            self.storage.initial_state()
        }
        fn entries(&self, lo: LogIndex, hi: LogIndex, max: u64) -> crate::raft::Result<Vec<Entry>> {
            self.storage.entries(lo, hi, max)
        }
        fn term(&self, index: LogIndex) -> crate::raft::Result<Term> {
            self.storage.term(index)
        }
        fn first_index(&self) -> crate::raft::Result<LogIndex> {
            self.storage.first_index()
        }
        fn last_index(&self) -> crate::raft::Result<LogIndex> {
            self.storage.last_index()
        }
        fn snapshot(&self) -> crate::raft::Result<Snapshot> {
            self.storage.snapshot()
        }
    }

    impl TestableStore for RedbTestStore {
        fn append(&mut self, entries: &[Entry]) -> Result<(), RaftError> {
            self.write(GroupWrite { entries: entries.to_vec(), ..GroupWrite::new(GROUP) })
        }
        fn set_hard_state(&mut self, hs: HardState) -> Result<(), RaftError> {
            self.write(GroupWrite { hard_state: Some(hs), ..GroupWrite::new(GROUP) })
        }
        fn set_conf_state(&mut self, cs: ConfState) -> Result<(), RaftError> {
            self.write(GroupWrite { conf_state: Some(cs), ..GroupWrite::new(GROUP) })
        }
        fn apply_snapshot(&mut self, metadata: SnapshotMetadata) -> Result<(), RaftError> {
            self.write(GroupWrite { snapshot: Some(metadata), ..GroupWrite::new(GROUP) })
        }
        fn compact(&mut self, index: LogIndex, cs: ConfState) -> Result<(), RaftError> {
            self.writer.compact(GROUP, index, cs).map_err(RaftError::from)
        }
        fn restart(self) -> Self {
            let RedbTestStore { dir, writer, storage } = self;
            drop((writer, storage));
            let db = Arc::new(NodeDb::open(dir.path().join("node.redb")).expect("reopen"));
            let writer = GroupCommitWriter::new(Arc::clone(&db));
            let storage = RedbStorage::open(db, GROUP).expect("storage");
            let neighbour = RedbStorage::open(Arc::clone(storage.db()), GroupId(8)).expect("g8");
            assert_eq!(neighbour.last_index(), Ok(LogIndex(20)), "neighbour group intact");
            RedbTestStore { dir, writer, storage }
        }
    }

    #[test]
    fn redb_storage_conforms() {
        run_conformance(RedbTestStore::new);
    }
}
