//! Errors of the Raft core.

use thiserror::Error;

/// What can go wrong in the core or in reading its storage.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RaftError {
    /// The requested index was compacted into a snapshot.
    #[error("requested index is compacted")]
    Compacted,
    /// The requested index is past the end of the log.
    #[error("requested entry is unavailable")]
    Unavailable,
    /// The storage is building a snapshot; try again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// A snapshot older than the one already held.
    #[error("snapshot is out of date")]
    SnapshotOutOfDate,
    /// A proposal was refused: no leader here, a leader transfer is running, a membership
    /// change is pending, or the uncommitted-bytes bound was hit. Definitely not applied.
    #[error("proposal dropped: {0}")]
    ProposalDropped(&'static str),
    /// A membership change that would break the configuration rules.
    #[error("invalid configuration change: {0}")]
    InvalidConfChange(String),
    /// A message addressed to another node, or from a node this one does not know.
    #[error("message not for this node: {0}")]
    NotForThisNode(String),
    /// The configuration was refused by `Config::validate`.
    #[error("invalid raft config: {0}")]
    InvalidConfig(String),
    /// A storage implementation failed.
    #[error("storage error: {0}")]
    Store(String),
}

/// The core's result type.
pub type Result<T> = std::result::Result<T, RaftError>;
