//! The Redis-compatible front end: RESP2/RESP3 over TCP, the command table, and the
//! mapping of shard answers to Redis replies. Owns the wire format (only this module
//! knows it); never owns data: every key operation goes through a `Backend`.
//!
//! # Layout
//! - [`decode`]: two-phase, bounded request decoding (multibulk and inline).
//! - [`frame`]: reply frames and their RESP2/RESP3 encoding.
//! - [`backend`]: the `Backend` trait the node implements, and `ClusterView`.
//! - [`mem_backend`]: an in-memory `Backend` for tests.
//! - [`server`]: the listener (`serve`, `RespOptions`), client bound, shutdown.
//! - [`stats`]: INFO's counters (stats, commandstats, errorstats sections).
//! - [`connection`]: one client: pipelining with in-order replies, output bound.
//! - [`client`]: per-connection state and the client registry.
//! - [`cmd`]: one file per command: syntax, routing, the shard ops to run.
//! - [`exec`]: runs shard ops, merges replies, maps `ShardError`s to Redis errors.
//! - [`pubsub`]: the node's Pub/Sub subscriptions and their delivery.
//!
//! # Two kinds of client
//! - **Plain** (the default, `RespOptions::cluster_redirects = false`): any node accepts
//!   any key and the backend forwards to the group's leader. MGET, DEL, UNLINK and
//!   EXISTS over keys of several groups are split per group and merged (no atomicity is
//!   promised across groups, as in Redis Cluster they would not run at all). A group
//!   without a reachable leader answers `-TRYAGAIN`.
//! - **Cluster-aware** (`cluster_redirects = true`, the node file's, or per connection
//!   `CLIENT REDIRECTS ON`): a key whose group is led by another node answers
//!   `-MOVED slot host:port`; MGET/DEL/UNLINK/EXISTS over several slots answer
//!   `-CROSSSLOT` exactly as Redis Cluster, and as there both come before a command reads
//!   its other arguments (a syntax error sent to the wrong node moves); after READONLY,
//!   reads are served by any node with a replica of the key's group (linearizable still)
//!   instead of moving; a group with no leader answers
//!   `-CLUSTERDOWN The cluster is down`. Commands that name no key (DBSIZE, SCAN,
//!   FLUSHALL, CLUSTER COUNTKEYSINSLOT and GETKEYSINSLOT...) are never moved: as in Redis
//!   Cluster, any node answers them, here with the whole cluster's keys (Redis: the node's
//!   own, none for a slot it does not serve). A node serves cluster clients and plain clients
//!   at once only if their connections differ in mode, hence the per-connection switch.
//!
//! Whatever the mode, commands that promise atomicity over several keys (MSET, MSETNX,
//! RENAME, RENAMENX) need all keys in one slot and otherwise answer `-CROSSSLOT`.
//!
//! Errors from the shards say whether the command was definitely not applied
//! (`-MOVED`, `-TRYAGAIN`, `-CLUSTERDOWN`, `-BUSY`) or has an unknown outcome (a write
//! whose confirmation timed out or whose leader changed, one refused after such an
//! attempt, or a write over several shards (DEL, UNLINK, FLUSHALL) whose parts did not
//! all succeed while some were, or may have been, applied: `-ERR outcome unknown ...`;
//! such a write waits for all its parts, and one refused by every shard says so).
//!
//! Pipelining: requests are prepared in order; consecutive reads run concurrently, a
//! write waits for everything before it and holds back everything after it (so one
//! client's writes apply in its order and its seq numbers reach each group in order),
//! and replies always go back in request order.

pub mod backend;
pub mod client;
pub mod cmd;
pub mod connection;
pub mod decode;
pub mod exec;
pub mod frame;
pub mod mem_backend;
pub mod pubsub;
pub mod server;
pub mod slowlog;
pub mod stats;
pub mod wait;

#[cfg(test)]
mod tests;

pub use backend::{Backend, ClusterView, GroupView, NodeView};
pub use frame::{Frame, Proto};
pub use mem_backend::MemBackend;
pub use server::{serve, RespOptions, ServeError};
