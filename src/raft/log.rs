//! The replicated log of one replica: what is durable (read through `Storage`), what is not
//! yet (`unstable`, handed out in a `Ready` and acknowledged by `on_persisted`), and the
//! commit and apply points.
//!
//! Invariants (asserted): `applied <= applying <= committed <= last_index`; `committed`
//! never decreases; committed entries are never truncated.

use crate::raft::error::RaftError;
use crate::raft::storage::Storage;
use crate::raft::types::{Entry, GroupId, LogIndex, Snapshot, Term};

/// Entries and a snapshot not yet known to be durable.
#[derive(Debug, Default)]
struct Unstable {
    /// A snapshot received from the leader, to be installed and persisted.
    snapshot: Option<Snapshot>,
    snapshot_handed_out: bool,
    /// `entries[0]` has index `offset`.
    entries: Vec<Entry>,
    offset: LogIndex,
    /// Entries up to here were handed out in a Ready (persisting may be under way).
    handed_out: LogIndex,
}

/// The log of one replica.
pub struct RaftLog<S: Storage> {
    pub(crate) store: S,
    unstable: Unstable,
    /// Highest index known committed (§5.3).
    committed: LogIndex,
    /// Highest index handed out for applying.
    applying: LogIndex,
    /// Highest index the application confirmed applied.
    applied: LogIndex,
    /// Every entry up to here is durable and agrees with this log.
    persisted: LogIndex,
    group: GroupId,
}

fn store_fail(group: GroupId, what: &str, e: RaftError) -> ! {
    panic!("group {group}: storage failed while {what}: {e}")
}

impl<S: Storage> RaftLog<S> {
    pub fn new(store: S, group: GroupId, committed: LogIndex, applied: LogIndex) -> Self {
        let last = store.last_index().unwrap_or_else(|e| store_fail(group, "opening", e));
        let first = store.first_index().unwrap_or_else(|e| store_fail(group, "opening", e));
        assert!(
            committed <= last,
            "group {group}: persisted commit index {committed} is past the last index {last}"
        );
        let applied = applied.max(first.prev()).min(committed);
        RaftLog {
            store,
            unstable: Unstable { offset: last.next(), handed_out: last, ..Unstable::default() },
            committed,
            applying: applied,
            applied,
            persisted: last,
            group,
        }
    }

    pub fn committed(&self) -> LogIndex {
        self.committed
    }
    pub fn applied(&self) -> LogIndex {
        self.applied
    }
    pub fn persisted(&self) -> LogIndex {
        self.persisted
    }

    pub fn first_index(&self) -> LogIndex {
        match &self.unstable.snapshot {
            Some(s) => s.metadata.index.next(),
            None => self.store.first_index().unwrap_or_else(|e| store_fail(self.group, "first", e)),
        }
    }

    pub fn last_index(&self) -> LogIndex {
        if let Some(e) = self.unstable.entries.last() {
            return e.index;
        }
        if let Some(s) = &self.unstable.snapshot {
            return s.metadata.index;
        }
        self.store.last_index().unwrap_or_else(|e| store_fail(self.group, "last", e))
    }

    pub fn last_term(&self) -> Term {
        self.term(self.last_index()).unwrap_or_else(|e| store_fail(self.group, "last term", e))
    }

    /// Term of the entry at `index`: `Compacted` below the first index - 1, `Unavailable`
    /// past the last.
    pub fn term(&self, index: LogIndex) -> Result<Term, RaftError> {
        let u = &self.unstable;
        if index >= u.offset {
            return match u.entries.get((index.get() - u.offset.get()) as usize) {
                Some(e) => Ok(e.term),
                None => Err(RaftError::Unavailable),
            };
        }
        if let Some(s) = &u.snapshot {
            return match index.cmp(&s.metadata.index) {
                std::cmp::Ordering::Equal => Ok(s.metadata.term),
                std::cmp::Ordering::Less => Err(RaftError::Compacted),
                std::cmp::Ordering::Greater => Err(RaftError::Unavailable),
            };
        }
        self.store.term(index)
    }

    /// Term at `index`, or 0 where it is not known (compacted or past the end).
    pub fn term_or_zero(&self, index: LogIndex) -> Term {
        self.term(index).unwrap_or(Term(0))
    }

    pub fn match_term(&self, index: LogIndex, term: Term) -> bool {
        self.term(index).map(|t| t == term).unwrap_or(false)
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours.
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        let my_term = self.last_term();
        last_term > my_term || (last_term == my_term && last_index >= self.last_index())
    }

    /// Entries in `[low, last]`, at most `max_bytes` (at least one).
    pub fn entries_from(&self, low: LogIndex, max_bytes: u64) -> Result<Vec<Entry>, RaftError> {
        let last = self.last_index();
        if low > last {
            return Ok(Vec::new());
        }
        self.slice(low, last.next(), max_bytes)
    }

    /// Entries in `[low, high)`, at most `max_bytes` (at least one).
    pub fn slice(&self, low: LogIndex, high: LogIndex, max_bytes: u64) -> Result<Vec<Entry>, RaftError> {
        if low < self.first_index() {
            return Err(RaftError::Compacted);
        }
        if high > self.last_index().next() || low > high {
            return Err(RaftError::Unavailable);
        }
        let offset = self.unstable.offset;
        let mut out = Vec::new();
        if low < offset {
            out = self.store.entries(low, high.min(offset), max_bytes)?;
            if (out.len() as u64) < high.min(offset).get() - low.get() {
                return Ok(out); // byte bound reached inside the stable part
            }
        }
        if high > offset {
            let mut bytes: u64 = out.iter().map(Entry::size_bytes).sum();
            let from = (low.max(offset).get() - offset.get()) as usize;
            let to = (high.get() - offset.get()) as usize;
            for e in &self.unstable.entries[from..to] {
                bytes += e.size_bytes();
                if !out.is_empty() && bytes > max_bytes {
                    break;
                }
                out.push(e.clone());
            }
        }
        Ok(out)
    }

    /// Largest index at or below `index` whose term is at most `term` (fast backtracking:
    /// skips over a whole conflicting term in one round trip).
    pub fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> LogIndex {
        let mut i = index.min(self.last_index());
        loop {
            match self.term(i) {
                Ok(t) if t > term && i > LogIndex(0) => i = i.prev(),
                _ => return i,
            }
        }
    }

    /// The follower side of AppendEntries (§5.3). Returns the last index known to match the
    /// leader, or `None` if `prev` does not match. `truncate_conflicts = false` is the
    /// planted bug that keeps a conflicting suffix.
    pub fn maybe_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        leader_commit: LogIndex,
        mut entries: Vec<Entry>,
        truncate_conflicts: bool,
    ) -> Option<LogIndex> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index.plus(entries.len() as u64);
        let conflict = entries.iter().find(|e| !self.match_term(e.index, e.term));
        if let Some(c) = conflict {
            let c_index = c.index;
            if c_index <= self.last_index() && !truncate_conflicts {
                // Planted bug: keep our suffix and claim success.
            } else {
                assert!(
                    c_index > self.committed,
                    "group {}: conflicting entry at {c_index} is at or below commit index {}",
                    self.group,
                    self.committed
                );
                if c_index <= self.last_index() {
                    tracing::info!(group = %self.group, index = %c_index,
                        last_index = %self.last_index(),
                        "log mismatch: truncating the conflicting suffix from index");
                }
                let from = (c_index.get() - prev_index.get() - 1) as usize;
                entries.drain(..from);
                self.append(entries);
            }
        }
        self.commit_to(leader_commit.min(last_new));
        Some(last_new)
    }

    /// Appends entries, truncating any conflicting suffix. Returns the new last index.
    /// Takes the entries by value: they are moved, not cloned, into the unstable log.
    pub fn append(&mut self, entries: Vec<Entry>) -> LogIndex {
        let Some(first) = entries.first() else { return self.last_index() };
        let after = first.index.prev();
        assert!(
            after >= self.committed,
            "group {}: append after {after} would overwrite committed {}",
            self.group,
            self.committed
        );
        let u = &mut self.unstable;
        if after.next() == u.offset.plus(u.entries.len() as u64) {
            u.entries.extend(entries);
        } else if after < u.offset {
            // Replaces entries that may already be durable: the new suffix starts below them.
            u.offset = after.next();
            u.entries = entries;
            self.persisted = self.persisted.min(after);
        } else {
            u.entries.truncate((after.get() + 1 - u.offset.get()) as usize);
            u.entries.extend(entries);
        }
        u.handed_out = u.handed_out.min(after);
        self.last_index()
    }

    pub fn commit_to(&mut self, index: LogIndex) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "group {}: commit to {index} past last index {}",
                self.group,
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Installs a snapshot from the leader: the whole log becomes the snapshot.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        assert!(index > self.committed, "group {}: restore below commit", self.group);
        self.committed = index;
        // The snapshot replaces applying everything up to it.
        self.applying = self.applying.max(index);
        self.unstable = Unstable {
            snapshot: Some(snapshot),
            snapshot_handed_out: false,
            entries: Vec::new(),
            offset: index.next(),
            handed_out: index,
        };
        self.persisted = self.persisted.min(index);
    }

    pub fn has_unstable(&self) -> bool {
        let u = &self.unstable;
        (u.snapshot.is_some() && !u.snapshot_handed_out)
            || u.entries.last().map(|e| e.index > u.handed_out).unwrap_or(false)
    }

    /// The unstable snapshot and entries not yet handed out; marks them handed out.
    pub fn take_unstable(&mut self) -> (Option<Snapshot>, Vec<Entry>) {
        let u = &mut self.unstable;
        let snap = match (&u.snapshot, u.snapshot_handed_out) {
            (Some(s), false) => {
                u.snapshot_handed_out = true;
                Some(s.clone())
            }
            _ => None,
        };
        let from = (u.handed_out.next().max(u.offset).get() - u.offset.get()) as usize;
        let entries = u.entries.get(from..).map(<[Entry]>::to_vec).unwrap_or_default();
        if let Some(last) = entries.last() {
            u.handed_out = last.index;
        }
        (snap, entries)
    }

    /// Entries up to `(index, term)` are durable. Ignored if the entry was overwritten.
    pub fn stable_to(&mut self, index: LogIndex, term: Term) {
        let u = &mut self.unstable;
        if index < u.offset || u.snapshot.is_some() {
            return;
        }
        let pos = (index.get() - u.offset.get()) as usize;
        if u.entries.get(pos).map(|e| e.term) != Some(term) {
            return;
        }
        u.entries.drain(..=pos);
        u.offset = index.next();
        self.persisted = self.persisted.max(index);
    }

    /// The snapshot at `index` is durable (installed in storage).
    pub fn stable_snap_to(&mut self, index: LogIndex) {
        let u = &mut self.unstable;
        if u.snapshot.as_ref().map(|s| s.metadata.index) == Some(index) {
            u.snapshot = None;
            self.persisted = self.persisted.max(index);
        }
    }

    pub fn has_next_committed(&self) -> bool {
        self.committed.min(self.persisted) > self.applying
    }

    /// Committed, durable entries not yet handed out for applying, at most `max_bytes`.
    pub fn next_committed(&mut self, max_bytes: u64) -> Vec<Entry> {
        let hi = self.committed.min(self.persisted);
        if hi <= self.applying {
            return Vec::new();
        }
        let low = self.applying.next();
        let ents = self.slice(low, hi.next(), max_bytes).unwrap_or_else(|e| {
            store_fail(self.group, "reading committed entries", e);
        });
        if let Some(last) = ents.last() {
            self.applying = last.index;
        }
        ents
    }

    pub fn applied_to(&mut self, index: LogIndex) {
        if index > self.applied {
            assert!(
                index <= self.applying.max(self.committed.min(self.persisted)),
                "group {}: applied {index} past what was handed out ({})",
                self.group,
                self.applying
            );
            self.applied = index;
            self.applying = self.applying.max(index);
        }
    }

    pub fn snapshot(&self) -> Result<Snapshot, RaftError> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.clone()),
            None => self.store.snapshot(),
        }
    }
}
