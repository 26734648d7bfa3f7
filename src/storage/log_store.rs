//! `RedbStorage`: one group's Raft log, hard state, configuration and snapshot metadata,
//! read through `raft::Storage`, and `GroupCache`, the in-memory state it reads from.
//!
//! Owns: the per-group cache (first/last index, snapshot metadata, hard state, conf state,
//! applied index, and the newest `LOG_CACHE_ENTRIES_MAX` / `LOG_CACHE_BYTES_MAX` entries)
//! and the read path. `term()`, `last_index()`, `first_index()` and `entries()` of recent
//! entries take a read lock and open no transaction; older entries come from a redb read
//! transaction.
//!
//! Must never: write the database. Only the group-commit writer (`writer`) writes, and it
//! updates the cache after its commit, under the cache's write lock (see `writer` for the
//! ordering that keeps readers consistent).

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use redb::ReadTransaction;

use crate::raft::{
    ConfState, Entry, GroupId, HardState, LogIndex, NodeId, RaftError, RaftState, SnapshotMetadata,
    Storage, Term,
};
use crate::storage::codec::{decode, decode_entry};
use crate::storage::db::NodeDb;
use crate::storage::error::{Result, StorageError};
use crate::storage::limits::{LOG_CACHE_BYTES_MAX, LOG_CACHE_ENTRIES_MAX};
use crate::storage::tables::{APPLIED, CONF_STATE, HARD_STATE, LOG, SNAPSHOT_META};

/// The durable facts of a group, small enough to copy: what the writer validates a batch
/// against and what readers answer `first_index`/`last_index`/`initial_state` from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupMeta {
    pub snapshot: SnapshotMetadata,
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub applied: LogIndex,
    pub last_index: LogIndex,
}

impl GroupMeta {
    /// Installing a snapshot raises the hard state to it, as `MemStorage::apply_snapshot`.
    pub(crate) fn raise_hard_state_to_snapshot(&mut self) {
        let snap = &self.snapshot;
        if self.hard_state.commit_index < snap.index {
            self.hard_state.commit_index = snap.index;
        }
        if self.hard_state.term < snap.term {
            self.hard_state.term = snap.term;
            self.hard_state.voted_for = NodeId::NONE;
        }
    }
}

/// A group's durable state as last committed, shared by its `RedbStorage` and the writer.
#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    pub meta: GroupMeta,
    /// The newest entries, contiguous, the last one at `meta.last_index`.
    recent: VecDeque<Entry>,
    recent_bytes: u64,
    /// redb holds this group's log through this index; entries after it are durable in the
    /// write-ahead log only, and the cache keeps them whatever its bounds say (their bytes
    /// are bounded by `WAL_PENDING_BYTES_MAX` instead), so that every entry below the cached
    /// window can be read from redb.
    absorbed: LogIndex,
}

impl GroupCache {
    /// The index of the oldest cached entry (`last_index + 1` if none is cached).
    fn recent_first(&self) -> LogIndex {
        LogIndex(self.meta.last_index.get() + 1 - self.recent.len() as u64)
    }

    fn cached(&self, index: LogIndex) -> Option<&Entry> {
        let first = self.recent_first();
        if index < first {
            return None;
        }
        self.recent.get((index.get() - first.get()) as usize)
    }

    /// Drops every cached entry (a snapshot replaced the log).
    pub(crate) fn clear_entries(&mut self) {
        self.recent.clear();
        self.recent_bytes = 0;
    }

    /// Mirrors an append that truncated any conflicting suffix; `meta` is already updated.
    pub(crate) fn append_entries(&mut self, entries: &[Entry]) {
        let Some(first_new) = entries.first() else { return };
        if first_new.index <= self.absorbed {
            // redb's entries from here on are replaced: it holds the log only below.
            self.absorbed = LogIndex(first_new.index.get() - 1);
        }
        while self.recent.back().is_some_and(|e| e.index >= first_new.index) {
            self.pop_back();
        }
        if self.recent.back().is_some_and(|e| e.index.next() != first_new.index) {
            // The truncation reached below the cached window: the cache restarts here.
            self.clear_entries();
        }
        for e in entries {
            self.recent_bytes += e.size_bytes();
            self.recent.push_back(e.clone());
        }
        self.trim();
    }

    /// Drops cached entries at or below `index` (log compaction).
    pub(crate) fn drop_through(&mut self, index: LogIndex) {
        while self.recent.front().is_some_and(|e| e.index <= index) {
            self.pop_front();
        }
    }

    /// redb now holds the whole log (a transaction absorbed the write-ahead log).
    pub(crate) fn mark_absorbed(&mut self) {
        self.absorbed = self.meta.last_index;
        self.trim();
    }

    fn trim(&mut self) {
        while (self.recent.len() > LOG_CACHE_ENTRIES_MAX
            || (self.recent.len() > 1 && self.recent_bytes > LOG_CACHE_BYTES_MAX))
            && self.recent.front().is_some_and(|e| e.index <= self.absorbed)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.recent.pop_front() {
            self.recent_bytes -= e.size_bytes();
        }
    }

    fn pop_back(&mut self) {
        if let Some(e) = self.recent.pop_back() {
            self.recent_bytes -= e.size_bytes();
        }
    }
}

/// Loads a group's cache from the database (first use after open).
pub(crate) fn load_group_cache(db: &NodeDb, group: GroupId) -> Result<GroupCache> {
    let txn = db.begin_read()?;
    let path = db.path();
    let g = group.get();
    let mut meta = GroupMeta::default();
    if let Some(bytes) = read_record(db, &txn, HARD_STATE, g)? {
        meta.hard_state = decode(path, group, "hard state", &bytes)?;
    }
    if let Some(bytes) = read_record(db, &txn, CONF_STATE, g)? {
        meta.conf_state = decode(path, group, "conf state", &bytes)?;
    }
    if let Some(bytes) = read_record(db, &txn, SNAPSHOT_META, g)? {
        meta.snapshot = decode(path, group, "snapshot metadata", &bytes)?;
    }
    let applied = txn.open_table(APPLIED).map_err(|e| db.err("open applied", e))?;
    if let Some(a) = applied.get(g).map_err(|e| db.err("read applied", e))? {
        meta.applied = LogIndex(a.value());
    }
    let mut cache = GroupCache { meta, ..GroupCache::default() };
    load_recent_entries(db, &txn, group, &mut cache)?;
    cache.mark_absorbed();
    Ok(cache)
}

fn read_record(
    db: &NodeDb,
    txn: &ReadTransaction,
    def: redb::TableDefinition<u64, &[u8]>,
    g: u64,
) -> Result<Option<Vec<u8>>> {
    let table = txn.open_table(def).map_err(|e| db.err("open table", e))?;
    let value = table.get(g).map_err(|e| db.err("read record", e))?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// Reads the newest entries above the snapshot into the cache, checking that they are
/// contiguous and that the log starts right after the snapshot.
fn load_recent_entries(
    db: &NodeDb,
    txn: &ReadTransaction,
    group: GroupId,
    cache: &mut GroupCache,
) -> Result<()> {
    let g = group.get();
    let snap = cache.meta.snapshot.index.get();
    let log = txn.open_table(LOG).map_err(|e| db.err("open log", e))?;
    let range = (g, snap + 1)..=(g, u64::MAX);
    let first_key = log.range(range.clone()).map_err(|e| db.err("read log", e))?.next();
    if let Some(item) = first_key {
        let (k, _) = item.map_err(|e| db.err("read log", e))?;
        if k.value().1 != snap + 1 {
            let msg = format!("group {group}: log starts at {} after snapshot {snap}", k.value().1);
            return Err(StorageError::corrupt(db.path(), msg));
        }
    }
    let mut newest_first = Vec::new();
    let mut bytes = 0u64;
    for item in log.range(range).map_err(|e| db.err("read log", e))?.rev() {
        let (k, v) = item.map_err(|e| db.err("read log", e))?;
        let entry = decode_entry(db.path(), group, k.value().1, v.value())?;
        if let Some(next) = newest_first.last().map(|e: &Entry| e.index) {
            if entry.index.next() != next {
                let msg = format!("group {group}: log gap between {} and {next}", entry.index);
                return Err(StorageError::corrupt(db.path(), msg));
            }
        }
        bytes += entry.size_bytes();
        newest_first.push(entry);
        if newest_first.len() >= LOG_CACHE_ENTRIES_MAX || bytes > LOG_CACHE_BYTES_MAX {
            break;
        }
    }
    cache.meta.last_index = newest_first.first().map_or(LogIndex(snap), |e| e.index);
    newest_first.reverse();
    cache.append_entries(&newest_first);
    Ok(())
}

/// One group's durable Raft state on this node, read through `raft::Storage`.
#[derive(Clone, Debug)]
pub struct RedbStorage {
    db: Arc<NodeDb>,
    group: GroupId,
    cache: Arc<RwLock<GroupCache>>,
}

impl RedbStorage {
    /// The storage of `group` in `db` (empty if the group has never been written).
    pub fn open(db: Arc<NodeDb>, group: GroupId) -> Result<RedbStorage> {
        let cache = db.group_cache(group)?;
        Ok(RedbStorage { db, group, cache })
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn db(&self) -> &Arc<NodeDb> {
        &self.db
    }

    /// The hard state as last committed.
    pub fn hard_state(&self) -> HardState {
        self.read().meta.hard_state
    }

    /// The applied index persisted with the state machine's data.
    pub fn applied_index(&self) -> LogIndex {
        self.read().meta.applied
    }

    /// The metadata of the snapshot the log was compacted to (index 0: none).
    pub fn snapshot_metadata(&self) -> SnapshotMetadata {
        self.read().meta.snapshot.clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, GroupCache> {
        self.cache.read().expect("group cache poisoned")
    }

    /// Reads entries `[low, high)` from redb into `out`, under the byte rule of `entries`.
    /// Returns false once `max_bytes` stopped the read.
    fn read_entries_from_disk(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
        out: &mut Vec<Entry>,
        bytes: &mut u64,
    ) -> Result<bool> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG).map_err(|e| self.db.err("open log", e))?;
        let g = self.group.get();
        let mut expected = low;
        let range = (g, low.get())..(g, high.get());
        for item in log.range(range).map_err(|e| self.db.err("read log", e))? {
            let (k, v) = item.map_err(|e| self.db.err("read log", e))?;
            let entry = decode_entry(self.db.path(), self.group, k.value().1, v.value())?;
            if entry.index != expected {
                let msg = format!("group {}: log missing entry {expected}", self.group);
                return Err(StorageError::corrupt(self.db.path(), msg));
            }
            expected = expected.next();
            *bytes += entry.size_bytes();
            if !out.is_empty() && *bytes > max_bytes {
                return Ok(false);
            }
            out.push(entry);
        }
        if expected != high {
            let msg = format!("group {}: log missing entry {expected}", self.group);
            return Err(StorageError::corrupt(self.db.path(), msg));
        }
        Ok(true)
    }

    fn term_from_disk(&self, index: LogIndex) -> Result<Term> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(LOG).map_err(|e| self.db.err("open log", e))?;
        let value = log
            .get((self.group.get(), index.get()))
            .map_err(|e| self.db.err("read log", e))?
            .ok_or_else(|| {
                let msg = format!("group {}: log missing entry {index}", self.group);
                StorageError::corrupt(self.db.path(), msg)
            })?;
        Ok(decode_entry(self.db.path(), self.group, index.get(), value.value())?.term)
    }
}

impl Storage for RedbStorage {
    fn initial_state(&self) -> crate::raft::Result<RaftState> {
        let c = self.read();
        Ok(RaftState { hard_state: c.meta.hard_state, conf_state: c.meta.conf_state.clone() })
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> crate::raft::Result<Vec<Entry>> {
        // The read lock is held through the disk read, so that a writer removing entries
        // (which takes the write lock before its commit) cannot change them underneath.
        let c = self.read();
        if low <= c.meta.snapshot.index {
            return Err(RaftError::Compacted);
        }
        if high > c.meta.last_index.next() || low > high {
            return Err(RaftError::Unavailable);
        }
        let mut out = Vec::with_capacity((high.get() - low.get()) as usize);
        let mut bytes = 0u64;
        let recent_first = c.recent_first();
        let mut next = low;
        if low < recent_first {
            let disk_high = high.min(recent_first);
            if !self.read_entries_from_disk(low, disk_high, max_bytes, &mut out, &mut bytes)? {
                return Ok(out);
            }
            next = disk_high;
        }
        while next < high {
            let Some(e) = c.cached(next) else { return Err(RaftError::Unavailable) };
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
            next = next.next();
        }
        Ok(out)
    }

    fn term(&self, index: LogIndex) -> crate::raft::Result<Term> {
        let c = self.read();
        let snap = &c.meta.snapshot;
        if index == snap.index {
            return Ok(snap.term);
        }
        if index < snap.index {
            return Err(RaftError::Compacted);
        }
        if index > c.meta.last_index {
            return Err(RaftError::Unavailable);
        }
        match c.cached(index) {
            Some(e) => Ok(e.term),
            None => Ok(self.term_from_disk(index)?),
        }
    }

    fn first_index(&self) -> crate::raft::Result<LogIndex> {
        Ok(self.read().meta.snapshot.index.next())
    }

    fn last_index(&self) -> crate::raft::Result<LogIndex> {
        Ok(self.read().meta.last_index)
    }

    /// The snapshot's metadata. Its `data` is empty: the state machine's data lives in the
    /// KV tables and the runtime streams it in chunks beside the metadata.
    fn snapshot(&self) -> crate::raft::Result<crate::raft::Snapshot> {
        let metadata = self.read().meta.snapshot.clone();
        Ok(crate::raft::Snapshot { metadata, data: bytes::Bytes::new() })
    }
}
