//! The `Storage` trait the core reads its durable state through, and `MemStorage`, the
//! in-memory implementation used by the simulation and the tests.
//!
//! The core never writes storage: it hands entries, hard state and snapshots out in a
//! `Ready`, and the runtime persists them (the redb implementation batches many groups into
//! one transaction) before calling `advance`. Every implementation must pass the
//! conformance suite in `crate::storage::conformance`.

use crate::raft::error::{RaftError, Result};
use crate::raft::types::{ConfState, Entry, HardState, LogIndex, Snapshot, Term};

/// What a node recovers on restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
}

/// Read access to a group's durable Raft state.
///
/// Invariants every implementation keeps: entries are contiguous from `first_index` to
/// `last_index`; `first_index == snapshot index + 1`; `term(first_index - 1)` is the
/// snapshot's term (so the core can check `prev_log_term` right after compaction).
pub trait Storage {
    /// Hard state and configuration as last persisted.
    fn initial_state(&self) -> Result<RaftState>;
    /// Entries in `[low, high)`, stopping early once `max_bytes` is exceeded (but always at
    /// least one entry). `RaftError::Compacted` if `low < first_index`.
    fn entries(&self, low: LogIndex, high: LogIndex, max_bytes: u64) -> Result<Vec<Entry>>;
    /// Term of the entry at `index`, for `first_index - 1 <= index <= last_index`.
    fn term(&self, index: LogIndex) -> Result<Term>;
    /// The first index still in the log (snapshot index + 1).
    fn first_index(&self) -> Result<LogIndex>;
    /// The last index in the log (the snapshot index if the log is empty).
    fn last_index(&self) -> Result<LogIndex>;
    /// The latest snapshot. `RaftError::SnapshotTemporarilyUnavailable` if it is being
    /// built; the core retries later.
    fn snapshot(&self) -> Result<Snapshot>;
}

/// In-memory storage. Its "disk" is these fields; a simulated crash keeps them and drops
/// everything else, which is exactly what a node that fsyncs every Ready would keep.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    /// `entries[0]` has index `snapshot.metadata.index + 1`.
    entries: Vec<Entry>,
    /// The configuration as of the last applied conf change (or the snapshot).
    conf_state: ConfState,
}

impl MemStorage {
    /// Empty storage with this initial configuration (a brand-new group).
    pub fn new_with_conf_state(conf_state: ConfState) -> MemStorage {
        let mut snapshot = Snapshot::default();
        snapshot.metadata.conf_state = conf_state.clone();
        MemStorage { conf_state, snapshot, ..MemStorage::default() }
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Every entry still in the log.
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    fn offset(&self) -> LogIndex {
        self.snapshot.metadata.index
    }

    /// Appends entries, truncating any conflicting suffix first. The first new entry must
    /// be at most `last_index + 1` and above the snapshot.
    pub fn append(&mut self, new: &[Entry]) -> Result<()> {
        let Some(first_new) = new.first() else { return Ok(()) };
        let first = self.offset().next();
        let last = self.last_index_now();
        if first_new.index < first {
            return Err(RaftError::Store(format!(
                "append at {} below first index {first}",
                first_new.index
            )));
        }
        if first_new.index > last.next() {
            return Err(RaftError::Store(format!(
                "append at {} leaves a gap after last index {last}",
                first_new.index
            )));
        }
        let keep = (first_new.index.get() - first.get()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(new);
        Ok(())
    }

    /// Replaces the whole log with a snapshot (install on a follower).
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        if snapshot.metadata.index < self.offset() {
            return Err(RaftError::SnapshotOutOfDate);
        }
        self.conf_state = snapshot.metadata.conf_state.clone();
        self.entries.clear();
        if self.hard_state.commit_index < snapshot.metadata.index {
            self.hard_state.commit_index = snapshot.metadata.index;
        }
        if self.hard_state.term < snapshot.metadata.term {
            self.hard_state.term = snapshot.metadata.term;
            self.hard_state.voted_for = crate::raft::NodeId::NONE;
        }
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot taken by the state machine at `index` (which must be in the log)
    /// and discards the log up to it (log compaction, §7).
    pub fn compact_to_snapshot(
        &mut self,
        index: LogIndex,
        conf_state: ConfState,
        data: bytes::Bytes,
    ) -> Result<()> {
        if index <= self.offset() {
            return Err(RaftError::SnapshotOutOfDate);
        }
        if index > self.last_index_now() {
            return Err(RaftError::Store(format!("compact to {index} past the last index")));
        }
        let term = self.term(index)?;
        let drop = (index.get() - self.offset().get()) as usize;
        self.entries.drain(..drop);
        self.snapshot = Snapshot {
            metadata: crate::raft::SnapshotMetadata { index, term, conf_state },
            data,
        };
        Ok(())
    }

    fn last_index_now(&self) -> LogIndex {
        self.offset().plus(self.entries.len() as u64)
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<RaftState> {
        Ok(RaftState { hard_state: self.hard_state, conf_state: self.conf_state.clone() })
    }

    fn entries(&self, low: LogIndex, high: LogIndex, max_bytes: u64) -> Result<Vec<Entry>> {
        if low <= self.offset() {
            return Err(RaftError::Compacted);
        }
        if high > self.last_index_now().next() || low > high {
            return Err(RaftError::Unavailable);
        }
        let lo = (low.get() - self.offset().get() - 1) as usize;
        let hi = (high.get() - self.offset().get() - 1) as usize;
        let mut out = Vec::with_capacity(hi - lo);
        let mut bytes = 0u64;
        for e in &self.entries[lo..hi] {
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> Result<Term> {
        let offset = self.offset();
        if index == offset {
            return Ok(self.snapshot.metadata.term);
        }
        if index < offset {
            return Err(RaftError::Compacted);
        }
        match self.entries.get((index.get() - offset.get() - 1) as usize) {
            Some(e) => Ok(e.term),
            None => Err(RaftError::Unavailable),
        }
    }

    fn first_index(&self) -> Result<LogIndex> {
        Ok(self.offset().next())
    }

    fn last_index(&self) -> Result<LogIndex> {
        Ok(self.last_index_now())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        Ok(self.snapshot.clone())
    }
}
