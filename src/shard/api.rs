//! What the rest of the node asks of a group replica, and what it answers. These types
//! cross the wire when a node forwards a request to the leader's node, so they are plain
//! serde data. Owns the shapes only.

use serde::{Deserialize, Serialize};

use crate::kv::range::{SlotRange, SplitOff};
use crate::kv::read::ReadCommand;
use crate::kv::{Reply, Request};
use crate::raft::types::{GroupId, NodeId};

/// One operation on one group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShardOp {
    /// A write: proposed, committed, applied; answered with the apply's reply. Retrying the
    /// same `Request` (same client id and seq) is applied at most once.
    Write(Request),
    /// A linearizable read: ReadIndex through the leader (or the lease), served once the
    /// replica has applied the read index. `now_ms` is the clock expiry is judged by.
    /// `endorsement`: set by the node that received the read from a peer which forwarded
    /// it (never taken from the wire): that peer's replica's term when it forwarded it.
    /// `follower_ok`: set by the node's own request path for its own replica (never taken
    /// from the wire): a follower serves it after a read index from its leader instead of
    /// refusing it (`[reads] follower`). A read from a peer is refused by a follower, so
    /// that the peer learns the leader.
    Read {
        command: ReadCommand,
        now_ms: u64,
        #[serde(skip)]
        endorsement: Option<Endorsement>,
        #[serde(skip)]
        follower_ok: bool,
    },
    /// Split the group at `at` (`None`: the slot that halves its keys) into the new group
    /// `child`, on the same replicas; answered once the split entry applied, with
    /// `[child, first slot, last slot]` of the child.
    Split { at: Option<u16>, child: GroupId },
    /// Hand leadership to `to` (a voter of the group); answered once the transfer started,
    /// with the term of the leader that started it (`Reply::Int`).
    TransferLeader { to: NodeId },
    /// Change the group's replicas (leader only): one step that changes the voters by at
    /// most one node is a simple change, more enter a joint configuration the leader then
    /// leaves by itself. Answered `Ok` once the change applied on the leader, at once if
    /// the configuration is already what the steps ask for.
    ChangeMembers { steps: Vec<MemberStep> },
    /// The group's replicas as its leader sees them: `Members::to_reply`.
    Members,
    /// Node-local, never routed: start an empty replica of the group on the node asked,
    /// waiting for the leader's snapshot (`+OK`; also when one runs already).
    OpenReplica,
    /// Node-local, never routed: stop and delete the node's replica of the group, if the
    /// group's leader confirms the node is no longer a member.
    DropReplica,
}

impl ShardOp {
    /// A read not forwarded by a peer (no endorsement).
    pub fn read(command: ReadCommand, now_ms: u64) -> ShardOp {
        ShardOp::Read { command, now_ms, endorsement: None, follower_ok: false }
    }
}

pub use crate::raft::types::Endorsement;

/// One membership step an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStep {
    /// Receives the log (and first a snapshot) but does not vote.
    AddLearner(NodeId),
    /// Votes (a learner promoted, or a new voter).
    AddVoter(NodeId),
    Remove(NodeId),
}

impl MemberStep {
    pub fn node(self) -> NodeId {
        match self {
            MemberStep::AddLearner(id) | MemberStep::AddVoter(id) | MemberStep::Remove(id) => id,
        }
    }

    pub fn to_raft(self) -> crate::raft::ConfChangeStep {
        use crate::raft::ConfChangeStep;
        match self {
            MemberStep::AddLearner(id) => ConfChangeStep::AddLearner(id),
            MemberStep::AddVoter(id) => ConfChangeStep::AddVoter(id),
            MemberStep::Remove(id) => ConfChangeStep::RemoveNode(id),
        }
    }
}

/// How a group's leader sees one replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberKind {
    Voter,
    Learner,
    /// A voter of the outgoing half of a joint configuration only (being removed).
    Outgoing,
}

impl MemberKind {
    pub fn name(self) -> &'static str {
        match self {
            MemberKind::Voter => "voter",
            MemberKind::Learner => "learner",
            MemberKind::Outgoing => "outgoing",
        }
    }

    pub fn parse(name: &str) -> Option<MemberKind> {
        [MemberKind::Voter, MemberKind::Learner, MemberKind::Outgoing]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// A group's replicas as its leader sees them, the answer to `ShardOp::Members`. Crosses
/// RESP as `[leader, commit index, joint 0|1, [[node, kind, match index], ...]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    pub leader: NodeId,
    pub commit_index: u64,
    pub joint: bool,
    /// Every replica with its kind and the leader's match index for it (the leader's own:
    /// its last index).
    pub replicas: Vec<(NodeId, MemberKind, u64)>,
}

impl Members {
    pub fn to_reply(&self) -> Reply {
        let rows = self.replicas.iter().map(|(node, kind, matched)| {
            Reply::Array(vec![
                Reply::Int(node.get() as i64),
                Reply::Status(kind.name().to_string()),
                Reply::Int(*matched as i64),
            ])
        });
        Reply::Array(vec![
            Reply::Int(self.leader.get() as i64),
            Reply::Int(self.commit_index as i64),
            Reply::Int(i64::from(self.joint)),
            Reply::Array(rows.collect()),
        ])
    }

    /// `to_reply` read back; `None` for a reply of another shape.
    pub fn from_reply(reply: &Reply) -> Option<Members> {
        let int = |reply: Option<&Reply>| match reply {
            Some(Reply::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let Reply::Array(fields) = reply else { return None };
        let Some(Reply::Array(rows)) = fields.get(3) else { return None };
        let replicas = rows.iter().map(|row| {
            let Reply::Array(cols) = row else { return None };
            let kind = match cols.get(1) {
                Some(Reply::Status(name)) => MemberKind::parse(name)?,
                _ => return None,
            };
            Some((NodeId(int(cols.first())?), kind, int(cols.get(2))?))
        });
        Some(Members {
            leader: NodeId(int(fields.first())?),
            commit_index: int(fields.get(1))?,
            joint: int(fields.get(2))? == 1,
            replicas: replicas.collect::<Option<_>>()?,
        })
    }
}

/// Why a group could not answer. `Display` texts are for logs; the RESP layer maps each
/// kind to the Redis error a client expects (MOVED, TRYAGAIN, CLUSTERDOWN, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ShardError {
    /// This replica is not the leader; `leader` is its best knowledge (None: unknown).
    #[error("group {group} is led by node {leader:?}, not here")]
    NotLeader { group: GroupId, leader: Option<NodeId> },
    /// The group has no replica on the node that was asked.
    #[error("group {group} has no replica on this node")]
    NoReplica { group: GroupId },
    /// The link to `node` was down, so the request was not sent there: definitely not
    /// applied by this attempt (the request path tries the group's other replicas).
    #[error("group {group}: node {node} is unreachable; the request was not sent")]
    Unreachable { group: GroupId, node: NodeId },
    /// The leader is handing its leadership to `to` and takes no proposal meanwhile (an
    /// election time-out at most); definitely not applied, so the request path retries.
    #[error("group {group} is handing its leadership to node {to}")]
    Transferring { group: GroupId, to: NodeId },
    /// Backpressure: a bound on pending proposals, reads or uncommitted bytes is reached.
    #[error("group {group} is busy: {reason}")]
    Busy { group: GroupId, reason: String },
    /// No answer in time. For a write the outcome is unknown: it may still commit, and a
    /// retry with the same request id is applied at most once.
    #[error("group {group}: no answer within the time-out; the outcome is unknown")]
    Timeout { group: GroupId },
    /// Leadership was lost after the write was proposed: the outcome is unknown.
    #[error("group {group}: leadership changed; the outcome is unknown")]
    LeadershipLost { group: GroupId },
    /// The replica is shutting down.
    #[error("group {group} is stopping")]
    Stopped { group: GroupId },
    /// The slot is no longer this group's: a split handed it to `moved.group`. Definitely
    /// not applied; the request path retries on that group.
    /// `moved` is `None` for a slot the group never owned (a stale route).
    #[error("slot {slot} is not served by group {group} (moved to {moved:?})")]
    SlotMoved { group: GroupId, slot: u16, moved: Option<SplitOff> },
    /// A request that cannot be done as asked: an operator's (a membership change the
    /// group's configuration does not allow), or one too large for a peer frame (a write's
    /// log entry, a read's answer to a peer); nothing was changed.
    #[error("group {group} refused: {reason}")]
    Refused { group: GroupId, reason: String },
    /// The node's storage failed; the replica stops serving.
    #[error("group {group}: storage failed: {reason}")]
    Storage { group: GroupId, reason: String },
}

/// The answer to a `ShardOp`.
pub type ShardResult = Result<Reply, ShardError>;

/// A leadership change seen by a replica: the router's leader cache is fed from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderChange {
    pub group: GroupId,
    /// `None` while the group has no known leader.
    pub leader: Option<NodeId>,
    pub term: crate::raft::types::Term,
}

/// A split a replica applied and made durable: the node starts the child replica and
/// updates its routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitDone {
    pub parent: GroupId,
    /// The parent's slots after the split.
    pub parent_range: SlotRange,
    pub child: SplitOff,
    /// This replica led the parent when it applied the split: its child campaigns at once,
    /// so the child serves without waiting out an election time-out.
    pub campaign: bool,
}

/// A group's state as its leader reports it for the cluster map (`MetaOp::ReportGroup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupReport {
    pub group: GroupId,
    /// The leader's applied index: the state below is the group's as of it.
    pub epoch: u64,
    pub slots: (u16, u16),
    /// Voters (outgoing ones included), then learners.
    pub replicas: Vec<NodeId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Members::to_reply` read back whole; a reply of another shape is refused.
    #[test]
    fn members_read_back_from_their_reply() {
        let members = Members {
            leader: NodeId(2),
            commit_index: 40,
            joint: true,
            replicas: vec![
                (NodeId(1), MemberKind::Voter, 38),
                (NodeId(2), MemberKind::Outgoing, 41),
                (NodeId(3), MemberKind::Learner, 40),
            ],
        };
        assert_eq!(Members::from_reply(&members.to_reply()), Some(members.clone()));
        let Reply::Array(mut fields) = members.to_reply() else { unreachable!() };
        fields[3] = Reply::Array(vec![Reply::Array(vec![Reply::Int(1)])]);
        assert_eq!(Members::from_reply(&Reply::Array(fields)), None, "a row cut short");
        assert_eq!(Members::from_reply(&Reply::Ok), None);
        assert_eq!(Members::from_reply(&Reply::Array(vec![Reply::Int(-1)])), None);
    }
}
