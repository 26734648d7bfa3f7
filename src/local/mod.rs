//! `shardkv local`: a cluster of several `shardkv server` processes on loopback, for trying
//! shardkv on one machine. [`plan`] writes the files (one configuration per node, the layout,
//! the shared secret); [`supervisor`] starts one child process per node, forwards its output
//! and stops the children on Ctrl-C or SIGTERM. It never restarts a node by itself, so an
//! operator can `kill -9` one and watch its groups fail over. Nothing here serves clients.

pub mod plan;
pub mod supervisor;

pub use plan::{LocalError, LocalNode, LocalPlan, PortBase};
