//! The byte encoding of the records this module stores in the redb tables (rmp-serde of the
//! `raft::types` structs) and their decoding, which turns any damage into
//! `StorageError::Corrupt` naming the file.
//!
//! Owns: encode/decode of Raft records. Must never: decode key-value records (their
//! encoding belongs to `kv`), or panic on bytes read from disk.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::raft::{Entry, GroupId, LogIndex};
use crate::storage::error::{Result, StorageError};

/// Encodes an in-memory record for a table.
pub(crate) fn encode<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec(value).map_err(|e| StorageError::Io {
        path: path.to_path_buf(),
        op: "encode record",
        detail: e.to_string(),
    })
}

/// Decodes a record read from the file; `what` names it in the error.
pub(crate) fn decode<T: DeserializeOwned>(
    path: &Path,
    group: GroupId,
    what: &str,
    bytes: &[u8],
) -> Result<T> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| StorageError::corrupt(path, format!("group {group}: {what}: {e}")))
}

/// Decodes the log entry stored under `(group, index)`, checking that it is the entry the
/// key says it is (a record moved or half-written under another key is corruption).
pub(crate) fn decode_entry(path: &Path, group: GroupId, index: u64, bytes: &[u8]) -> Result<Entry> {
    let entry: Entry = decode(path, group, "log entry", bytes)?;
    if entry.index != LogIndex(index) {
        return Err(StorageError::corrupt(
            path,
            format!("group {group}: log key {index} holds entry {}", entry.index),
        ));
    }
    Ok(entry)
}
