//! The seam between the RESP front end and the node: `Backend` runs one `ShardOp` on one
//! group (forwarding to the leader and retrying with the same `Request` is its business)
//! and describes the cluster for CLUSTER SLOTS/SHARDS/NODES and `-MOVED`. Owns the trait
//! and the `ClusterView` shapes only; never touches a socket.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use super::pubsub::{Hub, Publication};
use crate::kv::notify::Notifier;

use crate::raft::types::{GroupId, NodeId};
use crate::shard::api::{ShardOp, ShardResult};

/// What the front end needs from the node runtime.
///
/// Cloned once per connection and per concurrently running command, so a clone must be
/// cheap (an `Arc` inside).
pub trait Backend: Clone + Send + Sync + 'static {
    /// Runs `op` on `group`. A plain read or write is forwarded to the leader when this
    /// node does not lead the group; a retry inside keeps the same `Request`.
    fn execute(&self, group: GroupId, op: ShardOp) -> impl Future<Output = ShardResult> + Send;
    /// The group that owns `slot` (every slot is owned by exactly one group).
    fn group_of_slot(&self, slot: u16) -> GroupId;
    /// The nodes and groups of the cluster as this node knows them now.
    fn cluster_view(&self) -> ClusterView;
    /// This node's id.
    fn node_id(&self) -> NodeId;
    /// A fresh client id, unique across the cluster and not reused, as far as random draws
    /// make it so (request dedup).
    fn new_client_id(&self) -> u64;
    /// The node's unix clock in milliseconds (relative TTLs become deadlines with it).
    fn now_ms(&self) -> u64;
    /// This node's Pub/Sub subscribers.
    fn hub(&self) -> &Arc<Hub>;
    /// Which keyspace events this node publishes (CONFIG's `notify-keyspace-events`).
    fn notifier(&self) -> &Arc<Notifier>;
    /// Hands `publication` to every other node of the cluster, for their subscribers (at
    /// most once: a link that is down or a full queue drops it).
    fn publish_to_peers(&self, publication: &Publication);
    /// The leader of `group` as this node knows it; the default asks `cluster_view`.
    fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.cluster_view()
            .groups
            .into_iter()
            .find(|g| g.id == group)
            .and_then(|g| g.leader)
    }
    /// Expired keys this node's replicas deleted as their groups' leaders so far (INFO's
    /// `expired_keys`); the default knows of none.
    fn expired_keys(&self) -> u64 {
        0
    }
    /// Whether this node holds a replica of `group`; the default asks `cluster_view`.
    fn holds_replica(&self, group: GroupId) -> bool {
        let view = self.cluster_view();
        let me = view.node_id;
        view.groups.iter().any(|g| g.id == group && g.replicas.contains(&me))
    }
}

/// The cluster as one node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterView {
    /// The node answering.
    pub node_id: NodeId,
    /// Every node, this one included.
    pub nodes: Vec<NodeView>,
    /// Every group, in slot order; their ranges cover the 16384 slots.
    pub groups: Vec<GroupView>,
}

/// One node as clients reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub id: NodeId,
    /// Its RESP address (announced in CLUSTER replies and `-MOVED`).
    pub resp_addr: SocketAddr,
}

/// One group: its slots, its replicas and its leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub id: GroupId,
    pub slot_first: u16,
    pub slot_last: u16,
    /// Every replica's node, voters and learners.
    pub replicas: Vec<NodeId>,
    /// The current leader; `None` while the group has none (or it is not known).
    pub leader: Option<NodeId>,
}

impl GroupView {
    /// The node Redis Cluster replies show as the group's master: its leader, or with none
    /// its first replica.
    pub fn master(&self) -> Option<NodeId> {
        self.leader.or_else(|| self.replicas.first().copied())
    }
}

impl ClusterView {
    pub fn node(&self, id: NodeId) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.id == id)
    }

    pub fn group(&self, id: GroupId) -> Option<&GroupView> {
        self.groups.iter().find(|g| g.id == id)
    }

    /// The RESP address of `id`.
    pub fn resp_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.node(id).map(|n| n.resp_addr)
    }
}

/// A node id as Redis Cluster prints one: 40 hexadecimal digits.
pub fn cluster_node_name(id: NodeId) -> String {
    format!("{:040x}", id.0)
}
