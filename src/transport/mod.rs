//! The node-level transport: one TCP connection per peer node carrying the Raft messages
//! of every group, coalesced heartbeats and forwarded client requests.

pub mod api;
