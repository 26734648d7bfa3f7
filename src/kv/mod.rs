//! The key-value state machine with Redis string semantics.
//!
//! Applying a committed command is pure and deterministic: it reads through a `KvRead`
//! view, and produces a reply plus a list of `KvMutation`s that storage persists in the
//! group-commit transaction (together with the applied index). The server, the simulation
//! and the tests all share this code.
//!
//! `slot` (key → hash slot), `record` (stored value layout), `command` (write commands
//! as logged), `apply` (dedup + command semantics), `overlay` (a batch's pending
//! writes), `session` (exactly-once client sessions, bounded), `read` (read commands),
//! `bits` (the bit commands and LCS over string values), `dump` (DUMP and RESTORE's
//! payload), `expiry` (the expired records a leader deletes), `notify` (the keyspace
//! events a write raises), `range` (the slots a group owns, splits), `meta` (the cluster map the metadata group holds), `number` (integer/float
//! text), `glob` (KEYS/SCAN patterns), `reply` (answers and Redis error texts), `mem`
//! (in-memory state for the simulation and tests). Nothing here does I/O or reads a clock.

use bytes::Bytes;

pub mod apply;
pub mod bits;
pub mod command;
pub mod dump;
pub mod expiry;
pub mod glob;
pub mod mem;
pub mod meta;
pub mod notify;
pub mod number;
pub mod overlay;
pub mod range;
pub mod read;
pub mod record;
pub mod reply;
pub mod session;
pub mod slot;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod model_tests;

pub use apply::{apply, KvRead};
pub use command::{KvCommand, Request};
pub use mem::MemKv;
pub use overlay::Overlay;
pub use reply::{KvError, Reply};
pub use slot::key_slot;

/// One change to a group's persisted state-machine data, as produced by applying a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvMutation {
    /// Write a value record under (slot, key).
    Put { slot: u16, key: Bytes, record: Bytes },
    /// Remove (slot, key).
    Delete { slot: u16, key: Bytes },
    /// Write the deduplication session of a client (in the group of the write).
    PutSession { client_id: u64, record: Bytes },
    /// Remove a client's session (expired or evicted).
    DeleteSession { client_id: u64 },
    /// Remove every key of slots `first..=last` (FLUSHALL, FLUSHDB): one mutation however
    /// many keys the slots hold; the store deletes them as one range of its ordered keys (a
    /// walk over them, in the writer). Sessions stay.
    ClearSlots { first: u16, last: u16 },
}

impl KvMutation {
    /// The bytes of keys and records it carries.
    pub fn data_bytes(&self) -> u64 {
        match self {
            KvMutation::Put { key, record, .. } => (key.len() + record.len()) as u64,
            KvMutation::Delete { key, .. } => key.len() as u64,
            KvMutation::PutSession { record, .. } => record.len() as u64,
            KvMutation::DeleteSession { .. } | KvMutation::ClearSlots { .. } => 0,
        }
    }
}
