//! shardkv: a Redis-compatible, sharded, strongly consistent key-value store. The keyspace
//! is cut into the 16384 Redis Cluster hash slots; contiguous slot ranges form shards, and
//! every shard is its own Raft group.
//!
//! # Layout
//! - [`raft`]: the pure Raft core — no I/O, no clocks, no threads. Inputs are ticks and
//!   messages; output is a `Ready` to persist, send and apply.
//! - [`storage`]: the node's redb database: Raft logs, hard state, snapshots and the
//!   key-value state machines of every group, written with group commit. Only module
//!   that touches redb.
//! - [`kv`]: the deterministic key-value state machine (Redis string semantics, hash
//!   slots, request-id deduplication); pure, shared by the server and the simulation.
//! - [`router`]: the cluster layout (slot ranges → groups → replicas) and, with the node
//!   runtime, the router actor.
//! - [`local`]: `shardkv local` — the files of a loopback cluster and the supervisor of
//!   its `shardkv server` child processes.
//! - [`linearizability`]: the history checker shared by the simulation and the
//!   real-cluster tests.
//! - [`transport`]: the node-level peer transport — one authenticated TCP link per peer
//!   node, length-prefixed rmp-serde batch frames carrying every group's messages,
//!   heartbeats coalesced per node pair, forwarded client requests. Only module that
//!   touches peer sockets.
//!
//! - [`resp`]: the Redis-compatible front end: RESP2/RESP3 codec, command table, the
//!   connection server, and the `Backend` trait the node runtime implements.
//! - [`shard`]: one actix `ShardActor` per group replica: drives its `RawNode`, persists
//!   through the node's one group-commit writer, applies, serves reads and writes.
//! - [`node`]: a running node — its configuration file, the request path (local replica
//!   or forwarded to the leader's node, with request ids) and the assembly of all parts.
//!
//! - [`metrics`]: the node's Prometheus registry, the per-group status poll, the HTTP
//!   `/metrics` endpoint, and the reading of it back for `shardkv status`.
//!
//! - [`admin`]: `shardkv admin` — operator commands (split, leader transfer) sent to a
//!   node's RESP port, reporting how long the group took to serve again.

pub mod admin;
pub mod kv;
pub mod linearizability;
pub mod local;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod resp;
pub mod router;
pub mod shard;
pub mod storage;
pub mod transport;
