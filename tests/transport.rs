//! The node-level transport over real loopback sockets: Raft messages of many groups,
//! forwards, read rounds' probes and answers, the handshake's refusals, hostile bytes on the
//! peer port, coalesced heartbeat frames per interval whatever the number of groups, bounded
//! queues and reconnection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use shardkv::kv::read::ReadCommand;
use shardkv::kv::Reply;
use shardkv::raft::types::{Entry, EntryPayload, GroupId, LogIndex, Message, MessageBody};
use shardkv::raft::types::{NodeId, Term};
use shardkv::shard::api::{Endorsement, ShardError, ShardOp};
use shardkv::transport::api::{ForwardReply, ForwardRequest, GroupMessage, InboundHandler};
use shardkv::transport::api::{PeerSender, Publication, TermAnswer, TermProbe, Urgency};
use shardkv::transport::identity::Identity;
use shardkv::transport::wire::{encode_frame, Batch, Frame};
use shardkv::transport::{handshake, Transport, TransportHandle, TransportOptions};

const SECRET: &str = "a shared cluster secret of some length";
/// Every wait in these tests gives up after this long.
const WAIT_MAX: Duration = Duration::from_secs(10);

/// One `on_raft` call.
type RaftCall = (NodeId, Vec<(GroupMessage, Urgency)>);

#[derive(Default)]
struct Recorder {
    raft: Mutex<Vec<RaftCall>>,
    forwards: Mutex<Vec<(NodeId, ForwardRequest)>>,
    replies: Mutex<Vec<(NodeId, ForwardReply)>>,
    probes: Mutex<Vec<(NodeId, TermProbe)>>,
    answers: Mutex<Vec<(NodeId, TermAnswer)>>,
    publications: Mutex<Vec<(NodeId, Publication)>>,
}

impl InboundHandler for Recorder {
    fn on_raft(&self, from: NodeId, messages: Vec<(GroupMessage, Urgency)>) {
        self.raft.lock().unwrap().push((from, messages));
    }
    fn on_forward(&self, from: NodeId, request: ForwardRequest) {
        self.forwards.lock().unwrap().push((from, request));
    }
    fn on_forward_reply(&self, from: NodeId, reply: ForwardReply) {
        self.replies.lock().unwrap().push((from, reply));
    }
    fn on_term_probe(&self, from: NodeId, probe: TermProbe) {
        self.probes.lock().unwrap().push((from, probe));
    }
    fn on_term_answer(&self, from: NodeId, answer: TermAnswer) {
        self.answers.lock().unwrap().push((from, answer));
    }
    fn on_publication(&self, from: NodeId, publication: Publication) {
        self.publications.lock().unwrap().push((from, publication));
    }
}

impl Recorder {
    fn raft_messages(&self) -> Vec<(NodeId, GroupMessage, Urgency)> {
        let calls = self.raft.lock().unwrap();
        let each = calls
            .iter()
            .flat_map(|(from, ms)| ms.iter().map(move |m| (*from, m)));
        each.map(|(from, (m, u))| (from, m.clone(), *u)).collect()
    }
}

/// Logs go to the test's captured output (shown when a test fails, or with --nocapture).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::new("shardkv=info");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT_MAX, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every node's `frame_bytes_max` in these tests, but the odd one's.
const FRAME_BYTES_MAX: u32 = 1 << 20;

fn options(node: u64, peers: &BTreeMap<NodeId, SocketAddr>, secret: &str) -> TransportOptions {
    TransportOptions {
        node: NodeId(node),
        listen: peers[&NodeId(node)],
        peers: peers.clone(),
        secret: secret.to_string(),
        identity: std::sync::Arc::new(Identity::in_memory(NodeId(node), 1000 + node)),
        heartbeat_interval: Duration::from_millis(50),
        connect_timeout: Duration::from_millis(500),
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(200),
        frame_bytes_max: u64::from(FRAME_BYTES_MAX),
        peer_queue_frames_max: 1024,
    }
}

/// Node 2's identity as `options(2, ..)` gives it, for a hand-made connection of node 2.
fn node2_identity() -> std::sync::Arc<Identity> {
    std::sync::Arc::new(Identity::in_memory(NodeId(2), 1002))
}

/// Passes the handshake with node 1 as node 2 would (`options(2, ..)`), by hand.
async fn dial_as_node2(stream: &mut TcpStream) {
    let secret = SECRET.as_bytes();
    handshake::dial(stream, &node2_identity(), NodeId(2), NodeId(1), secret, FRAME_BYTES_MAX)
        .await
        .unwrap();
}

/// Binds `n` listeners on free ports: node ids 1..=n.
fn bind(n: u64) -> (Vec<TcpListener>, BTreeMap<NodeId, SocketAddr>) {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| Transport::bind("127.0.0.1:0".parse().unwrap()).unwrap())
        .collect();
    let addrs = (1..=n)
        .zip(&listeners)
        .map(|(i, l)| (NodeId(i), l.local_addr().unwrap()));
    let addrs = addrs.collect();
    (listeners, addrs)
}

type Node = (TransportHandle, Arc<Recorder>);

async fn start(listener: TcpListener, opts: TransportOptions) -> Node {
    init_logs();
    let recorder = Arc::new(Recorder::default());
    let handle = Transport::start_on(listener, opts, recorder.clone())
        .await
        .unwrap();
    (handle, recorder)
}

async fn cluster(n: u64, tune: impl Fn(&mut TransportOptions)) -> Vec<Node> {
    let (listeners, addrs) = bind(n);
    let mut nodes = Vec::new();
    for (i, l) in (1..=n).zip(listeners) {
        let mut opts = options(i, &addrs, SECRET);
        tune(&mut opts);
        nodes.push(start(l, opts).await);
    }
    nodes
}

async fn wait_connected(nodes: &[Node]) {
    for (h, _) in nodes {
        let peers = nodes.len() as u64 - 1;
        wait_until("connections", || {
            h.stats().peers.values().filter(|p| p.connects >= 1).count() as u64 == peers
        })
        .await;
    }
}

fn append(group: u64, from: u64, to: u64, index: u64) -> GroupMessage {
    let entry = Entry {
        term: Term(3),
        index: LogIndex(index),
        payload: EntryPayload::Normal(Bytes::from(format!("g{group} i{index}"))),
    };
    let body = MessageBody::Append {
        prev_log_index: LogIndex(index - 1),
        prev_log_term: Term(3),
        entries: vec![entry],
        commit_index: LogIndex(index - 1),
    };
    let msg = Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(3),
        body,
    };
    GroupMessage {
        group: GroupId(group),
        msg,
    }
}

fn heartbeat(group: u64, from: u64, to: u64) -> GroupMessage {
    let body = MessageBody::Heartbeat {
        commit_index: LogIndex(7),
        read_round: 0,
    };
    let msg = Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(2),
        body,
    };
    GroupMessage {
        group: GroupId(group),
        msg,
    }
}

/// Every node sends one Append of each of `groups` groups to every other node.
async fn exchange_all(nodes: &[Node], groups: u64, index: u64) {
    let n = nodes.len() as u64;
    let before: Vec<usize> = nodes.iter().map(|(_, r)| r.raft_messages().len()).collect();
    for (i, (h, _)) in (1..=n).zip(nodes) {
        for to in (1..=n).filter(|to| *to != i) {
            for g in 1..=groups {
                h.send_raft(NodeId(to), append(g, i, to, index), Urgency::Now);
            }
        }
    }
    for (i, (_, r)) in (1..=n).zip(nodes) {
        let want = before[i as usize - 1] + ((n - 1) * groups) as usize;
        wait_until("raft messages", || r.raft_messages().len() == want).await;
        for (from, m, urgency) in &r.raft_messages()[before[i as usize - 1]..] {
            assert_eq!(*m, append(m.group.get(), from.get(), i, index));
            assert_eq!(*urgency, Urgency::Now);
        }
    }
}

#[tokio::test]
async fn two_nodes_exchange_raft_messages_of_many_groups() {
    let nodes = cluster(2, |_| {}).await;
    exchange_all(&nodes, 16, 1).await;
    exchange_all(&nodes, 16, 2).await;
    let a = nodes[0].0.stats();
    assert_eq!(a.peers[&NodeId(2)].messages_sent, 32);
    assert_eq!(a.peers[&NodeId(2)].messages_received, 32);
    // The 16 sends of a round happen between two flushes: one frame per round.
    assert_eq!(a.total.frames_sent, 2, "sends are batched: {a:?}");
    for (h, _) in &nodes {
        h.shutdown().await;
    }
}

#[tokio::test]
async fn three_nodes_exchange_raft_messages_of_many_groups() {
    let nodes = cluster(3, |_| {}).await;
    exchange_all(&nodes, 8, 1).await;
    for (h, _) in &nodes {
        assert_eq!(h.stats().total.messages_received, 16);
        h.shutdown().await;
    }
}

/// A forwarded read with its origin's term; `claimed` also sets an endorsement and
/// `follower_ok` in the op, which must not cross the wire (the receiver names the endorser
/// itself, and a follower refuses a peer's read).
fn forward_claimed(request_id: u64, claimed: bool) -> ForwardRequest {
    let command = ReadCommand::Get {
        key: Bytes::from_static(b"k"),
    };
    let endorsement = claimed.then_some(Endorsement { node: NodeId(9), term: Term(9) });
    ForwardRequest {
        request_id,
        group: GroupId(4),
        op: ShardOp::Read { command, now_ms: 9, endorsement, follower_ok: claimed },
        endorsed_term: Some(Term(7)),
    }
}

fn forward(request_id: u64) -> ForwardRequest {
    forward_claimed(request_id, false)
}

#[tokio::test]
async fn forwards_and_replies_round_trip() {
    let nodes = cluster(2, |_| {}).await;
    let (a, ra) = &nodes[0];
    let (b, rb) = &nodes[1];
    a.send_forward(NodeId(2), forward_claimed(1, true));
    a.send_forward(NodeId(2), forward(2));
    wait_until("forwards", || rb.forwards.lock().unwrap().len() == 2).await;
    let got = rb.forwards.lock().unwrap().clone();
    assert_eq!(got, vec![(NodeId(1), forward(1)), (NodeId(1), forward(2))]);
    let ok = ForwardReply {
        request_id: 1,
        result: Ok(Reply::Bulk(Bytes::from_static(b"v"))),
    };
    let err = ShardError::NotLeader {
        group: GroupId(4),
        leader: Some(NodeId(1)),
    };
    let no = ForwardReply {
        request_id: 2,
        result: Err(err),
    };
    b.send_forward_reply(NodeId(1), ok.clone());
    b.send_forward_reply(NodeId(1), no.clone());
    wait_until("replies", || ra.replies.lock().unwrap().len() == 2).await;
    assert_eq!(
        *ra.replies.lock().unwrap(),
        vec![(NodeId(2), ok), (NodeId(2), no)]
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn read_round_probes_and_answers_round_trip() {
    let nodes = cluster(2, |_| {}).await;
    let (a, ra) = &nodes[0];
    let (b, rb) = &nodes[1];
    let probe = TermProbe { probe_id: 9, groups: vec![GroupId(1), GroupId(4)] };
    a.send_term_probe(NodeId(2), probe.clone());
    wait_until("probe", || rb.probes.lock().unwrap().len() == 1).await;
    assert_eq!(*rb.probes.lock().unwrap(), vec![(NodeId(1), probe)]);
    let answer = TermAnswer { probe_id: 9, terms: vec![(GroupId(4), Term(3))] };
    b.send_term_answer(NodeId(1), answer.clone());
    wait_until("answer", || ra.answers.lock().unwrap().len() == 1).await;
    assert_eq!(*ra.answers.lock().unwrap(), vec![(NodeId(2), answer)]);
    a.shutdown().await;
    b.shutdown().await;
}

/// Pub/Sub messages cross in the order they were sent.
#[tokio::test]
async fn publications_cross_in_order() {
    let nodes = cluster(2, |_| {}).await;
    let (a, _) = &nodes[0];
    let (b, rb) = &nodes[1];
    // A publication is dropped while the link is down: a probe that crossed shows it up.
    a.send_term_probe(NodeId(2), TermProbe { probe_id: 1, groups: vec![] });
    wait_until("link", || rb.probes.lock().unwrap().len() == 1).await;
    let sent: Vec<Publication> = (0..50)
        .map(|i| Publication {
            shard: i % 2 == 0,
            channel: format!("ch{}", i % 3).into(),
            message: vec![b'x'; i].into(),
        })
        .collect();
    for p in &sent {
        a.send_publication(NodeId(2), p.clone());
    }
    wait_until("publications", || rb.publications.lock().unwrap().len() == sent.len()).await;
    let got = rb.publications.lock().unwrap().clone();
    assert_eq!(got, sent.into_iter().map(|p| (NodeId(1), p)).collect::<Vec<_>>());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn peer_with_wrong_secret_is_refused_and_counted_while_good_peers_work() {
    odd_peer_is_refused_and_counted_while_good_peers_work(|addrs| {
        options(3, addrs, "not the cluster's secret at all")
    })
    .await;
}

#[tokio::test]
async fn peer_with_another_frame_bound_is_refused_and_counted_while_good_peers_work() {
    odd_peer_is_refused_and_counted_while_good_peers_work(|addrs| TransportOptions {
        frame_bytes_max: u64::from(FRAME_BYTES_MAX) * 2,
        ..options(3, addrs, SECRET)
    })
    .await;
}

/// Nodes 1 and 2 of `options`, and node 3 of `odd`: neither good node admits node 3, which
/// counts its refusals too, and the good ones still talk.
async fn odd_peer_is_refused_and_counted_while_good_peers_work(
    odd: impl FnOnce(&BTreeMap<NodeId, SocketAddr>) -> TransportOptions,
) {
    let (listeners, addrs) = bind(3);
    let mut listeners = listeners.into_iter();
    let mut nodes = Vec::new();
    for i in 1..=2 {
        nodes.push(start(listeners.next().unwrap(), options(i, &addrs, SECRET)).await);
    }
    let (c, _) = start(listeners.next().unwrap(), odd(&addrs)).await;
    for (h, _) in &nodes {
        let node = h.node();
        wait_until("refusals", || {
            h.stats().peers[&NodeId(3)].refused_handshakes >= 1
        })
        .await;
        assert_eq!(
            h.stats().peers[&NodeId(3)].connects,
            0,
            "node {node} joined a stranger"
        );
    }
    assert_eq!(c.stats().total.connects, 0);
    assert!(
        c.stats().total.refused_handshakes >= 1,
        "the odd node refuses the good ones too"
    );
    let (h1, _) = &nodes[0];
    let (_, r2) = &nodes[1];
    h1.send_raft(NodeId(2), append(1, 1, 2, 1), Urgency::Now);
    wait_until("a message between good peers", || {
        r2.raft_messages().len() == 1
    })
    .await;
    for (h, _) in &nodes {
        h.shutdown().await;
    }
    c.shutdown().await;
}

/// Opens a raw connection to `addr`, writes `bytes` (then half-closes when `close`), and
/// expects the node to close the connection.
async fn hostile(addr: SocketAddr, bytes: &[u8], close: bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    if close {
        s.shutdown().await.unwrap();
    }
    let mut buf = [0u8; 256];
    let closed = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(WAIT_MAX, closed)
        .await
        .expect("the node closes a hostile connection");
}

#[tokio::test]
async fn garbage_oversized_and_truncated_frames_do_not_harm_the_listener() {
    let (listeners, addrs) = bind(2);
    let mut listeners = listeners.into_iter();
    let (a, _) = start(listeners.next().unwrap(), options(1, &addrs, SECRET)).await;
    let addr = a.local_addr();
    hostile(addr, b"GET / HTTP/1.1\r\nHost: shardkv\r\n\r\n", false).await;
    hostile(addr, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3], false).await;
    hostile(addr, &[0, 0, 0, 100, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], true).await;
    hostile(addr, &[0, 0, 0, 3, 0xc1, 0xc1, 0xc1], false).await;
    // A peer that passes the handshake, then sends an oversized frame: only it is closed.
    let mut s = TcpStream::connect(addr).await.unwrap();
    dial_as_node2(&mut s).await;
    s.write_all(&(2u32 << 20).to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let eof = tokio::time::timeout(WAIT_MAX, s.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(eof, Ok(0) | Err(_)),
        "an oversized frame closes the connection"
    );
    // Then one that sends an undecodable body of a legal length.
    let mut s = TcpStream::connect(addr).await.unwrap();
    dial_as_node2(&mut s).await;
    s.write_all(&[0, 0, 0, 2, 0xc1, 0xc1]).await.unwrap();
    let eof = tokio::time::timeout(WAIT_MAX, s.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(eof, Ok(0) | Err(_)),
        "an undecodable frame closes the connection"
    );
    assert_eq!(a.stats().total.refused_handshakes, 4);
    // The listener still serves a good peer, both ways.
    let (b, rb) = start(listeners.next().unwrap(), options(2, &addrs, SECRET)).await;
    a.send_raft(NodeId(2), append(5, 1, 2, 1), Urgency::Now);
    wait_until("a message after the attacks", || {
        rb.raft_messages().len() == 1
    })
    .await;
    wait_until("node 2 dials node 1", || b.stats().total.connects == 1).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Sends Coalesce heartbeats of `groups` groups from node 1 to node 2 every 10 ms for about
/// a second; returns (heartbeat frames per second, entries per frame).
async fn coalesced_heartbeats(groups: u64) -> (f64, u64) {
    let interval = Duration::from_millis(50);
    let nodes = cluster(2, |o| o.heartbeat_interval = interval).await;
    wait_connected(&nodes).await;
    let (a, _) = &nodes[0];
    let (_, rb) = &nodes[1];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        for g in 1..=groups {
            a.send_raft(NodeId(2), heartbeat(g, 1, 2), Urgency::Coalesce);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = a.stats().peers[&NodeId(2)];
    let elapsed = start.elapsed();
    let bound = (elapsed.as_secs_f64() / interval.as_secs_f64()) as u64 + 2;
    let frames = stats.heartbeat_frames_sent;
    assert!(
        frames <= bound,
        "{frames} heartbeat frames in {elapsed:?} (bound {bound})"
    );
    assert!(
        frames >= bound / 2,
        "{frames} heartbeat frames in {elapsed:?}: too few"
    );
    assert_eq!(
        stats.frames_sent, frames,
        "heartbeats alone: every frame is a heartbeat frame"
    );
    assert_eq!(stats.heartbeat_entries_sent, groups * frames, "{stats:?}");
    wait_until("heartbeats delivered", || {
        rb.raft.lock().unwrap().len() as u64 == frames
    })
    .await;
    for (from, messages) in rb.raft.lock().unwrap().iter() {
        assert_eq!((*from, messages.len() as u64), (NodeId(1), groups));
        for (g, (m, urgency)) in (1..=groups).zip(messages) {
            assert_eq!((m, *urgency), (&heartbeat(g, 1, 2), Urgency::Coalesce));
        }
    }
    for (h, _) in &nodes {
        h.shutdown().await;
    }
    (
        frames as f64 / elapsed.as_secs_f64(),
        stats.heartbeat_entries_sent / frames,
    )
}

#[tokio::test]
async fn coalesced_heartbeat_frames_per_second_do_not_depend_on_the_number_of_groups() {
    let (rate_64, per_frame_64) = coalesced_heartbeats(64).await;
    let (rate_8, per_frame_8) = coalesced_heartbeats(8).await;
    eprintln!("heartbeat frames/s: 64 groups {rate_64:.1} ({per_frame_64} entries/frame)");
    eprintln!("heartbeat frames/s:  8 groups {rate_8:.1} ({per_frame_8} entries/frame)");
    assert_eq!((per_frame_64, per_frame_8), (64, 8));
}

#[tokio::test]
async fn coalesced_heartbeats_ride_along_with_an_urgent_frame() {
    let nodes = cluster(2, |o| o.heartbeat_interval = Duration::from_secs(3600)).await;
    wait_connected(&nodes).await;
    let (a, _) = &nodes[0];
    let (_, rb) = &nodes[1];
    a.send_raft(NodeId(2), heartbeat(7, 1, 2), Urgency::Coalesce);
    a.send_raft(NodeId(2), append(3, 1, 2, 4), Urgency::Now);
    wait_until("one frame", || rb.raft_messages().len() == 2).await;
    let calls = rb.raft.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one frame, one call: {calls:?}");
    let expected = vec![
        (append(3, 1, 2, 4), Urgency::Now),
        (heartbeat(7, 1, 2), Urgency::Coalesce),
    ];
    assert_eq!(calls[0], (NodeId(1), expected));
    for (h, _) in &nodes {
        h.shutdown().await;
    }
}

#[tokio::test]
async fn a_peer_that_is_down_never_blocks_senders_and_its_queue_is_bounded() {
    let (listeners, addrs) = bind(2);
    let mut listeners = listeners.into_iter();
    let mut opts = options(1, &addrs, SECRET);
    opts.peer_queue_frames_max = 64;
    let (a, _) = start(listeners.next().unwrap(), opts).await;
    drop(listeners); // node 2's port refuses connections
    let start_at = Instant::now();
    for i in 0..10_000 {
        a.send_raft(NodeId(2), append(1, 1, 2, i + 1), Urgency::Now);
    }
    assert!(
        start_at.elapsed() < Duration::from_secs(2),
        "senders never wait"
    );
    let s = a.stats().peers[&NodeId(2)];
    assert!(s.dropped_full_queue >= 10_000 - 64, "{s:?}");
    assert_eq!(s.connects, 0);
    a.shutdown().await;
}

/// Nodes 1 and 2 on loopback; node 1 sends node 2 a message, then node 2 shuts down.
/// Returns node 1 and both addresses (node 2's port is free again).
async fn node1_after_node2_left() -> (Node, BTreeMap<NodeId, SocketAddr>) {
    let (listeners, addrs) = bind(2);
    let mut listeners = listeners.into_iter();
    let node1 = start(listeners.next().unwrap(), options(1, &addrs, SECRET)).await;
    let (b, rb) = start(listeners.next().unwrap(), options(2, &addrs, SECRET)).await;
    node1.0.send_raft(NodeId(2), append(1, 1, 2, 1), Urgency::Now);
    wait_until("first message", || rb.raft_messages().len() == 1).await;
    b.shutdown().await;
    (node1, addrs)
}

#[tokio::test]
async fn reconnects_after_the_peer_restarts_on_the_same_port() {
    let ((a, _), addrs) = node1_after_node2_left().await;
    let recorder = Arc::new(Recorder::default());
    let b2 = Transport::start(options(2, &addrs, SECRET), recorder.clone())
        .await
        .unwrap();
    wait_until("reconnect", || a.stats().peers[&NodeId(2)].connects == 2).await;
    a.send_raft(NodeId(2), append(1, 1, 2, 2), Urgency::Now);
    wait_until("message after restart", || {
        recorder
            .raft_messages()
            .iter()
            .any(|(_, m, _)| *m == append(1, 1, 2, 2))
    })
    .await;
    b2.send_raft(NodeId(1), append(1, 2, 1, 3), Urgency::Now);
    wait_until("and back", || {
        a.stats().peers[&NodeId(2)].messages_received == 1
    })
    .await;
    a.shutdown().await;
    b2.shutdown().await;
}

/// Node 2 restarts on another data directory (another incarnation): node 1 neither
/// accepts its connection nor delivers to it, and counts the refusals; node 2's
/// messages never arrive.
#[tokio::test]
async fn a_peer_back_with_another_incarnation_is_refused() {
    let ((a, ra), addrs) = node1_after_node2_left().await;
    let mut wiped = options(2, &addrs, SECRET);
    wiped.identity = Arc::new(Identity::in_memory(NodeId(2), 4242));
    let recorder = Arc::new(Recorder::default());
    let b2 = Transport::start(wiped, recorder.clone()).await.unwrap();
    wait_until("node 1 refuses node 2's dials, and node 2 counts it", || {
        a.stats().peers[&NodeId(2)].refused_handshakes >= 2
            && b2.stats().peers[&NodeId(1)].refused_by_peer >= 1
    })
    .await;
    for i in 2..=4 {
        a.send_raft(NodeId(2), append(1, 1, 2, i), Urgency::Now);
        b2.send_raft(NodeId(1), append(1, 2, 1, i), Urgency::Now);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(recorder.raft_messages().is_empty(), "the wiped node 2 got a message");
    assert!(ra.raft_messages().is_empty(), "node 1 took a message from the wiped node 2");
    a.shutdown().await;
    b2.shutdown().await;
}

#[test]
fn an_oversized_frame_is_refused_by_the_encoder() {
    let messages = (1..=64).map(|i| append(1, 1, 2, i)).collect();
    let frame = Frame::Batch(Batch {
        messages,
        ..Batch::default()
    });
    assert!(encode_frame(&frame, 64).is_err());
    assert!(encode_frame(&frame, 1 << 20).is_ok());
}

#[tokio::test]
async fn a_newer_inbound_connection_of_a_peer_replaces_the_older_one() {
    let (listeners, addrs) = bind(2);
    let mut listeners = listeners.into_iter();
    let (a, _) = start(listeners.next().unwrap(), options(1, &addrs, SECRET)).await;
    // A connection of node 2 whose host then goes silent (no FIN).
    let mut stale = TcpStream::connect(a.local_addr()).await.unwrap();
    dial_as_node2(&mut stale).await;
    let (b, rb) = start(listeners.next().unwrap(), options(2, &addrs, SECRET)).await;
    let mut buf = [0u8; 16];
    let eof = tokio::time::timeout(WAIT_MAX, stale.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(eof, Ok(0) | Err(_)),
        "the stale connection is closed"
    );
    b.send_raft(NodeId(1), append(1, 2, 1, 1), Urgency::Now);
    wait_until("traffic on the new connection", || {
        a.stats().peers[&NodeId(2)].messages_received == 1
    })
    .await;
    a.send_raft(NodeId(2), append(1, 1, 2, 1), Urgency::Now);
    wait_until("and back", || rb.raft_messages().len() == 1).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A node that dials a peer of another frame bound refuses the peer itself, before it reads
/// the peer's own refusal: counted among the handshakes it refused, not those refused by the
/// peer, and it never connects.
#[tokio::test]
async fn a_dialer_counts_the_frame_bound_it_refuses() {
    let (listeners, addrs) = bind(2);
    let mut listeners = listeners.into_iter();
    let by_hand = listeners.next().unwrap();
    // Node 1, by hand: it accepts node 2's dials with twice the frame bound.
    let acceptor = tokio::spawn(async move {
        let identity = Arc::new(Identity::in_memory(NodeId(1), 1001));
        let peers: std::collections::BTreeSet<NodeId> = [NodeId(2)].into_iter().collect();
        let (secret, frame) = (SECRET.as_bytes(), FRAME_BYTES_MAX * 2);
        loop {
            let (mut stream, _) = by_hand.accept().await.unwrap();
            let (me, mut claimed) = (NodeId(1), None);
            let accepted =
                handshake::accept(&mut stream, &identity, me, &peers, secret, frame, &mut claimed);
            assert!(accepted.await.is_err(), "node 1 refuses node 2's bound too");
        }
    });
    let (b, _) = start(listeners.next().unwrap(), options(2, &addrs, SECRET)).await;
    wait_until("node 2 refusing node 1's frame bound", || {
        b.stats().peers[&NodeId(1)].refused_handshakes >= 1
    })
    .await;
    let node1 = b.stats().peers[&NodeId(1)].clone();
    assert_eq!((node1.refused_by_peer, node1.connects), (0, 0), "{node1:?}");
    acceptor.abort();
    b.shutdown().await;
}
