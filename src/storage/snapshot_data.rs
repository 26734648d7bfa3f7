//! The state-machine data of one group as a snapshot: the KV records of its slot range
//! and its client sessions, exported from a read transaction as a sequence of bounded,
//! CRC-checked chunks, and imported into a write transaction. Owns the chunk format;
//! never sends chunks anywhere and never commits.
//!
//! Format: the data is one stream of entries, each `[len: u32 big-endian][rmp-serde
//! Entry]`; the stream is cut into chunks of at most `payload_bytes_max` bytes (an entry
//! may span chunks, so a large value never breaks the bound). Each chunk is a frame
//! `[rmp-serde Chunk][crc32 (ISO-HDLC) of those bytes: u32 big-endian]` of at most
//! `chunk_bytes_max` bytes. Chunks are numbered from 0 and the final one says so.

use std::ops::RangeInclusive;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use redb::{ReadTransaction, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::kv_store::{group_sessions, open_if_present, slot_bounds, KvStoreError};
use super::tables::{KV, SESSIONS};

/// Default bound on one snapshot chunk (frame included), in bytes.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 1024 * 1024;
/// Smallest chunk bound accepted: room for the frame overhead and some payload.
pub const SNAPSHOT_CHUNK_BYTES_MIN: usize = 64;
/// Layout of the chunk frame and of the entries.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// Room a chunk frame takes beyond its payload (rmp headers and the crc32), rounded up.
const FRAME_OVERHEAD_BYTES: usize = 32;
/// Largest entry accepted on import: a sanity bound, not the value bound
/// (`kv::apply::STRING_BYTES_MAX`): records written when values could reach 512 MiB must
/// still move between replicas. A key and a value of 512 MiB each, plus framing.
const ENTRY_BYTES_MAX: u64 = 2 * 512 * 1024 * 1024 + 1024;
const LEN_PREFIX_BYTES: usize = 4;
const CRC_BYTES: usize = 4;
const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// A snapshot that cannot be exported or imported.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotDataError {
    #[error(transparent)]
    Store(#[from] KvStoreError),
    #[error("snapshot chunk bound {0} bytes is below {SNAPSHOT_CHUNK_BYTES_MIN}")]
    ChunkBoundTooSmall(usize),
    #[error("snapshot chunk of {len_bytes} bytes is truncated")]
    Truncated { len_bytes: usize },
    #[error("snapshot chunk fails its crc32 check")]
    Checksum,
    #[error("snapshot data does not decode: {0}")]
    Decode(String),
    #[error("unknown snapshot format version {0}")]
    UnknownVersion(u8),
    #[error("snapshot chunk {got} arrived where chunk {expected} was due")]
    OutOfOrder { expected: u32, got: u32 },
    #[error("snapshot chunk arrived after the last chunk")]
    AfterLast,
    #[error("snapshot ended before its last chunk or inside an entry")]
    Incomplete,
    #[error("snapshot entry of {len_bytes} bytes exceeds the entry bound")]
    EntryTooLarge { len_bytes: u64 },
    #[error("snapshot record of slot {slot} lies outside the slots being installed")]
    SlotOutOfRange { slot: u16 },
}

impl From<redb::StorageError> for SnapshotDataError {
    fn from(error: redb::StorageError) -> Self {
        SnapshotDataError::Store(error.into())
    }
}

impl From<redb::TableError> for SnapshotDataError {
    fn from(error: redb::TableError) -> Self {
        SnapshotDataError::Store(error.into())
    }
}

/// One frame's content.
#[derive(Serialize, Deserialize)]
struct Chunk {
    format_version: u8,
    index: u32,
    last: bool,
    payload: Bytes,
}

/// One item of the entry stream.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Entry {
    Record { slot: u16, key: Bytes, record: Bytes },
    Session { client_id: u64, record: Bytes },
}

fn encode_frame(chunk: &Chunk) -> Result<Bytes, SnapshotDataError> {
    let body = rmp_serde::to_vec(chunk).map_err(|e| SnapshotDataError::Decode(e.to_string()))?;
    let mut frame = BytesMut::with_capacity(body.len() + CRC_BYTES);
    frame.put_slice(&body);
    frame.put_u32(CRC32.checksum(&body));
    Ok(frame.freeze())
}

fn decode_frame(frame: &[u8]) -> Result<Chunk, SnapshotDataError> {
    let Some(body_len) = frame.len().checked_sub(CRC_BYTES) else {
        return Err(SnapshotDataError::Truncated { len_bytes: frame.len() });
    };
    let (body, mut crc) = frame.split_at(body_len);
    if crc.get_u32() != CRC32.checksum(body) {
        return Err(SnapshotDataError::Checksum);
    }
    let chunk: Chunk =
        rmp_serde::from_slice(body).map_err(|e| SnapshotDataError::Decode(e.to_string()))?;
    if chunk.format_version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotDataError::UnknownVersion(chunk.format_version));
    }
    Ok(chunk)
}

type KvRange = redb::Range<'static, (u16, &'static [u8]), &'static [u8]>;
type SessionRange = redb::Range<'static, (u64, u64), &'static [u8]>;

/// Streams one group's snapshot data as chunks; an `Iterator` of frames.
pub struct SnapshotExport {
    records: Option<KvRange>,
    sessions: Option<SessionRange>,
    pending: BytesMut,
    payload_bytes_max: usize,
    next_index: u32,
    finished: bool,
}

impl SnapshotExport {
    /// Export the records of `slots` and the sessions of `group` as of `txn`, in chunks
    /// of at most `chunk_bytes_max` bytes.
    pub fn new(
        txn: &ReadTransaction,
        group: u64,
        slots: RangeInclusive<u16>,
        chunk_bytes_max: usize,
    ) -> Result<SnapshotExport, SnapshotDataError> {
        if chunk_bytes_max < SNAPSHOT_CHUNK_BYTES_MIN {
            return Err(SnapshotDataError::ChunkBoundTooSmall(chunk_bytes_max));
        }
        let records = match open_if_present(txn, KV)? {
            Some(table) => Some(table.range(slot_bounds(&slots))?),
            None => None,
        };
        let sessions = match open_if_present(txn, SESSIONS)? {
            Some(table) => Some(table.range(group_sessions(group))?),
            None => None,
        };
        Ok(SnapshotExport {
            records,
            sessions,
            pending: BytesMut::new(),
            payload_bytes_max: chunk_bytes_max - FRAME_OVERHEAD_BYTES,
            next_index: 0,
            finished: false,
        })
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, SnapshotDataError> {
        if let Some(row) = self.records.as_mut().and_then(Iterator::next) {
            let (key, record) = row?;
            let (slot, key) = key.value();
            let key = Bytes::copy_from_slice(key);
            return Ok(Some(Entry::Record { slot, key, record: copy(record.value()) }));
        }
        if let Some(row) = self.sessions.as_mut().and_then(Iterator::next) {
            let (key, record) = row?;
            let client_id = key.value().1;
            return Ok(Some(Entry::Session { client_id, record: copy(record.value()) }));
        }
        Ok(None)
    }

    /// The next frame, or `None` after the last one.
    pub fn next_chunk(&mut self) -> Result<Option<Bytes>, SnapshotDataError> {
        if self.finished {
            return Ok(None);
        }
        let mut exhausted = false;
        while self.pending.len() <= self.payload_bytes_max {
            let Some(entry) = self.next_entry()? else {
                exhausted = true;
                break;
            };
            let body =
                rmp_serde::to_vec(&entry).map_err(|e| SnapshotDataError::Decode(e.to_string()))?;
            let len = u32::try_from(body.len())
                .map_err(|_| SnapshotDataError::EntryTooLarge { len_bytes: body.len() as u64 })?;
            self.pending.put_u32(len);
            self.pending.put_slice(&body);
        }
        let take_bytes = self.pending.len().min(self.payload_bytes_max);
        let last = exhausted && take_bytes == self.pending.len();
        let payload = self.pending.split_to(take_bytes).freeze();
        let chunk = Chunk {
            format_version: SNAPSHOT_FORMAT_VERSION,
            index: self.next_index,
            last,
            payload,
        };
        self.next_index += 1;
        self.finished = last;
        encode_frame(&chunk).map(Some)
    }
}

fn copy(bytes: &[u8]) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

impl Iterator for SnapshotExport {
    type Item = Result<Bytes, SnapshotDataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

/// Installs one group's snapshot data into a write transaction, chunk by chunk.
pub struct SnapshotImport<'txn> {
    kv: Table<'txn, (u16, &'static [u8]), &'static [u8]>,
    sessions: Table<'txn, (u64, u64), &'static [u8]>,
    group: u64,
    slots: RangeInclusive<u16>,
    pending: BytesMut,
    next_index: u32,
    finished: bool,
}

impl<'txn> SnapshotImport<'txn> {
    /// Clear the records of `slots` and the sessions of `group`, ready for the chunks.
    pub fn begin(
        txn: &'txn WriteTransaction,
        group: u64,
        slots: RangeInclusive<u16>,
    ) -> Result<SnapshotImport<'txn>, SnapshotDataError> {
        let mut kv = txn.open_table(KV)?;
        let mut sessions = txn.open_table(SESSIONS)?;
        kv.retain_in(slot_bounds(&slots), |_, _| false)?;
        sessions.retain_in(group_sessions(group), |_, _| false)?;
        let pending = BytesMut::new();
        Ok(SnapshotImport { kv, sessions, group, slots, pending, next_index: 0, finished: false })
    }

    /// Check and write the next frame.
    pub fn push_chunk(&mut self, frame: &[u8]) -> Result<(), SnapshotDataError> {
        if self.finished {
            return Err(SnapshotDataError::AfterLast);
        }
        let chunk = decode_frame(frame)?;
        if chunk.index != self.next_index {
            let expected = self.next_index;
            return Err(SnapshotDataError::OutOfOrder { expected, got: chunk.index });
        }
        self.next_index += 1;
        self.finished = chunk.last;
        self.pending.extend_from_slice(&chunk.payload);
        while let Some(entry) = self.take_entry()? {
            self.write(entry)?;
        }
        Ok(())
    }

    fn take_entry(&mut self) -> Result<Option<Entry>, SnapshotDataError> {
        let Some(mut prefix) = self.pending.get(..LEN_PREFIX_BYTES) else {
            return Ok(None);
        };
        let len_bytes = u64::from(prefix.get_u32());
        if len_bytes > ENTRY_BYTES_MAX {
            return Err(SnapshotDataError::EntryTooLarge { len_bytes });
        }
        let end = LEN_PREFIX_BYTES + len_bytes as usize;
        if self.pending.len() < end {
            return Ok(None);
        }
        let raw = self.pending.split_to(end);
        let entry = rmp_serde::from_slice(&raw[LEN_PREFIX_BYTES..])
            .map_err(|e| SnapshotDataError::Decode(e.to_string()))?;
        Ok(Some(entry))
    }

    fn write(&mut self, entry: Entry) -> Result<(), SnapshotDataError> {
        match entry {
            Entry::Record { slot, key, record } => {
                if !self.slots.contains(&slot) {
                    return Err(SnapshotDataError::SlotOutOfRange { slot });
                }
                self.kv.insert((slot, &key[..]), &record[..])?;
            }
            Entry::Session { client_id, record } => {
                self.sessions.insert((self.group, client_id), &record[..])?;
            }
        }
        Ok(())
    }

    /// Succeeds only if the last chunk arrived and no entry was left incomplete.
    pub fn finish(self) -> Result<(), SnapshotDataError> {
        if !self.finished || !self.pending.is_empty() {
            return Err(SnapshotDataError::Incomplete);
        }
        Ok(())
    }
}

/// Install a whole sequence of frames: `begin`, every `push_chunk`, `finish`.
pub fn import_chunks<F: AsRef<[u8]>>(
    txn: &WriteTransaction,
    group: u64,
    slots: RangeInclusive<u16>,
    frames: impl IntoIterator<Item = F>,
) -> Result<(), SnapshotDataError> {
    let mut import = SnapshotImport::begin(txn, group, slots)?;
    for frame in frames {
        import.push_chunk(frame.as_ref())?;
    }
    import.finish()
}

/// Snapshot round trips through real redb files (named so that `kv::` selects them).
#[cfg(test)]
mod snapshot_kv {
    use super::*;
    use crate::kv::{KvMutation, KvRead};
    use crate::storage::kv_store::{apply_mutations, RedbKvView};
    use redb::ReadableDatabase;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const GROUP: u64 = 5;
    const CHUNK_BYTES_MAX: usize = 256;

    fn fill(db: &redb::Database, group: u64, slots: RangeInclusive<u16>, tag: &str) -> TestResult {
        let mut mutations = Vec::new();
        for slot in slots.step_by(97) {
            for i in 0..3 {
                let key = Bytes::from(format!("{tag}-key-{slot}-{i}"));
                let record = Bytes::from(format!("{tag}-value-{i}").repeat(i + 1));
                mutations.push(KvMutation::Put { slot, key, record });
            }
        }
        let big = Bytes::from(vec![7u8; 3 * CHUNK_BYTES_MAX + 5]);
        mutations.push(KvMutation::Put {
            slot: 100,
            key: Bytes::from(tag.to_owned()),
            record: big,
        });
        for client_id in 1..=20 {
            let record = Bytes::from(format!("{tag}-session-{client_id}"));
            mutations.push(KvMutation::PutSession { client_id, record });
        }
        let txn = db.begin_write()?;
        apply_mutations(&txn, group, &mutations)?;
        txn.commit()?;
        Ok(())
    }

    fn temp_db() -> Result<(tempfile::NamedTempFile, redb::Database), Box<dyn std::error::Error>> {
        let file = tempfile::NamedTempFile::new()?;
        let db = redb::Database::create(file.path())?;
        Ok((file, db))
    }

    fn export(
        db: &redb::Database,
        slots: RangeInclusive<u16>,
    ) -> Result<Vec<Bytes>, Box<dyn std::error::Error>> {
        let txn = db.begin_read()?;
        let frames = SnapshotExport::new(&txn, GROUP, slots, CHUNK_BYTES_MAX)?;
        Ok(frames.collect::<Result<Vec<_>, _>>()?)
    }

    /// Every record (slot, key, record) and every session of a group.
    type Dump = (Vec<(u16, Bytes, Option<Bytes>)>, Vec<(u64, Bytes)>);

    fn dump(db: &redb::Database, group: u64) -> Result<Dump, Box<dyn std::error::Error>> {
        let txn = db.begin_read()?;
        let view = RedbKvView::open(&txn, group)?;
        let keys = view.scan(0..=16383, None, usize::MAX);
        let records = keys.into_iter().map(|(slot, key)| {
            let record = view.get(slot, &key);
            (slot, key, record)
        });
        Ok((records.collect(), view.sessions()))
    }

    /// A record larger than today's largest value (written when values could reach 512
    /// MiB) still moves between replicas.
    #[test]
    fn a_record_past_the_value_bound_still_imports() -> TestResult {
        let (_source_file, source) = temp_db()?;
        let record = Bytes::from(vec![3u8; 20 * 1024 * 1024]);
        let put = KvMutation::Put { slot: 7, key: Bytes::from_static(b"big"), record };
        let txn = source.begin_write()?;
        apply_mutations(&txn, GROUP, &[put])?;
        txn.commit()?;
        let txn = source.begin_read()?;
        let frames = SnapshotExport::new(&txn, GROUP, 0..=16383, SNAPSHOT_CHUNK_BYTES_MAX)?;
        let frames = frames.collect::<Result<Vec<_>, _>>()?;
        let (_target_file, target) = temp_db()?;
        let txn = target.begin_write()?;
        import_chunks(&txn, GROUP, 0..=16383, &frames)?;
        txn.commit()?;
        assert_eq!(dump(&target, GROUP)?, dump(&source, GROUP)?);
        Ok(())
    }

    #[test]
    fn snapshot_round_trips_across_chunk_boundaries() -> TestResult {
        let (_source_file, source) = temp_db()?;
        fill(&source, GROUP, 0..=16383, "src")?;
        fill(&source, GROUP + 1, 0..=16383, "other")?;
        let frames = export(&source, 0..=8191)?;
        assert!(frames.len() > 10, "{} frames", frames.len());
        assert!(frames.iter().all(|frame| frame.len() <= CHUNK_BYTES_MAX));

        let (_target_file, target) = temp_db()?;
        fill(&target, GROUP, 0..=16383, "old")?;
        let txn = target.begin_write()?;
        import_chunks(&txn, GROUP, 0..=8191, &frames)?;
        txn.commit()?;

        let (source_records, source_sessions) = dump(&source, GROUP)?;
        let (target_records, target_sessions) = dump(&target, GROUP)?;
        let lower = |records: &[(u16, Bytes, Option<Bytes>)]| -> Vec<_> {
            records.iter().filter(|(slot, _, _)| *slot <= 8191).cloned().collect()
        };
        assert_eq!(lower(&target_records), lower(&source_records));
        assert!(target_records
            .iter()
            .any(|(slot, key, _)| *slot > 8191 && key.starts_with(b"old")));
        let stale =
            |(slot, key, _): &(u16, Bytes, Option<Bytes>)| *slot <= 8191 && key.starts_with(b"old");
        assert!(!target_records.iter().any(stale), "old records of the range are cleared");
        assert_eq!(target_sessions, source_sessions);
        Ok(())
    }

    #[test]
    fn empty_snapshot_is_one_last_chunk() -> TestResult {
        let (_file, db) = temp_db()?;
        let frames = export(&db, 0..=16383)?;
        assert_eq!(frames.len(), 1);
        let (_target_file, target) = temp_db()?;
        fill(&target, GROUP, 0..=16383, "old")?;
        let txn = target.begin_write()?;
        import_chunks(&txn, GROUP, 0..=16383, &frames)?;
        txn.commit()?;
        let (records, sessions) = dump(&target, GROUP)?;
        assert!(records.is_empty() && sessions.is_empty());
        Ok(())
    }

    fn import_result(frames: &[Bytes]) -> Result<(), SnapshotDataError> {
        let (_file, db) = temp_db().map_err(|e| SnapshotDataError::Decode(e.to_string()))?;
        let txn = db.begin_write().map_err(|e| SnapshotDataError::Decode(e.to_string()))?;
        import_chunks(&txn, GROUP, 0..=16383, frames)
    }

    #[test]
    fn corrupt_truncated_or_reordered_chunks_are_rejected() -> TestResult {
        let (_file, db) = temp_db()?;
        fill(&db, GROUP, 0..=16383, "src")?;
        let frames = export(&db, 0..=16383)?;
        assert!(import_result(&frames).is_ok());

        let mut flipped = frames.clone();
        let mut bad = flipped[2].to_vec();
        bad[10] ^= 0x40;
        flipped[2] = Bytes::from(bad);
        assert!(matches!(import_result(&flipped), Err(SnapshotDataError::Checksum)));

        let mut cut = frames.clone();
        cut[1] = cut[1].slice(..cut[1].len() - 9);
        assert!(import_result(&cut).is_err());
        cut[1] = cut[1].slice(..2);
        assert!(import_result(&cut).is_err());

        let missing_last = &frames[..frames.len() - 1];
        assert!(matches!(import_result(missing_last), Err(SnapshotDataError::Incomplete)));

        let mut swapped = frames.clone();
        swapped.swap(1, 2);
        let error = import_result(&swapped);
        assert!(matches!(error, Err(SnapshotDataError::OutOfOrder { expected: 1, got: 2 })));

        let mut doubled = frames.clone();
        doubled.push(frames[0].clone());
        assert!(matches!(import_result(&doubled), Err(SnapshotDataError::AfterLast)));
        Ok(())
    }

    #[test]
    fn records_outside_the_installed_slots_are_rejected() -> TestResult {
        let (_file, db) = temp_db()?;
        fill(&db, GROUP, 0..=16383, "src")?;
        let frames = export(&db, 0..=16383)?;
        let (_target_file, target) = temp_db()?;
        let txn = target.begin_write()?;
        let error = import_chunks(&txn, GROUP, 0..=50, &frames);
        assert!(matches!(error, Err(SnapshotDataError::SlotOutOfRange { .. })));
        Ok(())
    }

    #[test]
    fn chunk_bound_below_minimum_is_an_error() -> TestResult {
        let (_file, db) = temp_db()?;
        let txn = db.begin_read()?;
        let export = SnapshotExport::new(&txn, GROUP, 0..=1, SNAPSHOT_CHUNK_BYTES_MIN - 1);
        assert!(matches!(export, Err(SnapshotDataError::ChunkBoundTooSmall(_))));
        Ok(())
    }
}
