//! The pure Raft core, in the style of etcd raft and TiKV raft-rs.
//!
//! Owns: the protocol state of one replica of one group — elections with pre-vote and
//! check-quorum, log replication with pipelining and fast backtracking, the commit rule,
//! ReadIndex and lease reads, snapshots, learners, joint consensus and leader transfer.
//!
//! Must never: do I/O, read a clock, spawn a thread or draw unseeded randomness. Time is
//! `tick()`, randomness a seeded RNG, durability the caller's job between `ready()` and
//! `advance()`. That is what makes the deterministic simulation possible.
//!
//! Files: `types` (the nouns), `config`, `error`, `storage` (the trait and `MemStorage`),
//! `log` (stable + unstable log, commit and apply points), `progress` (the leader's view of
//! a follower), `quorum` (plain and joint majorities), `read_only` (ReadIndex rounds),
//! `replica` (state and role changes), `step` (messages, votes, the follower side),
//! `leader` (replication, commit, reads, transfer, membership), `raw_node` (the API).

pub mod config;
pub mod error;
mod leader;
pub mod log;
pub mod progress;
pub mod quorum;
pub mod raw_node;
pub mod read_only;
mod replica;
mod step;
pub mod storage;
pub mod types;

pub use config::{Config, InjectedBug, ReadMode};
pub use error::{RaftError, Result};
pub use leader::next_conf;
pub use progress::ProgressState;
pub use raw_node::{FollowerStatus, RawNode, Ready, Status};
pub use replica::ConfChangeStep;
pub use storage::{MemStorage, RaftState, Storage};
pub use types::*;
