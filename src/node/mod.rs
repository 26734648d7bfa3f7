//! A running node: its configuration, and the assembly of storage, shard replicas, the
//! router, the transport and the RESP listener into one process.

pub mod client;
pub mod config;
pub mod join;
pub mod meta;
mod placement;
pub mod read_rounds;
pub mod run;
pub mod scheduling;
pub mod workload;

pub use run::{run, Node, NodeBackend, NodeError};
