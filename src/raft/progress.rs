//! What a leader knows of each follower: match and next index, the replication state
//! (probe / replicate / snapshot) and the bounded window of appends in flight.

use std::collections::VecDeque;

use crate::raft::types::LogIndex;

/// How the leader is replicating to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// One append at a time until the follower's match point is found.
    Probe,
    /// Optimistic pipelining: appends go out without waiting, up to the inflight window.
    Replicate,
    /// A snapshot is on its way; nothing else is sent until it is acknowledged.
    Snapshot,
}

/// The last indexes of appends in flight to one follower, bounded.
#[derive(Clone, Debug)]
pub struct Inflights {
    last_indexes: VecDeque<LogIndex>,
    capacity: usize,
}

impl Inflights {
    pub fn new(capacity: usize) -> Inflights {
        Inflights { last_indexes: VecDeque::with_capacity(capacity.min(64)), capacity }
    }
    pub fn full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }
    pub fn len(&self) -> usize {
        self.last_indexes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.last_indexes.is_empty()
    }
    fn add(&mut self, last: LogIndex) {
        assert!(!self.full(), "inflight window overflow");
        self.last_indexes.push_back(last);
    }
    /// Frees every append whose last index is at or below `index`.
    fn free_to(&mut self, index: LogIndex) {
        while self.last_indexes.front().is_some_and(|&i| i <= index) {
            self.last_indexes.pop_front();
        }
    }
    fn free_first(&mut self) {
        self.last_indexes.pop_front();
    }
    fn reset(&mut self) {
        self.last_indexes.clear();
    }
}

/// The leader's view of one follower (or learner).
#[derive(Clone, Debug)]
pub struct Progress {
    pub matched: LogIndex,
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// In `Snapshot`: the index of the snapshot sent.
    pub pending_snapshot: LogIndex,
    /// Ticks spent in `Snapshot`, to retry a lost snapshot.
    pub snapshot_ticks: u64,
    /// Heard from within the current check-quorum period.
    pub recent_active: bool,
    /// In `Probe`: an append was sent and is not yet answered.
    pub probe_sent: bool,
    pub inflights: Inflights,
}

impl Progress {
    pub fn new(next_index: LogIndex, inflight_max: usize) -> Progress {
        Progress {
            matched: LogIndex(0),
            next_index,
            state: ProgressState::Probe,
            pending_snapshot: LogIndex(0),
            snapshot_ticks: 0,
            recent_active: false,
            probe_sent: false,
            inflights: Inflights::new(inflight_max),
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = LogIndex(0);
        self.snapshot_ticks = 0;
        self.state = state;
        self.inflights.reset();
    }

    pub fn become_probe(&mut self) {
        let after_snapshot = self.pending_snapshot;
        let was_snapshot = self.state == ProgressState::Snapshot;
        self.reset_state(ProgressState::Probe);
        self.next_index = if was_snapshot {
            self.matched.next().max(after_snapshot.next())
        } else {
            self.matched.next()
        };
    }

    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_index = self.matched.next();
    }

    pub fn become_snapshot(&mut self, snapshot_index: LogIndex) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
    }

    /// A successful answer up to `index`. Returns true if the match point moved.
    pub fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = self.matched < index;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index.next());
        updated
    }

    /// A rejection of the append whose `prev_log_index` was `rejected`; `hint` is where the
    /// follower's log might match. Returns false for a stale (reordered) rejection.
    pub fn maybe_decr_to(&mut self, rejected: LogIndex, hint: LogIndex) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next_index = self.matched.next();
            return true;
        }
        if self.next_index.prev() != rejected {
            return false;
        }
        self.next_index = rejected.min(hint.next()).max(self.matched.next());
        self.probe_sent = false;
        true
    }

    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }

    /// An append ending at `last` (or empty) was sent.
    pub fn update_on_send(&mut self, last: Option<LogIndex>) {
        match self.state {
            ProgressState::Replicate => {
                if let Some(last) = last {
                    self.next_index = last.next();
                    self.inflights.add(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// A successful answer frees the window up to `index`.
    pub fn free_inflights_to(&mut self, index: LogIndex) {
        self.inflights.free_to(index);
    }

    /// A heartbeat answer: the follower is alive; let one more append through.
    pub fn on_heartbeat_response(&mut self) {
        self.recent_active = true;
        self.probe_sent = false;
        if self.state == ProgressState::Replicate && self.inflights.full() {
            self.inflights.free_first();
        }
    }
}
