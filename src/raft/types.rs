//! The nouns of the Raft core: ids, terms, indexes, entries, messages, hard state and
//! configuration. Plain data, serializable with serde (the transport frames them with
//! rmp-serde), no behaviour beyond small helpers.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

macro_rules! newtype_u64 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize,
            Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                Self(v)
            }
        }
    };
}

newtype_u64!(
    /// One `shardkv` process. 0 is never a valid node id (it means "none").
    NodeId
);
newtype_u64!(
    /// One Raft group (a shard). Groups are numbered from 1.
    GroupId
);
newtype_u64!(
    /// A Raft term (§5.1). Term 0 is the term before any election.
    Term
);
newtype_u64!(
    /// A position in the replicated log. Index 0 is the empty prefix; entries start at 1.
    LogIndex
);

impl NodeId {
    /// "No node", as in `voted_for` before a vote or `leader_id` while none is known.
    pub const NONE: NodeId = NodeId(0);
}

impl LogIndex {
    /// The next index.
    pub const fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    /// The previous index; saturates at 0.
    pub const fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
    /// `self + n`.
    pub const fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }
}

impl Term {
    /// The next term.
    pub const fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// The empty entry a new leader appends at once (the barrier of §8 / dissertation §6.4).
    Noop,
    /// Application data, opaque to Raft.
    Normal(Bytes),
    /// A membership change. Declarative: it names the whole resulting configuration, so that
    /// applying it twice (after a restart) gives the same configuration.
    ConfChange(ConfState),
}

/// One log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub payload: EntryPayload,
}

/// Bytes an entry is counted for beyond its payload (term, index, framing), in the byte
/// bounds on messages, batches and uncommitted proposals.
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

impl Entry {
    /// Approximate size in bytes, used for the byte bounds on messages and batches.
    pub fn size_bytes(&self) -> u64 {
        ENTRY_OVERHEAD_BYTES
            + match &self.payload {
                EntryPayload::Noop => 0,
                EntryPayload::Normal(data) => data.len() as u64,
                EntryPayload::ConfChange(cs) => 8 * cs.node_count() as u64,
            }
    }
}

/// What must be on stable storage before a node answers any message (§5, Figure 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub term: Term,
    pub voted_for: NodeId,
    pub commit_index: LogIndex,
}

/// A group's membership. While `voters_outgoing` is non-empty the group is in a joint
/// configuration (§6 of the dissertation): decisions need a majority of `voters` *and* a
/// majority of `voters_outgoing`. Learners receive the log but never vote or count.
/// A node is in at most one of `voters` and `learners`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfState {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub voters_outgoing: BTreeSet<NodeId>,
}

impl ConfState {
    /// A plain configuration of these voters.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> ConfState {
        ConfState { voters: voters.into_iter().collect(), ..ConfState::default() }
    }
    /// True while entering or leaving a joint configuration.
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }
    /// True if `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }
    /// True if `id` is a learner and not a voter.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) && !self.is_voter(id)
    }
    /// Every node that receives the log: voters of both halves and learners.
    pub fn all_nodes(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(self.voters_outgoing.iter().copied());
        all.extend(self.learners.iter().copied());
        all
    }
    fn node_count(&self) -> usize {
        self.voters.len() + self.learners.len() + self.voters_outgoing.len()
    }
}

/// Which entries a snapshot stands for, and the configuration as of its last entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMetadata {
    pub index: LogIndex,
    pub term: Term,
    pub conf_state: ConfState,
}

/// A snapshot of the state machine as of `metadata.index`. `data` is opaque to Raft; the
/// runtime may stream it in chunks and only hand the core the assembled snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub metadata: SnapshotMetadata,
    pub data: Bytes,
}

impl Snapshot {
    /// True for the "no snapshot" value (index 0).
    pub fn is_empty(&self) -> bool {
        self.metadata.index == LogIndex(0)
    }
}

/// One Raft message of one group. The transport adds the group id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term; for `PreVote` the term the sender would campaign in, and for a
    /// granted `PreVoteResponse` the term of the request it answers.
    pub term: Term,
    pub body: MessageBody,
}

/// The message kinds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Pre-vote (dissertation §9.6): "would you vote for me?", changes no state.
    PreVote { last_log_index: LogIndex, last_log_term: Term },
    PreVoteResponse { reject: bool },
    /// RequestVote (§5.2). `transfer` marks a campaign started by TimeoutNow, which may
    /// disturb a leader that voters still hear from (leader transfer, dissertation §3.10).
    Vote { last_log_index: LogIndex, last_log_term: Term, transfer: bool },
    VoteResponse { reject: bool },
    /// AppendEntries (§5.3).
    Append {
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        commit_index: LogIndex,
    },
    /// Success: `index` is the last index now known to match the leader's log.
    /// Rejection: `index` is the rejected `prev_log_index`, and the hint names the largest
    /// index at or below it whose term is at most `prev_log_term`, with that term, so the
    /// leader can skip a whole conflicting term at once (fast backtracking).
    AppendResponse { reject: bool, index: LogIndex, hint_index: LogIndex, hint_term: Term },
    /// Heartbeat: carries the commit index (capped at what the follower is known to have)
    /// and, for ReadIndex rounds, the round number. Runtime may coalesce these per node.
    Heartbeat { commit_index: LogIndex, read_round: u64 },
    HeartbeatResponse { read_round: u64 },
    /// InstallSnapshot (§7).
    Snapshot { snapshot: Snapshot },
    /// Leader transfer: "start an election now" (dissertation §3.10).
    TimeoutNow,
    /// A follower forwards a client's ReadIndex request to the leader.
    ReadIndex { context: Bytes },
    /// The leader's answer: the read may be served once `index` is applied.
    ReadIndexResponse { context: Bytes, index: LogIndex, reject: bool },
}

impl MessageBody {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResponse",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { .. } => "VoteResponse",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse { .. } => "AppendResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::Snapshot { .. } => "Snapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
        }
    }
}

/// The role a node plays in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Volatile facts that change rarely and that the runtime wants to see (routing, metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub leader_id: NodeId,
    pub role: Role,
}

/// A voter's word on a read it forwarded to its group's leader: when it forwarded the read
/// (after the read began) its replica of the group was in `term` (`Raft::read_index_endorsed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endorsement {
    pub node: NodeId,
    pub term: Term,
}

/// A linearizable read may be served once the state machine has applied `index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub index: LogIndex,
    pub context: Bytes,
}
