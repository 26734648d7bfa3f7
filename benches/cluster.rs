//! Three shardkv nodes in one process on loopback (real transport, real redb with fsync),
//! with 1, 8, 64 and 256 groups: write throughput and p50/p99 latency through the internal
//! client path (node 1's request path: local leader or forwarded), and the messages,
//! frames and fsyncs per second it cost; then an idle phase showing the heartbeat frames
//! per peer per second, which must not grow with the number of groups.
//! Run: `cargo bench --bench cluster`.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use shardkv::kv::command::SetCondition;
use shardkv::kv::{key_slot, KvCommand, Request};
use shardkv::node::config::{LimitConfig, ListenConfig, NodeConfig, PeerConfig, TimeoutConfig};
use shardkv::node::run::Node;
use shardkv::raft::types::GroupId;
use shardkv::router::layout::Layout;
use shardkv::shard::api::ShardOp;

/// How long each row writes.
const LOAD_DURATION: Duration = Duration::from_secs(4);
/// How long each row stays idle to count heartbeat frames.
const IDLE_DURATION: Duration = Duration::from_secs(2);
/// Concurrent writers (each waits for its answer before the next write).
const WRITERS: u64 = 64;
/// Value size of each SET.
const VALUE_BYTES: usize = 64;
/// A row gives up waiting for every group to elect after this long.
const ELECTION_WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn configs(dir: &std::path::Path) -> Vec<NodeConfig> {
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let ports: Vec<(u16, u16, u16)> =
        (0..3).map(|_| (free_port(), free_port(), free_port())).collect();
    let nodes: Vec<PeerConfig> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| PeerConfig { id: i as u64 + 1, peer: addr(p.1), resp: addr(p.0) })
        .collect();
    (0..3)
        .map(|i| NodeConfig {
            node_id: i as u64 + 1,
            data_dir: dir.join(format!("node{}", i + 1)),
            layout: dir.join("layout.toml"),
            secret: "benchmark-secret-0123456789".into(),
            requirepass: String::new(),
            cluster_redirects: false,
            listen: ListenConfig {
                resp: addr(ports[i].0),
                peer: addr(ports[i].1),
                metrics: addr(ports[i].2),
            },
            nodes: nodes.clone(),
            timeouts: TimeoutConfig::default(),
            limits: LimitConfig::default(),
            reads: Default::default(),
            scheduling: Default::default(),
            slowlog: Default::default(),
            notify_keyspace_events: String::new(),
            joined: false,
        })
        .collect()
}

/// Totals over the three nodes.
#[derive(Clone, Copy, Default)]
struct Counts {
    messages: u64,
    frames: u64,
    heartbeat_frames: u64,
    fsyncs: u64,
}

fn counts(nodes: &[Node]) -> Counts {
    let mut c = Counts::default();
    for n in nodes {
        let s = n.transport_stats().total;
        c.messages += s.messages_sent;
        c.frames += s.frames_sent;
        c.heartbeat_frames += s.heartbeat_frames_sent;
        c.fsyncs += n.fsync_count();
    }
    c
}

async fn wait_for_leaders(node: &Node, groups: u64) {
    let started = Instant::now();
    loop {
        let led = (1..=groups).filter(|&g| node.table().leader(GroupId(g)).is_some()).count();
        if led as u64 == groups {
            return;
        }
        assert!(started.elapsed() < ELECTION_WAIT, "only {led} of {groups} groups elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn set(client_id: u64, seq: u64, key: Bytes) -> ShardOp {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let command = KvCommand::Set {
        key,
        value,
        expire_at_ms: None,
        keep_ttl: false,
        condition: SetCondition::Always,
        get: false,
    };
    ShardOp::Write(Request { client_id, seq, now_ms, command })
}

/// Runs the writers against node 1; returns every latency in microseconds and the errors.
async fn load(node: &Node) -> (Vec<u64>, u64) {
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + LOAD_DURATION;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (client, errors) = (node.client().clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 0;
            while Instant::now() < deadline {
                seq += 1;
                let key = Bytes::from(format!("bench:{w}:{seq}"));
                let group = client.table().group_of_slot(key_slot(&key)).expect("slot routed");
                let started = Instant::now();
                if client.execute(group, set(1000 + w, seq, key)).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                latencies.push(started.elapsed().as_micros() as u64);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer task"));
    }
    (all, errors.load(Ordering::Relaxed))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn row(groups: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = Layout::even(3, groups, 3);
    let mut nodes = Vec::new();
    for config in configs(dir.path()) {
        nodes.push(Node::start(config, layout.clone()).await.expect("node starts"));
    }
    wait_for_leaders(&nodes[0], groups).await;
    let before = counts(&nodes);
    let started = Instant::now();
    let (mut latencies, errors) = load(&nodes[0]).await;
    let secs = started.elapsed().as_secs_f64();
    let after = counts(&nodes);
    latencies.sort_unstable();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_before = counts(&nodes);
    tokio::time::sleep(IDLE_DURATION).await;
    let idle_after = counts(&nodes);
    let per_s = |a: u64, b: u64| (b - a) as f64 / secs;
    // 3 nodes, 2 peers each: 6 directed peer links.
    let idle_hb = (idle_after.heartbeat_frames - idle_before.heartbeat_frames) as f64
        / IDLE_DURATION.as_secs_f64()
        / 6.0;
    println!(
        "{groups:>6} {:>10.0} {:>8.2} {:>8.2} {:>7} {:>11.0} {:>10.0} {:>9.0} {:>12.1}",
        latencies.len() as f64 / secs,
        percentile(&latencies, 0.50) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0,
        errors,
        per_s(before.messages, after.messages),
        per_s(before.frames, after.frames),
        per_s(before.fsyncs, after.fsyncs),
        idle_hb,
    );
    for node in nodes {
        node.stop().await;
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("3 nodes on loopback, {WRITERS} writers through node 1, {VALUE_BYTES}-byte values");
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>7} {:>11} {:>10} {:>9} {:>12}",
        "groups",
        "writes/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "messages/s",
        "frames/s",
        "fsyncs/s",
        "idle hb f/s"
    );
    let system = actix_rt::System::new();
    system.block_on(async {
        for groups in [1, 8, 64, 256] {
            row(groups).await;
        }
    });
}
