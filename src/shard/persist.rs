//! `ShardWriter`: the node's one durability path for its group replicas. It wraps the
//! storage layer's `ThreadedWriter` (group commit: one transaction and one fsync for
//! whatever many groups queued) with two threads: a submitter that hands each replica's
//! `GroupWrite` to the writer without waiting, and a waiter that waits for each answer in
//! submission order and calls the replica back. Replica actors therefore never block on
//! disk.
//!
//! Owns: those two threads and their bounded queues. Must never: report a write durable
//! before the writer did, or reorder the answers of one replica.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use crate::raft::ConfState;
use crate::raft::{GroupId, LogIndex};
use crate::shard::limits::PERSIST_QUEUE_JOBS_MAX;
use crate::storage::{
    GroupCommitWriter, GroupDurable, GroupWrite, NodeDb, Pending, StorageError, ThreadedWriter,
};

/// Called once a write is durable (or failed), on the waiter thread: it must only enqueue.
pub type PersistCallback = Box<dyn FnOnce(Result<GroupDurable, StorageError>) + Send>;

struct Job {
    write: GroupWrite,
    /// Written in the same submission after `write` (groups a split creates).
    also: Vec<GroupWrite>,
    done: PersistCallback,
}

/// Why a write could not be queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// `PERSIST_QUEUE_JOBS_MAX` jobs are queued: retry later.
    #[error("persist queue full")]
    Full,
    #[error("node writer stopped")]
    Stopped,
}

/// A handle on the node's writer; cheap to clone, one per replica.
#[derive(Clone)]
pub struct ShardWriter {
    jobs: SyncSender<Job>,
    commit: GroupCommitWriter,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter").finish_non_exhaustive()
    }
}

impl ShardWriter {
    /// Starts the node's writer over `db`. The threads end once every handle is dropped,
    /// after what was queued is written.
    pub fn start(db: Arc<NodeDb>) -> std::io::Result<ShardWriter> {
        let commit = GroupCommitWriter::new(db);
        let threaded = commit.clone().spawn()?;
        let (jobs, job_rx) = mpsc::sync_channel::<Job>(PERSIST_QUEUE_JOBS_MAX);
        let (wait_tx, wait_rx) = mpsc::sync_channel(PERSIST_QUEUE_JOBS_MAX);
        std::thread::Builder::new()
            .name("shardkv-persist-wait".to_string())
            .spawn(move || run_waiter(&wait_rx))?;
        std::thread::Builder::new()
            .name("shardkv-persist-submit".to_string())
            .spawn(move || run_submitter(threaded, &job_rx, &wait_tx))?;
        Ok(ShardWriter { jobs, commit })
    }

    /// Queues `write` (and `also`, other groups' writes that must follow it in the same
    /// submission); `done` is called with `write`'s answer once all are durable. Never
    /// blocks: when the queue is full (or the writer stopped) the write comes back.
    pub fn submit(
        &self,
        write: GroupWrite,
        also: Vec<GroupWrite>,
        done: PersistCallback,
    ) -> Result<(), (SubmitError, Box<GroupWrite>)> {
        match self.jobs.try_send(Job { write, also, done }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err((SubmitError::Full, Box::new(job.write))),
            Err(TrySendError::Disconnected(job)) => {
                Err((SubmitError::Stopped, Box::new(job.write)))
            }
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

fn run_submitter(
    threaded: ThreadedWriter,
    jobs: &Receiver<Job>,
    wait: &SyncSender<(Result<Pending, StorageError>, PersistCallback)>,
) {
    while let Ok(job) = jobs.recv() {
        // Blocks while the writer's own queue is full: backpressure reaches the replicas
        // through `submit` failing with `Full`.
        let mut writes = Vec::with_capacity(1 + job.also.len());
        writes.push(job.write);
        writes.extend(job.also);
        let pending = threaded.submit(writes);
        if wait.send((pending, job.done)).is_err() {
            return;
        }
    }
}

fn run_waiter(wait: &Receiver<(Result<Pending, StorageError>, PersistCallback)>) {
    while let Ok((pending, done)) = wait.recv() {
        let result = pending
            .and_then(Pending::wait)
            .and_then(|durable| durable.into_iter().next().ok_or(StorageError::WriterStopped));
        done(result);
    }
}
