//! Routing: which group owns a slot, which nodes hold a group, who leads it. `layout`
//! parses and validates `shards/*.toml`; `table` is the lock-free table connection tasks
//! read; `actor` is its one writer. Never talks to sockets or disk itself.

pub mod actor;
pub mod layout;
pub mod table;

pub use layout::{GroupLayout, Layout, LayoutError, NodeLayout};
pub use table::{GroupRoute, NodeAddrs, RoutingTable};
