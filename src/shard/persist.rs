//! `ShardWriter`: the node's one durability path for its group replicas. It wraps the
//! storage layer's `ThreadedWriter` (group commit: one transaction and one fsync for
//! whatever many groups queued). A replica hands it a `GroupWrite` without waiting; the
//! writer's thread calls the replica back once the write is durable, in submission order.
//! Replica actors therefore never block on disk.
//!
//! Owns: the handle on that writer. Must never: report a write durable before the writer
//! did, or reorder the answers of one replica.

use std::sync::Arc;

use crate::raft::ConfState;
use crate::raft::{GroupId, LogIndex};
use crate::storage::{
    GroupCommitWriter, GroupDurable, GroupWrite, NodeDb, Refused, StorageError, ThreadedWriter,
};

/// Called once a write is durable (or failed), on the writer's thread: it must only
/// enqueue.
pub type PersistCallback = Box<dyn FnOnce(Result<GroupDurable, StorageError>) + Send>;

/// Why a write could not be queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The writer's queue (`WRITER_QUEUE_SUBMISSIONS_MAX`) is full: retry later.
    #[error("persist queue full")]
    Full,
    #[error("node writer stopped")]
    Stopped,
}

/// A handle on the node's writer; cheap to clone, one per replica.
#[derive(Clone)]
pub struct ShardWriter {
    threaded: Arc<ThreadedWriter>,
    commit: GroupCommitWriter,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter").finish_non_exhaustive()
    }
}

impl ShardWriter {
    /// Starts the node's writer over `db`. Its thread ends once every handle is dropped,
    /// after what was queued is written.
    pub fn start(db: Arc<NodeDb>) -> std::io::Result<ShardWriter> {
        let commit = GroupCommitWriter::new(db);
        let threaded = Arc::new(commit.clone().spawn()?);
        Ok(ShardWriter { threaded, commit })
    }

    /// Queues `write` (and `also`, other groups' writes that must follow it in the same
    /// submission); `done` is called with `write`'s answer once all are durable. Never
    /// blocks: when the writer's queue is full (or the writer stopped) the write comes back.
    pub fn submit(
        &self,
        write: GroupWrite,
        also: Vec<GroupWrite>,
        done: PersistCallback,
    ) -> Result<(), (SubmitError, Box<GroupWrite>)> {
        let mut writes = Vec::with_capacity(1 + also.len());
        writes.push(write);
        writes.extend(also);
        let answer = Box::new(move |result: Result<Vec<GroupDurable>, StorageError>| {
            let first = result.and_then(|durable| {
                durable.into_iter().next().ok_or(StorageError::WriterStopped)
            });
            done(first);
        });
        let first = |writes: Vec<GroupWrite>| {
            Box::new(writes.into_iter().next().expect("a refused submission returns its writes"))
        };
        match self.threaded.try_submit_then(writes, answer) {
            Ok(()) => Ok(()),
            Err(Refused::Full(writes)) => Err((SubmitError::Full, first(writes))),
            Err(Refused::Stopped(writes)) => Err((SubmitError::Stopped, first(writes))),
        }
    }

    /// Writes at once and waits (start-up only: bootstrapping a group).
    pub fn write_now(&self, write: GroupWrite) -> Result<GroupDurable, StorageError> {
        let mut durable = self.commit.write_batch(&[write])?;
        durable.pop().ok_or(StorageError::WriterStopped)
    }

    /// Log compaction to `index` (blocking: call it off the actor's thread).
    pub fn compact(
        &self,
        group: GroupId,
        index: LogIndex,
        conf: ConfState,
    ) -> Result<(), StorageError> {
        self.commit.compact(group, index, conf)
    }

    pub fn db(&self) -> &Arc<NodeDb> {
        self.commit.db()
    }
}
