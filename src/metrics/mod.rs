//! Prometheus metrics of one node: the registry, the handles the shard replicas, the RESP
//! front end and the storage writer update, the periodic poll of every local replica's
//! status, and the HTTP `/metrics` endpoint on `listen.metrics`. Every series carries a
//! constant `node` label; per-group series add `group`.
//!
//! Owns counting and exposition only. It must never block an actor: counters are relaxed
//! atomics, gauges are filled by a poll that asks each replica for its `ShardStatus`, and
//! transport and fsync totals are read at scrape time from the counters their owners keep.
//!
//! # Layout
//! - [`node`]: `NodeMetrics` — the registry and every metric family of a node.
//! - [`group`]: `GroupMetrics` — one replica's counters and histograms.
//! - [`resp`]: `RespMetrics` — commands, latency, connected and refused clients.
//! - [`poll`]: the periodic `GetStatus` poll that sets the per-group gauges.
//! - [`http`]: the bounded HTTP server answering `GET /metrics`.
//! - [`scrape`]: parsing the text format back (for `shardkv status` and tests).
//! - [`status`]: the per-group table of `shardkv status`.

pub mod group;
pub mod http;
pub mod node;
pub mod poll;
pub mod resp;
pub mod scrape;
pub mod status;

pub use group::GroupMetrics;
pub use node::NodeMetrics;
pub use resp::RespMetrics;

/// Why metrics could not be set up or served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metric registration: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Buckets of latency histograms, in seconds: 50 µs to 10 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Buckets of the read-round time histogram, in seconds: 25 µs to 1 s, finest where a
/// round on loopback or a LAN falls (a tenth of a millisecond to a few), up to the longest
/// wait for a round (a heartbeat interval).
pub const READ_ROUND_BUCKETS_SECONDS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_075, 0.000_1, 0.000_125, 0.000_15, 0.000_2, 0.000_25, 0.000_3,
    0.000_4, 0.000_5, 0.000_75, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Buckets of the fsync batch-size histogram, in group writes per fsync.
pub const BATCH_BUCKETS_WRITES: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
