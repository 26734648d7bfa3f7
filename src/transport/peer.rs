//! One peer node as seen from this one: its bounded outbound queue, its coalesced heartbeat
//! batch, its counters, and the task that dials it, keeps one connection open (reconnecting
//! with exponential back-off) and writes one frame per drain of the queue. Owns the
//! outbound half of the link; it must never block a sender, grow without bound while the
//! peer is down, or read anything but end-of-stream from the outbound socket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use crate::raft::types::{GroupId, MessageBody, NodeId};
use crate::transport::api::{ForwardReply, ForwardRequest, GroupMessage, TermAnswer, TermProbe};
use crate::transport::api::Publication;
use crate::transport::api::Urgency;
use crate::transport::handshake::{self, HandshakeError};
use crate::transport::stats::{bump, Counters};
use crate::transport::wire::{
    encode_frame, write_encoded, Batch, Frame, HeartbeatEntry, HeartbeatResponseEntry, WireError,
};

/// Coalesced heartbeat entries kept for one peer between two heartbeat frames (one per
/// group and kind, the newest wins); beyond this many groups new entries are dropped.
pub const HEARTBEAT_BATCH_ENTRIES_MAX: usize = 65_536;

/// Bytes of Pub/Sub messages (channel and message, plus `PUBLICATION_OVERHEAD_BYTES`
/// each) queued for one peer at most; past it, or once the queue is half full,
/// publications are dropped and counted, so that they never take the room of Raft
/// messages and forwarded requests.
pub const PEER_PUBLICATION_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// What a publication is counted beyond its channel and message.
pub const PUBLICATION_OVERHEAD_BYTES: u64 = 64;

/// Writing one frame may take this many connect time-outs before the connection is taken
/// for dead and re-dialled (a peer host that vanished without a FIN or RST).
pub const FRAME_WRITE_TIMEOUT_CONNECT_TIMEOUTS: u32 = 10;

/// The knobs of the outbound side, shared by every peer.
#[derive(Clone, Debug)]
pub(crate) struct LinkConfig {
    pub me: NodeId,
    pub secret: Vec<u8>,
    pub identity: std::sync::Arc<super::identity::Identity>,
    pub connect_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub frame_bytes_max: u32,
    pub peer_queue_frames_max: usize,
}

/// Yields to the event loop before a frame is written, at most, while each one brings
/// more to send.
const COALESCE_YIELDS_MAX: usize = 4;

/// What waits in a peer's queue.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Raft(GroupMessage),
    Forward(ForwardRequest),
    ForwardReply(ForwardReply),
    TermProbe(TermProbe),
    TermAnswer(TermAnswer),
    Publication(Publication),
}

/// Why a connection to a peer ended or could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("no connection and handshake within {0:?}")]
    Timeout(Duration),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("closed by the peer")]
    Closed,
    #[error("writing a frame took longer than {0:?}")]
    WriteTimeout(Duration),
    #[error("the peer sent bytes on the outbound connection")]
    UnexpectedBytes,
    #[error("{0}")]
    Wire(#[from] WireError),
}

#[derive(Debug, Default)]
struct HeartbeatBatch {
    heartbeats: BTreeMap<GroupId, HeartbeatEntry>,
    responses: BTreeMap<GroupId, HeartbeatResponseEntry>,
}

/// The state of one peer shared by senders and its writer task.
#[derive(Debug)]
pub(crate) struct Peer {
    pub node: NodeId,
    pub addr: SocketAddr,
    queue: mpsc::Sender<Outgoing>,
    heartbeats: Mutex<HeartbeatBatch>,
    /// Rung by the node's heartbeat clock: flush the heartbeat batch.
    pub clock: Notify,
    /// Rung when an inbound connection from this peer completes its handshake.
    pub inbound_replaced: Notify,
    pub counters: Counters,
    /// Our link to the peer is connected.
    pub outbound_up: AtomicBool,
    /// The peer's link to us (the newest one, `inbound_gen`) is connected.
    pub inbound_up: AtomicBool,
    /// Numbers the peer's inbound connections: only the newest may mark the link down.
    pub inbound_gen: AtomicU64,
    /// The node left the cluster: its link is not dialled again once it closes.
    pub removed: AtomicBool,
    /// Bytes of publications in the queue (`PEER_PUBLICATION_BYTES_MAX`).
    publication_bytes: AtomicU64,
}

fn publication_bytes(p: &Publication) -> u64 {
    (p.channel.len() + p.message.len()) as u64 + PUBLICATION_OVERHEAD_BYTES
}

impl Peer {
    /// Whether either direction of the link is connected: a peer that died closes both
    /// (ours fails on the next write, the peer's ends with EOF), so only then is it down.
    pub fn is_up(&self) -> bool {
        self.outbound_up.load(Ordering::Acquire) || self.inbound_up.load(Ordering::Acquire)
    }

    pub fn new(
        node: NodeId,
        addr: SocketAddr,
        queue_max: usize,
    ) -> (Peer, mpsc::Receiver<Outgoing>) {
        let (queue, rx) = mpsc::channel(queue_max);
        let peer = Peer {
            node,
            addr,
            queue,
            heartbeats: Mutex::new(HeartbeatBatch::default()),
            clock: Notify::new(),
            inbound_replaced: Notify::new(),
            counters: Counters::default(),
            outbound_up: AtomicBool::new(false),
            inbound_up: AtomicBool::new(false),
            inbound_gen: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            publication_bytes: AtomicU64::new(0),
        };
        (peer, rx)
    }

    /// Queues a Raft message; an idle heartbeat joins the coalesced batch instead.
    pub fn send_raft(&self, me: NodeId, message: GroupMessage, urgency: Urgency) {
        let from_here = message.msg.from == me && message.msg.to == self.node;
        if urgency == Urgency::Coalesce && from_here && self.coalesce(&message) {
            return;
        }
        self.enqueue(Outgoing::Raft(message));
    }

    /// Puts a heartbeat (response) in the batch; false when it is not one.
    fn coalesce(&self, m: &GroupMessage) -> bool {
        let mut batch = match self.heartbeats.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let held = batch.heartbeats.len() + batch.responses.len();
        let full = held >= HEARTBEAT_BATCH_ENTRIES_MAX;
        let (group, term) = (m.group, m.msg.term);
        match m.msg.body {
            MessageBody::Heartbeat {
                commit_index,
                read_round,
            } => {
                if full && !batch.heartbeats.contains_key(&group) {
                    drop(batch);
                    self.dropped("heartbeat batch full");
                    return true;
                }
                let e = HeartbeatEntry {
                    group,
                    term,
                    commit_index,
                    read_round,
                };
                batch.heartbeats.insert(group, e);
            }
            MessageBody::HeartbeatResponse { read_round } => {
                if full && !batch.responses.contains_key(&group) {
                    drop(batch);
                    self.dropped("heartbeat batch full");
                    return true;
                }
                batch.responses.insert(
                    group,
                    HeartbeatResponseEntry {
                        group,
                        term,
                        read_round,
                    },
                );
            }
            _ => return false,
        }
        true
    }

    pub fn enqueue(&self, item: Outgoing) {
        match self.queue.try_send(item) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.dropped("queue full"),
            Err(mpsc::error::TrySendError::Closed(_)) => self.dropped("transport stopped"),
        }
    }

    /// Queues a Pub/Sub message, within its own budget: dropped if our link to the peer is
    /// down (it would arrive stale, once the link is back), the queue is half full or the
    /// publications queued pass `PEER_PUBLICATION_BYTES_MAX`.
    pub fn send_publication(&self, publication: Publication) {
        if !self.outbound_up.load(Ordering::Acquire) {
            return self.dropped("no link to the peer for a publication");
        }
        if self.queue.capacity() <= self.queue.max_capacity() / 2 {
            return self.dropped("queue half full, publications leave the rest to Raft");
        }
        let bytes = publication_bytes(&publication);
        let queued = self.publication_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if queued > PEER_PUBLICATION_BYTES_MAX {
            self.publication_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return self.dropped("publications past PEER_PUBLICATION_BYTES_MAX");
        }
        if self.queue.try_send(Outgoing::Publication(publication)).is_err() {
            self.publication_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.dropped("queue full or transport stopped");
        }
    }

    fn dropped(&self, why: &str) {
        bump(&self.counters.dropped_full_queue, 1);
        debug!(peer = %self.node, addr = %self.addr, "dropped a message to the peer: {why}");
    }

    /// Everything drained from the queue plus the whole heartbeat batch (piggybacked).
    fn take_batch(&self, items: &mut Vec<Outgoing>) -> Batch {
        let mut batch = Batch::default();
        for item in items.drain(..) {
            match item {
                Outgoing::Raft(m) => batch.messages.push(m),
                Outgoing::Forward(f) => batch.forwards.push(f),
                Outgoing::ForwardReply(r) => batch.forward_replies.push(r),
                Outgoing::TermProbe(p) => batch.term_probes.push(p),
                Outgoing::TermAnswer(a) => batch.term_answers.push(a),
                Outgoing::Publication(p) => {
                    self.publication_bytes.fetch_sub(publication_bytes(&p), Ordering::Relaxed);
                    batch.publications.push(p);
                }
            }
        }
        let mut hb = match self.heartbeats.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        batch
            .heartbeats
            .extend(std::mem::take(&mut hb.heartbeats).into_values());
        batch
            .heartbeat_responses
            .extend(std::mem::take(&mut hb.responses).into_values());
        batch
    }

    fn count_sent(&self, batch: &Batch, frame_bytes: usize) {
        let c = &self.counters;
        bump(&c.frames_sent, 1);
        bump(&c.bytes_sent, frame_bytes as u64);
        bump(&c.messages_sent, batch.len() as u64);
        let entries = batch.heartbeat_entries() as u64;
        if entries > 0 {
            bump(&c.heartbeat_frames_sent, 1);
            bump(&c.heartbeat_entries_sent, entries);
        }
    }

    /// Writes `batch` as one frame, or as several when one would exceed `frame_bytes_max`;
    /// a single item that alone exceeds it is dropped and counted.
    async fn write_batch(
        &self,
        writer: &mut OwnedWriteHalf,
        batch: Batch,
        frame_bytes_max: u32,
    ) -> Result<(), LinkError> {
        let mut pending = vec![batch];
        while let Some(batch) = pending.pop() {
            let frame = Frame::Batch(batch);
            match encode_frame(&frame, frame_bytes_max) {
                Ok(encoded) => {
                    write_encoded(writer, &encoded).await?;
                    if let Frame::Batch(b) = &frame {
                        self.count_sent(b, encoded.len());
                    }
                }
                Err(e) => {
                    let Frame::Batch(batch) = frame else { continue };
                    if matches!(e, WireError::TooLarge { .. }) && batch.len() >= 2 {
                        let (lower, upper) = batch.split();
                        pending.push(upper);
                        pending.push(lower);
                    } else {
                        warn!(peer = %self.node, addr = %self.addr, "dropped a frame: {e}");
                        bump(&self.counters.dropped_full_queue, batch.len() as u64);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Dials the peer, keeps the connection and writes its frames until the transport stops.
pub(crate) async fn run(
    peer: std::sync::Arc<Peer>,
    cfg: LinkConfig,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let mut backoff = cfg.reconnect_min;
    let mut failures = 0u64;
    loop {
        if peer.removed.load(Ordering::Acquire) {
            info!(peer = %peer.node, "peer left the cluster; not dialled any more");
            return;
        }
        match connect(&peer, &cfg).await {
            Ok(stream) => {
                bump(&peer.counters.connects, 1);
                info!(peer = %peer.node, addr = %peer.addr, "connected to peer");
                peer.outbound_up.store(true, Ordering::Release);
                failures = 0;
                let since = Instant::now();
                let end = run_connected(&peer, &cfg, &mut rx, stream).await;
                peer.outbound_up.store(false, Ordering::Release);
                match end {
                    Ok(()) => return,
                    Err(e) => info!(peer = %peer.node, addr = %peer.addr, "disconnected: {e}"),
                }
                if since.elapsed() >= cfg.reconnect_max {
                    backoff = cfg.reconnect_min;
                }
            }
            Err(e) => {
                failures += 1;
                match e {
                    LinkError::Handshake(HandshakeError::RefusedByPeer { .. }) => {
                        bump(&peer.counters.refused_by_peer, 1)
                    }
                    // This side refuses the peer: counted as an acceptor counts its refusals.
                    LinkError::Handshake(HandshakeError::FrameBound { .. }) => {
                        bump(&peer.counters.refused_handshakes, 1)
                    }
                    _ => {}
                }
                if matches!(e, LinkError::Handshake(_)) {
                    warn!(peer = %peer.node, addr = %peer.addr, "cannot join peer: {e}");
                } else if failures == 1 {
                    info!(peer = %peer.node, addr = %peer.addr, "cannot connect: {e}");
                } else {
                    debug!(peer = %peer.node, addr = %peer.addr, failures, "cannot connect: {e}");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(cfg.reconnect_max);
    }
}

async fn connect(peer: &Peer, cfg: &LinkConfig) -> Result<TcpStream, LinkError> {
    let attempt = async {
        let mut stream = TcpStream::connect(peer.addr)
            .await
            .map_err(LinkError::Connect)?;
        stream.set_nodelay(true).map_err(LinkError::Connect)?;
        let (identity, me, secret) = (&cfg.identity, cfg.me, &cfg.secret);
        handshake::dial(&mut stream, identity, me, peer.node, secret, cfg.frame_bytes_max).await?;
        Ok(stream)
    };
    match tokio::time::timeout(cfg.connect_timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(LinkError::Timeout(cfg.connect_timeout)),
    }
}

/// Writes one frame per wake-up (queue items or the heartbeat clock, with what else is queued
/// after a few yields to the event loop) until the connection fails; `Ok` only when the
/// queue is closed (the transport stopped).
async fn run_connected(
    peer: &Peer,
    cfg: &LinkConfig,
    rx: &mut mpsc::Receiver<Outgoing>,
    stream: TcpStream,
) -> Result<(), LinkError> {
    let (mut reader, mut writer) = stream.into_split();
    let mut items = Vec::with_capacity(cfg.peer_queue_frames_max.min(1024));
    let mut probe = [0u8; 1];
    loop {
        tokio::select! {
            n = rx.recv_many(&mut items, cfg.peer_queue_frames_max) => {
                if n == 0 {
                    return Ok(());
                }
            }
            _ = peer.clock.notified() => {}
            r = reader.read(&mut probe) => {
                return Err(match r {
                    Ok(0) => LinkError::Closed,
                    Ok(_) => LinkError::UnexpectedBytes,
                    Err(e) => LinkError::Wire(WireError::Io(e)),
                });
            }
        }
        // The first message woke this task; the rest of what this round of the node's
        // event loop sends to the peer (other replicas' Readies, the writer's durable
        // answers) is usually a moment behind. Yielding lets it join the same frame: one
        // write and one wake-up of the peer instead of several. Yield again while a yield
        // brought more (the tasks it let run may have woken others); stop at the first
        // that brought nothing, so a lone message waits one yield only.
        for _ in 0..COALESCE_YIELDS_MAX {
            tokio::task::yield_now().await;
            let before = items.len();
            while items.len() < cfg.peer_queue_frames_max {
                match rx.try_recv() {
                    Ok(item) => items.push(item),
                    Err(_) => break,
                }
            }
            if items.len() == before {
                break;
            }
        }
        let batch = peer.take_batch(&mut items);
        if batch.is_empty() {
            continue;
        }
        let write_timeout = cfg.connect_timeout * FRAME_WRITE_TIMEOUT_CONNECT_TIMEOUTS;
        let write = peer.write_batch(&mut writer, batch, cfg.frame_bytes_max);
        match tokio::time::timeout(write_timeout, write).await {
            Ok(r) => r?,
            Err(_) => return Err(LinkError::WriteTimeout(write_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(bytes: usize) -> Publication {
        Publication { shard: false, channel: "c".into(), message: vec![b'x'; bytes].into() }
    }

    fn forward(request_id: u64) -> Outgoing {
        Outgoing::Forward(ForwardRequest {
            request_id,
            group: GroupId(1),
            op: crate::shard::api::ShardOp::Members,
            endorsed_term: None,
        })
    }

    /// Publications take at most half the queue and `PEER_PUBLICATION_BYTES_MAX`: the rest
    /// stays for Raft messages and forwards; taking them out of the queue frees their bytes.
    #[test]
    fn publications_leave_half_the_queue_and_keep_to_their_bytes() {
        let (peer, mut rx) = Peer::new(NodeId(2), "127.0.0.1:1".parse().unwrap(), 8);
        peer.send_publication(publication(10));
        assert_eq!(peer.queue.capacity(), 8, "no link yet: dropped");
        peer.outbound_up.store(true, Ordering::Release);
        for _ in 0..8 {
            peer.send_publication(publication(10));
        }
        assert_eq!(peer.queue.capacity(), 4, "four publications, then dropped");
        for id in 0..4 {
            peer.enqueue(forward(id));
        }
        assert_eq!(peer.queue.capacity(), 0, "every forward queued");
        let dropped = peer.counters.dropped_full_queue.load(Ordering::Relaxed);
        assert_eq!(dropped, 5);
        let mut items = Vec::new();
        while let Ok(item) = rx.try_recv() {
            items.push(item);
        }
        let batch = peer.take_batch(&mut items);
        assert_eq!((batch.publications.len(), batch.forwards.len()), (4, 4));
        assert_eq!(peer.publication_bytes.load(Ordering::Relaxed), 0);
        let half = PEER_PUBLICATION_BYTES_MAX as usize / 2;
        peer.send_publication(publication(half));
        peer.send_publication(publication(half));
        assert_eq!(peer.queue.capacity(), 7, "the second passes the bytes bound");
    }
}
