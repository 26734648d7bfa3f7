//! Assembles a node: storage and its one writer, the shard replicas on a few arbiters, the
//! router, the transport and the RESP listener; runs until told to stop, then shuts them
//! down in reverse order. Owns the wiring only; every part keeps its own rules.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::{Actor, Addr, Arbiter};
use dashmap::DashMap;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use bytes::Bytes;

use crate::kv::meta::{MapNode, MAP_KEY, META_GROUP, META_RANGE, META_SLOT};
use crate::kv::read::ReadCommand;
use crate::kv::KvMutation;
use crate::metrics::{poll::Replicas, MetricsError, NodeMetrics};
use crate::node::client::{LocalFuture, LocalGroups, NodeClient};
use crate::node::config::NodeConfig;
use crate::node::meta::{MetaSync, PendingReports};
use crate::node::placement::take_leaderships;
use crate::node::workload::{follow_workload, Workload};
use crate::raft::types::{GroupId, NodeId, Term};
use crate::resp::backend::{Backend, ClusterView, GroupView, NodeView};
use crate::resp::server::{serve, RespOptions};
use crate::router::actor::{ReportLeader, RouterActor};
use crate::router::layout::Layout;
use crate::router::table::{NodeAddrs, RoutingTable};
use crate::shard::actor::{
    bootstrap_group, bootstrap_group_with, Campaign, Execute, Inbound, ShardActor, ShardConfig, ShardDeps,
    ShardStartError, Stop,
};
use crate::shard::api::{Endorsement, ShardError, ShardOp, ShardResult, SplitDone};
use crate::shard::persist::ShardWriter;
use crate::shard::read_door::ReadDoor;
use crate::shard::undurable::CleanBudget;
use crate::storage::{NodeDb, StorageError};
use crate::transport::api::{
    ForwardReply, ForwardRequest, GroupMessage, InboundHandler, PeerSender, Publication,
    TermAnswer, TermProbe, Urgency,
};
use crate::kv::notify::{KeyEvents, Notifier};
use crate::resp::pubsub::Hub;
use crate::transport::identity::{Identity, IdentityError};
use crate::transport::stats::TransportStats;
use crate::transport::{Transport, TransportHandle, TransportOptions};

/// File name of the node's database inside its data directory.
pub const DB_FILE_NAME: &str = "shardkv.redb";
/// How long `DROP-REPLICA` waits for the replica to finish its writes and be deleted.
const DROP_WAIT_MS: u64 = 10_000;
/// How often it looks.
const DROP_POLL_MS: u64 = 10;
/// How often a stopping node looks whether its replicas are gone.
const STOP_POLL_MS: u64 = 5;
/// Arbiters (threads) hosting shard replicas, at most; the default is one per core.
pub const ARBITERS_MAX: usize = 8;

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Shard(#[from] ShardStartError),
    #[error("cannot start the storage writer: {0}")]
    Writer(std::io::Error),
    #[error("cannot listen for peers on {addr}: {source}")]
    PeerListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for clients on {addr}: {source}")]
    RespListen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("peer record: {0}")]
    Identity(#[from] IdentityError),
}

/// This node's replicas by group: the request path's view of them.
pub struct LocalShards {
    replicas: DashMap<GroupId, Replica>,
    /// Replicas stopped and being deleted (`destroy_replica`): not opened again meanwhile.
    destroying: DashMap<GroupId, ()>,
    /// Requests (`Execute`) one replica may have queued or running before more are
    /// refused with `Busy` (`limits.pending_requests_per_group_max`).
    requests_max: usize,
    /// Where new replicas count.
    metrics: NodeMetrics,
}

/// One replica: its address and the permits that bound the requests sent to it. actix
/// checks a mailbox's bound per sender handle, and every request uses a fresh clone of
/// the address, so the bound on client requests must be kept here.
struct Replica {
    addr: Addr<ShardActor>,
    requests: Arc<Semaphore>,
    /// `ShardConfig::published_term` of the replica.
    term: Arc<AtomicU64>,
    /// `ShardConfig::read_door` of the replica.
    door: Arc<ReadDoor>,
}

impl LocalShards {
    fn new(requests_max: usize, metrics: NodeMetrics) -> LocalShards {
        LocalShards {
            replicas: DashMap::new(),
            destroying: DashMap::new(),
            requests_max: requests_max.max(1),
            metrics,
        }
    }

    fn insert(
        &self,
        group: GroupId,
        addr: Addr<ShardActor>,
        term: Arc<AtomicU64>,
        door: Arc<ReadDoor>,
    ) {
        let requests = Arc::new(Semaphore::new(self.requests_max));
        self.replicas.insert(group, Replica { addr, requests, term, door });
    }

    fn remove(&self, group: GroupId) -> Option<Addr<ShardActor>> {
        self.replicas.remove(&group).map(|(_, r)| r.addr)
    }

    pub fn get(&self, group: GroupId) -> Option<Addr<ShardActor>> {
        self.replicas.get(&group).map(|r| r.addr.clone())
    }

    pub fn all(&self) -> Vec<(GroupId, Addr<ShardActor>)> {
        self.replicas
            .iter()
            .map(|e| (*e.key(), e.value().addr.clone()))
            .collect()
    }

    /// Hands peer messages to a replica through its one long-lived address, so a full
    /// mailbox refuses them (Raft retransmits what matters). False if refused or absent.
    fn deliver(&self, group: GroupId, batch: Vec<(GroupMessage, Urgency)>) -> bool {
        match self.replicas.get(&group) {
            Some(replica) => replica.addr.try_send(Inbound(batch)).is_ok(),
            None => false,
        }
    }
}

impl Replicas for LocalShards {
    fn replicas(&self) -> Vec<(GroupId, Addr<ShardActor>)> {
        self.all()
    }
}

impl LocalGroups for LocalShards {
    fn execute(&self, group: GroupId, op: ShardOp) -> Option<LocalFuture> {
        let (addr, permit) = {
            let replica = self.replicas.get(&group)?;
            (
                replica.addr.clone(),
                replica.requests.clone().try_acquire_owned(),
            )
        };
        Some(Box::pin(async move {
            let Ok(_permit) = permit else {
                let reason = "too many requests waiting for this replica".to_string();
                return Err(ShardError::Busy { group, reason });
            };
            match addr.send(Execute(op)).await {
                Ok(result) => result,
                Err(_) => Err(ShardError::Stopped { group }),
            }
        }))
    }

    fn holds(&self, group: GroupId) -> bool {
        self.replicas.contains_key(&group)
    }

    fn term(&self, group: GroupId) -> Option<Term> {
        let replica = self.replicas.get(&group)?;
        Some(Term(replica.term.load(std::sync::atomic::Ordering::Acquire)))
    }

    fn read_at_door(
        &self,
        group: GroupId,
        command: &ReadCommand,
        now_ms: u64,
        endorsement: Option<Endorsement>,
    ) -> Option<ShardResult> {
        // Not read under the map's guard: a door read may wait on redb.
        let door = Arc::clone(&self.replicas.get(&group)?.door);
        door.read(command, now_ms, endorsement)
    }
}

/// What arrives from peers, handed to the replicas and the request path.
struct NodeInbound {
    shards: Arc<LocalShards>,
    client: OnceLock<NodeClient>,
}

impl InboundHandler for NodeInbound {
    fn on_raft(&self, from: NodeId, messages: Vec<(GroupMessage, Urgency)>) {
        let mut by_group: BTreeMap<GroupId, Vec<(GroupMessage, Urgency)>> = BTreeMap::new();
        for (message, urgency) in messages {
            by_group
                .entry(message.group)
                .or_default()
                .push((message, urgency));
        }
        for (group, batch) in by_group {
            if !self.shards.deliver(group, batch) {
                let (group, from) = (group.get(), from.get());
                debug!(
                    group,
                    from, "no replica here, or its mailbox is full: dropped"
                );
            }
        }
    }

    fn on_forward(&self, from: NodeId, request: ForwardRequest) {
        if let Some(client) = self.client.get() {
            client.on_forward(from, request);
        }
    }

    fn on_forward_reply(&self, _from: NodeId, reply: ForwardReply) {
        if let Some(client) = self.client.get() {
            client.on_forward_reply(reply);
        }
    }

    fn on_term_probe(&self, from: NodeId, probe: TermProbe) {
        if let Some(client) = self.client.get() {
            client.on_term_probe(from, probe);
        }
    }

    fn on_term_answer(&self, from: NodeId, answer: TermAnswer) {
        if let Some(client) = self.client.get() {
            client.on_term_answer(from, answer);
        }
    }

    fn on_publication(&self, from: NodeId, publication: Publication) {
        if let Some(client) = self.client.get() {
            client.on_publication(from, publication);
        }
    }
}

/// The transport as a `PeerSender` for the request path and the replicas.
#[derive(Clone)]
struct Peers(TransportHandle);

impl PeerSender for Peers {
    fn send_raft(&self, to: NodeId, message: GroupMessage, urgency: Urgency) {
        self.0.send_raft(to, message, urgency);
    }
    fn send_forward(&self, to: NodeId, request: ForwardRequest) {
        self.0.send_forward(to, request);
    }
    fn send_forward_reply(&self, to: NodeId, reply: ForwardReply) {
        self.0.send_forward_reply(to, reply);
    }
    fn send_term_probe(&self, to: NodeId, probe: TermProbe) {
        self.0.send_term_probe(to, probe);
    }
    fn send_term_answer(&self, to: NodeId, answer: TermAnswer) {
        self.0.send_term_answer(to, answer);
    }
    fn send_publication(&self, to: NodeId, publication: Publication) {
        self.0.send_publication(to, publication);
    }

    fn is_up(&self, to: NodeId) -> bool {
        self.0.is_up(to)
    }
}

/// A running node.
pub struct Node {
    config: NodeConfig,
    table: Arc<RoutingTable>,
    client: NodeClient,
    transport: TransportHandle,
    shards: Arc<LocalShards>,
    db: Arc<NodeDb>,
    arbiters: Vec<Arbiter>,
    metrics: NodeMetrics,
    factory: ReplicaFactory,
    meta_task: tokio::task::JoinHandle<()>,
    /// Takes the leaderships the layout gives this node, at its first start.
    placement_task: Option<tokio::task::JoinHandle<()>>,
    /// Moves leaders to where their groups' requests come in (`node::workload`).
    workload_task: Option<tokio::task::JoinHandle<()>>,
    /// Hands the keyspace events the replicas raise to the node's subscribers.
    keyspace_task: tokio::task::JoinHandle<()>,
    _router: Addr<RouterActor>,
    _writer: ShardWriter,
}

impl Node {
    /// Opens the node's storage, starts its replicas, the router and the transport. Must be
    /// called inside a running actix `System` (on its tokio runtime).
    pub async fn start(config: NodeConfig, layout: Layout) -> Result<Node, NodeError> {
        let me = NodeId(config.node_id);
        let metrics = NodeMetrics::new(me)?;
        let db = open_db(&config)?;
        let observer = metrics.clone();
        db.observe_commits(Box::new(move |took, writes| {
            observer.observe_fsync(took, writes)
        }));
        let writer = ShardWriter::start(db.clone()).map_err(NodeError::Writer)?;
        let addrs: Vec<(NodeId, NodeAddrs)> = config
            .nodes
            .iter()
            .map(|n| {
                (
                    NodeId(n.id),
                    NodeAddrs {
                        resp: n.resp,
                        peer: n.peer,
                    },
                )
            })
            .collect();
        let table = RoutingTable::new(me, &layout, &addrs);
        let router = RouterActor::new(table.clone(), layout.clone()).start();
        let requests_max = config.limits.pending_requests_per_group_max;
        let shards = Arc::new(LocalShards::new(requests_max, metrics.clone()));
        let inbound = Arc::new(NodeInbound {
            shards: shards.clone(),
            client: OnceLock::new(),
        });
        let transport = start_transport(&config, &db, inbound.clone()).await?;
        let peers: Arc<dyn PeerSender> = Arc::new(Peers(transport.clone()));
        let arbiters = start_arbiters(config.limits.replica_threads);
        let reports = Arc::new(PendingReports::default());
        let local: Arc<dyn LocalGroups> = shards.clone();
        let t = &config.timeouts;
        let workload = Arc::new(Workload::new(t.follow_workload_ms > 0));
        let client = NodeClient::new(table.clone(), local.clone(), peers.clone(), t.request())
            .with_follower_reads(config.reads.follower)
            .with_read_rounds(
                config.reads.node_round_wait(t),
                config.reads.node_round_backup(),
                metrics.read_rounds(),
            )
            .with_workload(workload.clone())
            .with_forward_reply_bytes_max(config.limits.entry_bytes_max());
        client.notifier().set(config.notify_flags());
        let (on_key_events, keyspace_task) = keyspace_delivery(client.hub().clone());
        let (factory, placed) = start_replicas(
            &config, &layout, &writer, &db, &peers, &router, &arbiters, &shards, &table,
            &reports, (client.notifier(), on_key_events),
        )?;
        let _ = inbound.client.set(client.clone());
        let saved = config.data_dir.join(crate::node::meta::SAVED_MAP_FILE);
        let sync = MetaSync::new(client.clone(), transport.clone(), local, reports, saved);
        sync.apply_saved();
        let every = Duration::from_millis(config.timeouts.meta_sync_ms.max(1));
        let meta_task = tokio::spawn(sync.run(every));
        let placement_task = (!placed.is_empty() && t.leader_placement_ms > 0).then(|| {
            let within = Duration::from_millis(t.leader_placement_ms);
            let run = take_leaderships(client.clone(), me, placed, within, t.election_max());
            tokio::spawn(run)
        });
        let workload_task = (t.follow_workload_ms > 0).then(|| {
            let window = Duration::from_millis(t.follow_workload_ms);
            let moves = metrics.workload_moves();
            tokio::spawn(follow_workload(client.clone(), workload, window, moves))
        });
        info!(node = me.get(), groups = shards.all().len(), "node started");
        Ok(Node {
            config,
            table,
            client,
            transport,
            shards,
            db,
            arbiters,
            metrics,
            factory,
            meta_task,
            placement_task,
            workload_task,
            keyspace_task,
            _router: router,
            _writer: writer,
        })
    }

    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    pub fn table(&self) -> &Arc<RoutingTable> {
        &self.table
    }

    pub fn shards(&self) -> &Arc<LocalShards> {
        &self.shards
    }

    pub fn transport_stats(&self) -> TransportStats {
        self.transport.stats()
    }

    /// fsyncs of the node's database since it opened.
    pub fn fsync_count(&self) -> u64 {
        self.db.fsync_count()
    }

    /// The node's metrics registry.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    /// Copies the transport, fsync and Pub/Sub totals into the registry before every scrape, and
    /// polls every replica's status into the per-group gauges until the task is aborted.
    pub fn start_metrics(&self) -> tokio::task::JoinHandle<()> {
        let (transport, db) = (self.transport.clone(), self.db.clone());
        let hub = self.client.hub().clone();
        self.metrics.on_scrape(Box::new(move |m| {
            m.copy_transport(&transport.stats());
            m.copy_fsyncs(db.fsync_count());
            m.copy_pubsub(&hub.stats());
        }));
        crate::metrics::poll::spawn(self.metrics.clone(), self.shards.clone())
    }

    /// The RESP front end's view of this node.
    pub fn backend(&self) -> NodeBackend {
        let local = LocalAdmin {
            factory: self.factory.clone(),
            shards: self.shards.clone(),
            db: self.db.clone(),
        };
        NodeBackend::new(self.client.clone(), Some(local))
    }

    /// Stops the replicas (each finishes what it was doing, and is gone before the writer is
    /// let go, on whichever thread it ran), the transport, the arbiters.
    pub async fn stop(self) {
        let Node {
            config,
            shards,
            transport,
            arbiters,
            meta_task,
            placement_task,
            workload_task,
            keyspace_task,
            _writer,
            ..
        } = self;
        meta_task.abort();
        keyspace_task.abort();
        for task in [placement_task, workload_task].into_iter().flatten() {
            task.abort();
        }
        let deadline = Duration::from_millis(config.timeouts.shutdown_ms);
        let stops = shards.all().into_iter().map(|(_, addr)| addr.send(Stop));
        let all = futures_join_all(stops);
        if tokio::time::timeout(deadline, all).await.is_err() {
            warn!("replicas did not stop within the shutdown time-out");
        }
        // A replica on the node's own thread is dropped, with its handle on the writer, once
        // its context next runs after `Stop`; no arbiter join waits for it.
        let gone = async {
            for (_, addr) in shards.all() {
                while addr.connected() {
                    tokio::time::sleep(Duration::from_millis(STOP_POLL_MS)).await;
                }
            }
        };
        if tokio::time::timeout(deadline, gone).await.is_err() {
            warn!("replicas were not dropped within the shutdown time-out");
        }
        transport.shutdown().await;
        for arbiter in &arbiters {
            arbiter.stop();
        }
        // Joining the arbiters drops the replicas and their handles on the writer; with
        // ours dropped too, the writer finishes what is queued and closes the database.
        let joined = tokio::task::spawn_blocking(move || {
            for arbiter in arbiters {
                let _ = arbiter.join();
            }
        });
        if tokio::time::timeout(deadline, joined).await.is_err() {
            warn!("replica threads did not finish within the shutdown time-out");
        }
        drop(shards);
        drop(_writer);
        info!(node = config.node_id, "node stopped");
    }
}

/// Waits for every future (in order; each is already running in its actor).
async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) {
    for f in futures {
        let _ = f.await;
    }
}

fn open_db(config: &NodeConfig) -> Result<Arc<NodeDb>, NodeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| NodeError::DataDir {
        path: dir.clone(),
        source,
    })?;
    Ok(Arc::new(NodeDb::open(dir.join(DB_FILE_NAME))?))
}

async fn start_transport(
    config: &NodeConfig,
    db: &NodeDb,
    inbound: Arc<NodeInbound>,
) -> Result<TransportHandle, NodeError> {
    let t = &config.timeouts;
    let me = NodeId(config.node_id);
    let identity = Arc::new(Identity::open(me, db.incarnation(), db.path())?);
    let options = TransportOptions {
        node: me,
        listen: config.listen.peer,
        peers: config
            .nodes
            .iter()
            .map(|n| (NodeId(n.id), n.peer))
            .collect(),
        secret: config.secret.clone(),
        identity,
        heartbeat_interval: t.heartbeat(),
        connect_timeout: Duration::from_millis(t.connect_ms),
        reconnect_min: Duration::from_millis(t.reconnect_min_ms),
        reconnect_max: Duration::from_millis(t.reconnect_max_ms),
        frame_bytes_max: config.limits.frame_bytes_max,
        peer_queue_frames_max: config.limits.peer_queue_frames_max,
    };
    let addr = options.listen;
    Transport::start(options, inbound)
        .await
        .map_err(|source| NodeError::PeerListen { addr, source })
}

/// Arbiters for `threads` replica threads (0: one per core), at most `ARBITERS_MAX`; none
/// for one thread: the replicas then share the node's own thread.
fn start_arbiters(threads: usize) -> Vec<Arbiter> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = if threads == 0 { cores } else { threads };
    match threads.clamp(1, ARBITERS_MAX) {
        1 => Vec::new(),
        n => (0..n).map(|_| Arbiter::new()).collect(),
    }
}

/// Bytes of keyspace events (`KeyEvents::bytes`) a node's delivery queue holds: past it an
/// apply batch's events are dropped and counted (`shardkv_pubsub_keyspace_dropped_total`),
/// so that a replica's thread never waits for subscribers. A batch larger than the bound
/// alone is taken into an empty queue.
pub const KEYSPACE_QUEUED_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Keyspace events the delivery task matches against the subscriptions before it lets the
/// node's other tasks (its RESP connections among them) run.
const KEYSPACE_DELIVERY_CHUNK: usize = 256;

/// Keyspace events go to this node's subscribers only (every node raises the events of the
/// groups it holds a replica of, as it applies them), handed from the replicas' threads to
/// a task of the node's, which matches them against the subscriptions: a replica's thread
/// does not pay for the patterns subscribed, nor hold the hub's lock. One queue keeps each
/// group's order. Returns what the replicas call, and the task (aborted when the node
/// stops).
fn keyspace_delivery(
    hub: Arc<Hub>,
) -> (crate::shard::actor::KeyEventsFn, tokio::task::JoinHandle<()>) {
    use std::sync::atomic::Ordering::Relaxed;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, KeyEvents)>();
    let queued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (task_hub, task_queued) = (hub.clone(), queued.clone());
    let task = tokio::spawn(async move {
        while let Some((bytes, events)) = rx.recv().await {
            for chunk in events.events().chunks(KEYSPACE_DELIVERY_CHUNK) {
                task_hub.deliver_keyspace(events.flags(), chunk);
                tokio::task::yield_now().await;
            }
            task_queued.fetch_sub(bytes, Relaxed);
        }
    });
    let deliver = Arc::new(move |events: KeyEvents| {
        let (bytes, count) = (events.bytes(), events.len());
        let fits = |q: u64| (q == 0 || q + bytes <= KEYSPACE_QUEUED_BYTES_MAX).then_some(q + bytes);
        let taken = queued.fetch_update(Relaxed, Relaxed, fits).is_ok();
        if !taken || tx.send((bytes, events)).is_err() {
            if taken {
                queued.fetch_sub(bytes, Relaxed);
            }
            hub.count_keyspace_dropped(count);
        }
    });
    (deliver, task)
}

/// Starts this node's replicas: the layout's groups that name this node (bootstrapped on
/// first start) and every group the node holds state for (the children of splits), each
/// with the slots its durable range record gives. Returns the factory that starts the
/// children of later splits, and the groups bootstrapped now that the layout lists this
/// node first for (their leadership belongs here; see `node::placement`).
#[allow(clippy::too_many_arguments)]
fn start_replicas(
    config: &NodeConfig,
    layout: &Layout,
    writer: &ShardWriter,
    db: &Arc<NodeDb>,
    peers: &Arc<dyn PeerSender>,
    router: &Addr<RouterActor>,
    arbiters: &[Arbiter],
    shards: &Arc<LocalShards>,
    table: &Arc<RoutingTable>,
    reports: &Arc<PendingReports>,
    keyspace: (&Arc<Notifier>, crate::shard::actor::KeyEventsFn),
) -> Result<(ReplicaFactory, Vec<GroupId>), NodeError> {
    let me = NodeId(config.node_id);
    let router = router.clone();
    let on_leader_change: crate::shard::actor::LeaderChangeFn = Arc::new(move |change| {
        if router.try_send(ReportLeader(change)).is_err() {
            warn!(
                group = change.group.get(),
                "router mailbox full; leader report dropped"
            );
        }
    });
    let factory: Arc<OnceLock<ReplicaFactory>> = Arc::new(OnceLock::new());
    let on_split: crate::shard::actor::SplitFn = {
        let (factory, table, shards) = (factory.clone(), table.clone(), shards.clone());
        Arc::new(move |done: SplitDone| {
            table.apply_split(done.parent, &done.child);
            let child = done.child.group;
            if !done.child.replicas.contains(&me) || shards.get(child).is_some() {
                return;
            }
            let Some(factory) = factory.get() else { return };
            let range = done.child.range;
            match factory.start(child, range.first..=range.last) {
                Ok(addr) if done.campaign => addr.do_send(Campaign),
                Ok(_) => {}
                Err(error) => {
                    warn!(group = child.get(), %error, "cannot start the child of a split")
                }
            }
        })
    };
    let on_removed: crate::shard::actor::RemovedFn = {
        let (shards, db) = (shards.clone(), db.clone());
        Arc::new(move |group, slots| {
            if let Some(addr) = shards.remove(group) {
                shards.destroying.insert(group, ());
                let (shards, db) = (shards.clone(), db.clone());
                tokio::spawn(async move {
                    destroy_replica(addr, db, group, slots).await;
                    shards.destroying.remove(&group);
                });
            }
        })
    };
    let on_members: crate::shard::actor::MembersFn = {
        let table = table.clone();
        Arc::new(move |group, replicas| {
            if table.set_replicas(group, replicas.clone()) {
                let replicas: Vec<u64> = replicas.iter().map(|n| n.get()).collect();
                info!(group = group.get(), ?replicas, "replicas changed");
            }
        })
    };
    let on_report: crate::shard::actor::ReportFn = {
        let reports = reports.clone();
        Arc::new(move |report| reports.report(report))
    };
    let deps = ShardDeps {
        db: db.clone(),
        writer: writer.clone(),
        peers: peers.clone(),
        on_leader_change,
        on_split,
        on_removed,
        on_members,
        on_report,
        clean_budget: CleanBudget::new(config.limits.clean_cache_bytes_max),
        notifier: keyspace.0.clone(),
        on_key_events: keyspace.1,
    };
    // No arbiters: the node's own thread (`Node::start` runs on the System's arbiter).
    let handles = match arbiters {
        [] => vec![Arbiter::current()],
        arbiters => arbiters.iter().map(Arbiter::handle).collect(),
    };
    let made = ReplicaFactory {
        config: config.clone(),
        deps,
        arbiters: handles,
        on_node_thread: arbiters.is_empty(),
        shards: shards.clone(),
        next_arbiter: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    };
    let factory = factory.get_or_init(|| made);
    let mut started = std::collections::BTreeSet::new();
    let mut placed = Vec::new();
    // A joined node's layout is the cluster map's: its groups already have a history, and
    // this node's replicas of them arrive by replica moves (a snapshot), never bootstrap.
    let bootstrap = if config.joined { Vec::new() } else { layout.groups.clone() };
    if !config.joined && start_meta_group(config, layout, writer, db, factory)? {
        started.insert(META_GROUP);
    }
    for g in bootstrap.iter().filter(|g| g.replicas.contains(&me.get())) {
        let group = GroupId(g.id);
        if db.is_removed(group)? {
            info!(
                group = group.get(),
                "not started: this node's replica was removed from the group"
            );
            continue;
        }
        let voters: Vec<NodeId> = g.replicas.iter().map(|&n| NodeId(n)).collect();
        let slots = crate::kv::range::SlotRange::new(g.slots[0], g.slots[1]);
        if bootstrap_group(writer, group, &voters, slots)? && voters.first() == Some(&me) {
            placed.push(group);
        }
        factory.start(group, g.slots[0]..=g.slots[1])?;
        started.insert(group);
    }
    recreate_missing_children(db, writer, me)?;
    // Groups made by splits: not in the layout file, their range is on disk.
    for group in db.group_ids()?.into_iter().filter(|g| !started.contains(g)) {
        if db.is_removed(group)? {
            warn!(group = group.get(), "state of a removed replica left over; not started");
            continue;
        }
        let Some(range) = db.group_range(group)? else {
            warn!(
                group = group.get(),
                "state for a group that is neither in the layout nor \
                made by a split; not started"
            );
            continue;
        };
        factory.start(group, range.range.first..=range.range.last)?;
    }
    learn_local_splits(db, table)?;
    Ok((factory.clone(), placed))
}

/// Bootstraps (on first start) and starts this node's replica of the metadata group, if
/// the layout places one here; its first state holds the initial cluster map, the same on
/// every node of the group (the same layout and node addresses). Returns whether it started.
fn start_meta_group(
    config: &NodeConfig,
    layout: &Layout,
    writer: &ShardWriter,
    db: &NodeDb,
    factory: &ReplicaFactory,
) -> Result<bool, NodeError> {
    let voters: Vec<NodeId> = layout.meta_replicas().into_iter().map(NodeId).collect();
    if !voters.contains(&NodeId(config.node_id)) || db.is_removed(META_GROUP)? {
        return Ok(false);
    }
    let addrs = config
        .nodes
        .iter()
        .map(|n| (n.id, MapNode { peer: n.peer, resp: n.resp }))
        .collect();
    let map = layout.initial_map(&addrs);
    let record = KvMutation::Put {
        slot: META_SLOT,
        key: Bytes::from_static(MAP_KEY),
        record: map.to_record(),
    };
    bootstrap_group_with(writer, META_GROUP, &voters, META_RANGE, vec![record])?;
    factory.start(META_GROUP, META_SLOT..=META_SLOT)?;
    Ok(true)
}

/// A split's parent and child are written in one submission, but a large one may commit
/// in two transactions: after a crash between them the parent records the split and the
/// child has no state. Writes the child's first state again (without the parent's client
/// sessions, which only deduplicate retries that spanned the crash).
fn recreate_missing_children(
    db: &NodeDb,
    writer: &ShardWriter,
    me: NodeId,
) -> Result<(), NodeError> {
    let have: std::collections::BTreeSet<GroupId> = db.group_ids()?.into_iter().collect();
    for group in &have {
        let Some(range) = db.group_range(*group)? else {
            continue;
        };
        for off in range.split_off.iter().filter(|o| o.replicas.contains(&me)) {
            if !have.contains(&off.group) && !db.is_removed(off.group)? {
                warn!(
                    group = off.group.get(),
                    parent = group.get(),
                    "split child missing after a crash; recreating it"
                );
                writer.write_now(crate::shard::split::child_write(off))?;
            }
        }
    }
    Ok(())
}

/// Stops a replica removed from its group and deletes its state (off the async threads).
async fn destroy_replica(
    addr: Addr<ShardActor>,
    db: Arc<NodeDb>,
    group: GroupId,
    slots: Option<std::ops::RangeInclusive<u16>>,
) {
    let _ = addr.send(Stop).await;
    let done = tokio::task::spawn_blocking(move || {
        crate::storage::destroy::destroy_group(&db, group, slots)
    });
    match done.await {
        Ok(Ok(())) => info!(group = group.get(), "replica removed and its state deleted"),
        Ok(Err(error)) => warn!(group = group.get(), %error, "deleting a removed replica failed"),
        Err(error) => warn!(group = group.get(), %error, "deleting a removed replica failed"),
    }
}

/// Puts the splits recorded by this node's groups into the routing table (a parent's
/// records before its children's, whatever their ids).
fn learn_local_splits(db: &NodeDb, table: &RoutingTable) -> Result<(), NodeError> {
    let mut records = Vec::new();
    for group in db.group_ids()? {
        if let Some(range) = db.group_range(group)? {
            records.extend(range.split_off.into_iter().map(|off| (group, off)));
        }
    }
    while !records.is_empty() {
        let before = records.len();
        records.retain(|(parent, off)| {
            let known = table.group(*parent).is_some();
            if known {
                table.apply_split(*parent, off);
            }
            !known
        });
        if records.len() == before {
            warn!(
                left = before,
                "splits of groups this node does not know; left out"
            );
            break;
        }
    }
    Ok(())
}

/// Starts replicas on the node's arbiters, round robin: at start-up and for the children
/// of splits.
#[derive(Clone)]
struct ReplicaFactory {
    config: NodeConfig,
    deps: ShardDeps,
    arbiters: Vec<actix::ArbiterHandle>,
    /// The replicas run on the node's own thread, beside its transport (one replica
    /// thread): they pause before long applies (`ShardConfig::pause_long_applies`).
    on_node_thread: bool,
    shards: Arc<LocalShards>,
    next_arbiter: Arc<std::sync::atomic::AtomicUsize>,
}

impl ReplicaFactory {
    fn start(
        &self,
        group: GroupId,
        slots: std::ops::RangeInclusive<u16>,
    ) -> Result<Addr<ShardActor>, NodeError> {
        self.launch(group, slots, false)
    }

    /// Starts an empty replica of a group this node is being added to (or opens the one
    /// it holds state for): see `ShardActor::start_empty`.
    fn start_empty(&self, group: GroupId) -> Result<Addr<ShardActor>, NodeError> {
        // Placeholder slots until the snapshot brings the range; the metadata group's one.
        let slots = if group == META_GROUP { META_SLOT..=META_SLOT } else { 0..=0 };
        self.launch(group, slots, true)
    }

    fn launch(
        &self,
        group: GroupId,
        slots: std::ops::RangeInclusive<u16>,
        empty: bool,
    ) -> Result<Addr<ShardActor>, NodeError> {
        let (config, t) = (&self.config, &self.config.timeouts);
        let mut cfg = ShardConfig::new(NodeId(config.node_id), group, slots);
        cfg.tick = t.tick();
        cfg.election_ticks_min = t.election_ticks_min;
        cfg.election_ticks_max = t.election_ticks_max;
        cfg.heartbeat_ticks = t.heartbeat_ticks;
        cfg.apply_flush = t.apply_flush();
        cfg.expiry_step = t.expiry_step();
        cfg.pause_long_applies = self.on_node_thread;
        cfg.pending_requests_max = config.limits.pending_requests_per_group_max;
        cfg.entry_bytes_max = config.limits.entry_bytes_max();
        cfg.lease_reads = config.reads.lease();
        cfg.follower_reads = config.reads.follower;
        cfg.metrics = self.shards.metrics.group(group);
        cfg.rng_seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let i = self
            .next_arbiter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let arbiter = &self.arbiters[i % self.arbiters.len()];
        let (term, door) = (cfg.published_term.clone(), cfg.read_door.clone());
        let addr = if empty {
            ShardActor::start_empty(arbiter, cfg, self.deps.clone())?
        } else {
            ShardActor::start(arbiter, cfg, self.deps.clone())?
        };
        self.shards.insert(group, addr.clone(), term, door);
        Ok(addr)
    }
}

/// The RESP front end's backend: the node's request path and routing table.
#[derive(Clone)]
pub struct NodeBackend {
    client: NodeClient,
    ids: Arc<ClientIds>,
    /// Node-local operator operations (`OpenReplica`, `DropReplica`); `None`: refused.
    /// Shared: a backend is cloned for every request.
    local: Option<Arc<LocalAdmin>>,
}

/// What node-local operator operations need: starting and deleting this node's replicas.
#[derive(Clone)]
pub struct LocalAdmin {
    factory: ReplicaFactory,
    shards: Arc<LocalShards>,
    db: Arc<NodeDb>,
}

impl LocalAdmin {
    /// Starts an empty replica of `group` unless one runs here already.
    fn open(&self, group: GroupId) -> ShardResult {
        if self.shards.get(group).is_none() {
            if self.shards.destroying.contains_key(&group) {
                let reason = "the node's old replica is being deleted; retry".to_string();
                return Err(ShardError::Busy { group, reason });
            }
            self.factory.start_empty(group).map_err(|e| ShardError::Refused {
                group,
                reason: format!("cannot start a replica: {e}"),
            })?;
            info!(group = group.get(), "empty replica started; waiting for a snapshot");
        }
        Ok(crate::kv::Reply::Ok)
    }

    /// Deletes this node's replica of `group` once the group's leader confirms the node
    /// is no longer a member (a replica that missed the entry removing it).
    async fn drop_replica(&self, client: &NodeClient, group: GroupId) -> ShardResult {
        let me = client.table().me();
        let members = client.execute(group, ShardOp::Members).await?;
        let named = members_of(&members).ok_or_else(|| ShardError::Refused {
            group,
            reason: "the leader's member list does not parse".into(),
        })?;
        if named.contains(&me) {
            let reason = format!("node {me} is still a replica of the group; remove it first");
            return Err(ShardError::Refused { group, reason });
        }
        client.table().set_replicas(group, named);
        let Some(addr) = self.shards.get(group) else {
            return Ok(crate::kv::Reply::Ok);
        };
        // The replica finishes what it handed the writer, then the node deletes it.
        let _ = addr.send(crate::shard::actor::Retire).await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(DROP_WAIT_MS);
        loop {
            let gone = self.shards.get(group).is_none() && !self.shards.destroying.contains_key(&group);
            if gone && self.db.is_removed(group).unwrap_or(false) {
                return Ok(crate::kv::Reply::Ok);
            }
            if tokio::time::Instant::now() >= deadline {
                let reason = "the replica was not deleted in time; see the node's log".to_string();
                return Err(ShardError::Refused { group, reason });
            }
            tokio::time::sleep(Duration::from_millis(DROP_POLL_MS)).await;
        }
    }
}

/// The node ids of a `Members` reply.
fn members_of(reply: &crate::kv::Reply) -> Option<Vec<NodeId>> {
    let members = crate::shard::api::Members::from_reply(reply)?;
    Some(members.replicas.into_iter().map(|(node, _, _)| node).collect())
}

/// Client ids: a per-process random prefix in the high 32 bits and a counter below that
/// starts at a random value, so that ids of two processes (a restarted node included: the
/// groups remember sessions by id) meet only if both 31-bit prefixes and the counters'
/// ranges do. The top bit stays clear: clients see ids as Redis's, positive 64-bit
/// integers (CLIENT ID, HELLO, CLIENT KILL ID).
struct ClientIds {
    prefix: u64,
    next: std::sync::atomic::AtomicU64,
}

/// A process's client-id prefix (the high 32 bits: never zero, top bit clear) and the
/// counter's first value (the low 32 bits), drawn from `seed`.
fn client_id_base(seed: u64) -> (u64, u64) {
    let mut rng = <rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(seed);
    let draw = rand_core::Rng::next_u64(&mut rng);
    ((draw & 0x7FFF_FFFF_0000_0000).max(1 << 32), draw & 0xFFFF_FFFF)
}

impl NodeBackend {
    pub fn new(client: NodeClient, local: Option<LocalAdmin>) -> NodeBackend {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed =
            (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ client.table().me().get();
        let (prefix, first) = client_id_base(seed);
        let ids = ClientIds {
            prefix,
            next: first.into(),
        };
        NodeBackend {
            client,
            ids: Arc::new(ids),
            local: local.map(Arc::new),
        }
    }
}

impl Backend for NodeBackend {
    fn execute(&self, group: GroupId, op: ShardOp) -> impl Future<Output = ShardResult> + Send {
        let client = self.client.clone();
        let local = match op {
            ShardOp::OpenReplica | ShardOp::DropReplica => self.local.clone(),
            _ => None,
        };
        async move {
            let refused = || ShardError::Refused {
                group,
                reason: "this node does not run operator operations".into(),
            };
            match op {
                ShardOp::OpenReplica => local.ok_or_else(refused)?.open(group),
                ShardOp::DropReplica => {
                    local.ok_or_else(refused)?.drop_replica(&client, group).await
                }
                ShardOp::Members => {
                    let reply = client.execute(group, ShardOp::Members).await?;
                    // The leader's list is the newest this node can have.
                    if let Some(replicas) = members_of(&reply) {
                        client.table().set_replicas(group, replicas);
                    }
                    Ok(reply)
                }
                op => client.execute(group, op).await,
            }
        }
    }

    fn group_of_slot(&self, slot: u16) -> GroupId {
        self.client
            .table()
            .group_of_slot(slot)
            .unwrap_or(GroupId(0))
    }

    fn cluster_view(&self) -> ClusterView {
        let table = self.client.table();
        let nodes = table.nodes().into_iter().map(|(id, a)| NodeView {
            id,
            resp_addr: a.resp,
        });
        let groups = table.groups().into_iter().map(|g| GroupView {
            id: g.group,
            slot_first: g.slots.0,
            slot_last: g.slots.1,
            replicas: g.replicas,
            leader: g.leader,
        });
        let mut groups: Vec<GroupView> = groups.collect();
        groups.sort_by_key(|g| g.slot_first);
        ClusterView {
            node_id: table.me(),
            nodes: nodes.collect(),
            groups,
        }
    }

    fn node_id(&self) -> NodeId {
        self.client.table().me()
    }

    fn new_client_id(&self) -> u64 {
        let n = self
            .ids
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.ids.prefix | (n & 0xFFFF_FFFF)
    }

    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn expired_keys(&self) -> u64 {
        self.local.as_ref().map_or(0, |local| local.shards.metrics.expired_keys_total())
    }

    fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.client.table().leader(group)
    }

    fn hub(&self) -> &Arc<Hub> {
        self.client.hub()
    }

    fn notifier(&self) -> &Arc<Notifier> {
        self.client.notifier()
    }

    fn publish_to_peers(&self, publication: &Publication) {
        self.client.publish_to_peers(publication);
    }

    fn holds_replica(&self, group: GroupId) -> bool {
        let table = self.client.table();
        let me = table.me();
        table.with_group(group, |route| route.replicas.contains(&me)) == Some(true)
    }
}

/// Runs a node until `shutdown` resolves: replicas, transport, and the RESP listener on
/// `listen.resp`. Must be called inside a running actix `System`.
pub async fn run(
    config: NodeConfig,
    layout: Layout,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let resp_addr = config.listen.resp;
    let listener = tokio::net::TcpListener::bind(resp_addr)
        .await
        .map_err(|source| NodeError::RespListen {
            addr: resp_addr,
            source,
        })?;
    let metrics_listener = crate::metrics::http::bind(config.listen.metrics).await?;
    let mut options = RespOptions {
        limits: config.limits.clone(),
        requirepass: config.requirepass.clone(),
        cluster_redirects: config.cluster_redirects,
        metrics: None,
        slowlog: config.slowlog.clone(),
    };
    let node = Node::start(config, layout).await?;
    options.metrics = Some(node.metrics().resp());
    let http = crate::metrics::http::spawn(metrics_listener, node.metrics().clone());
    let tasks = [node.start_metrics(), http];
    info!(%resp_addr, "serving RESP clients");
    if let Err(error) = serve(listener, node.backend(), options, shutdown).await {
        warn!(%error, "RESP listener failed");
    }
    tasks.iter().for_each(tokio::task::JoinHandle::abort);
    node.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::client_id_base;

    /// Every client id a process gives is a positive `i64`, as a Redis client reads it; the
    /// prefix draws differ between processes, and so do the counters' starts.
    #[test]
    fn client_ids_are_positive_64_bit_integers() {
        let bases: Vec<(u64, u64)> = (0..1000).map(client_id_base).collect();
        let starts: std::collections::BTreeSet<_> = bases.iter().map(|(_, s)| s).collect();
        assert!(starts.len() > 990, "{} distinct starts", starts.len());
        let prefixes: Vec<u64> = bases.iter().map(|(prefix, _)| *prefix).collect();
        for prefix in &prefixes {
            let (first, last) = (prefix | 1, prefix | 0xFFFF_FFFF);
            assert!(first >= 1 << 32 && i64::try_from(last).is_ok(), "{prefix:#x}");
        }
        let distinct: std::collections::BTreeSet<_> = prefixes.iter().collect();
        assert!(distinct.len() > 990, "{} distinct prefixes", distinct.len());
    }
}
