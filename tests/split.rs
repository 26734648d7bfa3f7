//! Online splits and leader transfers on a real three-node cluster while clients keep
//! writing and reading through the `redis` crate (plain connections: any node serves any
//! key). The history of every key is checked for linearizability, a final read of every
//! key ends it (so an acknowledged write that was lost makes it illegal), and a node
//! killed with `kill -9` after the splits restarts with the split groups and serves them.
//! The unavailability windows are measured and printed (`--nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{ClusterLayout, ClusterOpts, TestCluster};
use common::workload::{final_reads, longest_gap_ms, Load};
use shardkv::admin::Admin;
use shardkv::kv::slot::key_slot;
use shardkv::linearizability::kv_model::KvModel;
use shardkv::linearizability::{check, CheckResult, Outcome};

const READY_TIMEOUT_MS: u64 = 20_000;
const LAYOUT_FILE: &str = "shards/local-3x8.toml";
/// Keys of the workload, all in group 1's slots (0-2047), so every split moves some.
const KEYS: u64 = 24;
const CLIENTS: u64 = 6;
/// Model steps the checker may spend per key before it calls the history inconclusive.
const CHECK_STEPS_PER_KEY_MAX: u64 = 5_000_000;
/// How long the cluster has to show an admin change.
const ADMIN_WAIT_MS: u64 = 10_000;
/// Pause between the phases of the scenario, with the clients running.
const PHASE_MS: u64 = 700;

/// `KEYS` key names whose slots are in group 1's range, spread over it.
fn workload_keys() -> Vec<String> {
    let mut keys = Vec::new();
    let mut n = 0u64;
    while keys.len() < KEYS as usize {
        let key = format!("split:{n}");
        let slot = key_slot(key.as_bytes());
        let band = keys.len() as u16 * (2048 / KEYS as u16);
        if slot < 2048 && slot >= band {
            keys.push(key);
        }
        n += 1;
    }
    keys
}

#[test]
fn splits_and_leader_transfers_under_load_keep_every_acknowledged_write() {
    let mut cluster = TestCluster::start(
        3,
        ClusterLayout::File(LAYOUT_FILE.into()),
        ClusterOpts::default(),
    );
    if let Err(e) = cluster.wait_ready(Duration::from_millis(READY_TIMEOUT_MS)) {
        panic!("cluster not ready: {e}");
    }
    let keys = workload_keys();
    let addrs: Vec<String> = (1..=3).map(|n| cluster.resp_addr(n).to_string()).collect();
    let admin_addr = addrs[0].clone();
    let wait = Duration::from_millis(ADMIN_WAIT_MS);
    let mut admin = Admin::connect(&admin_addr, None, wait).expect("admin connection");
    let load = Load::start(CLIENTS, addrs, keys.clone());
    let phase = || std::thread::sleep(Duration::from_millis(PHASE_MS));
    let at = || load.now();
    let mut windows = Vec::new();
    phase();

    // Split group 1 where its keys halve, then split the new group again.
    let t0 = at();
    let first = admin.split(1, None).expect("first split");
    let leader = admin
        .wait_leader(first.id, Instant::now() + wait, |_| true)
        .expect("leader");
    windows.push(("split of group 1", t0, at(), leader));
    phase();
    let t0 = at();
    let at_slot = first.slots.0 + (first.slots.1 - first.slots.0) / 2;
    let second = admin.split(first.id, Some(at_slot)).expect("second split");
    let leader = admin
        .wait_leader(second.id, Instant::now() + wait, |_| true)
        .expect("leader");
    windows.push(("split of the child", t0, at(), leader));
    phase();

    // Move the leadership of all three groups that now share group 1's old slots.
    for group in [1, first.id, second.id] {
        let info = admin.group(group).expect("group");
        let to = info
            .replicas
            .iter()
            .copied()
            .find(|&r| Some(r) != info.leader)
            .expect("peer");
        let t0 = at();
        admin.transfer_leader(group, to).expect("transfer");
        admin
            .wait_leader(group, Instant::now() + wait, |l| l == to)
            .expect("new leader");
        windows.push(("leader transfer", t0, at(), to));
        phase();
    }
    let start = load.start;
    let (mut history, acks) = load.stop();

    let groups = admin.groups().expect("groups");
    let slots_of = |id: u64| groups.iter().find(|g| g.id == id).map(|g| g.slots);
    assert_eq!(
        slots_of(1),
        Some((0, first.slots.0 - 1)),
        "group 1 keeps the lower slots"
    );
    assert_eq!(slots_of(first.id), Some((first.slots.0, at_slot - 1)));
    assert_eq!(slots_of(second.id), Some((at_slot, 2047)));

    // kill -9 a node: it restarts with the split groups from its disk and serves them.
    cluster.kill9(2);
    cluster.restart(2);
    cluster
        .wait_ready(Duration::from_millis(READY_TIMEOUT_MS))
        .expect("node 2 back");
    let timeout = Duration::from_millis(READY_TIMEOUT_MS);
    final_reads(&cluster, 2, &keys, start, timeout, &mut history);

    let acked = history
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Ok { .. }))
        .count();
    println!(
        "{} ops, {acked} acknowledged, {} writes acknowledged",
        history.len(),
        acks.len()
    );
    for (what, from, to, leader) in &windows {
        let gap = longest_gap_ms(&acks, *from, *to);
        let took = (to - from) / 1_000_000;
        println!("{what}: done in {took} ms (leader node {leader}); longest gap in acknowledged writes meanwhile {gap} ms");
    }
    assert!(
        acks.len() > 50,
        "the clients made too little progress: {} writes",
        acks.len()
    );
    match check(&KvModel, &history, CHECK_STEPS_PER_KEY_MAX) {
        CheckResult::Ok => {}
        other => panic!(
            "history is not linearizable: {other:?}\n{}",
            cluster.log_tails()
        ),
    }
}
