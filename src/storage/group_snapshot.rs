//! A group's state-machine snapshot as the runtime ships it: exported from one read
//! transaction together with the applied index and configuration it stands for, and
//! installed by the group-commit writer in the same transaction as the snapshot's
//! metadata. Also the runtime's read view of a group's committed key-value data.
//!
//! Owns: the pairing of snapshot data with its index and configuration. Must never: send
//! anything, or install data outside the writer's transaction.

use std::ops::RangeInclusive;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::codec::decode;
use super::db::NodeDb;
use super::error::{Result, StorageError};
use super::kv_store::RedbKvView;
use super::snapshot_data::SnapshotExport;
use super::tables::{APPLIED, CONF_STATE, GROUP_RANGE};
use crate::kv::apply::KvRead;
use crate::kv::range::GroupRange;
use crate::kv::read::{KeyCount, Tally};
use crate::raft::{ConfState, GroupId, LogIndex};

/// A group's state-machine data as of `applied`, as chunk frames of `snapshot_data`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSnapshotData {
    /// The slots whose records the data holds (the group's slot range).
    pub slots: (u16, u16),
    /// The applied index the data stands for.
    pub applied: LogIndex,
    /// The configuration as of `applied`.
    pub conf_state: ConfState,
    pub frames: Vec<Bytes>,
    /// The group's range record as of `applied` (`None`: never split, `slots` holds).
    #[serde(default)]
    pub range: Option<GroupRange>,
}

impl GroupSnapshotData {
    pub fn slot_range(&self) -> RangeInclusive<u16> {
        self.slots.0..=self.slots.1
    }

    /// Bytes of data carried.
    pub fn size_bytes(&self) -> u64 {
        self.frames.iter().map(|f| f.len() as u64).sum()
    }
}

/// Exports `group`'s data (the records of `slots` and its sessions) with the applied
/// index and configuration stored beside it, all from one read transaction. Fails with
/// `InvalidWrite` when the data exceeds `data_bytes_max`.
pub fn export_group(
    db: &NodeDb,
    group: GroupId,
    slots: RangeInclusive<u16>,
    chunk_bytes_max: usize,
    data_bytes_max: u64,
) -> Result<GroupSnapshotData> {
    let txn = db.begin_read()?;
    let g = group.get();
    let applied = {
        let table = txn.open_table(APPLIED).map_err(|e| db.err("open applied", e))?;
        let value = table.get(g).map_err(|e| db.err("read applied", e))?;
        LogIndex(value.map_or(0, |v| v.value()))
    };
    let conf_state = {
        let table = txn.open_table(CONF_STATE).map_err(|e| db.err("open conf state", e))?;
        let value = table.get(g).map_err(|e| db.err("read conf state", e))?;
        match value {
            Some(bytes) => decode(db.path(), group, "conf state", bytes.value())?,
            None => ConfState::default(),
        }
    };
    // The range stored beside `applied` wins over the caller's (it may have split since).
    let range: Option<GroupRange> = match txn.open_table(GROUP_RANGE) {
        Ok(table) => match table.get(g).map_err(|e| db.err("read group range", e))? {
            Some(bytes) => Some(decode(db.path(), group, "group range", bytes.value())?),
            None => None,
        },
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(db.err("open group ranges", e)),
    };
    let slots = range.as_ref().map_or(slots, |r| r.range.first..=r.range.last);
    let fail = |e: super::snapshot_data::SnapshotDataError| StorageError::Io {
        path: db.path().to_path_buf(),
        op: "export snapshot",
        detail: e.to_string(),
    };
    let export = SnapshotExport::new(&txn, g, slots.clone(), chunk_bytes_max).map_err(fail)?;
    let mut frames = Vec::new();
    let mut total_bytes = 0u64;
    for frame in export {
        let frame = frame.map_err(fail)?;
        total_bytes += frame.len() as u64;
        if total_bytes > data_bytes_max {
            let reason = format!("snapshot data exceeds {data_bytes_max} bytes");
            return Err(StorageError::InvalidWrite { group, reason });
        }
        frames.push(frame);
    }
    let slots = (*slots.start(), *slots.end());
    Ok(GroupSnapshotData { slots, applied, conf_state, frames, range })
}

/// A read view of `group`'s key-value data as last committed.
pub fn latest_kv_view(db: &NodeDb, group: GroupId) -> Result<RedbKvView> {
    let txn = db.begin_read()?;
    RedbKvView::open(&txn, group.get()).map_err(|e| StorageError::Io {
        path: db.path().to_path_buf(),
        op: "open kv view",
        detail: e.to_string(),
    })
}

/// `latest_kv_view`, opened at its first read: applying a batch whose reads the replica's
/// undurable state answers (a plain SET reads nothing, its client's session is recent)
/// opens no read transaction. Opened later than the batch began it is as good: the
/// undurable state gives up only what redb already holds (to the clean cache), and never
/// while a batch is applied.
pub struct LazyKvView<'a> {
    db: &'a NodeDb,
    group: GroupId,
    view: std::cell::OnceCell<Result<RedbKvView>>,
}

impl<'a> LazyKvView<'a> {
    pub fn new(db: &'a NodeDb, group: GroupId) -> LazyKvView<'a> {
        LazyKvView { db, group, view: std::cell::OnceCell::new() }
    }

    /// The view, opened now if it was not; `None` if it could not be (`check` says why).
    fn view(&self) -> Option<&RedbKvView> {
        self.view.get_or_init(|| latest_kv_view(self.db, self.group)).as_ref().ok()
    }

    /// The first error met opening the view or reading through it, if any; a view never
    /// read has none.
    pub fn check(&self) -> std::result::Result<(), String> {
        match self.view.get() {
            None => Ok(()),
            Some(Err(error)) => Err(error.to_string()),
            Some(Ok(view)) => view.check().map_err(|e| e.to_string()),
        }
    }
}

impl KvRead for LazyKvView<'_> {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        self.view()?.get(slot, key)
    }

    fn session(&self, client_id: u64) -> Option<Bytes> {
        self.view()?.session(client_id)
    }

    fn sessions(&self) -> Vec<(u64, Bytes)> {
        self.view().map_or_else(Vec::new, |v| v.sessions())
    }

    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)> {
        self.view().map_or_else(Vec::new, |v| v.scan(slots, after, limit))
    }

    fn count_keys(&self, slots: RangeInclusive<u16>, tally: Tally) -> KeyCount {
        self.view().map_or_else(KeyCount::default, |v| v.count_keys(slots, tally))
    }
}
