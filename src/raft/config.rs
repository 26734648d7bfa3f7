//! Configuration of one Raft replica: time-outs in ticks, the bounds on every window and
//! batch, and the switches for the optional protocol features.

use crate::raft::error::{RaftError, Result};
use crate::raft::types::{GroupId, LogIndex, NodeId};

/// How linearizable reads are confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex: one heartbeat round acknowledged by a quorum confirms leadership (§6.4);
    /// a voter's endorsement counts as its answer (`Raft::read_index_endorsed`).
    Safe,
    /// Leader lease: while a quorum acknowledged a heartbeat round sent less than
    /// `election_timeout_ticks_min - lease_clock_drift_ticks` ago, no other leader can exist
    /// (voters refuse votes while they hear from a leader), so the leader answers at once.
    /// Correct only while clocks drift less than the bound; requires `check_quorum`.
    LeaseBased,
}

/// A deliberately planted bug, for proving that the simulation's checkers catch it.
/// Never set outside tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// Commit an entry of an earlier term by counting replicas (breaks §5.4.2, Figure 8).
    CommitPriorTermByCounting,
    /// Grant votes without the "candidate's log is at least as up-to-date" check (§5.4.1).
    VoteWithoutLogCheck,
    /// On an AppendEntries conflict, keep the old suffix instead of truncating it (§5.3).
    SkipConflictTruncation,
    /// Answer ReadIndex before the new leader's no-op has committed (§6.4 / §8).
    ReadBeforeNoopCommit,
    /// Take one voter's endorsement of a read for a quorum in groups of any size
    /// (`Raft::read_index_endorsed`): a read forwarded by a follower skips the round.
    EndorsementWithoutQuorum,
}

/// One replica's configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The group, for logs and invariant-violation messages only.
    pub group: GroupId,
    /// Election time-out is drawn uniformly from `[min, max)` ticks after each reset.
    pub election_timeout_ticks_min: u64,
    pub election_timeout_ticks_max: u64,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_interval_ticks: u64,
    /// Pre-vote before each election (dissertation §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election time-out steps down,
    /// and voters refuse to vote while they hear from a leader.
    pub check_quorum: bool,
    pub read_mode: ReadMode,
    /// Bound on clock drift between nodes over one election time-out, for lease reads.
    pub lease_clock_drift_ticks: u64,
    /// Append messages in flight to one follower before the leader waits for answers.
    pub max_inflight_msgs: usize,
    /// Bound on the entry bytes in one Append message (at least one entry is always sent).
    pub max_entries_bytes_per_msg: u64,
    /// Proposals are refused while the leader's uncommitted entries exceed this many bytes.
    pub max_uncommitted_entries_bytes: u64,
    /// Bound on the committed entry bytes handed out in one Ready.
    pub max_committed_bytes_per_ready: u64,
    /// Bound on ReadIndex requests waiting at the leader.
    pub max_pending_reads: usize,
    /// A follower that has not acknowledged a snapshot within this many ticks is probed
    /// again (the snapshot or its answer was lost).
    pub snapshot_timeout_ticks: u64,
    /// Index already applied to the state machine (on restart), so committed entries up to
    /// it are not handed out again.
    pub applied: LogIndex,
    /// Seed of the replica's RNG; derive it from (seed, node, group).
    pub rng_seed: u64,
    /// Test-only: plant a bug. `None` in production.
    pub injected_bug: Option<InjectedBug>,
}

impl Config {
    /// Defaults that suit a 100 ms tick: elections after 1–2 s, heartbeats every 200 ms.
    pub fn new(id: NodeId, group: GroupId) -> Config {
        Config {
            id,
            group,
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            read_mode: ReadMode::Safe,
            lease_clock_drift_ticks: 1,
            max_inflight_msgs: 256,
            max_entries_bytes_per_msg: 1 << 20,
            max_uncommitted_entries_bytes: 64 << 20,
            max_committed_bytes_per_ready: 16 << 20,
            max_pending_reads: 4096,
            snapshot_timeout_ticks: 50,
            applied: LogIndex(0),
            rng_seed: 0,
            injected_bug: None,
        }
    }

    /// Refuses configurations that cannot work.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(RaftError::InvalidConfig(m.to_string()));
        if self.id == NodeId::NONE {
            return fail("node id 0 is reserved for 'none'");
        }
        if self.heartbeat_interval_ticks == 0 {
            return fail("heartbeat_interval_ticks must be > 0");
        }
        if self.election_timeout_ticks_min <= self.heartbeat_interval_ticks {
            return fail("election_timeout_ticks_min must exceed heartbeat_interval_ticks");
        }
        if self.election_timeout_ticks_max <= self.election_timeout_ticks_min {
            return fail("election_timeout_ticks_max must exceed election_timeout_ticks_min");
        }
        if self.max_inflight_msgs == 0 {
            return fail("max_inflight_msgs must be > 0");
        }
        if self.max_entries_bytes_per_msg == 0
            || self.max_uncommitted_entries_bytes == 0
            || self.max_committed_bytes_per_ready == 0
            || self.max_pending_reads == 0
            || self.snapshot_timeout_ticks == 0
        {
            return fail("byte, read and snapshot bounds must be > 0");
        }
        if self.read_mode == ReadMode::LeaseBased {
            if !self.check_quorum {
                return fail("lease reads require check_quorum");
            }
            if self.lease_clock_drift_ticks >= self.election_timeout_ticks_min {
                return fail("lease_clock_drift_ticks must be below election_timeout_ticks_min");
            }
        }
        Ok(())
    }
}
