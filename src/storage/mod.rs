//! Durable storage of a node: one redb database holding every group's Raft state and
//! key-value state machine. Only this module touches redb.
//!
//! - [`db`]: `NodeDb`, the node's database file: open, format version, refusal of foreign
//!   or damaged files, fsync counter.
//! - [`log_store`]: `RedbStorage`, one group's log and state read through `raft::Storage`,
//!   served from a bounded in-memory cache on the hot path.
//! - [`writer`]: `GroupCommitWriter` and `ThreadedWriter`, the one writer: many groups'
//!   persist work in one transaction and one fsync; log compaction.
//! - [`limits`]: every bound of the layer.
//! - [`conformance`]: the suite every `raft::Storage` implementation must pass.
//! - [`kv_store`]: the key-value state machine's view of redb (a `kv::KvRead` over a read
//!   transaction) and the writing of its mutations.
//! - [`group_snapshot`]: a group's snapshot data paired with its applied index and
//!   configuration, as the runtime ships and installs it; the runtime's read view.
//! - [`destroy`]: deleting a group's replica (state, log, records) in one transaction.
//! - [`wal`]: the write-ahead log of Raft appends: the durable home of entries and hard
//!   states between two redb transactions, replayed into redb at open.
//! - [`snapshot_data`]: one group's state-machine data streamed in bounded, CRC-checked
//!   chunks, and their installation.
//!
//! Must never: acknowledge a write that is not durable, or read a damaged file without an
//! error naming it.

mod codec;
#[doc(hidden)]
pub mod conformance;
pub mod db;
pub mod destroy;
pub mod error;
pub mod group_snapshot;
pub mod limits;
pub mod log_store;
pub mod tables;
pub mod kv_store;
pub mod snapshot_data;
pub mod wal;
pub mod writer;

pub use db::{NodeDb, FORMAT_VERSION};
pub use error::StorageError;
pub use log_store::RedbStorage;
pub use writer::{
    DurableCallback, GroupCommitWriter, GroupDurable, GroupWrite, Pending, Refused, ThreadedWriter,
};
