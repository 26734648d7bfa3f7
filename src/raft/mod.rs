//! The pure Raft core, in the style of etcd raft and TiKV raft-rs.
//!
//! Owns: the protocol state of one replica of one group — elections with pre-vote and
//! check-quorum, log replication with pipelining and fast backtracking, the commit rule,
//! ReadIndex and lease reads, snapshots, learners, joint consensus and leader transfer.
//!
//! Must never: do I/O, read a clock, spawn a thread or draw unseeded randomness. Time is
//! `tick()`, randomness a seeded RNG, durability the caller's job between `ready()` and
//! `advance()`. That is what makes the deterministic simulation possible.

pub mod config;
pub mod error;
pub mod storage;
pub mod types;

pub use config::{Config, InjectedBug, ReadMode};
pub use error::{RaftError, Result};
pub use storage::{MemStorage, RaftState, Storage};
pub use types::*;
