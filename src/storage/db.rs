//! `NodeDb`: the one redb database of a node, shared by every group on it.
//!
//! Owns: opening (and refusing) the file, the format version, the node-wide write lock that
//! orders commits with the updates of the in-memory group caches (it guards the
//! write-ahead log, `<file>.wal`, opened and replayed here), the fsync counter, and the
//! registry of group caches (one `Arc<RwLock<GroupCache>>` per group, shared by that
//! group's `RedbStorage` and the writer).
//!
//! Must never: overwrite, truncate or "repair" a file that is not a shardkv database of
//! this format version. The only write before the format check is redb's own crash
//! recovery of a redb file that was not shut down cleanly, which restores its last commit.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use redb::{
    Builder, Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    TableError, WriteTransaction,
};

use crate::kv::range::GroupRange;
use crate::raft::GroupId;
use crate::storage::codec::decode;
use crate::storage::error::{Result, StorageError};
use crate::storage::limits::DB_PAGE_CACHE_BYTES_MAX;
use crate::storage::log_store::{load_group_cache, GroupCache};
use crate::storage::wal::{wal_path, Wal};
use crate::storage::tables::{
    APPLIED, CONF_STATE, GROUP_RANGE, HARD_STATE, KV, LOG, META, REMOVED_GROUPS, SESSIONS,
    SNAPSHOT_META,
};

/// The on-disk format this build reads and writes. 2: log appends may be in the write-ahead
/// log beside the file (`<file>.wal`), which a build of version 1 would ignore.
pub const FORMAT_VERSION: u64 = 2;
/// An older format this build opens and upgrades (stamping `FORMAT_VERSION`).
const FORMAT_VERSION_UPGRADED: u64 = 1;
/// The META key holding the format version.
pub const FORMAT_VERSION_KEY: &str = "format_version";
/// The META key holding the sequence number of the last write-ahead log record whose
/// writes redb holds (written by every transaction that absorbs the log).
pub const WAL_ABSORBED_SEQ_KEY: &str = "wal_absorbed_seq";
/// The META key holding the database's incarnation: a random, non-zero number drawn when
/// the database is created (or first opened by a build that has them), which tells this
/// data directory from any earlier or later one of the same node (`transport::identity`).
pub const INCARNATION_KEY: &str = "incarnation";
/// The first bytes of every redb file (redb's `MAGICNUMBER`).
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Told of each durable commit: how long it took and how many group writes it carried.
/// Runs on the writer's thread: it must only update counters.
pub type CommitObserver = Box<dyn Fn(std::time::Duration, usize) + Send + Sync>;

/// The database of one node.
pub struct NodeDb {
    db: Database,
    path: PathBuf,
    /// Durable commits (each one fsync) since open.
    fsyncs: AtomicU64,
    /// Of those, transactions that only absorbed the write-ahead log (past its bound).
    absorptions: AtomicU64,
    /// Told the duration and the group writes of every durable commit (metrics).
    commit_observer: std::sync::OnceLock<CommitObserver>,
    /// The write-ahead log, and the node-wide write lock: held from the start of a write
    /// (a log append or a redb transaction) until the group caches reflect it, so that
    /// caches change in commit order.
    wal: Mutex<Wal>,
    caches: Mutex<BTreeMap<GroupId, Arc<RwLock<GroupCache>>>>,
    incarnation: u64,
}

impl std::fmt::Debug for NodeDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDb").field("path", &self.path).finish_non_exhaustive()
    }
}

impl NodeDb {
    /// Opens the node's database at `path`, creating and stamping it if the path does not
    /// exist. An existing file must be a shardkv database of `FORMAT_VERSION`; anything
    /// else is an error naming the file, and the file is left as it was.
    pub fn open(path: impl AsRef<Path>) -> Result<NodeDb> {
        let path = path.as_ref().to_path_buf();
        let log_path = wal_path(&path);
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if fs::symlink_metadata(&log_path).is_ok() {
                    let reason = "a write-ahead log without its database; move it away to start \
                                  empty";
                    return Err(StorageError::corrupt(&log_path, reason));
                }
                create_stamped(&path)?
            }
            Err(e) => return Err(io_err(&path, "stat", e)),
        }
        let db = open_existing(&path)?;
        upgrade_format(&db, &path)?;
        let incarnation = ensure_incarnation(&db, &path)?;
        let absorbed_seq = read_absorbed_seq(&db, &path)?;
        let (wal, replay) = Wal::open(log_path, absorbed_seq)?;
        let node_db = NodeDb {
            db,
            path,
            fsyncs: AtomicU64::new(0),
            absorptions: AtomicU64::new(0),
            commit_observer: std::sync::OnceLock::new(),
            wal: Mutex::new(wal),
            caches: Mutex::new(BTreeMap::new()),
            incarnation,
        };
        crate::storage::writer::replay_wal(&node_db, replay)?;
        Ok(node_db)
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This database's incarnation (`INCARNATION_KEY`): the same across restarts, another
    /// for a new database of the same node.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Durable commits (fsyncs) made through this handle since it was opened.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Transactions that only absorbed the write-ahead log into redb (each one fsync, also
    /// counted by `fsync_count`), since open.
    pub fn absorption_count(&self) -> u64 {
        self.absorptions.load(Ordering::Relaxed)
    }

    pub(crate) fn count_absorption(&self) {
        self.absorptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls `observer` after every durable commit with its duration and the number of
    /// group writes it carried. The first observer set stays.
    pub fn observe_commits(&self, observer: CommitObserver) {
        let _ = self.commit_observer.set(observer);
    }

    /// Groups that have any Raft state on this node (hard state, configuration or snapshot).
    pub fn group_ids(&self) -> Result<Vec<GroupId>> {
        let txn = self.begin_read()?;
        let mut ids = std::collections::BTreeSet::new();
        for def in [HARD_STATE, CONF_STATE, SNAPSHOT_META] {
            let table = txn.open_table(def).map_err(|e| self.err("open table", e))?;
            for item in table.iter().map_err(|e| self.err("scan groups", e))? {
                let (k, _) = item.map_err(|e| self.err("scan groups", e))?;
                ids.insert(GroupId(k.value()));
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// Whether this node's replica of `group` was removed and deleted (see
    /// `tables::REMOVED_GROUPS`).
    pub fn is_removed(&self, group: GroupId) -> Result<bool> {
        let txn = self.begin_read()?;
        let table = match txn.open_table(REMOVED_GROUPS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(false),
            Err(e) => return Err(self.err("open removed groups", e)),
        };
        let found = table.get(group.get()).map_err(|e| self.err("read removed groups", e))?;
        Ok(found.is_some())
    }

    /// The slots `group` owns as its last durable split left them; `None` if it never
    /// split and was not made by a split (its layout range holds).
    pub fn group_range(&self, group: GroupId) -> Result<Option<GroupRange>> {
        let txn = self.begin_read()?;
        let table = match txn.open_table(GROUP_RANGE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err("open group ranges", e)),
        };
        let Some(bytes) = table.get(group.get()).map_err(|e| self.err("read group range", e))?
        else {
            return Ok(None);
        };
        decode(&self.path, group, "group range", bytes.value()).map(Some)
    }

    /// The shared cache of `group`, loaded from disk on first use.
    pub(crate) fn group_cache(&self, group: GroupId) -> Result<Arc<RwLock<GroupCache>>> {
        let mut caches = self.caches.lock().expect("group cache registry poisoned");
        if let Some(cache) = caches.get(&group) {
            return Ok(Arc::clone(cache));
        }
        let cache = Arc::new(RwLock::new(load_group_cache(self, group)?));
        caches.insert(group, Arc::clone(&cache));
        Ok(cache)
    }

    /// Drops the cache of a group whose state was deleted (the next use reloads it).
    pub(crate) fn forget_group(&self, group: GroupId) {
        self.caches.lock().expect("group cache registry poisoned").remove(&group);
    }

    /// Takes the node-wide write lock, with the write-ahead log it guards (see the field).
    pub(crate) fn lock_writes(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().expect("node write lock poisoned")
    }

    /// Forgets every group cache (the next use of each reloads it from redb).
    pub(crate) fn forget_all_groups(&self) {
        self.caches.lock().expect("group cache registry poisoned").clear();
    }

    /// Counts a durable write that was not a redb commit (a write-ahead log append).
    pub(crate) fn count_durable(&self, started: std::time::Instant, group_writes: usize) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        if let Some(observe) = self.commit_observer.get() {
            observe(started.elapsed(), group_writes);
        }
    }

    /// A write transaction whose commit is durable when it returns.
    pub(crate) fn begin_durable_write(&self) -> Result<WriteTransaction> {
        begin_durable(&self.db, &self.path)
    }

    /// Commits `txn` (one fsync, carrying `group_writes` group writes) and counts it.
    pub(crate) fn commit(&self, txn: WriteTransaction, group_writes: usize) -> Result<()> {
        let started = std::time::Instant::now();
        txn.commit().map_err(|e| self.err("commit", e))?;
        self.count_durable(started, group_writes);
        Ok(())
    }

    pub(crate) fn begin_read(&self) -> Result<ReadTransaction> {
        self.db.begin_read().map_err(|e| self.err("begin read", e))
    }

    /// A redb error met doing `op` on this file.
    pub(crate) fn err(&self, op: &'static str, e: impl Into<redb::Error>) -> StorageError {
        StorageError::redb(&self.path, op, e)
    }
}

fn io_err(path: &Path, op: &'static str, e: std::io::Error) -> StorageError {
    StorageError::Io { path: path.to_path_buf(), op, detail: e.to_string() }
}

fn builder() -> Builder {
    let mut builder = Builder::new();
    builder.set_cache_size(DB_PAGE_CACHE_BYTES_MAX);
    builder
}

/// Creates a new database next to `path`, stamps it, and moves it into place, so that a
/// crash during creation never leaves a half-made file under the real name.
fn create_stamped(path: &Path) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".creating");
    let tmp = PathBuf::from(tmp);
    // The ".creating" file is only ever ours: a leftover is an interrupted creation.
    if tmp.exists() {
        fs::remove_file(&tmp).map_err(|e| io_err(&tmp, "remove interrupted creation", e))?;
    }
    // `create_new` so that two openers never build the same file at once.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| io_err(&tmp, "create", e))?;
    let db = builder().create(&tmp).map_err(|e| StorageError::redb(&tmp, "create", e))?;
    stamp(&db, &tmp)?;
    db.close().map_err(|e| StorageError::redb(&tmp, "close", e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, "rename new database", e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, "sync directory", e))?;
    }
    Ok(())
}

/// Creates every table and writes the format version, durably.
fn stamp(db: &Database, path: &Path) -> Result<()> {
    let err = |op, e: redb::Error| StorageError::redb(path, op, e);
    let txn = begin_durable(db, path)?;
    write_format_version(&txn, path)?;
    {
        txn.open_table(HARD_STATE).map_err(|e| err("create table", e.into()))?;
        txn.open_table(CONF_STATE).map_err(|e| err("create table", e.into()))?;
        txn.open_table(LOG).map_err(|e| err("create table", e.into()))?;
        txn.open_table(SNAPSHOT_META).map_err(|e| err("create table", e.into()))?;
        txn.open_table(APPLIED).map_err(|e| err("create table", e.into()))?;
        txn.open_table(KV).map_err(|e| err("create table", e.into()))?;
        txn.open_table(SESSIONS).map_err(|e| err("create table", e.into()))?;
    }
    txn.commit().map_err(|e| err("commit stamp", e.into()))
}

/// Opens an existing file, checking before any write that it is ours.
fn open_existing(path: &Path) -> Result<Database> {
    check_header(path)?;
    // Check the format through a read-only handle first: it never writes. A file that
    // was not shut down cleanly needs redb's recovery, which a read-only open refuses; that
    // file is checked right after the recovery instead.
    let checked = guard_panic(path, || match builder().open_read_only(path) {
        Ok(ro) => check_format(&ro, path).map(|()| true),
        Err(DatabaseError::RepairAborted) => Ok(false),
        Err(e) => Err(StorageError::redb(path, "open read-only", e)),
    })?;
    let db = guard_panic(path, || {
        builder().open(path).map_err(|e| StorageError::redb(path, "open", e))
    })?;
    if !checked {
        check_format(&db, path)?;
    }
    Ok(db)
}

/// redb documents that opening a file damaged outside redb may panic; turn that into an
/// error naming the file.
fn guard_panic<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".to_string());
        Err(StorageError::corrupt(path, format!("redb failed reading the file: {what}")))
    })
}

/// Refuses files that are empty, too short, or do not start with redb's magic number.
fn check_header(path: &Path) -> Result<()> {
    let mut file = File::open(path).map_err(|e| io_err(path, "open", e))?;
    let mut head = [0u8; REDB_MAGIC.len()];
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(io_err(path, "read header", e)),
        }
    }
    if read == 0 {
        return Err(StorageError::corrupt(path, "empty file"));
    }
    if head[..read] != REDB_MAGIC[..read] {
        return Err(StorageError::NotShardkv {
            path: path.to_path_buf(),
            reason: "no redb header".to_string(),
        });
    }
    if read < head.len() {
        return Err(StorageError::corrupt(path, format!("truncated to {read} bytes")));
    }
    Ok(())
}

/// Stamps `FORMAT_VERSION` on a file of `FORMAT_VERSION_UPGRADED` (before its first
/// write-ahead log record), so that an older build refuses it from then on.
fn upgrade_format(db: &Database, path: &Path) -> Result<()> {
    let err = |op, e: redb::Error| StorageError::redb(path, op, e);
    let found = {
        let txn = db.begin_read().map_err(|e| err("begin read", e.into()))?;
        let meta = txn.open_table(META).map_err(|e| err("open meta", e.into()))?;
        let v = meta.get(FORMAT_VERSION_KEY).map_err(|e| err("read format version", e.into()))?;
        v.map(|v| v.value())
    };
    if found != Some(FORMAT_VERSION_UPGRADED) {
        return Ok(());
    }
    let txn = begin_durable(db, path)?;
    write_format_version(&txn, path)?;
    txn.commit().map_err(|e| err("commit format version", e.into()))
}

/// The database's incarnation; one is drawn and stored durably if it has none yet (a new
/// database, or one made by a build without incarnations).
fn ensure_incarnation(db: &Database, path: &Path) -> Result<u64> {
    let err = |op, e: redb::Error| StorageError::redb(path, op, e);
    {
        let txn = db.begin_read().map_err(|e| err("begin read", e.into()))?;
        let meta = txn.open_table(META).map_err(|e| err("open meta", e.into()))?;
        let v = meta.get(INCARNATION_KEY).map_err(|e| err("read incarnation", e.into()))?;
        if let Some(v) = v.map(|v| v.value()).filter(|v| *v != 0) {
            return Ok(v);
        }
    }
    let mut bytes = [0u8; 8];
    let incarnation = loop {
        getrandom::fill(&mut bytes).map_err(|e| StorageError::Io {
            path: path.to_path_buf(),
            op: "draw an incarnation",
            detail: e.to_string(),
        })?;
        let v = u64::from_le_bytes(bytes);
        if v != 0 {
            break v;
        }
    };
    let txn = begin_durable(db, path)?;
    {
        let mut meta = txn.open_table(META).map_err(|e| err("open meta", e.into()))?;
        meta.insert(INCARNATION_KEY, incarnation)
            .map_err(|e| err("write incarnation", e.into()))?;
    }
    txn.commit().map_err(|e| err("commit incarnation", e.into()))?;
    Ok(incarnation)
}

/// A write transaction on `db` whose commit is durable when it returns.
fn begin_durable(db: &Database, path: &Path) -> Result<WriteTransaction> {
    let mut txn = db.begin_write().map_err(|e| StorageError::redb(path, "begin write", e))?;
    // Group commit: one fsync per batch, and a batch is acknowledged only once durable.
    txn.set_durability(Durability::Immediate).map_err(|e| StorageError::Io {
        path: path.to_path_buf(),
        op: "set durability",
        detail: e.to_string(),
    })?;
    Ok(txn)
}

/// Within `txn`: stamps `FORMAT_VERSION`.
fn write_format_version(txn: &WriteTransaction, path: &Path) -> Result<()> {
    let err = |op, e: redb::Error| StorageError::redb(path, op, e);
    let mut meta = txn.open_table(META).map_err(|e| err("open meta", e.into()))?;
    meta.insert(FORMAT_VERSION_KEY, FORMAT_VERSION)
        .map_err(|e| err("stamp format version", e.into()))?;
    Ok(())
}

/// The last write-ahead log record redb holds (`WAL_ABSORBED_SEQ_KEY`; 0: none).
fn read_absorbed_seq(db: &Database, path: &Path) -> Result<u64> {
    let txn = db.begin_read().map_err(|e| StorageError::redb(path, "begin read", e))?;
    let meta = txn.open_table(META).map_err(|e| StorageError::redb(path, "open meta", e))?;
    let seq = meta
        .get(WAL_ABSORBED_SEQ_KEY)
        .map_err(|e| StorageError::redb(path, "read log position", e))?
        .map_or(0, |v| v.value());
    Ok(seq)
}

/// Checks the META table's format version.
fn check_format(db: &impl ReadableDatabase, path: &Path) -> Result<()> {
    let not_ours = |reason: &str| StorageError::NotShardkv {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let txn = db.begin_read().map_err(|e| StorageError::redb(path, "begin read", e))?;
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => return Err(not_ours("no meta table")),
        Err(TableError::TableTypeMismatch { .. }) => {
            return Err(not_ours("meta table of another type"))
        }
        Err(e) => return Err(StorageError::redb(path, "open meta", e)),
    };
    let found = meta
        .get(FORMAT_VERSION_KEY)
        .map_err(|e| StorageError::redb(path, "read format version", e))?
        .map(|v| v.value())
        .ok_or_else(|| not_ours("no format version"))?;
    if found != FORMAT_VERSION && found != FORMAT_VERSION_UPGRADED {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            expected: FORMAT_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("node.redb")
    }

    /// Opens `path`, expects `check` to accept the error, and the file to be unchanged.
    fn refused(path: &Path, check: impl Fn(&StorageError) -> bool) {
        let before = fs::read(path).expect("read file");
        let err = NodeDb::open(path).expect_err("open must fail");
        assert!(check(&err), "unexpected error: {err}");
        assert!(err.to_string().contains(&path.display().to_string()), "names the file: {err}");
        assert_eq!(fs::read(path).expect("read file"), before, "file left as it was");
    }

    #[test]
    fn new_path_is_created_and_stamped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = new_path(&dir);
        let db = NodeDb::open(&path).expect("create");
        let incarnation = db.incarnation();
        assert_ne!(incarnation, 0);
        drop(db);
        let db = NodeDb::open(&path).expect("reopen");
        assert_eq!(db.group_ids(), Ok(vec![]));
        assert_eq!(db.incarnation(), incarnation, "a restart keeps the incarnation");
        let other = NodeDb::open(dir.path().join("other.redb")).expect("create another");
        assert_ne!(other.incarnation(), incarnation, "a new database draws another");
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".creating");
        assert!(!PathBuf::from(tmp).exists());
    }

    #[test]
    fn refuses_a_file_that_is_not_redb() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = new_path(&dir);
        fs::write(&path, b"*1\r\n$4\r\nPING\r\n and more text that is not a database").unwrap();
        refused(&path, |e| matches!(e, StorageError::NotShardkv { .. }));
    }

    #[test]
    fn refuses_an_empty_or_truncated_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = new_path(&dir);
        fs::write(&path, b"").unwrap();
        refused(&path, |e| matches!(e, StorageError::Corrupt { .. }));
        fs::write(&path, &REDB_MAGIC[..5]).unwrap();
        refused(&path, |e| matches!(e, StorageError::Corrupt { .. }));
        let full_path = dir.path().join("full.redb");
        drop(NodeDb::open(&full_path).expect("create"));
        let full = fs::read(&full_path).expect("read");
        for len in [64, 512, full.len() / 2] {
            fs::write(&path, &full[..len]).unwrap();
            refused(&path, |e| matches!(e, StorageError::Corrupt { .. } | StorageError::Io { .. }));
        }
    }

    #[test]
    fn refuses_a_redb_file_without_shardkv_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = new_path(&dir);
        let other: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("other");
        let db = Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        txn.open_table(other).expect("table").insert(1, 2).expect("insert");
        txn.commit().expect("commit");
        drop(db);
        refused(&path, |e| matches!(e, StorageError::NotShardkv { .. }));
    }

    #[test]
    fn refuses_another_format_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = new_path(&dir);
        drop(NodeDb::open(&path).expect("create"));
        let db = Database::open(&path).expect("open");
        let txn = db.begin_write().expect("write");
        let next = FORMAT_VERSION + 1;
        txn.open_table(META).expect("meta").insert(FORMAT_VERSION_KEY, next).expect("insert");
        txn.commit().expect("commit");
        drop(db);
        refused(&path, |e| {
            *e == StorageError::UnsupportedVersion {
                path: path.clone(),
                found: FORMAT_VERSION + 1,
                expected: FORMAT_VERSION,
            }
        });
    }

    #[test]
    fn a_version_1_file_opens_and_is_upgraded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = new_path(&dir);
        drop(NodeDb::open(&path).expect("create"));
        let db = Database::open(&path).expect("open");
        let txn = db.begin_write().expect("write");
        txn.open_table(META).expect("meta").insert(FORMAT_VERSION_KEY, 1).expect("insert");
        txn.commit().expect("commit");
        drop(db);
        drop(NodeDb::open(&path).expect("open version 1"));
        let db = Database::open(&path).expect("open");
        let txn = db.begin_read().expect("read");
        let meta = txn.open_table(META).expect("meta");
        let found = meta.get(FORMAT_VERSION_KEY).expect("get").map(|v| v.value());
        assert_eq!(found, Some(FORMAT_VERSION));
    }

    #[test]
    fn refuses_a_second_open_of_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = new_path(&dir);
        let _db = NodeDb::open(&path).expect("create");
        let err = NodeDb::open(&path).expect_err("second open");
        assert!(matches!(err, StorageError::AlreadyOpen { .. }), "{err}");
    }
}
