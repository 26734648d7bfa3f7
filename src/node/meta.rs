//! The node's side of the cluster map (`kv::meta`), once every `meta_sync_ms`:
//! - sends the reports its leaders made (`GroupReport`: a group's slots and replicas as of
//!   its applied index) to the metadata group, newest per group, until one is accepted;
//! - reads the map (a linearizable read of the metadata group, skipped when unchanged)
//!   and learns from it what no replica of this node tells it: nodes that joined (the
//!   transport starts dialling them, the routing table gets their addresses) and the
//!   slots and replicas of groups this node holds no replica of. That read is served by
//!   any replica from what it applied (a cache may lag a moment; `SHARDKV MAP`, for
//!   operators and joining nodes, is linearizable). The last map is kept in a file, so a
//!   restarted node knows its peers before it can read the group.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// Where the last map applied is kept (`SAVED_MAP_FILE` in the data directory).
    saved: PathBuf,
    /// The nodes of the last map applied.
    mapped: Mutex<std::collections::BTreeSet<u64>>,
}

impl MetaSync {
    pub fn new(
        client: NodeClient,
        transport: TransportHandle,
        local: Arc<dyn LocalGroups>,
        pending: Arc<PendingReports>,
        saved: PathBuf,
    ) -> Arc<MetaSync> {
        let known = AtomicU64::new(0);
        let mapped = Mutex::new(Default::default());
        Arc::new(MetaSync { client, transport, local, pending, known, saved, mapped })
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

    /// Sends the pending reports, oldest group id first; at the first failure (the
    /// metadata group has no leader, say) the rest wait for the next round.
    async fn send_reports(&self) {
        let mut reports = self.pending.take().into_iter();
        while let Some(report) = reports.next() {
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
                    debug!(group = report.group.get(), "reports not sent yet: {e}");
                    self.pending.report(report);
                    reports.for_each(|r| self.pending.report(r));
                    return;
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

    /// Reads the map and applies it if it is newer than the last one applied.
    pub async fn pull(&self) -> Result<(), String> {
        let known = self.known.load(Ordering::Acquire);
        let command = ReadCommand::ClusterMap { known, linearizable: false };
        let read = ShardOp::read(command, now_ms());
        // This node's own replica of the metadata group answers without a round trip; one
        // that cannot (not initialized yet, failed) leaves it to the others.
        let local = match self.local.execute(META_GROUP, read.clone()) {
            Some(answer) => answer.await.ok(),
            None => None,
        };
        let answer = match local {
            Some(reply) => Ok(reply),
            None => self.client.execute(META_GROUP, read).await,
        };
        let bytes = match answer {
            Ok(Reply::Nil) => return Ok(()),
            Ok(Reply::Bulk(bytes)) => bytes,
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        let map = ClusterMap::decode(&bytes).map_err(|e| e.to_string())?;
        // A lagging replica (a follower just restarted) may hold an older map.
        if map.version <= known {
            return Ok(());
        }
        self.apply(&map);
        self.known.store(map.version, Ordering::Release);
        if let Err(e) = save_map(&self.saved, &map) {
            warn!("cannot keep the cluster map in {}: {e}", self.saved.display());
        }
        Ok(())
    }

    /// Applies a map this node kept from an earlier run, before the first read.
    pub fn apply_saved(&self) {
        let Some(map) = load_map(&self.saved) else { return };
        self.apply(&map);
        self.known.store(map.version, Ordering::Release);
        info!(version = map.version, "cluster map from the last run applied");
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
        // Nodes an earlier map had and this one forgot (`RemoveNode`): no longer routed to,
        // dialled or accepted. (A node only in this node's configuration is left alone.)
        let mut mapped = self.mapped.lock().unwrap_or_else(|p| p.into_inner());
        for &id in mapped.iter().filter(|id| !map.nodes.contains_key(id)) {
            let node = NodeId(id);
            if node != table.me() {
                table.remove_node(node);
                self.transport.remove_peer(node);
                info!(node = id, "node left the cluster");
            }
        }
        *mapped = map.nodes.keys().copied().collect();
        let listed = mapped.clone();
        drop(mapped);
        // Also the incarnation records of nodes forgotten while this node was down or
        // before it read any map, unless they are still its peers (its configuration's):
        // their ids may join again.
        self.transport.keep_identities(move |n| listed.contains(&n.get()));
        let owners: Vec<Option<GroupId>> =
            map.slot_owners().into_iter().map(|o| o.map(GroupId)).collect();
        let groups: Vec<(GroupId, (u16, u16), Vec<NodeId>)> = map
            .groups
            .iter()
            .map(|(&id, g)| {
                let replicas = g.replicas.iter().map(|&n| NodeId(n)).collect();
                (GroupId(id), (g.slots[0], g.slots[1]), replicas)
            })
            .collect();
        if table.learn_map(&owners, &groups, &|g| self.local.holds(g)) {
            debug!(version = map.version, "routing learned from the cluster map");
        }
    }
}

/// The file a node keeps its last cluster map in, beside its database: a node restarted
/// while the metadata group is unreachable, or after the group moved away from the nodes
/// its layout file names, still knows its peers and where the group is.
pub const SAVED_MAP_FILE: &str = "cluster-map.bin";

/// Writes the map to `path` (through a temporary file and a rename: never half written).
pub fn save_map(path: &Path, map: &ClusterMap) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, map.encode())?;
    std::fs::rename(&tmp, path)
}

/// The map kept in `path`, if there is a readable one (a corrupt file is logged, ignored).
pub fn load_map(path: &Path) -> Option<ClusterMap> {
    let bytes = std::fs::read(path).ok()?;
    match ClusterMap::decode(&bytes) {
        Ok(map) => Some(map),
        Err(e) => {
            warn!("ignoring {}: {e}", path.display());
            None
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
