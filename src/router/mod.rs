//! Routing: which group owns a slot, which nodes hold a group. Owns the layout (read from
//! `shards/*.toml`, validated before use). Never talks to sockets or disk itself: the
//! caller reads the file and hands over its text.

pub mod layout;

pub use layout::{GroupLayout, Layout, LayoutError, NodeLayout};
