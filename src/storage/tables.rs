//! The redb tables of a node's database. Every group on the node shares them; keys start
//! with the group id (Raft state) or the slot (key-value data, so that a split, which only
//! changes which group owns a slot range, moves no data).
//!
//! Values are rmp-serde encodings of the `raft::types` structs unless noted.

use redb::TableDefinition;

/// `"format_version" -> u64`, and other node-wide facts (`"node_id"`).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// group -> `HardState`.
pub const HARD_STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("hard_state");
/// group -> `ConfState` as of the last committed membership change.
pub const CONF_STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("conf_state");
/// (group, index) -> `Entry`.
pub const LOG: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raft_log");
/// group -> `SnapshotMetadata` of the snapshot the log was compacted to.
pub const SNAPSHOT_META: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot_meta");
/// group -> last applied index (written in the same transaction as the applied mutations).
pub const APPLIED: TableDefinition<u64, u64> = TableDefinition::new("applied");
/// (slot, key) -> value record (encoding owned by `kv`).
pub const KV: TableDefinition<(u16, &[u8]), &[u8]> = TableDefinition::new("kv");
/// (group, client id) -> client session record (encoding owned by `kv`): the request-id
/// deduplication table.
pub const SESSIONS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("sessions");
/// group -> `kv::range::GroupRange`: the slots the group owns and what it split off (absent:
/// the range of the layout the group was created with, never split).
pub const GROUP_RANGE: TableDefinition<u64, &[u8]> = TableDefinition::new("group_range");
/// Groups whose replica on this node was removed (by a membership change) and deleted,
/// with the time of the deletion in Unix milliseconds: never bootstrapped again from the
/// layout file; cleared when the node is added to the group again.
pub const REMOVED_GROUPS: TableDefinition<u64, u64> = TableDefinition::new("removed_groups");
