//! Crash test of the node database: a child process writes group-commit batches for many
//! groups and reports each batch once it is durable; the parent kills it with SIGKILL at
//! random moments, reopens the database and checks that every reported batch is there,
//! whole and in order, and that every group's log is contiguous; then the next child
//! carries on from what it finds. Three batches in four only append (write-ahead log
//! records, replayed into redb at open); the fourth also writes KV records (a redb
//! transaction that absorbs the log).
//!
//! The child is this test binary run again with `SHARDKV_CRASH_CHILD=1`, filtered to the
//! `crash_child` test. Seed: `SHARDKV_CRASH_SEED` (printed on every run).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::ReadableDatabase;
use shardkv::kv::KvMutation;
use shardkv::raft::{
    ConfState, Entry, EntryPayload, GroupId, HardState, LogIndex, NodeId, Storage, Term,
};
use shardkv::storage::tables::KV;
use shardkv::storage::{GroupCommitWriter, GroupWrite, NodeDb, RedbStorage};

const GROUPS: u64 = 32;
const ENTRIES_PER_GROUP_PER_BATCH: u64 = 3;
const KILLS: u32 = 100;
/// Durable reports the parent waits for before a kill: 0 ..= this.
const REPORTS_BEFORE_KILL_MAX: u64 = 4;
/// Extra delay before a kill, so that it lands at any point of a batch.
const KILL_DELAY_MICROS_MAX: u64 = 4000;
const LINE_TIMEOUT: Duration = Duration::from_secs(15);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(120);
/// The child stops by itself after this long, should the parent be gone.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);
/// Every this many batches the child compacts each group's log.
const COMPACT_EVERY_BATCHES: u64 = 16;
/// Entries kept behind the last index when compacting.
const COMPACT_KEEP_ENTRIES: u64 = 20;
const KV_SLOT_BASE: u16 = 100;
const KV_KEY: &[u8] = b"last_index";

/// splitmix64: a small seeded generator, enough to place kills.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn payload(group: u64, index: u64, term: u64) -> Bytes {
    Bytes::from(format!("g{group:03}/i{index:08}/t{term:04}/").repeat(4))
}

fn entry(group: u64, index: u64, term: u64) -> Entry {
    let payload = EntryPayload::Normal(payload(group, index, term));
    Entry { term: Term(term), index: LogIndex(index), payload }
}

fn open_groups(db: &Arc<NodeDb>) -> Vec<RedbStorage> {
    (1..=GROUPS)
        .map(|g| RedbStorage::open(Arc::clone(db), GroupId(g)).expect("open group"))
        .collect()
}

/// Batches whose last index is a multiple of this also write each group's KV record (a
/// redb transaction, which absorbs the write-ahead log); the others only append entries
/// and hard states (write-ahead log records, replayed at open).
const KV_EVERY_INDEX: u64 = 4 * ENTRIES_PER_GROUP_PER_BATCH;

/// The KV record a log ending at `last` implies: the last batch that wrote one.
fn expected_kv(last: u64) -> Option<Vec<u8>> {
    let at = last - last % KV_EVERY_INDEX;
    (at > 0).then(|| at.to_string().into_bytes())
}

/// One batch: every group appends `ENTRIES_PER_GROUP_PER_BATCH` entries; one batch in
/// eight first rewrites each group's last entry in a new term (a conflicting suffix).
fn make_batch(last: u64, term: u64, rewrite: bool) -> (Vec<GroupWrite>, u64, u64) {
    let (from, term) = if rewrite && last > 0 { (last, term + 1) } else { (last + 1, term) };
    let to = last + ENTRIES_PER_GROUP_PER_BATCH;
    let writes = (1..=GROUPS)
        .map(|g| GroupWrite {
            entries: (from..=to).map(|i| entry(g, i, term)).collect(),
            hard_state: Some(HardState {
                term: Term(term),
                voted_for: NodeId(1),
                commit_index: LogIndex(to),
            }),
            mutations: if to.is_multiple_of(KV_EVERY_INDEX) {
                vec![KvMutation::Put {
                    slot: KV_SLOT_BASE + g as u16,
                    key: Bytes::from_static(KV_KEY),
                    record: Bytes::from(to.to_string()),
                }]
            } else {
                Vec::new()
            },
            ..GroupWrite::new(GroupId(g))
        })
        .collect();
    (writes, to, term)
}

#[test]
fn crash_child() {
    let Ok(db_path) = std::env::var("SHARDKV_CRASH_DB") else { return };
    if std::env::var("SHARDKV_CRASH_CHILD").as_deref() != Ok("1") {
        return;
    }
    let seed: u64 = std::env::var("SHARDKV_CRASH_SEED").expect("seed").parse().expect("seed");
    let mut rng = Rng(seed);
    let db = Arc::new(NodeDb::open(&db_path).expect("child open"));
    let groups = open_groups(&db);
    let writer = GroupCommitWriter::new(Arc::clone(&db));
    let mut last = groups[0].last_index().expect("last").get();
    let mut term = groups[0].hard_state().term.get().max(1);
    println!("OPENED {last}");
    let started = Instant::now();
    let mut batch = 0u64;
    while started.elapsed() < CHILD_LIFETIME {
        let (writes, to, new_term) = make_batch(last, term, rng.below(8) == 0);
        writer.write_batch(&writes).expect("write batch");
        (last, term) = (to, new_term);
        println!("DURABLE {last}");
        batch += 1;
        if batch.is_multiple_of(COMPACT_EVERY_BATCHES) && last > COMPACT_KEEP_ENTRIES {
            let index = LogIndex(last - COMPACT_KEEP_ENTRIES);
            for g in &groups {
                if g.snapshot_metadata().index < index {
                    let conf = ConfState::with_voters([NodeId(1)]);
                    writer.compact(g.group(), index, conf).expect("compact");
                }
            }
        }
    }
}

/// Opens the database and checks every group; returns the common last index. `seen` says
/// what the killed child printed, for the failure messages.
fn verify(path: &Path, reported: u64, seen: &str) -> u64 {
    let db = Arc::new(NodeDb::open(path).expect("reopen after kill"));
    let groups = open_groups(&db);
    let last = groups[0].last_index().expect("last").get();
    assert!(last >= reported, "reported durable {reported}, found {last}; {seen}");
    let most = reported + ENTRIES_PER_GROUP_PER_BATCH;
    let unreported = format!("found {last}, reported {reported}; {seen}");
    assert!(last <= most, "at most one unreported batch: {unreported}");
    for s in &groups {
        let g = s.group().get();
        assert_eq!(s.last_index().expect("last").get(), last, "group {g}: batches are atomic");
        let first = s.first_index().expect("first");
        let snap = s.snapshot_metadata();
        assert_eq!(first, snap.index.next(), "group {g}");
        assert_eq!(s.term(snap.index), Ok(snap.term), "group {g}: term at the snapshot");
        let log = s.entries(first, LogIndex(last + 1), u64::MAX).expect("entries");
        assert_eq!(log.len() as u64, last + 1 - first.get(), "group {g}: contiguous");
        let mut term = snap.term;
        for e in &log {
            assert!(e.term >= term, "group {g}: terms never decrease at {}", e.index);
            term = e.term;
            assert_eq!(e, &entry(g, e.index.get(), e.term.get()), "group {g}: whole entry");
        }
        assert_eq!(s.hard_state().commit_index, LogIndex(last), "group {g}: hard state");
    }
    drop((groups, db));
    let kv = read_kv_records(path);
    for g in 1..=GROUPS {
        let record = kv.get(&(KV_SLOT_BASE + g as u16)).cloned();
        assert_eq!(record, expected_kv(last), "group {g}: KV with the log");
    }
    last
}

/// The test's KV records, read with redb directly once the node's handle is closed.
fn read_kv_records(path: &Path) -> BTreeMap<u16, Vec<u8>> {
    let db = redb::Database::open(path).expect("open for KV check");
    let txn = db.begin_read().expect("read");
    let kv = txn.open_table(KV).expect("kv table");
    (1..=GROUPS)
        .filter_map(|g| {
            let slot = KV_SLOT_BASE + g as u16;
            let value = kv.get((slot, KV_KEY)).expect("kv get")?;
            Some((slot, value.value().to_vec()))
        })
        .collect()
}

fn spawn_child(path: &Path, seed: u64) -> std::process::Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("SHARDKV_CRASH_CHILD", "1")
        .env("SHARDKV_CRASH_DB", path)
        .env("SHARDKV_CRASH_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

#[test]
fn kill_9_never_loses_a_reported_batch() {
    if std::env::var("SHARDKV_CRASH_CHILD").is_ok() {
        return;
    }
    let seed = std::env::var("SHARDKV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 ^ 0x5EED);
    println!("storage crash test seed: SHARDKV_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.redb");
    let started = Instant::now();
    let mut reported = 0u64;
    for kill in 0..KILLS {
        assert!(started.elapsed() < TOTAL_TIMEOUT, "crash test over its time budget");
        let mut child = spawn_child(&path, rng.next());
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let wanted = rng.below(REPORTS_BEFORE_KILL_MAX + 1);
        let mut printed = Vec::new();
        let mut seen = 0;
        while seen < wanted {
            let line = rx.recv_timeout(LINE_TIMEOUT);
            let Ok(line) = line else {
                let _ = child.kill();
                panic!("kill {kill}: no report from the child within {LINE_TIMEOUT:?}");
            };
            if let Some(n) = line.strip_prefix("DURABLE ") {
                reported = reported.max(n.trim().parse().expect("durable index"));
                seen += 1;
            }
            printed.push(line);
        }
        std::thread::sleep(Duration::from_micros(rng.below(KILL_DELAY_MICROS_MAX)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap child");
        reader.join().expect("reader");
        // Reports that raced the kill still count: they were printed after the commit.
        for line in rx.try_iter() {
            if let Some(n) = line.strip_prefix("DURABLE ") {
                reported = reported.max(n.trim().parse().expect("durable index"));
            }
            printed.push(line);
        }
        printed.retain(|l| l.starts_with("OPENED ") || l.starts_with("DURABLE "));
        let seen = format!("kill {kill} after {wanted} reports; the child printed {printed:?}");
        reported = verify(&path, reported, &seen);
    }
    println!(
        "storage crash test: {KILLS} kills, last index {reported}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
