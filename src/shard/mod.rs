//! Group replicas at run time: one `ShardActor` (actix) per group replica on this node.

pub mod api;
