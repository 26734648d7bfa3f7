//! Replica moves, a rebalance onto a new node and leader transfers on a real four-node
//! cluster (`shardkv server` processes) while clients keep writing and reading through the
//! `redis` crate. Node 4 starts empty, as a node added to the cluster would. The scenario:
//! move a group's replica away from its leader to node 4; move another group's replica
//! from node 2 to node 4 and kill -9 node 2 in the middle of it (the move completes
//! without it; restarted, node 2 deletes its leftover replica when told); rebalance
//! (replicas and leaderships even over the four nodes); a leader transfer; kill -9 and
//! restart node 4, which then serves every key; restart node 2, which must not bring back
//! the replica it lost. The history is checked for
//! linearizability and ends with a read of every key, so a lost acknowledged write fails
//! it. The windows are measured and printed (`--nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{ClusterLayout, ClusterOpts, TestCluster};
use common::workload::{evenness, final_reads, report_and_check, spread, Load};
use shardkv::admin::rebalance;
use shardkv::admin::{moves, Admin};
use shardkv::kv::slot::key_slot;
use shardkv::router::layout::{Layout, NodeLayout};

const READY_TIMEOUT_MS: u64 = 20_000;
/// Keys of the workload, in groups 1 and 2 (slots 0-8191), the groups that move.
const KEYS: u64 = 24;
const CLIENTS: u64 = 6;
/// How long one admin step may take.
const ADMIN_WAIT_MS: u64 = 20_000;
const PHASE_MS: u64 = 700;
/// The node the admin talks to: never killed.
const ADMIN_NODE: u64 = 3;

/// Four groups of three replicas on nodes 1-3; node 4 holds nothing.
fn layout() -> Layout {
    let mut layout = Layout::even(3, 4, 3);
    layout.nodes.push(NodeLayout::new(4));
    layout
}

fn workload_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let mut n = 0u64;
    while keys.len() < KEYS as usize {
        let key = format!("move:{n}");
        let band = keys.len() as u16 * (8192 / KEYS as u16);
        if (band..8192).contains(&key_slot(key.as_bytes())) {
            keys.push(key);
        }
        n += 1;
    }
    keys
}

#[test]
fn moves_a_kill_mid_move_and_a_rebalance_under_load_keep_every_acknowledged_write() {
    let mut cluster = TestCluster::start(4, ClusterLayout::Given(layout()), ClusterOpts::default());
    if let Err(e) = cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)) {
        panic!("cluster not ready: {e}");
    }
    let keys = workload_keys();
    let addrs: Vec<String> = (1..=4).map(|n| cluster.resp_addr(n).to_string()).collect();
    let wait = Duration::from_millis(ADMIN_WAIT_MS);
    let admin_addr = cluster.resp_addr(ADMIN_NODE).to_string();
    let mut admin = Admin::connect(&admin_addr, None, wait).expect("admin connection");
    let load = Load::start(CLIENTS, addrs, keys.clone());
    let phase = || std::thread::sleep(Duration::from_millis(PHASE_MS));
    let mut windows = Vec::new();
    let mut log = Vec::new();
    phase();

    // 1. Move group 1's replica away from its leader, to the empty node 4.
    let from = admin.wait_leader(1, Instant::now() + wait, |_| true).expect("leader of 1");
    let t0 = load.now();
    let mut say = |line: &str| log.push(line.to_string());
    moves::move_replica(&mut admin, 1, from, 4, Instant::now() + wait, &mut say)
        .expect("move group 1");
    windows.push((format!("move of group 1 from its leader (node {from}) to node 4"), t0, load.now()));
    let members = admin.members(1).expect("members of 1");
    assert!(members.member(from).is_none() && members.member(4).is_some());
    phase();

    // 2. Move group 2's replica from node 2 to node 4; kill -9 node 2 once node 4 joined
    // as a learner. The move goes on without node 2.
    let t0 = load.now();
    let mut killed = false;
    let mut say = |line: &str| {
        if !killed && line.contains("as a learner") {
            cluster.kill9(2);
            killed = true;
        }
        log.push(line.to_string());
    };
    moves::move_replica(&mut admin, 2, 2, 4, Instant::now() + wait, &mut say)
        .expect("move group 2 with its source killed");
    assert!(killed, "node 2 was killed during the move");
    windows.push(("move of group 2 from node 2 (killed mid-move) to node 4".into(), t0, load.now()));
    let members = admin.members(2).expect("members of 2");
    assert!(members.member(2).is_none() && members.member(4).is_some_and(|m| m.kind == "voter"));
    cluster.restart(2);
    cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)).expect("node 2 back");
    let deadline = Instant::now() + wait;
    loop {
        match admin.connect_node(2).and_then(|mut a| a.drop_replica(2)) {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!("node 2 keeps its old replica: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    phase();

    // 3. Rebalance: node 4 gets its share of replicas and leaderships.
    let nodes = [1, 2, 3, 4];
    let t0 = load.now();
    let mut say = |line: &str| log.push(line.to_string());
    let steps = rebalance::run(&mut admin, &nodes, wait, &mut |_| {}, &mut say).expect("rebalance");
    windows.push((format!("rebalance ({} steps)", steps), t0, load.now()));
    let (replicas, leaders) = spread(&mut admin, &nodes);
    assert!(evenness(&replicas) <= 1, "replicas per node after rebalance: {replicas:?}");
    assert!(evenness(&leaders) <= 1, "leaders per node after rebalance: {leaders:?}");
    assert_eq!(replicas.values().sum::<usize>(), 12, "every group keeps three replicas");
    phase();

    // 4. A leader transfer.
    let members = admin.members(1).expect("members of 1");
    let to = members.voters().into_iter().find(|&v| v != members.leader).expect("a voter");
    let t0 = load.now();
    admin.transfer_leader(1, to).expect("transfer");
    admin.wait_leader(1, Instant::now() + wait, |l| l == to).expect("new leader");
    windows.push((format!("leader transfer of group 1 to node {to}"), t0, load.now()));
    phase();

    let start = load.start;
    let (mut history, acks) = load.stop();

    // 5. kill -9 node 4 (all its replicas came by moves): it restarts and serves every key.
    cluster.kill9(4);
    cluster.restart(4);
    cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)).expect("node 4 back");
    let timeout = Duration::from_millis(READY_TIMEOUT_MS);
    final_reads(&cluster, 4, &keys, start, timeout, &mut history);

    // 6. Node 2 lost its replica of group 2: restarted, it does not bootstrap it again from
    // the layout file (which still names it).
    cluster.kill9(2);
    cluster.restart(2);
    cluster.wait_ready(timeout).expect("node 2 back again");
    assert!(
        cluster.log(2).contains("replica was removed from the group group=2"),
        "node 2 skipped its removed replica of group 2 at start-up"
    );
    let members = admin.members(2).expect("members of 2");
    assert!(members.member(2).is_none(), "node 2 stays out of group 2: {members:?}");

    report_and_check(&cluster, &log, &history, &acks, &windows);
}
