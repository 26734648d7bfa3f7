//! Group commit: the persist work of many groups made durable with one fsync, then reported
//! durable per group.
//!
//! Two durable paths, one fsync each:
//! - a batch that only appends entries and sets hard states (the replication hot path) is
//!   one record of the write-ahead log (`wal`); its writes stay pending in memory;
//! - any other batch is one redb write transaction, which first writes every pending log
//!   write (absorbing the log), then the batch.
//!
//! Owns: every write to the node's database after it is stamped — log appends (with
//! truncation of a conflicting suffix), hard state, conf state, snapshot metadata (install
//! and compaction), applied index and the key-value mutations of applied entries — the
//! write-ahead log's appends, absorption and replay at open, and the updates of the group
//! caches that `RedbStorage` reads.
//!
//! Cache consistency: the node write lock (`NodeDb::lock_writes`, which guards the log) is
//! held from the start of a batch until every cache reflects it, so caches change in commit
//! order. A redb batch that removes entries of a group (a conflicting-suffix truncation, a
//! snapshot install, a compaction) takes that group's cache write lock *before* its commit
//! and holds it until the cache is updated; readers hold the read lock across their own disk
//! reads, so they see either the log before the batch or the log after it, never a mix. A
//! batch that only appends updates the cache after its commit: until then readers see the
//! old, still valid, shorter log. A log-path batch changes no redb page, and its cache update
//! is one step under the cache's write lock. A cache therefore never shows anything that is
//! not durable, and keeps every entry redb does not hold (`GroupCache::absorbed`).
//!
//! Must never: acknowledge a write before its commit or log append returned, split one
//! submission over two transactions, let a redb transaction skip the pending log writes, or
//! let a batch exceed `BATCH_ENTRIES_MAX`/`BATCH_BYTES_MAX` unless a single submission alone
//! is that large.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::thread::JoinHandle;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::kv::range::GroupRange;
use crate::kv::KvMutation;
use crate::raft::{ConfState, Entry, GroupId, HardState, LogIndex, SnapshotMetadata, Storage};
use crate::storage::codec::encode;
use crate::storage::db::NodeDb;
use crate::storage::error::{Result, StorageError};
use crate::storage::group_snapshot::GroupSnapshotData;
use crate::storage::snapshot_data::import_chunks;
use crate::storage::limits::{
    BATCH_BYTES_MAX, BATCH_ENTRIES_MAX, COMPACT_DELETES_PER_TXN_MAX, WAL_PENDING_BYTES_MAX,
    WAL_RECORD_BYTES_MAX, WRITER_QUEUE_SUBMISSIONS_MAX,
};
use crate::storage::log_store::{GroupCache, GroupMeta, RedbStorage};
use crate::storage::kv_store::write_mutations;
use crate::storage::db::WAL_ABSORBED_SEQ_KEY;
use crate::storage::tables::{
    APPLIED, CONF_STATE, GROUP_RANGE, HARD_STATE, KV, LOG, META, SESSIONS, SNAPSHOT_META,
};
use crate::storage::wal::{LogWrite, LogWriteRef, Unabsorbed, Wal};

/// The persist work of one group: what one `Ready` asks to make durable, plus what
/// applying committed entries changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupWrite {
    pub group: GroupId,
    /// Applied in this order: `snapshot`, `entries`, `hard_state`, `conf_state`,
    /// `applied_index`, `mutations`.
    /// A snapshot to install: its metadata replaces the whole log (the caller stores the
    /// state machine's data), sets the configuration and raises the hard state to it.
    pub snapshot: Option<SnapshotMetadata>,
    /// Consecutive entries; any stored entry at or after the first one is replaced.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub conf_state: Option<ConfState>,
    pub applied_index: Option<LogIndex>,
    pub mutations: Vec<KvMutation>,
    /// The group's slots after this write (a split applied, a split-off group created);
    /// written last.
    pub range: Option<GroupRange>,
    /// With `snapshot`: the state machine's data to install in the same transaction (it
    /// replaces the records of its slots and the group's sessions, before `mutations`).
    pub snapshot_data: Option<GroupSnapshotData>,
}

impl GroupWrite {
    /// An empty write for `group`.
    pub fn new(group: GroupId) -> GroupWrite {
        GroupWrite { group, ..GroupWrite::default() }
    }

    /// The bytes this write counts against `BATCH_BYTES_MAX`.
    pub fn size_bytes(&self) -> u64 {
        let entries: u64 = self.entries.iter().map(Entry::size_bytes).sum();
        let mutations: u64 = self.mutations.iter().map(mutation_bytes).sum();
        let data = self.snapshot_data.as_ref().map_or(0, GroupSnapshotData::size_bytes);
        entries + mutations + data
    }
}

fn mutation_bytes(m: &KvMutation) -> u64 {
    const OVERHEAD_BYTES: u64 = 16;
    OVERHEAD_BYTES + m.data_bytes()
}

/// What one `GroupWrite` made durable: the group's log ends at `last_index`, and its hard
/// state and applied index are these, as of the commit that carried the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupDurable {
    pub group: GroupId,
    pub last_index: LogIndex,
    pub hard_state: HardState,
    pub applied_index: LogIndex,
}

/// The size of a batch, checked against the bounds.
#[derive(Clone, Copy, Debug, Default)]
struct BatchSize {
    entries: usize,
    bytes: u64,
}

impl BatchSize {
    fn of(writes: &[GroupWrite]) -> BatchSize {
        BatchSize {
            entries: writes.iter().map(|w| w.entries.len()).sum(),
            bytes: writes.iter().map(GroupWrite::size_bytes).sum(),
        }
    }
    fn plus(self, other: BatchSize) -> BatchSize {
        BatchSize { entries: self.entries + other.entries, bytes: self.bytes + other.bytes }
    }
    fn fits(self) -> bool {
        self.entries <= BATCH_ENTRIES_MAX && self.bytes <= BATCH_BYTES_MAX
    }
}

/// What one write does to the log on disk, worked out before the transaction.
struct Step {
    /// Inclusive ranges of log indexes to delete.
    delete: Vec<(u64, u64)>,
    /// The group's state after the write.
    after: GroupMeta,
}

/// Works out `w` against `meta` (the group's state before it), checking the log's rules.
fn plan_write(meta: &GroupMeta, w: &GroupWrite) -> Result<Step> {
    let invalid = |reason: String| StorageError::InvalidWrite { group: w.group, reason };
    let mut after = meta.clone();
    let mut delete = Vec::new();
    if let Some(snap) = &w.snapshot {
        if snap.index < meta.snapshot.index {
            let index = snap.index.get();
            return Err(StorageError::SnapshotOutOfDate { group: w.group, index });
        }
        delete.push((0, meta.last_index.get().max(meta.snapshot.index.get())));
        after.snapshot = snap.clone();
        after.conf_state = snap.conf_state.clone();
        after.last_index = snap.index;
    }
    if let Some(first) = w.entries.first() {
        for pair in w.entries.windows(2) {
            if pair[1].index != pair[0].index.next() {
                return Err(invalid(format!("entries not consecutive at {}", pair[1].index)));
            }
        }
        if first.index <= after.snapshot.index {
            let snap = after.snapshot.index;
            return Err(invalid(format!("append at {} at or below snapshot {snap}", first.index)));
        }
        if first.index > after.last_index.next() {
            let last = after.last_index;
            return Err(invalid(format!("append at {} leaves a gap after {last}", first.index)));
        }
        if first.index <= after.last_index {
            delete.push((first.index.get(), after.last_index.get()));
        }
        after.last_index = w.entries[w.entries.len() - 1].index;
    }
    if let Some(hs) = w.hard_state {
        after.hard_state = hs;
    }
    if w.snapshot.is_some() {
        after.raise_hard_state_to_snapshot();
    }
    if let Some(cs) = &w.conf_state {
        after.conf_state = cs.clone();
    }
    if let Some(applied) = w.applied_index {
        after.applied = applied;
    }
    Ok(Step { delete, after })
}

/// The tables one batch writes, opened once per transaction.
struct Tables<'t> {
    log: Table<'t, (u64, u64), &'static [u8]>,
    hard_state: Table<'t, u64, &'static [u8]>,
    conf_state: Table<'t, u64, &'static [u8]>,
    snapshot_meta: Table<'t, u64, &'static [u8]>,
    applied: Table<'t, u64, u64>,
    kv: Table<'t, (u16, &'static [u8]), &'static [u8]>,
    sessions: Table<'t, (u64, u64), &'static [u8]>,
    group_range: Table<'t, u64, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(db: &NodeDb, txn: &'t WriteTransaction) -> Result<Tables<'t>> {
        let e = |e| db.err("open table", e);
        Ok(Tables {
            log: txn.open_table(LOG).map_err(e)?,
            hard_state: txn.open_table(HARD_STATE).map_err(e)?,
            conf_state: txn.open_table(CONF_STATE).map_err(e)?,
            snapshot_meta: txn.open_table(SNAPSHOT_META).map_err(e)?,
            applied: txn.open_table(APPLIED).map_err(e)?,
            kv: txn.open_table(KV).map_err(e)?,
            sessions: txn.open_table(SESSIONS).map_err(e)?,
            group_range: txn.open_table(GROUP_RANGE).map_err(e)?,
        })
    }

    /// Writes one planned group write.
    fn write(&mut self, db: &NodeDb, w: &GroupWrite, step: &Step) -> Result<()> {
        let g = w.group.get();
        let path = db.path();
        let e = |e| db.err("write", e);
        write_log(db, &mut self.log, w.group, &step.delete, &w.entries)?;
        if let Some(snap) = &w.snapshot {
            self.snapshot_meta.insert(g, encode(path, snap)?.as_slice()).map_err(e)?;
        }
        if w.hard_state.is_some() || w.snapshot.is_some() {
            let bytes = encode(path, &step.after.hard_state)?;
            self.hard_state.insert(g, bytes.as_slice()).map_err(e)?;
        }
        if w.conf_state.is_some() || w.snapshot.is_some() {
            let bytes = encode(path, &step.after.conf_state)?;
            self.conf_state.insert(g, bytes.as_slice()).map_err(e)?;
        }
        if let Some(applied) = w.applied_index {
            self.applied.insert(g, applied.get()).map_err(e)?;
        }
        write_mutations(&mut self.kv, &mut self.sessions, g, &w.mutations)
            .map_err(|e| db.err("write kv", e))?;
        if let Some(range) = &w.range {
            self.group_range.insert(g, encode(path, range)?.as_slice()).map_err(e)?;
        }
        Ok(())
    }
}

/// Writes batches of group writes, one transaction and one fsync per batch.
#[derive(Clone, Debug)]
pub struct GroupCommitWriter {
    db: Arc<NodeDb>,
}

impl GroupCommitWriter {
    pub fn new(db: Arc<NodeDb>) -> GroupCommitWriter {
        GroupCommitWriter { db }
    }

    pub fn db(&self) -> &Arc<NodeDb> {
        &self.db
    }

    /// Writes `writes` in order and reports each one durable (same order). They go in one
    /// transaction unless they exceed the batch bounds; then consecutive writes are cut
    /// into bounded batches, each one commit. On an error of batch k, batches before it
    /// are durable and nothing after it was written.
    pub fn write_batch(&self, writes: &[GroupWrite]) -> Result<Vec<GroupDurable>> {
        let mut durable = Vec::with_capacity(writes.len());
        let mut start = 0;
        while start < writes.len() {
            let mut end = start + 1;
            let mut size = BatchSize::of(&writes[start..end]);
            while end < writes.len() {
                let next = size.plus(BatchSize::of(&writes[end..end + 1]));
                if !next.fits() {
                    break;
                }
                size = next;
                end += 1;
            }
            durable.extend(self.commit_one(&writes[start..end])?);
            start = end;
        }
        Ok(durable)
    }

    /// Makes `writes` durable with one fsync, bounds or not: as one write-ahead log record
    /// if they only append entries and set hard states (see `wal`), else in one redb
    /// transaction, which also absorbs whatever the log holds that redb does not.
    fn commit_one(&self, writes: &[GroupWrite]) -> Result<Vec<GroupDurable>> {
        let mut wal = self.db.lock_writes();
        let caches = caches_of(&self.db, writes)?;
        let steps = plan_batch(&caches, writes)?;
        // Past the pending bound (an absorption failed) batches take the redb path, which
        // absorbs the log or fails: the pending writes never grow past one batch more.
        if goes_to_log(writes) && !wal.is_broken() && wal.pending_bytes <= WAL_PENDING_BYTES_MAX {
            return self.append_to_log(&mut wal, &caches, writes, steps);
        }
        // Groups whose stored entries this batch removes: lock their caches across the
        // commit (see the module doc).
        let mut held: BTreeMap<GroupId, RwLockWriteGuard<'_, GroupCache>> = BTreeMap::new();
        for (w, step) in writes.iter().zip(&steps) {
            if !step.delete.is_empty() && !held.contains_key(&w.group) {
                held.insert(w.group, write_cache(&caches[&w.group]));
            }
        }
        let txn = self.db.begin_durable_write()?;
        absorb_into(&self.db, &wal, &txn)?;
        {
            let mut tables = Some(Tables::open(&self.db, &txn)?);
            for (w, step) in writes.iter().zip(&steps) {
                if let Some(data) = &w.snapshot_data {
                    // The import opens the KV tables itself: close ours around it.
                    tables = None;
                    import_chunks(&txn, w.group.get(), data.slot_range(), &data.frames)
                        .map_err(|e| StorageError::InvalidWrite {
                            group: w.group,
                            reason: format!("snapshot data: {e}"),
                        })?;
                    // A replica installed: the group is this node's again (`destroy`).
                    crate::storage::destroy::clear_removed(&self.db, &txn, w.group)?;
                }
                let open = match tables.as_mut() {
                    Some(open) => open,
                    None => tables.insert(Tables::open(&self.db, &txn)?),
                };
                open.write(&self.db, w, step)?;
            }
        }
        self.db.commit(txn, writes.len())?;
        let mut durable = Vec::with_capacity(writes.len());
        for (w, step) in writes.iter().zip(steps) {
            let mut fresh;
            let cache: &mut GroupCache = match held.get_mut(&w.group) {
                Some(guard) => guard,
                None => {
                    fresh = write_cache(&caches[&w.group]);
                    &mut fresh
                }
            };
            durable.push(update_cache(cache, w, step));
            cache.mark_absorbed();
        }
        drop(held);
        absorbed(&self.db, &mut wal)?;
        Ok(durable)
    }

    /// The fast path of `commit_one`: one record in the write-ahead log, one `fdatasync`;
    /// redb is not touched. The caches show the writes once the record is durable.
    fn append_to_log(
        &self,
        wal: &mut Wal,
        caches: &BTreeMap<GroupId, Arc<RwLock<GroupCache>>>,
        writes: &[GroupWrite],
        steps: Vec<Step>,
    ) -> Result<Vec<GroupDurable>> {
        let started = std::time::Instant::now();
        let refs: Vec<LogWriteRef<'_>> = writes
            .iter()
            .map(|w| LogWriteRef { group: w.group, entries: &w.entries, hard_state: w.hard_state })
            .collect();
        wal.append(&refs)?;
        self.db.count_durable(started, writes.len());
        let mut durable = Vec::with_capacity(writes.len());
        for (w, step) in writes.iter().zip(steps) {
            wal.pending_bytes +=
                PENDING_WRITE_OVERHEAD_BYTES + w.entries.iter().map(Entry::size_bytes).sum::<u64>();
            let delete = step.delete.clone();
            durable.push(update_cache(&mut write_cache(&caches[&w.group]), w, step));
            let write = LogWrite { group: w.group, entries: w.entries.clone(), hard_state: w.hard_state };
            wal.pending.push(Unabsorbed { write, delete });
        }
        if wal.pending_bytes > WAL_PENDING_BYTES_MAX {
            // The writes are durable whatever becomes of this: a failure is only logged
            // (the next redb transaction absorbs them, or a restart replays them).
            if let Err(e) = self.absorb(wal) {
                tracing::warn!(error = %e, "absorbing the write-ahead log into the database failed");
            }
        }
        Ok(durable)
    }

    /// Writes what the write-ahead log holds that redb does not into redb, in a
    /// transaction of its own.
    fn absorb(&self, wal: &mut Wal) -> Result<()> {
        if !wal.unabsorbed() {
            return Ok(());
        }
        let txn = self.db.begin_durable_write()?;
        absorb_into(&self.db, wal, &txn)?;
        self.db.commit(txn, 0)?;
        self.db.count_absorption();
        absorbed(&self.db, wal)
    }

    /// Log compaction (§7): records a snapshot taken by the state machine at `index`
    /// (which must be in the log) with the configuration as of `index`, and deletes the
    /// log entries at or below it, `COMPACT_DELETES_PER_TXN_MAX` per transaction. Entries
    /// left by an interrupted compaction are below `first_index`, never read, and deleted
    /// by the next one.
    pub fn compact(&self, group: GroupId, index: LogIndex, conf_state: ConfState) -> Result<()> {
        let storage = RedbStorage::open(Arc::clone(&self.db), group)?;
        {
            let mut wal = self.db.lock_writes();
            // Entries at or below `index` may be in the write-ahead log only: redb must hold
            // them before the deletions below, or a later absorption would bring them back.
            self.absorb(&mut wal)?;
            let cache_arc = self.db.group_cache(group)?;
            let meta = cache_arc.read().expect("group cache poisoned").meta.clone();
            if index <= meta.snapshot.index {
                return Err(StorageError::SnapshotOutOfDate { group, index: index.get() });
            }
            if index > meta.last_index {
                let reason = format!("compact to {index} past the last index");
                return Err(StorageError::InvalidWrite { group, reason });
            }
            let term = storage.term(index).map_err(|e| StorageError::InvalidWrite {
                group,
                reason: format!("term of {index}: {e}"),
            })?;
            let snap = SnapshotMetadata { index, term, conf_state };
            let mut cache = write_cache(&cache_arc);
            let txn = self.db.begin_durable_write()?;
            {
                let mut table =
                    txn.open_table(SNAPSHOT_META).map_err(|e| self.db.err("open", e))?;
                let bytes = encode(self.db.path(), &snap)?;
                table.insert(group.get(), bytes.as_slice()).map_err(|e| self.db.err("write", e))?;
            }
            self.db.commit(txn, 0)?;
            cache.meta.snapshot = snap;
            cache.drop_through(index);
        }
        while self.delete_compacted(group, index)? {}
        Ok(())
    }

    /// Deletes up to `COMPACT_DELETES_PER_TXN_MAX` entries at or below `index`; false when
    /// none was left. It need not absorb the log: `compact` did, and what the log gained
    /// since is above `index` (committed entries are never replaced).
    fn delete_compacted(&self, group: GroupId, index: LogIndex) -> Result<bool> {
        let _ordered = self.db.lock_writes();
        let g = group.get();
        let txn = self.db.begin_durable_write()?;
        let deleted = {
            let mut log = txn.open_table(LOG).map_err(|e| self.db.err("open log", e))?;
            let lowest = log
                .range((g, 0)..=(g, index.get()))
                .map_err(|e| self.db.err("read log", e))?
                .next()
                .transpose()
                .map_err(|e| self.db.err("read log", e))?
                .map(|(k, _)| k.value().1);
            let Some(lo) = lowest else { return Ok(false) };
            let hi = index.get().min(lo.saturating_add(COMPACT_DELETES_PER_TXN_MAX - 1));
            log.retain_in((g, lo)..=(g, hi), |_, _| false)
                .map_err(|e| self.db.err("compact", e))?;
            true
        };
        self.db.commit(txn, 0)?;
        Ok(deleted)
    }

    /// Starts the threaded writer over this writer.
    pub fn spawn(self) -> std::io::Result<ThreadedWriter> {
        ThreadedWriter::spawn(self)
    }
}

fn write_cache(cache: &RwLock<GroupCache>) -> RwLockWriteGuard<'_, GroupCache> {
    cache.write().expect("group cache poisoned")
}

/// Within a transaction: deletes `group`'s entries in the inclusive ranges `delete` (a
/// replaced suffix, a snapshot's whole log), then stores `entries`.
fn write_log(
    db: &NodeDb,
    log: &mut Table<'_, (u64, u64), &'static [u8]>,
    group: GroupId,
    delete: &[(u64, u64)],
    entries: &[Entry],
) -> Result<()> {
    let g = group.get();
    let e = |e| db.err("write log", e);
    for &(lo, hi) in delete {
        log.retain_in((g, lo)..=(g, hi), |_, _| false).map_err(e)?;
    }
    for entry in entries {
        let bytes = encode(db.path(), entry)?;
        log.insert((g, entry.index.get()), bytes.as_slice()).map_err(e)?;
    }
    Ok(())
}

/// The cache of every group `writes` name.
fn caches_of(
    db: &NodeDb,
    writes: &[GroupWrite],
) -> Result<BTreeMap<GroupId, Arc<RwLock<GroupCache>>>> {
    let mut caches = BTreeMap::new();
    for w in writes {
        if let std::collections::btree_map::Entry::Vacant(slot) = caches.entry(w.group) {
            slot.insert(db.group_cache(w.group)?);
        }
    }
    Ok(caches)
}

/// What one pending log write counts against `WAL_PENDING_BYTES_MAX` beside its entries,
/// so that writes of hard states alone are bounded too.
const PENDING_WRITE_OVERHEAD_BYTES: u64 = 64;

/// Whether `writes` go to the write-ahead log: they only append entries and set hard
/// states, and fit one record.
fn goes_to_log(writes: &[GroupWrite]) -> bool {
    let only_log = writes.iter().all(|w| {
        w.snapshot.is_none()
            && w.conf_state.is_none()
            && w.applied_index.is_none()
            && w.mutations.is_empty()
            && w.range.is_none()
            && w.snapshot_data.is_none()
    });
    // Encoded entries are a little larger than `size_bytes`; keep a margin of a quarter.
    only_log && BatchSize::of(writes).bytes <= WAL_RECORD_BYTES_MAX / 4 * 3
}

/// Within `txn`: writes the log writes redb does not hold yet (in their order, with the
/// deletions planned for them) and the log position they reach.
pub(crate) fn absorb_into(db: &NodeDb, wal: &Wal, txn: &WriteTransaction) -> Result<()> {
    if !wal.unabsorbed() {
        return Ok(());
    }
    let path = db.path();
    let e = |e: redb::Error| db.err("absorb log", e);
    let mut log = txn.open_table(LOG).map_err(|x| e(x.into()))?;
    let mut hard_state = txn.open_table(HARD_STATE).map_err(|x| e(x.into()))?;
    for p in &wal.pending {
        write_log(db, &mut log, p.write.group, &p.delete, &p.write.entries)?;
        if let Some(hs) = &p.write.hard_state {
            let bytes = encode(path, hs)?;
            hard_state.insert(p.write.group.get(), bytes.as_slice()).map_err(|x| e(x.into()))?;
        }
    }
    let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
    meta.insert(WAL_ABSORBED_SEQ_KEY, wal.last_seq()).map_err(|x| e(x.into()))?;
    Ok(())
}

/// After the commit of a transaction that ran `absorb_into`: redb holds every group's log.
pub(crate) fn absorbed(db: &NodeDb, wal: &mut Wal) -> Result<()> {
    let groups: std::collections::BTreeSet<GroupId> =
        wal.pending.iter().map(|p| p.write.group).collect();
    wal.absorbed();
    for group in groups {
        let cache = db.group_cache(group)?;
        write_cache(&cache).mark_absorbed();
    }
    Ok(())
}

/// At open, before any group cache is used: writes the records of the write-ahead log that
/// redb does not hold into redb, in one transaction, each planned against the state the
/// previous ones left (as when it was first written).
pub(crate) fn replay_wal(db: &NodeDb, records: Vec<(u64, Vec<LogWrite>)>) -> Result<()> {
    let Some(&(last_seq, _)) = records.last() else { return Ok(()) };
    let mut wal = db.lock_writes();
    let writes: Vec<GroupWrite> = records
        .into_iter()
        .flat_map(|(_, writes)| writes)
        .map(|w| GroupWrite {
            entries: w.entries,
            hard_state: w.hard_state,
            ..GroupWrite::new(w.group)
        })
        .collect();
    let caches = caches_of(db, &writes)?;
    let steps = plan_batch(&caches, &writes).map_err(|e| {
        StorageError::corrupt(wal.path(), format!("write-ahead log does not replay: {e}"))
    })?;
    let txn = db.begin_durable_write()?;
    {
        let mut tables = Tables::open(db, &txn)?;
        for (w, step) in writes.iter().zip(&steps) {
            tables.write(db, w, step)?;
        }
        let mut meta = txn.open_table(META).map_err(|e| db.err("open meta", e))?;
        meta.insert(WAL_ABSORBED_SEQ_KEY, last_seq).map_err(|e| db.err("write log position", e))?;
    }
    db.commit(txn, writes.len())?;
    db.forget_all_groups();
    wal.absorbed();
    tracing::info!(path = %db.path().display(), writes = writes.len(), "write-ahead log replayed");
    Ok(())
}

/// Plans every write of a batch in order, each against the state the previous ones left.
fn plan_batch(
    caches: &BTreeMap<GroupId, Arc<RwLock<GroupCache>>>,
    writes: &[GroupWrite],
) -> Result<Vec<Step>> {
    let mut metas: BTreeMap<GroupId, GroupMeta> = BTreeMap::new();
    let mut steps = Vec::with_capacity(writes.len());
    for w in writes {
        let meta = match metas.get(&w.group) {
            Some(m) => m.clone(),
            None => caches[&w.group].read().expect("group cache poisoned").meta.clone(),
        };
        let step = plan_write(&meta, w)?;
        metas.insert(w.group, step.after.clone());
        steps.push(step);
    }
    Ok(steps)
}

/// Makes the cache show a committed write, and reports it.
fn update_cache(cache: &mut GroupCache, w: &GroupWrite, step: Step) -> GroupDurable {
    if w.snapshot.is_some() {
        cache.clear_entries();
    }
    cache.meta = step.after;
    cache.append_entries(&w.entries);
    GroupDurable {
        group: w.group,
        last_index: cache.meta.last_index,
        hard_state: cache.meta.hard_state,
        applied_index: cache.meta.applied,
    }
}

/// Called on the writer's thread with the answer to one submission: it must only enqueue
/// (the next batch waits for it).
pub type DurableCallback = Box<dyn FnOnce(Result<Vec<GroupDurable>>) + Send>;

/// Where the answer to a submission goes.
enum Answer {
    /// A caller waiting on a `Pending`.
    Channel(SyncSender<Result<Vec<GroupDurable>>>),
    /// A caller that does not wait (a replica actor).
    Callback(DurableCallback),
}

impl Answer {
    fn send(self, result: Result<Vec<GroupDurable>>) {
        match self {
            Answer::Channel(tx) => {
                let _ = tx.send(result);
            }
            Answer::Callback(done) => done(result),
        }
    }
}

/// One caller's writes and where to answer.
struct Submission {
    writes: Vec<GroupWrite>,
    reply: Answer,
}

/// Why `try_submit_then` did not queue its writes; they come back.
#[derive(Debug)]
pub enum Refused {
    /// `WRITER_QUEUE_SUBMISSIONS_MAX` submissions are queued: retry later.
    Full(Vec<GroupWrite>),
    Stopped(Vec<GroupWrite>),
}

/// The group-commit writer on its own thread: submissions queue in a bounded channel
/// (`WRITER_QUEUE_SUBMISSIONS_MAX`); the thread drains whatever is queued into one batch
/// (up to the batch bounds; the submission that does not fit opens the next batch, so none
/// waits more than one batch), commits it with one fsync and answers every submitter.
#[derive(Debug)]
pub struct ThreadedWriter {
    tx: Option<SyncSender<Submission>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission").field("writes", &self.writes.len()).finish()
    }
}

/// The answer to one submission, once its batch is durable (or failed).
#[derive(Debug)]
pub struct Pending(Receiver<Result<Vec<GroupDurable>>>);

impl Pending {
    /// Waits for the answer.
    pub fn wait(self) -> Result<Vec<GroupDurable>> {
        self.0.recv().unwrap_or(Err(StorageError::WriterStopped))
    }
}

impl ThreadedWriter {
    fn spawn(writer: GroupCommitWriter) -> std::io::Result<ThreadedWriter> {
        let (tx, rx) = mpsc::sync_channel(WRITER_QUEUE_SUBMISSIONS_MAX);
        let thread = std::thread::Builder::new()
            .name("shardkv-group-commit".to_string())
            .spawn(move || run_writer(&writer, &rx))?;
        Ok(ThreadedWriter { tx: Some(tx), thread: Some(thread) })
    }

    /// Queues `writes` (blocking while the queue is full: backpressure). They are
    /// written in one transaction, in order.
    pub fn submit(&self, writes: Vec<GroupWrite>) -> Result<Pending> {
        let (reply, answer) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().ok_or(StorageError::WriterStopped)?;
        let submission = Submission { writes, reply: Answer::Channel(reply) };
        tx.send(submission).map_err(|_| StorageError::WriterStopped)?;
        Ok(Pending(answer))
    }

    /// Queues `writes` if the queue has room; `Ok(None)` when it is full.
    pub fn try_submit(&self, writes: Vec<GroupWrite>) -> Result<Option<Pending>> {
        let (reply, answer) = mpsc::sync_channel(1);
        let tx = self.tx.as_ref().ok_or(StorageError::WriterStopped)?;
        match tx.try_send(Submission { writes, reply: Answer::Channel(reply) }) {
            Ok(()) => Ok(Some(Pending(answer))),
            Err(TrySendError::Full(_)) => Ok(None),
            Err(TrySendError::Disconnected(_)) => Err(StorageError::WriterStopped),
        }
    }

    /// Queues `writes` if the queue has room, never blocking; `done` is called on the
    /// writer's thread once they are durable (or failed). Answers to the submissions of
    /// one caller come in submission order.
    pub fn try_submit_then(
        &self,
        writes: Vec<GroupWrite>,
        done: DurableCallback,
    ) -> std::result::Result<(), Refused> {
        let Some(tx) = self.tx.as_ref() else { return Err(Refused::Stopped(writes)) };
        match tx.try_send(Submission { writes, reply: Answer::Callback(done) }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(s)) => Err(Refused::Full(s.writes)),
            Err(TrySendError::Disconnected(s)) => Err(Refused::Stopped(s.writes)),
        }
    }

    /// Submits and waits.
    pub fn write(&self, writes: Vec<GroupWrite>) -> Result<Vec<GroupDurable>> {
        self.submit(writes)?.wait()
    }
}

impl Drop for ThreadedWriter {
    /// Lets the thread finish what is queued, then joins it.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: one batch per loop, until every sender is gone.
fn run_writer(writer: &GroupCommitWriter, rx: &Receiver<Submission>) {
    let mut carried: Option<Submission> = None;
    loop {
        let first = match carried.take() {
            Some(s) => s,
            None => match rx.recv() {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let mut size = BatchSize::of(&first.writes);
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            let grown = size.plus(BatchSize::of(&next.writes));
            if !grown.fits() {
                carried = Some(next);
                break;
            }
            size = grown;
            batch.push(next);
        }
        commit_submissions(writer, batch);
    }
}

/// Commits a batch of submissions and answers each, in order. If the batch fails, each
/// submission is retried alone, so that one invalid submission fails only its own caller.
fn commit_submissions(writer: &GroupCommitWriter, batch: Vec<Submission>) {
    // The writes are moved, not cloned, into one slice; each submission keeps its count.
    let mut writes = Vec::with_capacity(batch.iter().map(|s| s.writes.len()).sum());
    let mut replies = Vec::with_capacity(batch.len());
    for s in batch {
        replies.push((s.writes.len(), s.reply));
        writes.extend(s.writes);
    }
    match writer.commit_one(&writes) {
        Ok(durable) => {
            let mut durable = durable.into_iter();
            for (count, reply) in replies {
                reply.send(Ok(durable.by_ref().take(count).collect()));
            }
        }
        Err(err) if replies.len() == 1 => {
            if let Some((_, reply)) = replies.pop() {
                reply.send(Err(err));
            }
        }
        Err(_) => {
            let mut start = 0;
            for (count, reply) in replies {
                reply.send(writer.commit_one(&writes[start..start + count]));
                start += count;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::raft::{EntryPayload, Term};
    use crate::storage::conformance::entries;

    fn open() -> (tempfile::TempDir, GroupCommitWriter) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(NodeDb::open(dir.path().join("node.redb")).expect("open"));
        (dir, GroupCommitWriter::new(db))
    }

    fn append(group: u64, from: u64, to: u64) -> GroupWrite {
        GroupWrite { entries: entries(from, to, 1), ..GroupWrite::new(GroupId(group)) }
    }

    #[test]
    fn one_fsync_per_batch_whatever_the_group_count() {
        let (_dir, writer) = open();
        for groups in [1u64, 16, 64, 256] {
            let before = writer.db().fsync_count();
            let writes: Vec<GroupWrite> = (1..=groups).map(|g| append(g, 1, 4)).collect();
            let durable = writer.write_batch(&writes).expect("write");
            assert_eq!(writer.db().fsync_count() - before, 1, "{groups} groups");
            assert!(durable.iter().all(|d| d.last_index >= LogIndex(4)));
            for g in 1..=groups {
                let more = GroupWrite { entries: entries(5, 5, 1), ..GroupWrite::new(GroupId(g)) };
                writer.write_batch(&[more]).expect("write");
            }
        }
    }

    #[test]
    fn batches_are_cut_at_the_entry_bound() {
        let (_dir, writer) = open();
        let per_group = 1000;
        let groups = (BATCH_ENTRIES_MAX / per_group + 2) as u64;
        let writes: Vec<GroupWrite> =
            (1..=groups).map(|g| append(g, 1, per_group as u64)).collect();
        let before = writer.db().fsync_count();
        let durable = writer.write_batch(&writes).expect("write");
        assert_eq!(durable.len(), writes.len());
        assert_eq!(writer.db().fsync_count() - before, 2, "one item moved to the next batch");
    }

    #[test]
    fn mutations_applied_index_and_hard_state_commit_together() {
        let (_dir, writer) = open();
        let hs = HardState { term: Term(3), commit_index: LogIndex(2), ..HardState::default() };
        let w = GroupWrite {
            hard_state: Some(hs),
            applied_index: Some(LogIndex(2)),
            mutations: vec![
                KvMutation::Put { slot: 9, key: Bytes::from("k"), record: Bytes::from("v") },
                KvMutation::Put { slot: 9, key: Bytes::from("gone"), record: Bytes::from("x") },
                KvMutation::Delete { slot: 9, key: Bytes::from("gone") },
                KvMutation::PutSession { client_id: 77, record: Bytes::from("s") },
            ],
            ..append(5, 1, 2)
        };
        let durable = writer.write_batch(&[w]).expect("write");
        let expected = GroupDurable {
            group: GroupId(5),
            last_index: LogIndex(2),
            hard_state: hs,
            applied_index: LogIndex(2),
        };
        assert_eq!(durable, vec![expected]);
        let txn = writer.db().begin_read().expect("read");
        let kv = txn.open_table(KV).expect("kv");
        let k: &[u8] = b"k";
        assert_eq!(
            kv.get((9u16, k)).expect("get").map(|v| v.value().to_vec()),
            Some(b"v".to_vec())
        );
        let gone: &[u8] = b"gone";
        assert!(kv.get((9u16, gone)).expect("get").is_none());
        let sessions = txn.open_table(SESSIONS).expect("sessions");
        assert!(sessions.get((5u64, 77u64)).expect("get").is_some());
    }

    #[test]
    fn an_invalid_write_fails_its_batch_and_writes_nothing() {
        let (_dir, writer) = open();
        writer.write_batch(&[append(1, 1, 3)]).expect("write");
        let before = writer.db().fsync_count();
        let err = writer.write_batch(&[append(2, 1, 3), append(1, 6, 7)]).expect_err("gap");
        assert!(matches!(err, StorageError::InvalidWrite { group: GroupId(1), .. }), "{err}");
        assert_eq!(writer.db().fsync_count(), before);
        let g2 = RedbStorage::open(Arc::clone(writer.db()), GroupId(2)).expect("storage");
        assert_eq!(g2.last_index(), Ok(LogIndex(0)));
    }

    #[test]
    fn threaded_writer_answers_every_submitter_and_isolates_a_bad_one() {
        let (_dir, writer) = open();
        let db = Arc::clone(writer.db());
        let threaded = Arc::new(writer.spawn().expect("spawn"));
        let submitters: Vec<_> = (1..=8u64)
            .map(|g| {
                let threaded = Arc::clone(&threaded);
                std::thread::spawn(move || {
                    for i in 1..=50u64 {
                        let d = threaded.write(vec![append(g, i, i)]).expect("write");
                        assert_eq!(d[0].last_index, LogIndex(i));
                    }
                })
            })
            .collect();
        let bad = threaded.write(vec![append(100, 5, 5)]);
        assert!(matches!(bad, Err(StorageError::InvalidWrite { .. })));
        for s in submitters {
            s.join().expect("submitter");
        }
        for g in 1..=8u64 {
            let s = RedbStorage::open(Arc::clone(&db), GroupId(g)).expect("storage");
            assert_eq!(s.last_index(), Ok(LogIndex(50)));
            let e = s.entries(LogIndex(1), LogIndex(2), u64::MAX).expect("entries");
            assert!(matches!(e[0].payload, EntryPayload::Normal(_)));
        }
        assert!(db.fsync_count() <= 8 * 50 + 1, "batches shared fsyncs: {}", db.fsync_count());
    }

    fn reopen(dir: &tempfile::TempDir, writer: GroupCommitWriter) -> GroupCommitWriter {
        drop(writer);
        let db = Arc::new(NodeDb::open(dir.path().join("node.redb")).expect("reopen"));
        GroupCommitWriter::new(db)
    }

    fn log_of(writer: &GroupCommitWriter, group: u64) -> (LogIndex, Vec<Entry>, HardState) {
        let s = RedbStorage::open(Arc::clone(writer.db()), GroupId(group)).expect("storage");
        let (first, last) = (s.first_index().expect("first"), s.last_index().expect("last"));
        let log = s.entries(first, last.next(), u64::MAX).expect("entries");
        (first, log, s.hard_state())
    }

    #[test]
    fn log_writes_live_in_the_write_ahead_log_and_survive_a_reopen() {
        let (dir, writer) = open();
        let hs = HardState { term: Term(2), commit_index: LogIndex(3), ..HardState::default() };
        writer.write_batch(&[append(1, 1, 5), append(2, 1, 2)]).expect("write");
        let truncate = GroupWrite {
            entries: entries(4, 6, 2),
            hard_state: Some(hs),
            ..GroupWrite::new(GroupId(1))
        };
        writer.write_batch(&[truncate]).expect("truncate and append");
        {
            let wal = writer.db().lock_writes();
            assert_eq!(wal.pending.len(), 3, "nothing reached redb");
            assert_eq!(wal.last_seq(), 2);
        }
        let before = log_of(&writer, 1);
        let writer = reopen(&dir, writer);
        let after = log_of(&writer, 1);
        assert_eq!(after, before);
        assert_eq!(after.1.iter().map(|e| e.term.get()).collect::<Vec<_>>(), vec![1, 1, 1, 2, 2, 2]);
        assert_eq!(after.2, hs);
        assert_eq!(log_of(&writer, 2).1, entries(1, 2, 1));
        assert!(writer.db().lock_writes().pending.is_empty(), "replayed into redb at open");
        // Appends go on after the replayed records, and survive another reopen.
        writer.write_batch(&[append(2, 3, 4)]).expect("write after replay");
        assert_eq!(writer.db().lock_writes().last_seq(), 3);
        let writer = reopen(&dir, writer);
        assert_eq!(log_of(&writer, 2).1, entries(1, 4, 1));
        assert_eq!(log_of(&writer, 1), before);
    }

    #[test]
    fn a_redb_transaction_absorbs_the_log_before_its_own_writes() {
        let (dir, writer) = open();
        writer.write_batch(&[append(1, 1, 3)]).expect("log write");
        let applied = GroupWrite { applied_index: Some(LogIndex(2)), ..GroupWrite::new(GroupId(1)) };
        let before = writer.db().fsync_count();
        writer.write_batch(&[append(2, 1, 1), applied]).expect("redb write");
        assert_eq!(writer.db().fsync_count() - before, 1, "absorbed in the same commit");
        assert!(writer.db().lock_writes().pending.is_empty());
        let txn = writer.db().begin_read().expect("read");
        let meta = txn.open_table(META).expect("meta");
        let seq = meta.get(WAL_ABSORBED_SEQ_KEY).expect("get").map(|v| v.value());
        assert_eq!(seq, Some(1));
        let log = txn.open_table(LOG).expect("log");
        assert_eq!(log.range((1u64, 0u64)..=(1u64, u64::MAX)).expect("range").count(), 3);
        drop((log, meta, txn));
        let writer = reopen(&dir, writer);
        assert_eq!(log_of(&writer, 1).1, entries(1, 3, 1));
        assert_eq!(log_of(&writer, 2).1, entries(1, 1, 1));
    }

    #[test]
    fn compaction_and_removal_absorb_the_log_first() {
        let (dir, writer) = open();
        writer.write_batch(&[append(1, 1, 100), append(3, 1, 10)]).expect("write");
        writer.compact(GroupId(1), LogIndex(50), ConfState::default()).expect("compact");
        crate::storage::destroy::destroy_group(writer.db(), GroupId(3), None).expect("destroy");
        writer.write_batch(&[append(1, 101, 101)]).expect("write after");
        let writer = reopen(&dir, writer);
        let (first, log, _) = log_of(&writer, 1);
        assert_eq!(first, LogIndex(51));
        assert_eq!(log, entries(51, 101, 1));
        assert_eq!(log_of(&writer, 3).1, vec![], "a removed group's log never comes back");
        assert!(!writer.db().group_ids().expect("ids").contains(&GroupId(3)));
    }

    #[test]
    fn pending_log_writes_are_absorbed_past_their_bound() {
        let (_dir, writer) = open();
        const MIB: u64 = 1024 * 1024;
        let big = Bytes::from(vec![1u8; MIB as usize]);
        let mut next = 0;
        let mut write_one = || {
            next += 1;
            let payload = EntryPayload::Normal(big.clone());
            let e = Entry { term: Term(1), index: LogIndex(next), payload };
            writer.write_batch(&[GroupWrite { entries: vec![e], ..GroupWrite::new(GroupId(1)) }])
                .expect("write");
        };
        // Half the bound, then the whole bound again: more than it holds.
        for _ in 0..(WAL_PENDING_BYTES_MAX / MIB / 2 + WAL_PENDING_BYTES_MAX / MIB) {
            write_one();
        }
        let pending = writer.db().lock_writes().pending_bytes;
        assert!(pending <= WAL_PENDING_BYTES_MAX, "pending {pending}");
        let s = RedbStorage::open(Arc::clone(writer.db()), GroupId(1)).expect("storage");
        assert_eq!(s.entries(LogIndex(1), LogIndex(2), u64::MAX).expect("oldest").len(), 1);
    }

    /// Readers racing truncations (deep below the cached window) and compactions always
    /// see one committed log: contiguous, terms never decreasing, each entry whole.
    #[test]
    fn readers_never_see_a_mix_of_two_logs() {
        let (_dir, writer) = open();
        let g = GroupId(1);
        writer.write_batch(&[append(1, 1, 1500)]).expect("prefill");
        let storage = RedbStorage::open(Arc::clone(writer.db()), g).expect("storage");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (storage, stop) = (storage.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (first, last) = (storage.first_index(), storage.last_index());
                    let (Ok(first), Ok(last)) = (first, last) else { continue };
                    let Ok(log) = storage.entries(first, last.next(), u64::MAX) else { continue };
                    for pair in log.windows(2) {
                        assert_eq!(pair[1].index, pair[0].index.next(), "contiguous");
                        assert!(pair[1].term >= pair[0].term, "one log, not a mix");
                    }
                    for e in &log {
                        assert_eq!(
                            e,
                            &crate::storage::conformance::entry(e.index.get(), e.term.get())
                        );
                    }
                    reads += 1;
                }
                reads
            })
        };
        let mut last = 1500u64;
        for round in 2..150u64 {
            // Down to 1099 entries back: below the 1024 cached ones at times.
            let from = last - round * 37 % 1100;
            let w = GroupWrite { entries: entries(from, from + 1099, round), ..GroupWrite::new(g) };
            writer.write_batch(&[w]).expect("truncate and append");
            last = from + 1099;
            if round % 10 == 0 {
                let index = storage.first_index().expect("first").plus(50);
                writer.compact(g, index, ConfState::default()).expect("compact");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().expect("reader") > 0);
    }
}
