//! The seam between the shard replicas and the node-level transport: what a replica hands
//! the transport, and what the transport delivers. Plain data; the wire encoding lives in
//! the transport's own modules.

use serde::{Deserialize, Serialize};

use crate::raft::types::{GroupId, Message, NodeId, Term};
use crate::shard::api::{ShardOp, ShardResult};

/// A Raft message of one group (`Message` itself does not name its group).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMessage {
    pub group: GroupId,
    pub msg: Message,
}

/// How soon a message must leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Urgency {
    /// With the next flush to its node (every message but idle heartbeats).
    Now,
    /// An idle `Heartbeat`/`HeartbeatResponse`: it may wait for the node's next coalesced
    /// heartbeat frame (one per peer per heartbeat interval, whatever the number of groups).
    Coalesce,
}

/// A client request forwarded to the node that leads its group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForwardRequest {
    /// Unique per origin node for the node's lifetime: the answer is matched by it.
    pub request_id: u64,
    pub group: GroupId,
    pub op: ShardOp,
    /// For a read: the term of the origin node's replica of the group when it forwarded
    /// the read, if it has one (the receiver makes it the read's `Endorsement`).
    #[serde(default)]
    pub endorsed_term: Option<Term>,
}

/// The answer to a `ForwardRequest`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForwardReply {
    pub request_id: u64,
    pub result: ShardResult,
}

/// A leader node's question to a peer, for a node-level read round (`node::read_rounds`):
/// the terms of the peer's replicas of `groups`, read when the question arrives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermProbe {
    /// Unique per origin node for the node's lifetime: the answer is matched by it.
    pub probe_id: u64,
    pub groups: Vec<GroupId>,
}

/// The answer to a `TermProbe`: the term each of the asked groups' replicas here had
/// published (`ShardConfig::published_term`); groups with no replica here are left out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermAnswer {
    pub probe_id: u64,
    pub terms: Vec<(GroupId, Term)>,
}

/// A Pub/Sub message published on one node, for the others' subscribers
/// (`resp::pubsub`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// SPUBLISH (to shard channel subscribers) rather than PUBLISH.
    pub shard: bool,
    pub channel: bytes::Bytes,
    pub message: bytes::Bytes,
}

/// What replicas and the request path use to reach other nodes. Never blocks: messages are
/// queued in bounded per-peer queues; when a queue is full the message is dropped and
/// counted (Raft retries), and the drop is logged at debug level.
pub trait PeerSender: Send + Sync + 'static {
    fn send_raft(&self, to: NodeId, message: GroupMessage, urgency: Urgency);
    fn send_forward(&self, to: NodeId, request: ForwardRequest);
    fn send_forward_reply(&self, to: NodeId, reply: ForwardReply);
    fn send_term_probe(&self, to: NodeId, probe: TermProbe);
    fn send_term_answer(&self, to: NodeId, answer: TermAnswer);
    fn send_publication(&self, to: NodeId, publication: Publication);
    /// Whether the link to `to` is up: false from the moment either direction of it
    /// closed until a connection is made again (a forward to a node that died is given up
    /// at once rather than after its time-out).
    fn is_up(&self, _to: NodeId) -> bool {
        true
    }
}

/// Where the transport delivers what arrives from peers. Called from the transport's
/// tasks; implementations must only enqueue (never block or wait for a replica).
pub trait InboundHandler: Send + Sync + 'static {
    /// Raft messages from node `from` in one frame (coalesced heartbeats expanded back into
    /// ordinary `Heartbeat`/`HeartbeatResponse` messages, marked `Urgency::Coalesce`).
    fn on_raft(&self, from: NodeId, messages: Vec<(GroupMessage, Urgency)>);
    fn on_forward(&self, from: NodeId, request: ForwardRequest);
    fn on_forward_reply(&self, from: NodeId, reply: ForwardReply);
    fn on_term_probe(&self, from: NodeId, probe: TermProbe);
    fn on_term_answer(&self, from: NodeId, answer: TermAnswer);
    fn on_publication(&self, from: NodeId, publication: Publication);
}
