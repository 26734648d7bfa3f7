//! Reads stay linearizable when the leader of most groups is paused (SIGSTOP) past an
//! election time-out while clients keep writing and reading through every node, then wakes
//! (SIGCONT). The history, ending with a read of every key through the woken node, is
//! checked for linearizability, with reads queued at the paused node after writes through
//! another node were acknowledged (`QueuedReads`): answered once it wakes, they must see
//! those writes. The read modes:
//! - lease reads (`[reads] mode = "lease"`): the paused leader's lease is counted in ticks;
//!   on waking, its queued reads must find the lease expired (its ticks catch up with the
//!   monotonic clock first), not answer from a state the new leaders have moved past.
//!   Most reads at a leader's node are answered through the replica's read door
//!   (`shard::read_door`) instead, which must be shut by then;
//! - ReadIndex (the default), reads forwarded (`[reads] follower = false`): a read a node
//!   forwards to a leader carries the term of the node's own replica (an endorsement,
//!   `RawNode::read_index_endorsed`) and is answered with no heartbeat round when the two
//!   make a quorum. Reads that reach the woken leader endorsed in its old term are
//!   concurrent with the new leaders' writes (they began before their endorser moved on)
//!   and may see either; endorsed in the new term, they must wait for a round the deposed
//!   leader cannot win. The test also checks, through `/metrics`, that endorsed reads were
//!   answered without a round at all.
//! - ReadIndex at the leader's own node: reads of the groups a node leads are confirmed by
//!   a node-level read round (`[reads] node_rounds`, the default), one question to a peer
//!   answered from the terms its replicas published; a woken leader's round finds its
//!   peers in the new term and endorses nothing. Checked through `/metrics`: rounds ran.
//!   The variant with `node_rounds = false` runs a heartbeat round per group instead.
//! - ReadIndex with follower reads (the default): a node's follower of the key's group
//!   asks the leader for a read index and serves the read itself; rounds asked of the
//!   paused leader end and their reads are forwarded to the new one; a woken leader's late
//!   answers reach followers that moved on to the new term and are dropped. Checked through
//!   `/metrics`: followers served reads.
//!
//! In every mode, reads a leader's core would answer at once (on its lease, or on an
//! endorsement) are answered by its node's request path through the replica's read door
//! (`shard::read_door`), from its applied state. Checked through `/metrics`: the doors
//! answered reads.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{ClusterLayout, ClusterOpts, TestCluster};
use common::workload::{final_reads, report_and_check, Load, QueuedReads};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shardkv::metrics::scrape::{fetch, parse};
use shardkv::node::config::{ReadConfig, ReadConsistency};

const READY_TIMEOUT_MS: u64 = 20_000;
const KEYS: u64 = 16;
const CLIENTS: u64 = 6;
const PHASE_MS: u64 = 1_000;
/// Several election time-outs of the test's 20 ms ticks (10–20 ticks).
const PAUSE_MS: u64 = 1_500;
const POLL_MS: u64 = 50;
/// One scrape of a node's `/metrics` gives up after this long.
const SCRAPE_TIMEOUT_MS: u64 = 2_000;
/// Values of the writes made while a node is paused (the load's are far below).
const QUEUED_VALUES: u64 = 1_000_000_000;

fn signal(cluster: &TestCluster, node: u64, sig: Signal) {
    let pid = cluster.pid(node).expect("the node runs");
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits"));
    kill(pid, sig).unwrap_or_else(|e| panic!("{sig} to node{node}: {e}"));
}

/// Leaderships per node as `asked` reports them, once every group has a leader.
fn leaders(cluster: &TestCluster, asked: u64, groups: usize) -> BTreeMap<u64, usize> {
    let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    loop {
        match cluster.leaders_per_node(asked) {
            Ok(counts) if counts.values().sum::<usize>() == groups => return counts,
            other if Instant::now() > deadline => panic!("leaders never settled: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(POLL_MS)),
        }
    }
}

#[test]
fn lease_reads_stay_linearizable_when_a_paused_leader_wakes() {
    reads_stay_linearizable_when_a_paused_leader_wakes(ReadConsistency::Lease, "lease");
}

#[test]
fn endorsed_read_index_reads_stay_linearizable_when_a_paused_leader_wakes() {
    reads_stay_linearizable_when_a_paused_leader_wakes(ReadConsistency::ReadIndex, "index");
}

#[test]
fn group_round_reads_stay_linearizable_when_a_paused_leader_wakes() {
    reads_stay_linearizable_when_a_paused_leader_wakes(ReadConsistency::ReadIndex, "group");
}

#[test]
fn follower_reads_stay_linearizable_when_a_paused_leader_wakes() {
    reads_stay_linearizable_when_a_paused_leader_wakes(ReadConsistency::ReadIndex, "follower");
}

/// The tests run one at a time: each is three nodes and a load, and a node paused on a
/// shared machine must see its groups elect new leaders within the pause.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `prefix` names the keys; "follower" turns follower reads on (the others keep every read
/// forwarded to a leader, the path they are about), and "group" turns node read rounds off.
fn reads_stay_linearizable_when_a_paused_leader_wakes(mode: ReadConsistency, prefix: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let groups = 4;
    let follower = prefix == "follower";
    let opts = ClusterOpts {
        reads: ReadConfig {
            mode,
            follower,
            node_rounds: prefix != "group",
            ..ReadConfig::default()
        },
        ..ClusterOpts::default()
    };
    let layout = ClusterLayout::Even { groups: groups as u64, replicas: 3 };
    let cluster = TestCluster::start(3, layout, opts);
    let ready = Duration::from_millis(READY_TIMEOUT_MS);
    if let Err(e) = cluster.wait_ready(ready) {
        panic!("cluster not ready: {e}");
    }
    let before = leaders(&cluster, 1, groups);
    let (&victim, &led) = before.iter().max_by_key(|(_, &n)| n).expect("three nodes");
    assert!(led > 0, "some node leads a group: {before:?}");
    let survivor = if victim == 1 { 2 } else { 1 };

    let keys: Vec<String> = (0..KEYS).map(|k| format!("{prefix}:{k}")).collect();
    let addrs: Vec<String> = (1..=3).map(|n| cluster.resp_addr(n).to_string()).collect();
    let load = Load::start(CLIENTS, addrs.clone(), keys.clone());
    let mut queued = QueuedReads::connect(&addrs[victim as usize - 1], &keys, load.start);
    std::thread::sleep(Duration::from_millis(PHASE_MS));

    let paused = load.now();
    signal(&cluster, victim, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(PAUSE_MS));
    let during = leaders(&cluster, survivor, groups);
    queued.write_then_queue(&addrs[survivor as usize - 1], &keys, QUEUED_VALUES);
    signal(&cluster, victim, Signal::SIGCONT);
    let woke = load.now();
    std::thread::sleep(Duration::from_millis(PHASE_MS));
    let after = leaders(&cluster, survivor, groups);

    let start = load.start;
    let (mut history, acks) = load.stop();
    history.extend(queued.finish());
    println!("leaders before {before:?}, during the pause {during:?}, after {after:?}");
    assert_eq!(during.get(&victim), Some(&0), "the paused node's groups elected new leaders");
    final_reads(&cluster, victim, &keys, start, ready, &mut history);
    if mode == ReadConsistency::ReadIndex && !follower {
        let endorsed = counted(&cluster, "shardkv_raft_reads_endorsed_total");
        println!("reads answered on an endorsement: {endorsed}");
        assert!(endorsed > 0.0, "forwarded reads were endorsed and answered with no round");
    }
    let rounds = counted(&cluster, "shardkv_raft_read_rounds_total");
    let by_rounds = counted(&cluster, "shardkv_raft_read_rounds_endorsed_reads_total");
    let backed_up = counted(&cluster, "shardkv_raft_read_rounds_backup_reads_total");
    println!(
        "node-level read rounds: {rounds}, reads they endorsed: {by_rounds}, reads that \
         asked more than one peer: {backed_up}"
    );
    if mode == ReadConsistency::ReadIndex && prefix != "group" {
        // Peers answered the probes in the leader's term: the whole path, over the wire.
        assert!(by_rounds > 0.0, "reads at a leader's node were endorsed by node read rounds");
    } else {
        assert_eq!(rounds, 0.0, "no node read rounds with leases or node_rounds = false");
    }
    // Leases, endorsements of forwarded reads and of node rounds: every mode opens doors.
    let direct = counted(&cluster, "shardkv_raft_reads_direct_total");
    println!("reads answered through a leader's read door: {direct}");
    assert!(direct > 0.0, "the request path answered reads through leaders' read doors");
    if follower {
        let served = counted(&cluster, "shardkv_raft_reads_follower_total");
        println!("reads served by followers: {served}");
        assert!(served > 0.0, "followers served reads after a read index");
    }
    let windows = vec![
        (format!("node{victim} paused"), paused, woke),
        (format!("node{victim} awake"), woke, load_end(&acks, woke)),
    ];
    report_and_check(&cluster, &[], &history, &acks, &windows);
}

/// Counter `name` summed over nodes and groups.
fn counted(cluster: &TestCluster, name: &str) -> f64 {
    let mut total = 0.0;
    for node in cluster.node_ids() {
        let addr = cluster.config(node).listen.metrics.to_string();
        let text = fetch(&addr, Duration::from_millis(SCRAPE_TIMEOUT_MS))
            .unwrap_or_else(|e| panic!("scrape node{node}: {e}"));
        total += parse(&text)
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum::<f64>();
    }
    total
}

/// The last acknowledged write's time (at least `from`).
fn load_end(acks: &[u64], from: u64) -> u64 {
    acks.iter().copied().max().unwrap_or(from).max(from)
}
