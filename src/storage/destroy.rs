//! Removing a group's replica from the node: everything the group wrote (Raft state, log,
//! snapshot point, applied index, range, client sessions, and the records of its slots)
//! is deleted in one durable transaction, so a crash leaves either the whole replica or
//! none of it, and the same transaction records the group as removed, so a restart does
//! not bootstrap it again from the layout file. Used once a membership change removed
//! this node from the group.
//!
//! Must never: delete records of slots outside the range it is given (other groups of the
//! node share the key-value table).

use std::ops::RangeInclusive;

use crate::raft::GroupId;
use crate::storage::db::NodeDb;
use crate::storage::kv_store::{group_sessions, slot_bounds};
use crate::storage::tables::{
    APPLIED, CONF_STATE, GROUP_RANGE, HARD_STATE, KV, LOG, REMOVED_GROUPS, SESSIONS,
    SNAPSHOT_META,
};
use crate::storage::StorageError;

/// Deletes `group`'s state and, with `slots`, the records of those slots. Idempotent.
pub fn destroy_group(
    db: &NodeDb,
    group: GroupId,
    slots: Option<RangeInclusive<u16>>,
) -> Result<(), StorageError> {
    let g = group.get();
    let mut wal = db.lock_writes();
    let txn = db.begin_durable_write()?;
    // Every group's log writes that redb does not hold yet go first, this group's with the
    // rest: none may reach redb after the deletion.
    crate::storage::writer::absorb_into(db, &wal, &txn)?;
    {
        let err = |e: redb::Error| db.err("destroy group", e);
        // Every redb error kind converts into `redb::Error`.
        for def in [HARD_STATE, CONF_STATE, SNAPSHOT_META, GROUP_RANGE] {
            let mut table = txn.open_table(def).map_err(|e| err(e.into()))?;
            table.remove(g).map_err(|e| err(e.into()))?;
        }
        let mut applied = txn.open_table(APPLIED).map_err(|e| err(e.into()))?;
        applied.remove(g).map_err(|e| err(e.into()))?;
        let mut log = txn.open_table(LOG).map_err(|e| err(e.into()))?;
        log.retain_in((g, 0)..=(g, u64::MAX), |_, _| false).map_err(|e| err(e.into()))?;
        let mut sessions = txn.open_table(SESSIONS).map_err(|e| err(e.into()))?;
        sessions.retain_in(group_sessions(g), |_, _| false).map_err(|e| err(e.into()))?;
        let mut removed = txn.open_table(REMOVED_GROUPS).map_err(|e| err(e.into()))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        removed.insert(g, now_ms).map_err(|e| err(e.into()))?;
        if let Some(slots) = slots {
            let mut kv = txn.open_table(KV).map_err(|e| err(e.into()))?;
            kv.retain_in(slot_bounds(&slots), |_, _| false).map_err(|e| err(e.into()))?;
        }
    }
    db.commit(txn, 0)?;
    crate::storage::writer::absorbed(db, &mut wal)?;
    db.forget_group(group);
    Ok(())
}

/// Within `txn`: forgets that `group` was removed from this node (a replica of it installed
/// a snapshot: the node was added to the group again).
pub(crate) fn clear_removed(
    db: &NodeDb,
    txn: &redb::WriteTransaction,
    group: GroupId,
) -> Result<(), StorageError> {
    let mut removed = txn.open_table(REMOVED_GROUPS).map_err(|e| db.err("open removed groups", e))?;
    removed.remove(group.get()).map_err(|e| db.err("clear removed group", e))?;
    Ok(())
}
