//! Errors of the storage layer.
//!
//! Owns: `StorageError`, and the translation of redb's errors into it (every error that
//! comes from the file names the file). Must never: hide corruption behind a generic I/O
//! error, or carry a redb type across the module boundary.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::raft::{GroupId, RaftError};

/// What can go wrong opening, reading or writing a node's database.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The file exists but is not a shardkv database (not redb, or redb without our tables).
    #[error("{}: not a shardkv database: {reason}", path.display())]
    NotShardkv { path: PathBuf, reason: String },
    /// A shardkv database of a format this build does not read.
    #[error("{}: format version {found}, this build reads version {expected}", path.display())]
    UnsupportedVersion { path: PathBuf, found: u64, expected: u64 },
    /// The file is damaged: truncated, a bad checksum, or a record that does not decode.
    #[error("{}: corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// Another process (or handle) has the database open.
    #[error("{}: already open elsewhere", path.display())]
    AlreadyOpen { path: PathBuf },
    /// An I/O or redb failure that is not known to be corruption.
    #[error("{}: {op}: {detail}", path.display())]
    Io { path: PathBuf, op: &'static str, detail: String },
    /// A write that breaks the log's rules (a gap, below the snapshot, a stale snapshot).
    /// Nothing of the batch it came in was written.
    #[error("group {group}: invalid write: {reason}")]
    InvalidWrite { group: GroupId, reason: String },
    /// The snapshot is older than the one already stored.
    #[error("group {group}: snapshot at {index} is out of date")]
    SnapshotOutOfDate { group: GroupId, index: u64 },
    /// The group-commit writer thread has stopped; the outcome of the submission is unknown.
    #[error("group-commit writer stopped")]
    WriterStopped,
}

/// The storage result type.
pub type Result<T> = std::result::Result<T, StorageError>;

impl StorageError {
    /// Wraps a redb error met while doing `op` on the database at `path`.
    pub(crate) fn redb(path: &Path, op: &'static str, err: impl Into<redb::Error>) -> Self {
        let err: redb::Error = err.into();
        match err {
            redb::Error::Corrupted(reason) => {
                StorageError::Corrupt { path: path.to_path_buf(), reason }
            }
            redb::Error::DatabaseAlreadyOpen => {
                StorageError::AlreadyOpen { path: path.to_path_buf() }
            }
            other => StorageError::Io { path: path.to_path_buf(), op, detail: other.to_string() },
        }
    }

    /// A record of the file that does not decode.
    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        StorageError::Corrupt { path: path.to_path_buf(), reason: reason.into() }
    }
}

impl From<StorageError> for RaftError {
    fn from(err: StorageError) -> RaftError {
        match err {
            StorageError::SnapshotOutOfDate { .. } => RaftError::SnapshotOutOfDate,
            other => RaftError::Store(other.to_string()),
        }
    }
}
