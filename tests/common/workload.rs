//! A writing and reading load through the `redis` crate for the tests that change the
//! cluster under traffic (splits, replica moves): clients alternately write fresh values
//! to and read a set of keys over plain connections (any node serves any key), recording
//! a history for the linearizability checker and the time of every acknowledged write
//! (the unavailability windows).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shardkv::admin::Admin;
use shardkv::linearizability::kv_model::{KvInput, KvModel, KvOutput};
use shardkv::linearizability::{check, CheckResult, Operation, Outcome};

use crate::common::cluster::TestCluster;

/// A client's socket time-out; a write without an answer by then has an unknown outcome.
pub const CLIENT_TIMEOUT_MS: u64 = 4_000;
/// Client id of the final reads.
const FINAL_READER: u64 = 1_000;

pub type History = Vec<Operation<KvInput, KvOutput>>;

/// Running clients.
pub struct Load {
    pub start: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
    acks: Arc<Mutex<Vec<u64>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` clients over `keys`, client i first on `addrs[i % len]`.
    pub fn start(clients: u64, addrs: Vec<String>, keys: Vec<String>) -> Load {
        let start = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(History::new()));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let keys = Arc::new(keys);
        let clients = (0..clients)
            .map(|id| {
                let (addrs, keys, stop) = (addrs.clone(), keys.clone(), stop.clone());
                let (history, acks) = (history.clone(), acks.clone());
                std::thread::spawn(move || {
                    client_loop(id, addrs, keys, start, stop, history, acks)
                })
            })
            .collect();
        Load { start, stop, history, acks, clients }
    }

    /// Nanoseconds since the load started (the history's clock).
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Stops the clients; returns the history and the acknowledged writes' times.
    pub fn stop(self) -> (History, Vec<u64>) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().expect("client thread");
        }
        let history = std::mem::take(&mut *self.history.lock().unwrap());
        let acks = self.acks.lock().unwrap().clone();
        (history, acks)
    }
}

/// Whether a failed write was definitely not applied (the server says so).
fn definitely_not_applied(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    text.contains("was not applied") || text.contains("CLUSTERDOWN")
}

fn open(addr: &str) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let con = client.get_connection().ok()?;
    let timeout = Some(Duration::from_millis(CLIENT_TIMEOUT_MS));
    con.set_read_timeout(timeout).ok()?;
    con.set_write_timeout(timeout).ok()?;
    Some(con)
}

/// One client: alternately writes a fresh value to and reads a key, until `stop`; moves
/// to the next node after a connection fails.
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
    let mut node = id as usize;
    let mut con = open(&addrs[node % addrs.len()]);
    let mut n = 0u64;
    let key_count = keys.len() as u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = con.as_mut() else {
            node += 1;
            con = open(&addrs[node % addrs.len()]);
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        n += 1;
        let k = (id * 7 + n) % key_count;
        let key = &keys[k as usize];
        let input = if n % 2 == 0 {
            KvInput::Put(k, id * 1_000_000 + n)
        } else {
            KvInput::Get(k)
        };
        let call = now();
        let outcome = match input {
            KvInput::Put(_, v) => match redis::cmd("SET").arg(key).arg(v).query::<()>(c) {
                Ok(()) => {
                    acks.lock().unwrap().push(now());
                    Outcome::Ok { ret: now(), output: KvOutput::Put }
                }
                Err(e) if definitely_not_applied(&e) => Outcome::Fail,
                Err(_) => {
                    con = None;
                    Outcome::Unknown
                }
            },
            _ => match redis::cmd("GET").arg(key).query::<Option<u64>>(c) {
                Ok(v) => Outcome::Ok { ret: now(), output: KvOutput::Get(v) },
                Err(e) => {
                    if !definitely_not_applied(&e) {
                        con = None;
                    }
                    Outcome::Unknown
                }
            },
        };
        history.lock().unwrap().push(Operation { client_id: id, input, call, outcome });
    }
}

/// The longest stretch without an acknowledged write inside `[from, to]` (nanoseconds
/// in, milliseconds out).
pub fn longest_gap_ms(acks: &[u64], from: u64, to: u64) -> u64 {
    let mut inside: Vec<u64> = acks.iter().copied().filter(|&t| t >= from && t <= to).collect();
    inside.sort_unstable();
    let mut gap = 0;
    let mut last = from;
    for t in inside.into_iter().chain([to]) {
        gap = gap.max(t.saturating_sub(last));
        last = t;
    }
    gap / 1_000_000
}

/// Reads every key through `node`: each read ends the key's history, so a lost
/// acknowledged write makes it illegal.
pub fn final_reads(
    cluster: &TestCluster,
    node: u64,
    keys: &[String],
    start: Instant,
    timeout: Duration,
    history: &mut History,
) {
    let deadline = Instant::now() + timeout;
    let addr = cluster.resp_addr(node).to_string();
    for (k, key) in keys.iter().enumerate() {
        loop {
            let call = start.elapsed().as_nanos() as u64;
            let read = open(&addr).ok_or_else(|| "no connection".to_string()).and_then(|mut c| {
                redis::cmd("GET").arg(key).query::<Option<u64>>(&mut c).map_err(|e| e.to_string())
            });
            match read {
                Ok(v) => {
                    let ret = start.elapsed().as_nanos() as u64;
                    let outcome = Outcome::Ok { ret, output: KvOutput::Get(v) };
                    let input = KvInput::Get(k as u64);
                    history.push(Operation { client_id: FINAL_READER, input, call, outcome });
                    break;
                }
                Err(e) if Instant::now() > deadline => panic!("final read of {key}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// Client ids of `QueuedReads`' writes and reads (one per key, each on its own connection).
const QUEUED_WRITER: u64 = 2_000;
const QUEUED_READER: u64 = 3_000;

/// Reads queued at a paused node: their connections are opened (accepted by the running
/// node) first; while it is paused, a fresh value of each key is written through another
/// node and acknowledged, and then the read of each key is written to its socket. The
/// paused node answers them once it runs again, when its requests' tasks may well run
/// before its replicas' timers: the reads began after the writes completed, so they must
/// see them (a leader answering on a lease it lost while paused would not).
pub struct QueuedReads {
    start: Instant,
    reads: Vec<(u64, std::net::TcpStream)>,
    history: History,
}

impl QueuedReads {
    /// Connections to `addr`, one per key of `keys`, opened while its node runs.
    pub fn connect(addr: &str, keys: &[String], start: Instant) -> QueuedReads {
        let reads = (0..keys.len() as u64)
            .map(|k| {
                let c = std::net::TcpStream::connect(addr).expect("connect to the node");
                c.set_read_timeout(Some(Duration::from_millis(CLIENT_TIMEOUT_MS * 4)))
                    .expect("read time-out");
                (k, c)
            })
            .collect();
        QueuedReads { start, reads, history: History::new() }
    }

    /// While the node is paused: writes `value_base + k` to each key through `other` (a
    /// running node), then sends the reads.
    pub fn write_then_queue(&mut self, other: &str, keys: &[String], value_base: u64) {
        use std::io::Write;
        let now = |start: Instant| start.elapsed().as_nanos() as u64;
        let mut con = open(other);
        for (k, key) in keys.iter().enumerate() {
            // A key whose write found no connection is left out (nothing was sent).
            let Some(c) = con.as_mut() else {
                con = open(other);
                continue;
            };
            let value = value_base + k as u64;
            let call = now(self.start);
            let outcome = match redis::cmd("SET").arg(key).arg(value).query::<()>(c) {
                Ok(()) => Outcome::Ok { ret: now(self.start), output: KvOutput::Put },
                Err(e) if definitely_not_applied(&e) => Outcome::Fail,
                // A reply may still come on this connection: the next write takes another.
                Err(_) => {
                    con = None;
                    Outcome::Unknown
                }
            };
            let input = KvInput::Put(k as u64, value);
            self.history.push(Operation { client_id: QUEUED_WRITER, input, call, outcome });
        }
        let mut calls = Vec::with_capacity(self.reads.len());
        for (k, c) in &mut self.reads {
            let key = &keys[*k as usize];
            let frame = format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len());
            calls.push(now(self.start));
            c.write_all(frame.as_bytes()).expect("queue a read");
        }
        for ((k, _), call) in self.reads.iter().zip(calls) {
            let input = KvInput::Get(*k);
            let outcome = Outcome::Unknown;
            self.history.push(Operation { client_id: QUEUED_READER + k, input, call, outcome });
        }
    }

    /// Once the node runs again: the reads' answers, and the whole history.
    pub fn finish(mut self) -> History {
        let start = self.start;
        for (k, c) in &mut self.reads {
            let answer = read_bulk_u64(c);
            let op = self.history.iter_mut().rev().find(|op| op.client_id == QUEUED_READER + *k);
            let op = op.expect("the read was queued");
            if let Some(value) = answer {
                let ret = start.elapsed().as_nanos() as u64;
                op.outcome = Outcome::Ok { ret, output: KvOutput::Get(value) };
            }
        }
        self.history
    }
}

/// One RESP reply to a GET of a number: `Some(Some(n))`, `Some(None)` for nil, `None` for
/// an error reply or a connection that failed.
fn read_bulk_u64(c: &mut std::net::TcpStream) -> Option<Option<u64>> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(c);
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    let len: i64 = header.strip_prefix('$')?.trim_end().parse().ok()?;
    if len < 0 {
        return Some(None);
    }
    let mut body = vec![0u8; len as usize + 2];
    reader.read_exact(&mut body).ok()?;
    std::str::from_utf8(&body[..len as usize]).ok()?.parse().ok().map(Some)
}

/// Replicas and leaderships per node, as each group's leader reports them.
pub fn spread(admin: &mut Admin, nodes: &[u64]) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let mut replicas: BTreeMap<u64, usize> = nodes.iter().map(|&n| (n, 0)).collect();
    let mut leaders = replicas.clone();
    for g in admin.groups().expect("groups") {
        let members = admin.members(g.id).expect("members");
        assert!(!members.joint, "group {} left joint", g.id);
        for m in &members.replicas {
            *replicas.entry(m.node).or_default() += 1;
        }
        *leaders.entry(members.leader).or_default() += 1;
    }
    (replicas, leaders)
}

/// How far apart the busiest and the idlest node are.
pub fn evenness(counts: &BTreeMap<u64, usize>) -> usize {
    counts.values().max().unwrap_or(&0) - counts.values().min().unwrap_or(&0)
}

/// Longest the linearizability check may search per key.
pub const CHECK_STEPS_PER_KEY_MAX: u64 = 5_000_000;

/// Prints the admin's lines, the history's size and each window (how long it took, the
/// longest stretch without an acknowledged write in it), then checks that the clients
/// made progress and that the history is linearizable.
pub fn report_and_check(
    cluster: &TestCluster,
    log: &[String],
    history: &[Operation<KvInput, KvOutput>],
    acks: &[u64],
    windows: &[(String, u64, u64)],
) {
    for line in log {
        println!("admin: {line}");
    }
    let acked = history.iter().filter(|op| matches!(op.outcome, Outcome::Ok { .. })).count();
    println!("{} ops, {acked} acknowledged, {} writes acknowledged", history.len(), acks.len());
    for (what, from, to) in windows {
        let gap = longest_gap_ms(acks, *from, *to);
        let took = (to - from) / 1_000_000;
        println!("{what}: done in {took} ms; longest gap in acknowledged writes meanwhile {gap} ms");
    }
    assert!(acks.len() > 50, "the clients made too little progress: {} writes", acks.len());
    match check(&KvModel, history, CHECK_STEPS_PER_KEY_MAX) {
        CheckResult::Ok => {}
        other => panic!("history is not linearizable: {other:?}\n{}", cluster.log_tails()),
    }
}
