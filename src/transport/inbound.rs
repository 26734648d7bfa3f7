//! The listening side: accepts peer connections, runs the acceptor's handshake, then reads
//! batch frames and hands their contents to the `InboundHandler`. Owns inbound sockets; it
//! must never let one bad connection (garbage, oversized or truncated frames, a wrong
//! secret) affect the listener or any other connection, and never write after `Welcome`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::raft::types::NodeId;
use crate::transport::api::InboundHandler;
use crate::transport::handshake::{self, HandshakeError};
use crate::transport::peer::Peer;
use crate::transport::stats::{bump, Counters};
use crate::transport::wire::{read_frame, Batch, Frame, WireError};

/// Inbound connections open at once (handshaking or established); more are closed at once.
pub const INBOUND_CONNECTIONS_MAX: usize = 256;

/// Read buffer of one established inbound connection: a frame's length prefix and body
/// (and often the next frames) come in one `read` instead of one each.
const INBOUND_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Pause after a failed `accept` (say, out of file descriptors) before trying again.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What the inbound side needs of the node.
pub(crate) struct InboundContext {
    pub me: NodeId,
    pub secret: Vec<u8>,
    pub identity: Arc<super::identity::Identity>,
    pub peers: super::PeerSet,
    /// Counts refusals of strangers that claim no known node id.
    pub strangers: Arc<Counters>,
    pub handler: Arc<dyn InboundHandler>,
    pub handshake_timeout: Duration,
    pub frame_bytes_max: u32,
}

/// Accepts until aborted; aborting it closes every inbound connection too.
pub(crate) async fn accept_loop(listener: TcpListener, ctx: Arc<InboundContext>) {
    let mut connections = JoinSet::new();
    let permits = Arc::new(Semaphore::new(INBOUND_CONNECTIONS_MAX));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = connections.join_next() => continue,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!("accepting a peer connection failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%addr, "peer {addr} refused: {INBOUND_CONNECTIONS_MAX} connections already open");
            continue;
        };
        connections.spawn(serve(ctx.clone(), stream, addr, permit));
    }
}

async fn serve(
    ctx: Arc<InboundContext>,
    mut stream: TcpStream,
    addr: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    if let Err(e) = stream.set_nodelay(true) {
        warn!(%addr, "peer {addr}: cannot set TCP_NODELAY: {e}");
    }
    let from = match handshake(&ctx, &mut stream, addr).await {
        Some(node) => node,
        None => return,
    };
    let Some(peer) = ctx.peers.get(from) else {
        return;
    };
    info!(peer = %from, %addr, "peer connected (inbound)");
    let generation = peer.inbound_gen.fetch_add(1, Ordering::AcqRel) + 1;
    peer.inbound_up.store(true, Ordering::Release);
    // Only the newest inbound connection may mark the peer's link down.
    let closed = || {
        if peer.inbound_gen.load(Ordering::Acquire) == generation {
            peer.inbound_up.store(false, Ordering::Release);
        }
    };
    // A peer has one link to us: a new one means the old one is dead (its host may have
    // vanished without a FIN), so the older reader closes.
    peer.inbound_replaced.notify_waiters();
    let replaced = peer.inbound_replaced.notified();
    tokio::pin!(replaced);
    let mut stream = tokio::io::BufReader::with_capacity(INBOUND_READ_BUFFER_BYTES, stream);
    loop {
        let read = tokio::select! {
            biased;
            _ = &mut replaced => {
                info!(peer = %from, %addr, "inbound connection replaced by a newer one");
                return;
            }
            r = read_frame(&mut stream, ctx.frame_bytes_max) => r,
        };
        match read {
            Ok(Some((Frame::Batch(batch), bytes))) => deliver(&ctx, &peer, batch, bytes),
            Ok(Some((_, _))) => {
                warn!(peer = %from, %addr, "peer {addr}: unexpected handshake frame; closing");
                return;
            }
            Ok(None) | Err(WireError::Closed) => {
                info!(peer = %from, %addr, "peer disconnected (inbound)");
                closed();
                return;
            }
            Err(e) => {
                warn!(peer = %from, %addr, "peer {addr}: {e}; closing the connection");
                closed();
                return;
            }
        }
    }
}

/// Runs the acceptor's handshake within the time-out; logs and counts a refusal.
async fn handshake(
    ctx: &InboundContext,
    stream: &mut TcpStream,
    addr: SocketAddr,
) -> Option<NodeId> {
    let mut claimed = None;
    let known = ctx.peers.ids();
    let identity = &ctx.identity;
    let ours = ctx.frame_bytes_max;
    let attempt =
        handshake::accept(stream, identity, ctx.me, &known, &ctx.secret, ours, &mut claimed);
    let refusal = match tokio::time::timeout(ctx.handshake_timeout, attempt).await {
        Ok(Ok(node)) => return Some(node),
        Ok(Err(e)) => e,
        Err(_) => HandshakeError::Timeout(ctx.handshake_timeout),
    };
    match claimed.and_then(|n| ctx.peers.get(n)) {
        Some(peer) => bump(&peer.counters.refused_handshakes, 1),
        None => bump(&ctx.strangers.refused_handshakes, 1),
    }
    match claimed {
        Some(node) => warn!(%addr, "peer {addr} (node {node}) refused: {refusal}"),
        None => warn!(%addr, "peer {addr} refused: {refusal}"),
    }
    None
}

fn deliver(ctx: &InboundContext, peer: &Peer, mut batch: Batch, frame_bytes: usize) {
    let c = &peer.counters;
    bump(&c.frames_received, 1);
    bump(&c.bytes_received, frame_bytes as u64);
    bump(&c.messages_received, batch.len() as u64);
    let raft = batch.raft_messages(peer.node, ctx.me);
    if !raft.is_empty() {
        ctx.handler.on_raft(peer.node, raft);
    }
    for request in batch.forwards {
        ctx.handler.on_forward(peer.node, request);
    }
    for reply in batch.forward_replies {
        ctx.handler.on_forward_reply(peer.node, reply);
    }
    for probe in batch.term_probes {
        ctx.handler.on_term_probe(peer.node, probe);
    }
    for answer in batch.term_answers {
        ctx.handler.on_term_answer(peer.node, answer);
    }
    for publication in batch.publications {
        ctx.handler.on_publication(peer.node, publication);
    }
}
