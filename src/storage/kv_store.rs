//! The key-value state machine of a group in redb: a `KvRead` view over a read
//! transaction, and the writing of a batch's `KvMutation`s into a write transaction (used
//! by the group-commit writer). Owns the mapping of `kv` data onto the KV and SESSIONS
//! tables; never decodes records and never commits a transaction.

use std::cell::RefCell;
use std::ops::{Bound, ControlFlow, RangeInclusive};

use bytes::Bytes;
use redb::{ReadOnlyTable, ReadTransaction, Table, TableDefinition, WriteTransaction};

use super::tables::{KV, SESSIONS};
use crate::kv::read::{KeyCount, Tally};
use crate::kv::{KvMutation, KvRead};

type KvTable = ReadOnlyTable<(u16, &'static [u8]), &'static [u8]>;
type SessionTable = ReadOnlyTable<(u64, u64), &'static [u8]>;
/// A bound on the (slot, key) keys of the KV table.
pub(crate) type KvBound = Bound<(u16, &'static [u8])>;

/// A redb failure while reading or writing key-value data.
#[derive(Debug, thiserror::Error)]
pub enum KvStoreError {
    #[error("key-value storage: {0}")]
    Storage(#[from] redb::StorageError),
    #[error("key-value table: {0}")]
    Table(#[from] redb::TableError),
}

/// The bounds of the KV table that hold exactly the slots `slots`.
pub(crate) fn slot_bounds(slots: &RangeInclusive<u16>) -> (KvBound, KvBound) {
    let lower = Bound::Included((*slots.start(), &[][..]));
    let upper = match slots.end().checked_add(1) {
        Some(next) => Bound::Excluded((next, &[][..])),
        None => Bound::Unbounded,
    };
    (lower, upper)
}

/// The SESSIONS keys of one group.
pub(crate) fn group_sessions(group: u64) -> RangeInclusive<(u64, u64)> {
    (group, 0)..=(group, u64::MAX)
}

/// A group's committed key-value data as of a read transaction.
///
/// `KvRead` cannot return errors, so a redb failure reads as "absent" and is kept: the
/// caller must call `check` after applying a batch and discard the batch if it fails.
pub struct RedbKvView {
    group: u64,
    kv: Option<KvTable>,
    sessions: Option<SessionTable>,
    error: RefCell<Option<KvStoreError>>,
}

/// Opens a table for reading; a table never written reads as absent (`None`).
pub(crate) fn open_if_present<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, redb::TableError> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

impl RedbKvView {
    /// Open the KV and SESSIONS tables (absent tables read as empty).
    pub fn open(txn: &ReadTransaction, group: u64) -> Result<RedbKvView, KvStoreError> {
        Ok(RedbKvView {
            group,
            kv: open_if_present(txn, KV)?,
            sessions: open_if_present(txn, SESSIONS)?,
            error: RefCell::new(None),
        })
    }

    /// The first redb error met by a read since the last check, if any.
    pub fn check(&self) -> Result<(), KvStoreError> {
        match self.error.borrow_mut().take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The rows of `slots` strictly after `after` (from the first of `slots` when it is
    /// before them); `None` when there are none to read, or redb failed (kept).
    fn rows_after(
        &self,
        slots: &RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
    ) -> Option<redb::Range<'_, (u16, &'static [u8]), &'static [u8]>> {
        let table = self.kv.as_ref()?;
        if after.is_some_and(|(slot, _)| slot > *slots.end()) {
            return None;
        }
        let (lower, upper) = slot_bounds(slots);
        let range = match after {
            Some(after) if after.0 >= *slots.start() => {
                table.range::<(u16, &[u8])>((Bound::Excluded(after), upper))
            }
            _ => table.range((lower, upper)),
        };
        self.keep(range)
    }

    fn keep<T>(&self, result: Result<T, redb::StorageError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.error.borrow_mut().get_or_insert(error.into());
                None
            }
        }
    }
}

impl KvRead for RedbKvView {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        let guard = self.keep(self.kv.as_ref()?.get((slot, key)))??;
        Some(Bytes::copy_from_slice(guard.value()))
    }

    fn session(&self, client_id: u64) -> Option<Bytes> {
        let guard = self.keep(self.sessions.as_ref()?.get((self.group, client_id)))??;
        Some(Bytes::copy_from_slice(guard.value()))
    }

    fn sessions(&self) -> Vec<(u64, Bytes)> {
        let Some(table) = &self.sessions else {
            return Vec::new();
        };
        let Some(range) = self.keep(table.range(group_sessions(self.group))) else {
            return Vec::new();
        };
        let rows = range.map_while(|row| self.keep(row));
        rows.map(|(k, v)| (k.value().1, Bytes::copy_from_slice(v.value())))
            .collect()
    }

    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)> {
        let Some(range) = self.rows_after(&slots, after) else {
            return Vec::new();
        };
        let rows = range.map_while(|row| self.keep(row)).take(limit);
        rows.map(|(k, _)| (k.value().0, Bytes::copy_from_slice(k.value().1)))
            .collect()
    }

    fn count_keys(&self, slots: RangeInclusive<u16>, tally: Tally) -> KeyCount {
        let mut count = KeyCount::default();
        self.walk(slots, None, &mut |_, _, record| {
            count.add(record, tally);
            ControlFlow::Continue(())
        });
        count
    }

    fn walk(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        visit: &mut dyn FnMut(u16, &[u8], &[u8]) -> ControlFlow<()>,
    ) {
        let Some(range) = self.rows_after(&slots, after) else {
            return;
        };
        // Each row is looked at where it lies, no key or record copied: moved out of its
        // `Result` (as `keep` does), its two guards were copied, a third of a count's time.
        for row in range {
            match row {
                Ok((key, record)) => {
                    let (slot, key) = key.value();
                    if visit(slot, key, record.value()).is_break() {
                        return;
                    }
                }
                Err(error) => {
                    self.keep::<()>(Err(error));
                    return;
                }
            }
        }
    }
}

/// Write a batch's mutations of `group` into `txn`, in order.
pub fn apply_mutations(
    txn: &WriteTransaction,
    group: u64,
    mutations: &[KvMutation],
) -> Result<(), KvStoreError> {
    let mut kv = txn.open_table(KV)?;
    let mut sessions = txn.open_table(SESSIONS)?;
    write_mutations(&mut kv, &mut sessions, group, mutations)?;
    Ok(())
}

/// Writes `mutations` of `group` into the already open KV and SESSIONS tables (the
/// group-commit writer opens them once per transaction for all groups).
pub fn write_mutations(
    kv: &mut Table<'_, (u16, &'static [u8]), &'static [u8]>,
    sessions: &mut Table<'_, (u64, u64), &'static [u8]>,
    group: u64,
    mutations: &[KvMutation],
) -> Result<(), redb::StorageError> {
    for mutation in mutations {
        match mutation {
            KvMutation::Put { slot, key, record } => {
                kv.insert((*slot, &key[..]), &record[..])?;
            }
            KvMutation::Delete { slot, key } => {
                kv.remove((*slot, &key[..]))?;
            }
            KvMutation::PutSession { client_id, record } => {
                sessions.insert((group, *client_id), &record[..])?;
            }
            KvMutation::DeleteSession { client_id } => {
                sessions.remove((group, *client_id))?;
            }
            KvMutation::ClearSlots { first, last } => {
                kv.retain_in(slot_bounds(&(*first..=*last)), |_, _| false)?;
            }
        }
    }
    Ok(())
}

/// Tests of the redb key-value store against `MemKv` (named so that `kv::` selects them).
#[cfg(test)]
mod redb_kv {
    use super::*;
    use crate::kv::command::{KvCommand, Request, SetCondition};
    use crate::kv::{apply, MemKv, Overlay, Reply};
    use redb::ReadableDatabase;

    fn set(key: &str, value: &str, expire_at_ms: Option<u64>) -> KvCommand {
        KvCommand::Set {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            expire_at_ms,
            keep_ttl: false,
            condition: SetCondition::Always,
            get: false,
        }
    }

    fn commands() -> Vec<KvCommand> {
        let key = |k: &str| Bytes::copy_from_slice(k.as_bytes());
        vec![
            set("a", "1", None),
            set("b", "2", Some(5_000)),
            KvCommand::IncrBy {
                key: key("a"),
                delta: 41,
            },
            KvCommand::Append {
                key: key("c"),
                value: key("xyz"),
            },
            KvCommand::Del {
                keys: vec![key("b")],
            },
            // "c" (slot 7365) goes, "a" (15495) stays, "d" (11298) is written after.
            KvCommand::FlushSlots {
                slot_first: 0,
                slot_last: 12_000,
            },
            set("d", "4", None),
        ]
    }

    #[test]
    fn redb_store_matches_mem_kv_batch_by_batch() -> Result<(), Box<dyn std::error::Error>> {
        let file = tempfile::NamedTempFile::new()?;
        let db = redb::Database::create(file.path())?;
        let group = 3;
        let mut mem = MemKv::new();
        for (seq, command) in commands().into_iter().enumerate() {
            let req = Request {
                client_id: 11,
                seq: seq as u64 + 1,
                now_ms: 1_000,
                command,
            };
            let txn = db.begin_read()?;
            let view = RedbKvView::open(&txn, group)?;
            let mut overlay = Overlay::new();
            let reply = apply(&view, &mut overlay, &req);
            view.check()?;
            let mutations = overlay.drain();
            let mut mem_overlay = Overlay::new();
            assert_eq!(apply(&mem, &mut mem_overlay, &req), reply, "{req:?}");
            assert_eq!(mem_overlay.drain(), mutations);
            mem.apply_mutations(&mutations);
            let write = db.begin_write()?;
            apply_mutations(&write, group, &mutations)?;
            write.commit()?;
        }
        let txn = db.begin_read()?;
        let view = RedbKvView::open(&txn, group)?;
        assert_eq!(view.scan(0..=16383, None, usize::MAX), mem.scan(0..=16383, None, usize::MAX));
        assert_eq!(view.sessions(), mem.sessions());
        let slot = crate::kv::key_slot(b"a");
        assert_eq!(view.get(slot, b"a"), mem.get(slot, b"a"));
        let other_group = RedbKvView::open(&txn, group + 1)?;
        assert!(other_group.sessions().is_empty());
        assert_eq!(other_group.session(11), None);
        let retry = Request {
            client_id: 11,
            seq: 7,
            now_ms: 1_000,
            command: set("d", "x", None),
        };
        assert_eq!(apply(&view, &mut Overlay::new(), &retry), Reply::Ok);
        Ok(())
    }

    #[test]
    fn empty_database_reads_as_empty() -> Result<(), Box<dyn std::error::Error>> {
        let file = tempfile::NamedTempFile::new()?;
        let db = redb::Database::create(file.path())?;
        let txn = db.begin_read()?;
        let view = RedbKvView::open(&txn, 1)?;
        assert_eq!(view.get(0, b"k"), None);
        assert!(view.scan(0..=16383, None, usize::MAX).is_empty());
        assert!(view.sessions().is_empty());
        view.check()?;
        Ok(())
    }
    /// Every (slot, key, record) `walk` hands over, until the `stop`th.
    fn walked(
        view: &impl KvRead,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        stop: usize,
    ) -> Vec<(u16, Vec<u8>, Vec<u8>)> {
        let mut rows = Vec::new();
        view.walk(slots, after, &mut |slot, key, record| {
            rows.push((slot, key.to_vec(), record.to_vec()));
            if rows.len() == stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        rows
    }

    #[test]
    fn redb_walks_its_rows_as_the_default_walk_does() -> Result<(), Box<dyn std::error::Error>> {
        let file = tempfile::NamedTempFile::new()?;
        let db = redb::Database::create(file.path())?;
        let mut mem = MemKv::new();
        // 600 keys: more than a page of the default walk; several share a slot.
        let mutations: Vec<KvMutation> = (0..600)
            .map(|i| {
                let key = Bytes::from(format!("{{t{}}}k{i}", i % 7));
                let record = Bytes::from(format!("r{i}"));
                KvMutation::Put { slot: crate::kv::key_slot(&key), key, record }
            })
            .collect();
        mem.apply_mutations(&mutations);
        let write = db.begin_write()?;
        apply_mutations(&write, 2, &mutations)?;
        write.commit()?;
        let txn = db.begin_read()?;
        let view = RedbKvView::open(&txn, 2)?;
        let all = walked(&mem, 0..=16383, None, usize::MAX);
        assert_eq!(all.len(), 600);
        assert_eq!(walked(&view, 0..=16383, None, usize::MAX), all);
        let (slot, key, _) = all[299].clone();
        let after = Some((slot, &key[..]));
        assert_eq!(walked(&view, 0..=16383, after, 10), walked(&mem, 0..=16383, after, 10));
        assert_eq!(walked(&view, 0..=16383, after, usize::MAX), all[300..].to_vec());
        let one_slot = walked(&mem, slot..=slot, None, usize::MAX);
        assert_eq!(walked(&view, slot..=slot, None, usize::MAX), one_slot);
        // A resume point before the slots starts at their first; one after them, nowhere.
        let later = slot.saturating_add(1)..=16383;
        assert_eq!(walked(&view, later.clone(), after, 3), walked(&mem, later, None, 3));
        assert!(walked(&view, 0..=slot.saturating_sub(1), after, 3).is_empty());
        view.check()?;
        Ok(())
    }
}
