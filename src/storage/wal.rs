//! The node's write-ahead log of Raft appends: the durable home of log entries and hard
//! states between two redb commits.
//!
//! A Ready that only appends entries and changes the hard state (the replication hot path,
//! on leaders and followers alike) is made durable by one record appended to this file and
//! one `fdatasync`, instead of a redb transaction: a redb commit copies and checksums every
//! B-tree page it touches, one leaf per group at least, and that cost grew with the groups
//! in a batch. The writes stay here, and in memory (`Wal::pending`), until the next redb
//! transaction of the writer absorbs them (see `writer`): any batch with applied state, a
//! configuration, a snapshot or a split, a compaction, a removal, or `WAL_PENDING_BYTES_MAX`
//! pending bytes. That transaction records the sequence number it absorbed through, so a
//! record is replayed after a crash only if redb does not hold it yet.
//!
//! File: `<database file>.wal`, a sequence of records
//! `len: u32 LE | crc: u32 LE | seq: u64 LE | payload`, where `payload` (of `len` bytes) is
//! the rmp-serde encoding of `[LogWrite]` and `crc` the CRC-32C of `seq` and `payload`.
//! Sequence numbers are consecutive within the file. Ahead of the records the file is
//! extended with zeros, `WAL_PREALLOC_BYTES` at a time, so that an append overwrites
//! space the file already has (see `Wal::preallocate`); zeros after the last record are
//! that unwritten space. The file is emptied once everything in it is absorbed and it has
//! grown past `WAL_FILE_BYTES_MAX`.
//!
//! A record is appended only after the previous one was synced, so only the last record
//! can be torn by a crash: a damaged last record (short, zeros, or a bad checksum, with no
//! valid record after it; see `parse`) was never acknowledged and is cut off at open.
//! Damage anywhere else is corruption, an error naming the file.
//!
//! Must never: acknowledge a record before `fdatasync` returned, or append after a failed
//! write or sync (the file's state is unknown then: every later append fails).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::raft::{Entry, GroupId, HardState};
use crate::storage::error::{Result, StorageError};
use crate::storage::limits::{WAL_FILE_BYTES_MAX, WAL_PREALLOC_BYTES, WAL_RECORD_BYTES_MAX};

/// CRC-32C (Castagnoli), as in most storage engines' logs.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
/// `len`, `crc` and `seq`.
const HEADER_BYTES: usize = 16;
/// Zeros written per call when the file is extended.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
/// What follows the database file's name to make the log's.
pub const WAL_SUFFIX: &str = ".wal";

/// One group's part of a record: entries to append (any stored entry at or after the first
/// one is replaced) and the new hard state.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct LogWrite {
    pub group: GroupId,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

/// `LogWrite` as it is encoded, borrowing the entries (same field order: rmp-serde encodes
/// structs as arrays).
#[derive(Serialize)]
pub(crate) struct LogWriteRef<'a> {
    pub group: GroupId,
    pub entries: &'a [Entry],
    pub hard_state: Option<HardState>,
}

/// A write durable in the log but not yet in redb, with the inclusive index ranges its plan
/// deletes (a conflicting suffix it replaces).
#[derive(Debug)]
pub(crate) struct Unabsorbed {
    pub write: LogWrite,
    pub delete: Vec<(u64, u64)>,
}

/// The log file and what it holds that redb does not. Lives behind `NodeDb`'s write lock.
#[derive(Debug)]
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    /// Bytes of valid records in the file; the next record goes here.
    len: u64,
    /// Bytes the file spans: `len`, then zeros written ahead of the records.
    allocated: u64,
    /// Extending the file failed (a full disk, say): records are appended past its end
    /// until it is next emptied, and the failure is logged once.
    prealloc_failed: bool,
    /// The sequence number of the last record written, or attempted (0: none ever).
    last_seq: u64,
    /// The last sequence number redb holds.
    absorbed_seq: u64,
    /// Writes of records after the last one redb absorbed, in order.
    pub pending: Vec<Unabsorbed>,
    /// `Entry::size_bytes` of the pending entries.
    pub pending_bytes: u64,
    /// Set by a failed write or sync: the file's state is unknown, nothing more is appended.
    broken: Option<String>,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

/// The path of the log of the database at `db_path`.
pub(crate) fn wal_path(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(WAL_SUFFIX);
    PathBuf::from(name)
}

impl Wal {
    /// Opens (or creates) the log at `path` and reads its records, cutting off a torn last
    /// record. `absorbed_seq` is the last sequence number redb holds: the records after it
    /// are returned, in order, for replay; the first of them must follow it.
    pub(crate) fn open(path: PathBuf, absorbed_seq: u64) -> Result<(Wal, Vec<(u64, Vec<LogWrite>)>)> {
        let io = |op, e: std::io::Error| StorageError::Io {
            path: path.clone(),
            op,
            detail: e.to_string(),
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("open log", e))?;
        if !existed {
            // The new file's name must survive a power loss with the records it will hold.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("sync directory", e))?;
            }
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(|e| io("read log", e))?;
        let (records, valid) = parse(&path, &data, absorbed_seq)?;
        let last_seq = records.last().map_or(0, |(seq, _)| *seq).max(absorbed_seq);
        let replay: Vec<_> = records.into_iter().filter(|(seq, _)| *seq > absorbed_seq).collect();
        if let Some((first, _)) = replay.first() {
            if *first != absorbed_seq + 1 {
                let reason = format!(
                    "write-ahead log resumes at record {first}, but the database holds only \
                     records through {absorbed_seq}"
                );
                return Err(StorageError::corrupt(&path, reason));
            }
        }
        // Zeros past the last record are space written ahead (`preallocate`), kept; anything
        // else there is a torn record.
        let zero_tail = data[valid..].iter().all(|&b| b == 0);
        if !zero_tail {
            tracing::warn!(
                path = %path.display(),
                bytes = data.len() - valid,
                "cutting off a torn last record of the write-ahead log (never acknowledged)"
            );
            file.set_len(valid as u64).map_err(|e| io("cut torn record", e))?;
            file.sync_all().map_err(|e| io("sync log", e))?;
        }
        let wal = Wal {
            file,
            path,
            len: valid as u64,
            allocated: if zero_tail { data.len() } else { valid } as u64,
            prealloc_failed: false,
            last_seq,
            absorbed_seq,
            pending: Vec::new(),
            pending_bytes: 0,
            broken: None,
            buf: Vec::new(),
        };
        Ok((wal, replay))
    }

    /// The sequence number of the last record written or attempted: a transaction that
    /// absorbs the log records it, so that a record whose append failed (and may be on
    /// disk) is never replayed over what came after it.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Whether redb lacks anything: pending writes, or a sequence number not yet recorded.
    pub(crate) fn unabsorbed(&self) -> bool {
        !self.pending.is_empty() || self.last_seq > self.absorbed_seq
    }

    /// Whether an append failed: the log takes no more records (batches go to redb).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// The log's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record of `writes` and syncs it; they are durable when this returns Ok.
    /// The caller adds them to `pending`.
    pub(crate) fn append(&mut self, writes: &[LogWriteRef<'_>]) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(self.io_err("append", format!("an earlier write failed: {why}")));
        }
        let seq = self.last_seq + 1;
        self.buf.clear();
        self.buf.extend_from_slice(&[0u8; HEADER_BYTES]);
        rmp_serde::encode::write(&mut self.buf, writes)
            .map_err(|e| self.io_err("encode record", e.to_string()))?;
        let payload_len = self.buf.len() - HEADER_BYTES;
        if payload_len as u64 > WAL_RECORD_BYTES_MAX {
            let detail = format!("record of {payload_len} bytes, past {WAL_RECORD_BYTES_MAX}");
            return Err(self.io_err("append", detail));
        }
        let mut digest = CRC32C.digest();
        digest.update(&seq.to_le_bytes());
        digest.update(&self.buf[HEADER_BYTES..]);
        self.buf[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.buf[4..8].copy_from_slice(&digest.finalize().to_le_bytes());
        self.buf[8..16].copy_from_slice(&seq.to_le_bytes());
        let end = self.len + self.buf.len() as u64;
        if end > self.allocated && !self.prealloc_failed {
            self.preallocate(end);
        }
        let written = self
            .file
            .write_all_at(&self.buf, self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // The record may be on disk: its number is used up.
            self.last_seq = seq;
            self.broken = Some(e.to_string());
            return Err(self.io_err("append", e.to_string()));
        }
        self.len = end;
        self.allocated = self.allocated.max(end);
        self.last_seq = seq;
        Ok(())
    }

    /// Extends the file with zeros to the multiple of `WAL_PREALLOC_BYTES` past `end`. The
    /// next sync makes them durable with the record, and the records after it overwrite
    /// written blocks inside the file. A failure is logged and leaves appends to extend the
    /// file themselves: zeros past the last record are harmless whatever part got written.
    fn preallocate(&mut self, end: u64) {
        let target = (end / WAL_PREALLOC_BYTES + 1) * WAL_PREALLOC_BYTES;
        let mut at = self.allocated.max(self.len);
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            if let Err(e) = self.file.write_all_at(&ZEROS[..n], at) {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "extending the write-ahead log ahead of its records failed; appending instead");
                self.prealloc_failed = true;
                return;
            }
            at += n as u64;
        }
        self.allocated = target;
    }

    /// Everything pending is now in redb (the caller committed it): forgets it, and empties
    /// the file once it has grown past `WAL_FILE_BYTES_MAX`.
    pub(crate) fn absorbed(&mut self) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.absorbed_seq = self.last_seq;
        if self.len < WAL_FILE_BYTES_MAX || self.broken.is_some() {
            return;
        }
        // Synced before the next append, so that no old record can follow a new one.
        match self.file.set_len(0).and_then(|()| self.file.sync_all()) {
            Ok(()) => {
                self.len = 0;
                self.allocated = 0;
                self.prealloc_failed = false;
            }
            Err(e) => self.broken = Some(format!("emptying the log: {e}")),
        }
    }

    fn io_err(&self, op: &'static str, detail: String) -> StorageError {
        StorageError::Io { path: self.path.clone(), op, detail }
    }
}

/// The valid records of `data` and the length they span; an error for damage that is not a
/// torn last record.
///
/// A crash during an append's sync may leave any part of that record on the disk, in any
/// order (its space was written ahead as zeros, and the file's size is already durable):
/// zeros, a prefix, a header lost with later pages kept. So damage counts as the torn last
/// record when no valid record follows it and nothing past one append's reach from its start
/// was written. Damage followed by a valid record is corruption, an error naming the file;
/// damage in the last record alone cannot be told from a torn write, and is cut off the same
/// way (it was never acknowledged if torn, and is found again from the other replicas if not).
/// `absorbed_seq` bounds the numbers a record of the file can have: the first is at most
/// one past it.
fn parse(
    path: &Path,
    data: &[u8],
    absorbed_seq: u64,
) -> Result<(Vec<(u64, Vec<LogWrite>)>, usize)> {
    let mut records: Vec<(u64, Vec<LogWrite>)> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < HEADER_BYTES {
            // A header cut short can only be the last thing written.
            break;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        // The numbers the record after this one may have (any the file allows, for its first).
        let next = match records.last() {
            Some((prev, _)) => prev + 2..=prev + 2,
            None => 2..=absorbed_seq + 2,
        };
        let torn = |reason: &str| -> Result<()> {
            if rest.iter().all(|&b| b == 0) {
                return Ok(()); // the space written ahead of the records
            }
            if let Some((found, number)) = record_further_on(&rest[1..], next.clone()) {
                let at = pos + 1 + found;
                let reason = format!(
                    "write-ahead log at byte {pos}: {reason}, but record {number} follows at \
                     byte {at}"
                );
                return Err(StorageError::corrupt(path, reason));
            }
            let last_written = rest.iter().rposition(|&b| b != 0).unwrap_or(0);
            if last_written < HEADER_BYTES + WAL_RECORD_BYTES_MAX as usize {
                return Ok(());
            }
            Err(StorageError::corrupt(path, format!("write-ahead log at byte {pos}: {reason}")))
        };
        if len as u64 > WAL_RECORD_BYTES_MAX {
            torn(&format!("record length {len} past {WAL_RECORD_BYTES_MAX}"))?;
            break;
        }
        if rest.len() < HEADER_BYTES + len {
            torn("the record runs past the end")?;
            break;
        }
        let payload = &rest[HEADER_BYTES..HEADER_BYTES + len];
        let mut digest = CRC32C.digest();
        digest.update(&seq.to_le_bytes());
        digest.update(payload);
        if digest.finalize() != crc {
            torn("checksum mismatch")?;
            break;
        }
        if let Some((prev, _)) = records.last() {
            if seq != prev + 1 {
                let reason = format!("write-ahead log record {seq} follows record {prev}");
                return Err(StorageError::corrupt(path, reason));
            }
        }
        let writes: Vec<LogWrite> = rmp_serde::from_slice(payload).map_err(|e| {
            StorageError::corrupt(path, format!("write-ahead log record {seq}: {e}"))
        })?;
        records.push((seq, writes));
        pos += HEADER_BYTES + len;
    }
    Ok((records, pos))
}

/// The offset and number of a whole, valid record numbered within `seqs` in `data`, if any:
/// the record after a damaged one. Candidates are found by their sequence number, then
/// checked.
fn record_further_on(data: &[u8], seqs: RangeInclusive<u64>) -> Option<(usize, u64)> {
    (0..data.len().saturating_sub(HEADER_BYTES - 1)).find_map(|at| {
        let h = &data[at..];
        let seq = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
        if !seqs.contains(&seq) {
            return None;
        }
        let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
        if h.len() < HEADER_BYTES + len {
            return None;
        }
        let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
        let mut digest = CRC32C.digest();
        digest.update(&seq.to_le_bytes());
        digest.update(&h[HEADER_BYTES..HEADER_BYTES + len]);
        (digest.finalize() == crc).then_some((at, seq))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{EntryPayload, LogIndex, Term};

    fn entry(i: u64) -> Entry {
        Entry {
            term: Term(1),
            index: LogIndex(i),
            payload: EntryPayload::Normal(bytes::Bytes::from(format!("e{i}"))),
        }
    }

    fn write(wal: &mut Wal, group: u64, first: u64, n: u64) {
        let entries: Vec<Entry> = (first..first + n).map(entry).collect();
        let hs = HardState { term: Term(1), commit_index: LogIndex(first), ..HardState::default() };
        wal.append(&[LogWriteRef { group: GroupId(group), entries: &entries, hard_state: Some(hs) }])
            .expect("append");
    }

    /// A closed log of `records` records (group 1, two entries each) after record
    /// `absorbed`; returns where each record starts, and where the last one ends.
    fn log_of(records: u64, absorbed: u64) -> (tempfile::TempDir, PathBuf, Vec<u64>) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("db.wal");
        let (mut wal, replay) = Wal::open(path.clone(), absorbed).expect("open");
        assert!(replay.is_empty());
        let mut starts = Vec::new();
        for r in 0..records {
            starts.push(wal.len);
            write(&mut wal, 1, 2 * r + 1, 2);
        }
        starts.push(wal.len);
        (dir, path, starts)
    }

    /// Group 1's write of `e` alone.
    fn one(e: &Entry) -> LogWriteRef<'_> {
        LogWriteRef { group: GroupId(1), entries: std::slice::from_ref(e), hard_state: None }
    }

    fn seqs(replay: &[(u64, Vec<LogWrite>)]) -> Vec<u64> {
        replay.iter().map(|(s, _)| *s).collect()
    }

    fn set_len(path: &Path, len: u64) {
        OpenOptions::new().write(true).open(path).expect("file").set_len(len).expect("set len");
    }

    fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
        let file = OpenOptions::new().write(true).open(path).expect("file");
        file.write_all_at(bytes, at).expect("overwrite");
    }

    fn refused(path: PathBuf, absorbed: u64) {
        let before = std::fs::read(&path).expect("read");
        let err = Wal::open(path.clone(), absorbed).expect_err("corrupt");
        assert!(matches!(err, StorageError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), before, "a refused log is left as it was");
    }

    #[test]
    fn records_come_back_in_order_after_the_absorbed_one() {
        let (_dir, path, _) = log_of(3, 0);
        let (wal, replay) = Wal::open(path, 1).expect("reopen");
        assert_eq!(wal.last_seq(), 3);
        assert_eq!(seqs(&replay), vec![2, 3]);
        assert_eq!(replay[1].1[0].group, GroupId(1));
        assert_eq!(replay[1].1[0].entries, vec![entry(5), entry(6)]);
        assert_eq!(replay[1].1[0].hard_state.map(|h| h.commit_index), Some(LogIndex(5)));
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_appends_go_on_after_it() {
        for cut in [1u64, 5, HEADER_BYTES as u64, HEADER_BYTES as u64 + 3] {
            let (_dir, path, starts) = log_of(2, 0);
            set_len(&path, starts[1] + cut);
            second_record_cut_off(&path, starts[1]);
        }
    }

    /// After the second record of a log was torn (it began at `start`): opening replays the
    /// first only and cuts the file there, and the next append follows the first record.
    fn second_record_cut_off(path: &Path, start: u64) {
        let (mut wal, replay) = Wal::open(path.to_path_buf(), 0).expect("reopen torn");
        assert_eq!(seqs(&replay), vec![1]);
        assert_eq!(file_len(path), start, "the torn record is cut off");
        write(&mut wal, 1, 3, 1);
        drop(wal);
        assert_eq!(seqs(&Wal::open(path.to_path_buf(), 0).expect("reopen").1), vec![1, 2]);
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).expect("meta").len()
    }

    #[test]
    fn zeros_after_the_last_record_are_space_written_ahead_and_kept() {
        let (_dir, path, starts) = log_of(1, 0);
        assert_eq!(file_len(&path), WAL_PREALLOC_BYTES, "extended ahead of the first record");
        let (mut wal, replay) = Wal::open(path.clone(), 0).expect("reopen");
        assert_eq!(seqs(&replay), vec![1]);
        assert_eq!((wal.len, wal.allocated), (starts[1], WAL_PREALLOC_BYTES));
        write(&mut wal, 1, 3, 1);
        assert_eq!(file_len(&path), WAL_PREALLOC_BYTES, "the next record overwrote zeros");
        drop(wal);
        assert_eq!(seqs(&Wal::open(path, 0).expect("reopen").1), vec![1, 2]);
    }

    #[test]
    fn the_file_grows_one_extension_at_a_time() {
        let (_dir, path, _) = log_of(0, 0);
        let (mut wal, _) = Wal::open(path.clone(), 0).expect("open");
        let big = bytes::Bytes::from(vec![7u8; 100 * 1024]);
        let mut index = 0;
        let mut sizes = Vec::new();
        while wal.len < WAL_PREALLOC_BYTES * 2 {
            index += 1;
            let payload = EntryPayload::Normal(big.clone());
            let e = Entry { term: Term(1), index: LogIndex(index), payload };
            wal.append(&[one(&e)]).expect("append");
            assert!(wal.len <= file_len(&path), "the record is inside the file");
            sizes.push(file_len(&path));
        }
        sizes.dedup();
        let want: Vec<u64> = (1..=3).map(|k| k * WAL_PREALLOC_BYTES).collect();
        assert_eq!(sizes, want, "extended by WAL_PREALLOC_BYTES, not by each record");
        drop(wal);
        assert_eq!(Wal::open(path, 0).expect("reopen").1.len() as u64, index);
    }

    #[test]
    fn a_torn_record_over_zeros_is_cut_off() {
        // A record written only in part: its first bytes, then the zeros it was to cover.
        let (_dir, path, starts) = log_of(2, 0);
        let kept = HEADER_BYTES as u64 + 3;
        overwrite(&path, starts[1] + kept, &vec![0; (starts[2] - starts[1] - kept) as usize]);
        second_record_cut_off(&path, starts[1]);
    }

    #[test]
    fn a_torn_record_whose_header_never_reached_the_disk_is_cut_off() {
        // Pages of one append reach the disk in any order: here its first page is lost (zeros
        // over the header) and a later one is kept.
        let (_dir, path, starts) = log_of(1, 0);
        let (mut wal, _) = Wal::open(path.clone(), 0).expect("open");
        let big = Entry {
            term: Term(1),
            index: LogIndex(3),
            payload: EntryPayload::Normal(bytes::Bytes::from(vec![7u8; 3 * 4096])),
        };
        wal.append(&[one(&big)]).expect("append");
        drop(wal);
        overwrite(&path, starts[1], &[0; 4096]);
        second_record_cut_off(&path, starts[1]);
    }

    #[test]
    fn a_damaged_first_record_before_a_valid_one_is_corruption() {
        let (_dir, path, starts) = log_of(2, 0);
        overwrite(&path, starts[0], &[0; HEADER_BYTES]);
        refused(path, 0);
    }

    #[test]
    fn damage_before_the_last_record_is_corruption() {
        let (_dir, path, starts) = log_of(2, 0);
        overwrite(&path, starts[0] + HEADER_BYTES as u64 + 2, &[0xFF]);
        refused(path, 0);
    }

    #[test]
    fn a_damaged_length_before_the_last_record_is_corruption() {
        let (_dir, path, starts) = log_of(3, 0);
        overwrite(&path, starts[1], &[0xFF, 0xFF, 0x00]);
        refused(path, 0);
    }

    #[test]
    fn a_failed_append_uses_up_its_number() {
        let (_dir, path, _) = log_of(0, 0);
        let (mut wal, _) = Wal::open(path.clone(), 0).expect("open");
        write(&mut wal, 1, 1, 1);
        wal.absorbed();
        assert!(!wal.unabsorbed());
        // A read-only handle makes the next write fail.
        wal.file = File::open(&path).expect("read-only");
        let entries = [entry(2)];
        let w = LogWriteRef { group: GroupId(1), entries: &entries, hard_state: None };
        assert!(wal.append(&[w]).is_err());
        assert!(wal.is_broken());
        assert_eq!(wal.last_seq(), 2, "the failed record's number is used up");
        assert!(wal.unabsorbed(), "the next transaction records it");
        let w = LogWriteRef { group: GroupId(1), entries: &entries, hard_state: None };
        assert!(wal.append(&[w]).is_err(), "a broken log takes no more records");
    }

    #[test]
    fn a_gap_after_the_absorbed_record_is_corruption() {
        let (_dir, path, _) = log_of(1, 5);
        let (wal, replay) = Wal::open(path.clone(), 5).expect("reopen");
        assert_eq!((wal.last_seq(), seqs(&replay)), (6, vec![6]));
        drop(wal);
        refused(path, 4);
    }

    #[test]
    fn the_file_is_emptied_only_when_large_and_absorbed() {
        let (_dir, path, _) = log_of(0, 0);
        let (mut wal, _) = Wal::open(path.clone(), 0).expect("open");
        write(&mut wal, 1, 1, 1);
        wal.absorbed();
        assert!(wal.len > 0, "a small log is kept");
        wal.len = WAL_FILE_BYTES_MAX;
        wal.absorbed();
        assert_eq!(wal.len, 0);
        write(&mut wal, 1, 2, 1);
        drop(wal);
        let (wal, replay) = Wal::open(path, 1).expect("reopen");
        assert_eq!((wal.last_seq(), seqs(&replay)), (2, vec![2]));
    }
}
