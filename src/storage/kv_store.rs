//! The key-value state machine of a group in redb: a `KvRead` view over a read
//! transaction, and the writing of a batch's `KvMutation`s into a write transaction (used
//! by the group-commit writer). Owns the mapping of `kv` data onto the KV and SESSIONS
//! tables; never decodes records and never commits a transaction.

use std::cell::RefCell;
use std::ops::{Bound, RangeInclusive};

use bytes::Bytes;
use redb::{ReadOnlyTable, ReadTransaction, TableDefinition, WriteTransaction};

use super::tables::{KV, SESSIONS};
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

fn open_if_present<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, KvStoreError> {
    match txn.open_table(table) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(error.into()),
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
        rows.map(|(k, v)| (k.value().1, Bytes::copy_from_slice(v.value()))).collect()
    }

    fn keys_in_slots(&self, slots: RangeInclusive<u16>) -> Vec<(u16, Bytes)> {
        let Some(table) = &self.kv else {
            return Vec::new();
        };
        let Some(range) = self.keep(table.range(slot_bounds(&slots))) else {
            return Vec::new();
        };
        let rows = range.map_while(|row| self.keep(row));
        rows.map(|(k, _)| (k.value().0, Bytes::copy_from_slice(k.value().1))).collect()
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
        }
    }
    Ok(())
}
