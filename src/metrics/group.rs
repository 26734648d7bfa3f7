//! `GroupMetrics`: the counters and histograms one replica updates itself (elections,
//! proposals and their latency, apply latency, snapshots). Cheap clones of registered
//! series; a replica started without a registry gets detached ones that count into the
//! void. Never locks or allocates when counting.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter};

use super::LATENCY_BUCKETS_SECONDS;

/// One replica's series.
#[derive(Clone)]
pub struct GroupMetrics {
    /// Times this replica became a candidate (pre-votes excluded).
    pub elections_started: IntCounter,
    /// Times this replica became leader.
    pub elections_won: IntCounter,
    /// Client writes proposed while leader.
    pub proposals: IntCounter,
    /// From proposal to the answer of an applied write.
    pub proposal_seconds: Histogram,
    /// Applying one Ready's committed entries to the state machine.
    pub apply_seconds: Histogram,
    pub snapshots_sent: IntCounter,
    pub snapshots_installed: IntCounter,
    /// Readies whose apply waited for their messages to reach the wire
    /// (`shard::limits::APPLY_PAUSE_KEYS_MIN`).
    pub apply_pauses: IntCounter,
    /// Reads answered on a voter's endorsement with no heartbeat round (by the replica or
    /// through its read door).
    pub reads_endorsed: IntCounter,
    /// Reads this replica took as a follower: the leader gave their read index.
    pub reads_follower: IntCounter,
    /// Reads the node answered through this leader's read door (`shard::read_door`), on
    /// its lease or a voter's endorsement, without a message to the replica.
    pub reads_direct: IntCounter,
    /// Key lookups its clean cache answered, and those that went past it to redb.
    pub clean_cache_hits: IntCounter,
    pub clean_cache_misses: IntCounter,
    /// Expired keys deleted by this replica's active expiry, as leader (`shard::expiry`).
    pub expired_keys: IntCounter,
}

impl GroupMetrics {
    /// Series registered nowhere (tests, replicas of a node without metrics).
    pub fn detached() -> GroupMetrics {
        let counter =
            |name: &str| IntCounter::new(name, "detached").expect("a constant, valid metric name");
        let histogram = |name: &str| {
            let opts =
                HistogramOpts::new(name, "detached").buckets(LATENCY_BUCKETS_SECONDS.to_vec());
            Histogram::with_opts(opts).expect("constant, valid histogram options")
        };
        GroupMetrics {
            elections_started: counter("elections_started"),
            elections_won: counter("elections_won"),
            proposals: counter("proposals"),
            proposal_seconds: histogram("proposal_seconds"),
            apply_seconds: histogram("apply_seconds"),
            snapshots_sent: counter("snapshots_sent"),
            snapshots_installed: counter("snapshots_installed"),
            apply_pauses: counter("apply_pauses"),
            reads_endorsed: counter("reads_endorsed"),
            reads_follower: counter("reads_follower"),
            reads_direct: counter("reads_direct"),
            clean_cache_hits: counter("clean_cache_hits"),
            clean_cache_misses: counter("clean_cache_misses"),
            expired_keys: counter("expired_keys"),
        }
    }

    pub fn observe_proposal(&self, elapsed: Duration) {
        self.proposal_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn observe_apply(&self, elapsed: Duration) {
        self.apply_seconds.observe(elapsed.as_secs_f64());
    }
}

impl Default for GroupMetrics {
    fn default() -> GroupMetrics {
        GroupMetrics::detached()
    }
}

impl std::fmt::Debug for GroupMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupMetrics")
            .field("elections_started", &self.elections_started.get())
            .field("elections_won", &self.elections_won.get())
            .field("proposals", &self.proposals.get())
            .finish_non_exhaustive()
    }
}
