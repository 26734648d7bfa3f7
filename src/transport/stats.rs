//! The transport's counters: cheap relaxed atomics, kept per peer node and for the whole
//! node, read as plain snapshots (`TransportStats`, later Prometheus metrics). Owns the
//! counting only; it must never lock or allocate on the counting path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::raft::types::NodeId;

macro_rules! counters {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        /// A snapshot of one peer's counters (or of the whole node's, summed).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct PeerStats {
            $($(#[$doc])* pub $field: u64,)*
        }

        /// The live counters behind a `PeerStats`.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $field: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> PeerStats {
                PeerStats { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }

        impl PeerStats {
            fn add(&mut self, other: &PeerStats) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

counters!(
    /// Frames written to the peer (any kind, handshake excluded).
    frames_sent,
    /// Batch frames read from the peer.
    frames_received,
    /// Frames sent that carried coalesced heartbeat entries.
    heartbeat_frames_sent,
    /// Coalesced heartbeat entries (requests and responses) sent.
    heartbeat_entries_sent,
    /// Raft messages, forwards and replies sent (a heartbeat entry counts as a message).
    messages_sent,
    /// Raft messages, forwards and replies received (expanded heartbeats included).
    messages_received,
    /// Bytes written, length prefixes included.
    bytes_sent,
    /// Bytes read in batch frames, length prefixes included.
    bytes_received,
    /// Items dropped because the peer's queue or heartbeat batch was full, or because a
    /// single item exceeded `frame_bytes_max`.
    dropped_full_queue,
    /// Inbound handshakes refused (wrong secret, unknown node, wrong version, garbage, a
    /// changed incarnation).
    refused_handshakes,
    /// Outbound handshakes the peer refused although this node proved the secret: the
    /// peer does not admit this node's data directory (it lost its state?).
    refused_by_peer,
    /// Outbound connections established (handshake completed).
    connects,
);

/// Counters of the whole node and of each peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Sum over all peers, plus refusals of strangers that are nobody's peer.
    pub total: PeerStats,
    pub peers: BTreeMap<NodeId, PeerStats>,
}

impl TransportStats {
    pub(crate) fn collect<'a>(
        peers: impl Iterator<Item = (NodeId, &'a Counters)>,
        strangers: &Counters,
    ) -> TransportStats {
        let mut total = strangers.snapshot();
        let mut out = BTreeMap::new();
        for (node, counters) in peers {
            let s = counters.snapshot();
            total.add(&s);
            out.insert(node, s);
        }
        TransportStats { total, peers: out }
    }
}

/// Adds `n` to one counter.
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
