//! `MemBackend`: a one-node, several-group `Backend` over `MemKv`, for tests of the front
//! end and for trying the protocol without the runtime. Writes go through `kv::apply`,
//! reads through `kv::read::execute`, exactly as a group replica runs them. Owns nothing
//! durable; it must never be used to serve real data.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::backend::{Backend, ClusterView, GroupView, NodeView};
use super::pubsub::{Hub, Publication};
use crate::kv::apply::apply_notified;
use crate::kv::notify::Notifier;
use crate::kv::read;
use crate::kv::slot::SLOT_COUNT;
use crate::kv::{MemKv, Overlay};
use crate::raft::types::{GroupId, NodeId};
use crate::shard::api::{MemberKind, Members, ShardError, ShardOp, ShardResult};

/// An in-memory backend: `groups` groups of even slot ranges, all on this one node.
#[derive(Clone)]
pub struct MemBackend {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: NodeId,
    nodes: Mutex<Vec<NodeView>>,
    groups: Vec<Mutex<MemGroup>>,
    next_client_id: AtomicU64,
    /// Operations executed, for tests that count what a client's commands became.
    executed: AtomicU64,
    /// Pub/Sub subscribers (this backend's one node: it has no peers to relay to).
    hub: Arc<Hub>,
    /// Which keyspace events its writes publish.
    notifier: Arc<Notifier>,
}

struct MemGroup {
    view: GroupView,
    kv: MemKv,
}

impl MemBackend {
    /// `groups` groups over the slots, led by node 1 reachable at `resp_addr`.
    pub fn new(groups: u16, resp_addr: SocketAddr) -> MemBackend {
        assert!(
            groups > 0 && groups <= SLOT_COUNT,
            "between 1 and 16384 groups"
        );
        let node_id = NodeId(1);
        let width = SLOT_COUNT / groups;
        let groups = (0..groups)
            .map(|i| {
                let slot_last = if i + 1 == groups {
                    SLOT_COUNT - 1
                } else {
                    (i + 1) * width - 1
                };
                let view = GroupView {
                    id: GroupId(u64::from(i) + 1),
                    slot_first: i * width,
                    slot_last,
                    replicas: vec![node_id],
                    leader: Some(node_id),
                };
                Mutex::new(MemGroup {
                    view,
                    kv: MemKv::new(),
                })
            })
            .collect();
        let nodes = Mutex::new(vec![NodeView {
            id: node_id,
            resp_addr,
        }]);
        let next_client_id = AtomicU64::new(1);
        MemBackend {
            inner: Arc::new(Inner {
                node_id,
                nodes,
                groups,
                next_client_id,
                executed: AtomicU64::new(0),
                hub: Arc::default(),
                notifier: Arc::default(),
            }),
        }
    }

    /// Adds (or moves) another node, so a group can be said to be led elsewhere.
    pub fn add_node(&self, id: NodeId, resp_addr: SocketAddr) {
        let mut nodes = self.inner.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.retain(|n| n.id != id);
        nodes.push(NodeView { id, resp_addr });
    }

    /// Sets the nodes holding a replica of `group` (its leader is added if missing).
    pub fn set_replicas(&self, group: GroupId, replicas: Vec<NodeId>) {
        for g in &self.inner.groups {
            let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
            if g.view.id == group {
                g.view.replicas = replicas.clone();
                if let Some(leader) = g.view.leader.filter(|l| !g.view.replicas.contains(l)) {
                    g.view.replicas.push(leader);
                }
            }
        }
    }

    /// Sets the leader of `group`. Led by another node, the group still executes (as if
    /// forwarded); with no leader it answers `NotLeader { leader: None }`.
    pub fn set_leader(&self, group: GroupId, leader: Option<NodeId>) {
        for g in &self.inner.groups {
            let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
            if g.view.id == group {
                g.view.leader = leader;
                if let Some(leader) = leader.filter(|l| !g.view.replicas.contains(l)) {
                    g.view.replicas.push(leader);
                }
            }
        }
    }

    /// Shard operations executed so far (a pipeline batch counts once).
    pub fn executed(&self) -> u64 {
        self.inner.executed.load(Ordering::Relaxed)
    }

    fn run(&self, group: GroupId, op: ShardOp) -> ShardResult {
        self.inner.executed.fetch_add(1, Ordering::Relaxed);
        let index = (group.0 as usize).wrapping_sub(1);
        let Some(g) = self.inner.groups.get(index) else {
            return Err(ShardError::NoReplica { group });
        };
        let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
        if g.view.leader.is_none() {
            return Err(ShardError::NotLeader {
                group,
                leader: None,
            });
        }
        match op {
            ShardOp::Write(request) => {
                let mut overlay = Overlay::new();
                let mut events = self.inner.notifier.collector();
                let reply = apply_notified(&g.kv, &mut overlay, &request, events.as_mut());
                let mutations = overlay.drain();
                g.kv.apply_mutations(&mutations);
                if let Some(events) = events {
                    self.inner.hub.deliver_keyspace(events.flags(), events.events());
                }
                Ok(reply)
            }
            ShardOp::Read { command, now_ms, .. } => Ok(read::execute(&g.kv, now_ms, &command)),
            // One state that every replica of the view holds: each has the whole log.
            ShardOp::Members => {
                let leader = g.view.leader.unwrap_or(NodeId(0));
                let replicas = g.view.replicas.iter().map(|&n| (n, MemberKind::Voter, 0));
                let members =
                    Members { leader, commit_index: 0, joint: false, replicas: replicas.collect() };
                Ok(members.to_reply())
            }
            ShardOp::Split { .. }
            | ShardOp::TransferLeader { .. }
            | ShardOp::ChangeMembers { .. }
            | ShardOp::OpenReplica
            | ShardOp::DropReplica => Err(ShardError::Busy {
                group,
                reason: "the in-memory backend has one replica per group and never splits or moves"
                    .into(),
            }),
        }
    }
}

impl Backend for MemBackend {
    async fn execute(&self, group: GroupId, op: ShardOp) -> ShardResult {
        self.run(group, op)
    }

    fn group_of_slot(&self, slot: u16) -> GroupId {
        let groups = self.inner.groups.len() as u16;
        let width = SLOT_COUNT / groups;
        GroupId(u64::from((slot / width).min(groups - 1)) + 1)
    }

    fn cluster_view(&self) -> ClusterView {
        let groups = self.inner.groups.iter();
        let groups = groups.map(|g| g.lock().unwrap_or_else(|e| e.into_inner()).view.clone());
        let nodes = self
            .inner
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        ClusterView {
            node_id: self.inner.node_id,
            nodes,
            groups: groups.collect(),
        }
    }

    fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    fn new_client_id(&self) -> u64 {
        self.inner.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    fn notifier(&self) -> &Arc<Notifier> {
        &self.inner.notifier
    }

    /// One node: no other node's subscribers to reach.
    fn publish_to_peers(&self, _publication: &Publication) {}

    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        let index = (group.0 as usize).wrapping_sub(1);
        let g = self.inner.groups.get(index)?;
        g.lock().unwrap_or_else(|e| e.into_inner()).view.leader
    }
}
