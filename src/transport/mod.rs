//! The node-level transport: one TCP connection per peer node carrying the Raft messages
//! of every group, coalesced heartbeats, forwarded client requests and the read rounds'
//! probes and answers (`node::read_rounds`).
//!
//! Each node dials every peer once (`peer`: the outbound link, written only) and accepts
//! the peers' own dials (`inbound`: read only). Both ends prove the cluster secret first
//! (`handshake`), and each refuses a peer that comes back with another data directory
//! (`identity`); then every frame is a length-prefixed rmp-serde `Batch` (`wire`). The
//! node's heartbeat clock flushes each peer's coalesced heartbeat entries once per
//! heartbeat interval, whatever the number of groups. This module owns start-up, the
//! handle and shutdown; it must never block a sender or hold an unbounded queue.

pub mod api;
pub mod handshake;
pub mod identity;
mod inbound;
mod peer;
pub mod stats;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::raft::types::NodeId;
use crate::transport::api::{ForwardReply, ForwardRequest, GroupMessage, InboundHandler};
use crate::transport::api::{PeerSender, Publication, TermAnswer, TermProbe, Urgency};
use crate::transport::peer::{LinkConfig, Outgoing, Peer};
use crate::transport::stats::Counters;

pub use crate::transport::inbound::INBOUND_CONNECTIONS_MAX;
pub use crate::transport::peer::{
    FRAME_WRITE_TIMEOUT_CONNECT_TIMEOUTS, HEARTBEAT_BATCH_ENTRIES_MAX,
};
pub use crate::transport::stats::{PeerStats, TransportStats};

/// Listen backlog of the peer port.
const LISTEN_BACKLOG: u32 = 128;

/// Peers one transport knows at most (its configuration's plus those added later, as
/// nodes join); `add_peer` refuses more.
pub const PEERS_MAX: usize = 1024;

/// The transport's peers, shared by the senders, the acceptor and the heartbeat clock;
/// it grows when a node joins (`TransportHandle::add_peer`), and never shrinks.
#[derive(Clone, Default)]
pub(crate) struct PeerSet(Arc<RwLock<BTreeMap<NodeId, Arc<Peer>>>>);

impl PeerSet {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<NodeId, Arc<Peer>>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<NodeId, Arc<Peer>>> {
        self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, node: NodeId) -> Option<Arc<Peer>> {
        self.read().get(&node).cloned()
    }

    pub(crate) fn ids(&self) -> BTreeSet<NodeId> {
        self.read().keys().copied().collect()
    }

    fn all(&self) -> Vec<Arc<Peer>> {
        self.read().values().cloned().collect()
    }
}

/// Everything the transport needs; `node::config` supplies the values.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    pub node: NodeId,
    /// The peer port; port 0 binds any free port (see `TransportHandle::local_addr`).
    pub listen: SocketAddr,
    /// The other nodes' transport addresses (this node's own entry, if any, is ignored).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The cluster's shared secret; it never crosses the wire.
    pub secret: String,
    /// This node's incarnation and the record of its peers' (see `identity`).
    pub identity: Arc<identity::Identity>,
    /// The node's heartbeat clock: one coalesced heartbeat frame per peer per interval.
    pub heartbeat_interval: Duration,
    /// Connecting plus the handshake, either direction.
    pub connect_timeout: Duration,
    /// Reconnect back-off, doubling from min to max.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Largest frame body, either direction (capped at `u32::MAX`).
    pub frame_bytes_max: u64,
    /// Items queued for one peer before new ones are dropped.
    pub peer_queue_frames_max: usize,
}

impl TransportOptions {
    fn validate(&self) -> io::Result<()> {
        let invalid = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                what.to_string(),
            ))
        };
        if self.node == NodeId(0) {
            return invalid("node id 0 is not a node");
        }
        if self.heartbeat_interval.is_zero() || self.connect_timeout.is_zero() {
            return invalid("heartbeat interval and connect time-out must be positive");
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return invalid("reconnect back-off needs 0 < min <= max");
        }
        if self.frame_bytes_max < u64::from(wire::HANDSHAKE_FRAME_BYTES_MAX) {
            return invalid("frame_bytes_max is smaller than a handshake frame");
        }
        if self.peer_queue_frames_max == 0 {
            return invalid("peer_queue_frames_max must be positive");
        }
        Ok(())
    }
}

/// Starts transports.
pub struct Transport;

impl Transport {
    /// Binds `options.listen` and starts the transport on the current tokio runtime.
    pub async fn start(
        options: TransportOptions,
        handler: Arc<dyn InboundHandler>,
    ) -> io::Result<TransportHandle> {
        let listener = Transport::bind(options.listen)?;
        Transport::start_on(listener, options, handler).await
    }

    /// Binds a peer listener (SO_REUSEADDR, so a restarted node gets its port back at once).
    /// With port 0, bind first and read `local_addr()` to learn the port before `start_on`.
    pub fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        socket.listen(LISTEN_BACKLOG)
    }

    /// Starts the transport on an already bound listener (`options.listen` is ignored).
    pub async fn start_on(
        listener: TcpListener,
        options: TransportOptions,
        handler: Arc<dyn InboundHandler>,
    ) -> io::Result<TransportHandle> {
        options.validate()?;
        let local_addr = listener.local_addr()?;
        let frame_bytes_max = u32::try_from(options.frame_bytes_max).unwrap_or(u32::MAX);
        let link = LinkConfig {
            me: options.node,
            secret: options.secret.as_bytes().to_vec(),
            identity: options.identity.clone(),
            connect_timeout: options.connect_timeout,
            reconnect_min: options.reconnect_min,
            reconnect_max: options.reconnect_max,
            frame_bytes_max,
            peer_queue_frames_max: options.peer_queue_frames_max,
        };
        let peers = PeerSet::default();
        let mut tasks = Vec::new();
        for (&node, &addr) in options.peers.iter().filter(|(n, _)| **n != options.node) {
            let (p, rx) = Peer::new(node, addr, options.peer_queue_frames_max);
            let p = Arc::new(p);
            tasks.push(tokio::spawn(peer::run(p.clone(), link.clone(), rx)));
            peers.write().insert(node, p);
        }
        let strangers = Arc::new(Counters::default());
        let ctx = inbound::InboundContext {
            me: options.node,
            secret: link.secret.clone(),
            identity: link.identity.clone(),
            peers: peers.clone(),
            strangers: strangers.clone(),
            handler,
            handshake_timeout: options.connect_timeout,
            frame_bytes_max,
        };
        tasks.push(tokio::spawn(inbound::accept_loop(listener, Arc::new(ctx))));
        tasks.push(tokio::spawn(heartbeat_clock(
            peers.clone(),
            options.heartbeat_interval,
        )));
        let known = peers.read().len();
        info!(node = %options.node, %local_addr, peers = known, "transport listening");
        let inner = Inner {
            node: options.node,
            local_addr,
            link,
            peers,
            strangers,
            stopped: AtomicBool::new(false),
            tasks: Mutex::new(tasks),
        };
        Ok(TransportHandle {
            inner: Arc::new(inner),
        })
    }
}

/// Rings every peer's clock once per heartbeat interval.
async fn heartbeat_clock(peers: PeerSet, interval: Duration) {
    let mut clock = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        clock.tick().await;
        for peer in peers.all() {
            peer.clock.notify_one();
        }
    }
}

struct Inner {
    node: NodeId,
    local_addr: SocketAddr,
    link: LinkConfig,
    peers: PeerSet,
    strangers: Arc<Counters>,
    stopped: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A running transport: cheap to clone, never blocks a sender.
#[derive(Clone)]
pub struct TransportHandle {
    inner: Arc<Inner>,
}

impl TransportHandle {
    /// The address the peer listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// A snapshot of the counters, summed and per peer.
    pub fn stats(&self) -> TransportStats {
        let peers = self.inner.peers.read();
        let counters = peers.iter().map(|(n, p)| (*n, &p.counters));
        TransportStats::collect(counters, &self.inner.strangers)
    }

    /// Stops accepting a node that left the cluster; its link is not dialled again once
    /// it closes. Returns whether it was a peer.
    pub fn remove_peer(&self, node: NodeId) -> bool {
        let Some(peer) = self.inner.peers.write().remove(&node) else { return false };
        peer.removed.store(true, Ordering::Release);
        info!(peer = %node, "peer removed");
        // Its id may join again, with another data directory.
        self.keep_identities(move |n| n != node);
        true
    }

    /// Drops the incarnation records of nodes that are neither peers nor accepted by
    /// `keep` (nodes a cluster map no longer lists): their ids may join again. The file is
    /// written on a blocking thread, which reads the peers when it runs (under the record's
    /// lock: a peer admitted meanwhile keeps its record); a failure is logged, and the
    /// next call tries again.
    pub fn keep_identities(&self, keep: impl Fn(NodeId) -> bool + Send + 'static) {
        let identity = self.inner.link.identity.clone();
        let peers = self.inner.peers.clone();
        let retain = move || {
            if let Err(e) = identity.retain(|n| peers.get(n).is_some() || keep(n)) {
                warn!("the records of departed peers' incarnations stay: {e}");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(retain)),
            Err(_) => retain(),
        }
    }

    /// Starts dialling a node that joined the cluster, and accepts its connections from now
    /// on. Returns whether it was added: a known node keeps its address (a node's address
    /// does not change while it is a member), this node is never its own peer, and past
    /// `PEERS_MAX` peers it is refused (logged).
    pub fn add_peer(&self, node: NodeId, addr: SocketAddr) -> bool {
        if node == self.inner.node || self.inner.stopped.load(Ordering::Relaxed) {
            return false;
        }
        let mut peers = self.inner.peers.write();
        if let Some(known) = peers.get(&node) {
            if known.addr != addr {
                warn!(peer = %node, known = %known.addr, announced = %addr,
                    "a known peer announced another address; keeping the known one");
            }
            return false;
        }
        if peers.len() >= PEERS_MAX {
            warn!(peer = %node, "peer {node} not added: {PEERS_MAX} peers known already");
            return false;
        }
        let queue = self.inner.link.peer_queue_frames_max;
        let (p, rx) = Peer::new(node, addr, queue);
        let p = Arc::new(p);
        let task = tokio::spawn(peer::run(p.clone(), self.inner.link.clone(), rx));
        peers.insert(node, p);
        drop(peers);
        match self.inner.tasks.lock() {
            Ok(mut t) => t.push(task),
            Err(poisoned) => poisoned.into_inner().push(task),
        }
        info!(peer = %node, %addr, "peer added");
        true
    }

    /// Stops every task and closes every socket and the listener; returns once they are
    /// closed. Messages sent afterwards are dropped. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        let tasks = match self.inner.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        info!(node = %self.inner.node, "transport stopped");
    }

    /// Queues `item` to `to`, unless the transport stopped or `to` is unknown.
    fn enqueue(&self, to: NodeId, item: Outgoing) {
        if let Some(peer) = self.peer(to) {
            peer.enqueue(item);
        }
    }

    fn peer(&self, to: NodeId) -> Option<Arc<Peer>> {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let peer = self.inner.peers.get(to);
        if peer.is_none() {
            debug!(node = %to, "dropped a message to an unknown peer");
        }
        peer
    }
}

impl PeerSender for TransportHandle {
    fn send_raft(&self, to: NodeId, message: GroupMessage, urgency: Urgency) {
        if let Some(peer) = self.peer(to) {
            peer.send_raft(self.inner.node, message, urgency);
        }
    }

    fn send_forward(&self, to: NodeId, request: ForwardRequest) {
        self.enqueue(to, Outgoing::Forward(request));
    }

    fn send_forward_reply(&self, to: NodeId, reply: ForwardReply) {
        self.enqueue(to, Outgoing::ForwardReply(reply));
    }

    fn send_term_probe(&self, to: NodeId, probe: TermProbe) {
        self.enqueue(to, Outgoing::TermProbe(probe));
    }

    fn send_term_answer(&self, to: NodeId, answer: TermAnswer) {
        self.enqueue(to, Outgoing::TermAnswer(answer));
    }

    fn send_publication(&self, to: NodeId, publication: Publication) {
        if let Some(peer) = self.peer(to) {
            peer.send_publication(publication);
        }
    }

    fn is_up(&self, to: NodeId) -> bool {
        self.inner.peers.get(to).is_some_and(|p| p.is_up())
    }
}
