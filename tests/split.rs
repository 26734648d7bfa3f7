//! Online splits and leader transfers on a real three-node cluster while clients keep
//! writing and reading through the `redis` crate (plain connections: any node serves any
//! key). The history of every key is checked for linearizability, a final read of every
//! key ends it (so an acknowledged write that was lost makes it illegal), and a node
//! killed with `kill -9` after the splits restarts with the split groups and serves them.
//! The unavailability windows are measured and printed (`--nocapture`).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{ClusterLayout, ClusterOpts, TestCluster};
use shardkv::admin::Admin;
use shardkv::kv::slot::key_slot;
use shardkv::linearizability::kv_model::{KvInput, KvModel, KvOutput};
use shardkv::linearizability::{check, CheckResult, Operation, Outcome};

const READY_TIMEOUT_MS: u64 = 20_000;
const LAYOUT_FILE: &str = "shards/local-3x8.toml";
/// Keys of the workload, all in group 1's slots (0-2047), so every split moves some.
const KEYS: u64 = 24;
const CLIENTS: u64 = 6;
/// A client's socket time-out; a write without an answer by then has an unknown outcome.
const CLIENT_TIMEOUT_MS: u64 = 4_000;
/// Model steps the checker may spend per key before it calls the history inconclusive.
const CHECK_STEPS_PER_KEY_MAX: u64 = 5_000_000;
/// How long the cluster has to show an admin change.
const ADMIN_WAIT_MS: u64 = 10_000;
/// Pause between the phases of the scenario, with the clients running.
const PHASE_MS: u64 = 700;

type History = Vec<Operation<KvInput, KvOutput>>;

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

fn connect(cluster: &TestCluster, node: u64) -> Option<redis::Connection> {
    let con = cluster.client(node).get_connection().ok()?;
    let timeout = Some(Duration::from_millis(CLIENT_TIMEOUT_MS));
    con.set_read_timeout(timeout).ok()?;
    con.set_write_timeout(timeout).ok()?;
    Some(con)
}

/// Whether a failed write was definitely not applied (the server says so).
fn definitely_not_applied(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("was not applied") || text.contains("CLUSTERDOWN")
}

/// One client: alternately writes a fresh value to and reads a key, until `stop`. Every
/// op goes into `history`; the time of each acknowledged write into `acks`.
fn client_loop(
    id: u64,
    addrs: Vec<String>,
    keys: Arc<Vec<String>>,
    start: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
    acks: Arc<Mutex<Vec<u64>>>,
) {
    let now = || start.elapsed().as_nanos() as u64;
    let open = |i: usize| -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://{}/", addrs[i % addrs.len()])).ok()?;
        let con = client.get_connection().ok()?;
        let timeout = Some(Duration::from_millis(CLIENT_TIMEOUT_MS));
        con.set_read_timeout(timeout).ok()?;
        Some(con)
    };
    let mut node = id as usize;
    let mut con = open(node);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = con.as_mut() else {
            node += 1;
            con = open(node);
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        n += 1;
        let k = (id * 7 + n) % KEYS;
        let key = &keys[k as usize];
        let (input, call) = if n % 2 == 0 {
            (KvInput::Put(k, id * 1_000_000 + n), now())
        } else {
            (KvInput::Get(k), now())
        };
        let outcome = match input {
            KvInput::Put(_, v) => match redis::cmd("SET").arg(key).arg(v).query::<()>(c) {
                Ok(()) => {
                    acks.lock().unwrap().push(now());
                    Outcome::Ok {
                        ret: now(),
                        output: KvOutput::Put,
                    }
                }
                Err(e) if definitely_not_applied(&e) => Outcome::Fail,
                Err(_) => {
                    con = None;
                    Outcome::Unknown
                }
            },
            _ => match redis::cmd("GET").arg(key).query::<Option<u64>>(c) {
                Ok(v) => Outcome::Ok {
                    ret: now(),
                    output: KvOutput::Get(v),
                },
                Err(e) => {
                    if !definitely_not_applied(&e) {
                        con = None;
                    }
                    Outcome::Unknown
                }
            },
        };
        history.lock().unwrap().push(Operation {
            client_id: id,
            input,
            call,
            outcome,
        });
    }
}

/// The longest stretch without an acknowledged write inside `[from, to]` (nanoseconds).
fn longest_gap_ms(acks: &[u64], from: u64, to: u64) -> u64 {
    let mut inside: Vec<u64> = acks
        .iter()
        .copied()
        .filter(|&t| t >= from && t <= to)
        .collect();
    inside.sort_unstable();
    let mut gap = 0;
    let mut last = from;
    for t in inside.into_iter().chain([to]) {
        gap = gap.max(t.saturating_sub(last));
        last = t;
    }
    gap / 1_000_000
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
    let keys = Arc::new(workload_keys());
    let addrs: Vec<String> = (1..=3).map(|n| cluster.resp_addr(n).to_string()).collect();
    let admin_addr = addrs[0].clone();
    let wait = Duration::from_millis(ADMIN_WAIT_MS);
    let mut admin = Admin::connect(&admin_addr, None, wait).expect("admin connection");
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(History::new()));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (addrs, keys, stop) = (addrs.clone(), keys.clone(), stop.clone());
            let (history, acks) = (history.clone(), acks.clone());
            std::thread::spawn(move || client_loop(id, addrs, keys, start, stop, history, acks))
        })
        .collect();
    let phase = || std::thread::sleep(Duration::from_millis(PHASE_MS));
    let at = || start.elapsed().as_nanos() as u64;
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
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }

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
    let acks = acks.lock().unwrap().clone();
    let mut history = std::mem::take(&mut *history.lock().unwrap());
    final_reads(&cluster, &keys, start, &mut history);

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

/// Reads every key through the restarted node: each read ends the key's history, so a
/// lost acknowledged write makes it illegal.
fn final_reads(cluster: &TestCluster, keys: &[String], start: Instant, history: &mut History) {
    let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    for (k, key) in keys.iter().enumerate() {
        loop {
            let call = start.elapsed().as_nanos() as u64;
            let read = connect(cluster, 2)
                .ok_or_else(|| "no connection".to_string())
                .and_then(|mut c| {
                    redis::cmd("GET")
                        .arg(key)
                        .query::<Option<u64>>(&mut c)
                        .map_err(|e| e.to_string())
                });
            match read {
                Ok(v) => {
                    let ret = start.elapsed().as_nanos() as u64;
                    let outcome = Outcome::Ok {
                        ret,
                        output: KvOutput::Get(v),
                    };
                    let input = KvInput::Get(k as u64);
                    history.push(Operation {
                        client_id: 1_000,
                        input,
                        call,
                        outcome,
                    });
                    break;
                }
                Err(e) if Instant::now() > deadline => panic!("final read of {key}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}
