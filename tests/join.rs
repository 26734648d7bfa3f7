//! A node joins a running three-node cluster (`shardkv server --join`) while clients keep
//! writing and reading through the `redis` crate; the layout is the metadata group's
//! replicated cluster map. The scenario: node 4 joins with a configuration that names no
//! layout and no peers; every node learns it from the map; a second node cannot take its
//! addresses; rebalance gives node 4 its share of replicas and leaderships; the metadata
//! group's own replica moves to node 4; a split takes its child's id from the map, and
//! every node, node 4 included, routes the child's slots by the map; a node holding
//! replicas cannot be forgotten, a fifth node holding none is, and every node stops listing
//! it; node 4 is killed and joins again on restart, then serves every key. The history is
//! checked for linearizability and ends with a read of every key through node 4, so a lost
//! acknowledged write fails it.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{ClusterLayout, ClusterOpts, TestCluster};
use common::workload::{evenness, final_reads, report_and_check, spread, Load};
use shardkv::admin::rebalance;
use shardkv::admin::{moves, Admin};
use shardkv::kv::meta::ClusterMap;
use shardkv::router::layout::Layout;

const READY_TIMEOUT_MS: u64 = 20_000;
const KEYS: u64 = 24;
const CLIENTS: u64 = 6;
/// How long one admin step, or the map reaching every node, may take.
const WAIT_MS: u64 = 20_000;
const PHASE_MS: u64 = 700;
const POLL_MS: u64 = 50;

fn map_of(cluster: &TestCluster, node: u64) -> Result<ClusterMap, String> {
    let mut con = cluster.client(node).get_connection().map_err(|e| e.to_string())?;
    let bytes: Vec<u8> =
        redis::cmd("SHARDKV").arg("MAP").query(&mut con).map_err(|e| e.to_string())?;
    ClusterMap::decode(&bytes).map_err(|e| e.to_string())
}

/// Whether `node` lists node `id` among the cluster's nodes.
fn lists(admin: &mut Admin, node: u64, id: u64) -> Result<bool, String> {
    let nodes = admin.connect_node(node).and_then(|mut a| a.nodes()).map_err(|e| e.to_string())?;
    Ok(nodes.iter().any(|(i, _)| *i == id))
}

/// Polls until `ok` holds or `WAIT_MS` passes; panics with the last state.
fn eventually<T: std::fmt::Debug>(what: &str, mut probe: impl FnMut() -> T, ok: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        let now = probe();
        if ok(&now) {
            return now;
        }
        if Instant::now() > deadline {
            panic!("{what}: still {now:?}");
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

#[test]
fn a_node_joins_under_load_gets_work_and_every_node_agrees_on_the_map() {
    let layout = ClusterLayout::Even { groups: 4, replicas: 3 };
    let mut cluster = TestCluster::start(3, layout, ClusterOpts::default());
    let ready = Duration::from_millis(READY_TIMEOUT_MS);
    if let Err(e) = cluster.wait_ready(ready) {
        panic!("cluster not ready: {e}");
    }
    let keys: Vec<String> = (0..KEYS).map(|k| format!("join:{k}")).collect();
    let addrs: Vec<String> = (1..=3).map(|n| cluster.resp_addr(n).to_string()).collect();
    let wait = Duration::from_millis(WAIT_MS);
    let mut admin = Admin::connect(&addrs[0], None, wait).expect("admin connection");
    let load = Load::start(CLIENTS, addrs, keys.clone());
    let phase = || std::thread::sleep(Duration::from_millis(PHASE_MS));
    let mut windows = Vec::new();
    let mut log = Vec::new();
    phase();

    // 1. Node 4 joins; every node learns it from the map.
    let t0 = load.now();
    cluster.join(4, &[1, 2]);
    cluster.wait_ready(ready).expect("node 4 serves");
    for node in 1..=4 {
        let _ = eventually(
            &format!("node {node} lists node 4"),
            || admin.connect_node(node).and_then(|mut a| a.nodes()).map_err(|e| e.to_string()),
            |nodes| nodes.as_ref().is_ok_and(|n| n.iter().any(|(id, _)| *id == 4)),
        );
    }
    windows.push(("join of node 4".to_string(), t0, load.now()));
    let map = map_of(&cluster, 4).expect("map through node 4");
    assert_eq!(map.nodes[&4].resp, cluster.resp_addr(4), "the map records node 4's address");
    // Another node cannot take node 4's addresses, nor node 4 other ones.
    let mut con = cluster.client(1).get_connection().expect("connection");
    let n4 = &map.nodes[&4];
    let thief: Result<(), _> = redis::cmd("SHARDKV")
        .arg("JOIN")
        .arg(5)
        .arg(n4.peer.to_string())
        .arg(n4.resp.to_string())
        .query(&mut con);
    assert!(thief.is_err(), "node 5 was let in with node 4's addresses");
    let moved: Result<(), _> =
        redis::cmd("SHARDKV").arg("JOIN").arg(4).arg("127.0.0.1:1").arg("127.0.0.1:2").query(&mut con);
    assert!(moved.is_err(), "node 4 changed its addresses by joining again");
    phase();

    // 2. Rebalance gives node 4 its share.
    let nodes: Vec<u64> = admin.nodes().expect("nodes").into_iter().map(|(id, _)| id).collect();
    assert_eq!(nodes, vec![1, 2, 3, 4]);
    let t0 = load.now();
    let mut say = |line: &str| log.push(line.to_string());
    let steps = rebalance::run(&mut admin, &nodes, wait, &mut |_| {}, &mut say).expect("rebalance");
    windows.push((format!("rebalance onto node 4 ({} steps)", steps), t0, load.now()));
    let (replicas, leaders) = spread(&mut admin, &nodes);
    assert!(replicas[&4] >= 2, "node 4 got replicas: {replicas:?}");
    assert!(evenness(&replicas) <= 1, "replicas per node after rebalance: {replicas:?}");
    assert!(evenness(&leaders) <= 1, "leaders per node after rebalance: {leaders:?}");
    phase();

    // The metadata group's replicas move like any group's: node 3's goes to node 4.
    let t0 = load.now();
    let mut say = |line: &str| log.push(line.to_string());
    moves::move_replica(&mut admin, 0, 3, 4, Instant::now() + wait, &mut say)
        .expect("move the metadata group's replica");
    windows.push(("move of the metadata group's replica from node 3 to node 4".into(), t0, load.now()));
    let members = admin.members(0).expect("members of group 0");
    assert!(members.member(3).is_none() && members.member(4).is_some(), "{members:?}");
    phase();

    // 3. A split takes its child's id from the map; every node's map converges on the
    // same layout, which has the child, and node 4 routes the child's slots.
    let next = map_of(&cluster, 1).expect("map").next_group;
    let t0 = load.now();
    let child = admin.split(1, None).expect("split");
    windows.push((format!("split of group 1 into group {}", child.id), t0, load.now()));
    assert!(child.id >= next, "child {} was not handed out by the map (next {next})", child.id);
    let map = eventually(
        &format!("the map has group {} and group 1's shrink", child.id),
        || map_of(&cluster, 4),
        |m| {
            m.as_ref().is_ok_and(|m| {
                m.groups.get(&child.id).is_some_and(|g| g.slots == [child.slots.0, child.slots.1])
                    && m.groups.get(&1).is_some_and(|g| g.slots[1] < child.slots.0)
            })
        },
    );
    let layout = Layout::from_map(&map.expect("map"));
    layout.validate().expect("the map is a valid layout");
    assert!(
        layout.groups.iter().filter(|g| g.replicas.contains(&4)).count() >= 2,
        "the map records node 4's replicas: {layout:?}"
    );
    // Every node routes by it: the child's slots, with the child's leader as master.
    for node in 1..=4 {
        let _ = eventually(
            &format!("node {node}'s CLUSTER SLOTS lists group {}", child.id),
            || cluster.slot_masters(node),
            |s| s.as_ref().is_ok_and(|s| s.iter().any(|m| (m.first, m.last) == child.slots)),
        );
    }
    phase();

    // A node that holds replicas cannot be forgotten; one that holds none (node 5, just
    // joined) can, and every node stops listing it.
    assert!(admin.forget_node(4).is_err(), "node 4 holds replicas");
    cluster.join(5, &[1]);
    cluster.wait_ready(ready).expect("node 5 serves");
    let _ = eventually(
        "node 1 lists node 5",
        || lists(&mut admin, 1, 5),
        |l| *l == Ok(true),
    );
    admin.forget_node(5).expect("forget node 5");
    cluster.kill9(5);
    for node in 1..=4 {
        let _ = eventually(
            &format!("node {node} forgot node 5"),
            || lists(&mut admin, node, 5),
            |l| *l == Ok(false),
        );
    }
    assert!(!map_of(&cluster, 1).expect("map").nodes.contains_key(&5));

    let start = load.start;
    let (mut history, acks) = load.stop();

    // 4. kill -9 node 4; it joins again on restart and serves every key.
    cluster.kill9(4);
    cluster.restart(4);
    cluster.wait_ready(ready).expect("node 4 back");
    assert!(cluster.log(4).matches("joined the cluster").count() >= 2, "node 4 joined twice");
    final_reads(&cluster, 4, &keys, start, ready, &mut history);

    report_and_check(&cluster, &log, &history, &acks, &windows);
}
