//! Durable storage of a node: one redb database holding every group's Raft state and
//! key-value state machine. Only this module touches redb.
pub mod tables;
pub mod kv_store;
pub mod snapshot_data;
