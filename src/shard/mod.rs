//! Group replicas at run time: one `ShardActor` (actix) per group replica on this node,
//! started on one of a few shared arbiters.
//!
//! - [`api`]: what the node asks of a replica and what it answers (pinned seam).
//! - [`actor`]: `ShardActor`, its configuration, dependencies, messages and bootstrap.
//! - `ready`: the Ready loop: send, apply, persist, answer; snapshots and compaction.
//! - `follower_reads`: the node's own reads served by a follower after a read index.
//! - [`read_door`]: reads a leader would answer at once (on its lease or a voter's
//!   endorsement), answered on the node's request path from its applied state.
//! - `expiry`: the leader's active expiry, deleting the records whose deadline passed.
//! - [`split`]: splitting the group (a log entry) and the slot-ownership rule.
//! - [`persist`]: `ShardWriter`, the node's non-blocking path to the group-commit writer.
//! - [`undurable`]: applied but not yet durable mutations, layered over redb.
//! - [`limits`]: every bound of the runtime.
//!
//! Must never: run Raft logic across an await, block an arbiter on disk, or answer a
//! client before its write is committed and applied.

pub mod actor;
pub mod api;
mod counts;
mod expiry;
mod follower_reads;
pub mod limits;
mod members;
pub mod persist;
pub mod read_door;
mod ready;
mod snapshot;
pub mod split;
pub mod undurable;

#[cfg(test)]
mod tests;

pub use actor::{
    bootstrap_group, first_state_write, Execute, GetStatus, Inbound, LeaderChangeFn, ShardActor, ShardConfig,
    MembersFn, RemovedFn, ShardDeps, ShardStartError, ShardStatus, SplitFn, Stop, TransferLeader,
};
pub use persist::{ShardWriter, SubmitError};
