//! The node's side of the cluster map (`kv::meta`), once every `meta_sync_ms`:
//! - sends the reports its leaders made (`GroupReport`: a group's slots and replicas as of
//!   its applied index) to the metadata group, newest per group, until one is accepted;
//! - reads the map (a linearizable read of the metadata group, skipped when unchanged)
//!   and learns from it what no replica of this node tells it: nodes that joined (the
//!   transport starts dialling them, the routing table gets their addresses) and the
//!   slots and replicas of groups this node holds no replica of.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::kv::command::NO_CLIENT_ID;
use crate::kv::meta::{ClusterMap, MetaOp, MAP_GROUPS_MAX, META_GROUP};
use crate::kv::read::ReadCommand;
use crate::kv::{KvCommand, Reply, Request};
use crate::node::client::{LocalGroups, NodeClient};
use crate::raft::types::{GroupId, NodeId};
use crate::router::table::NodeAddrs;
use crate::shard::api::{GroupReport, ShardOp, ShardResult};
use crate::transport::TransportHandle;

/// Leaders' reports not yet accepted by the metadata group, the newest per group (at most
/// `MAP_GROUPS_MAX`). Filled by the replicas from the moment they start.
#[derive(Default)]
pub struct PendingReports(Mutex<BTreeMap<GroupId, GroupReport>>);

impl PendingReports {
    /// Queues a leader's report (a newer one of the same group replaces it).
    pub fn report(&self, report: GroupReport) {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pending.get(&report.group).is_some_and(|r| r.epoch > report.epoch) {
            return;
        }
        if pending.len() >= MAP_GROUPS_MAX && !pending.contains_key(&report.group) {
            warn!(group = report.group.get(), "cluster map report dropped: too many pending");
            return;
        }
        pending.insert(report.group, report);
    }

    fn take(&self) -> Vec<GroupReport> {
        let mut pending = self.0.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *pending).into_values().collect()
    }
}

/// Keeps one node in step with the cluster map.
pub struct MetaSync {
    client: NodeClient,
    transport: TransportHandle,
    local: Arc<dyn LocalGroups>,
    pending: Arc<PendingReports>,
    /// The version of the map last applied (0: none yet).
    known: AtomicU64,
}

impl MetaSync {
    pub fn new(
        client: NodeClient,
        transport: TransportHandle,
        local: Arc<dyn LocalGroups>,
        pending: Arc<PendingReports>,
    ) -> Arc<MetaSync> {
        Arc::new(MetaSync { client, transport, local, pending, known: AtomicU64::new(0) })
    }

    /// Syncs every `interval` until the task is aborted.
    pub async fn run(self: Arc<MetaSync>, interval: Duration) {
        let mut clock = tokio::time::interval(interval);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            clock.tick().await;
            self.send_reports().await;
            if let Err(e) = self.pull().await {
                debug!("cluster map not read: {e}");
            }
        }
    }

    async fn send_reports(&self) {
        for report in self.pending.take() {
            let op = MetaOp::ReportGroup {
                group: report.group.get(),
                epoch: report.epoch,
                slots: [report.slots.0, report.slots.1],
                replicas: report.replicas.iter().map(|n| n.get()).collect(),
            };
            match self.write(op).await {
                Ok(Reply::Error(e)) => warn!(group = report.group.get(), "report refused: {e}"),
                Ok(_) => debug!(group = report.group.get(), epoch = report.epoch, "reported"),
                Err(e) => {
                    debug!(group = report.group.get(), "report not sent yet: {e}");
                    self.pending.report(report);
                }
            }
        }
    }

    async fn write(&self, op: MetaOp) -> ShardResult {
        let request = Request {
            client_id: NO_CLIENT_ID,
            seq: 0,
            now_ms: now_ms(),
            command: KvCommand::Meta(op),
        };
        self.client.execute(META_GROUP, ShardOp::Write(request)).await
    }

    /// Reads the map and applies what changed since the last read.
    pub async fn pull(&self) -> Result<(), String> {
        let known = self.known.load(Ordering::Acquire);
        let command = ReadCommand::ClusterMap { known, linearizable: false };
        let read = ShardOp::Read { command, now_ms: now_ms() };
        // This node's own replica of the metadata group answers without a round trip.
        let answer = match self.local.execute(META_GROUP, read.clone()) {
            Some(local) => local.await,
            None => self.client.execute(META_GROUP, read).await,
        };
        let bytes = match answer {
            Ok(Reply::Nil) => return Ok(()),
            Ok(Reply::Bulk(bytes)) => bytes,
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        let map = ClusterMap::decode(&bytes).map_err(|e| e.to_string())?;
        self.apply(&map);
        self.known.store(map.version, Ordering::Release);
        Ok(())
    }

    fn apply(&self, map: &ClusterMap) {
        let table = self.client.table();
        for (&id, n) in &map.nodes {
            let node = NodeId(id);
            if node == table.me() {
                continue;
            }
            self.transport.add_peer(node, n.peer);
            if table.add_node(node, NodeAddrs { resp: n.resp, peer: n.peer }) {
                info!(node = id, resp = %n.resp, peer = %n.peer, "node joined the cluster");
            }
        }
        // In id order: a split's child (a higher id) takes its slots from a parent whose
        // shrink is not reported yet.
        for (&id, g) in &map.groups {
            let group = GroupId(id);
            if self.local.holds(group) {
                continue;
            }
            let replicas = g.replicas.iter().map(|&n| NodeId(n)).collect();
            if table.set_group(group, (g.slots[0], g.slots[1]), replicas) {
                debug!(group = id, slots = ?g.slots, "group learned from the cluster map");
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
