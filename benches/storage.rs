//! Group-commit throughput of the node database: entries/s and fsyncs/s with 1, 16, 64 and
//! 256 groups writing at once, beside the raw fsync rate of the same disk, in one run. Log
//! appends go to the write-ahead log; the `redb` rows give each write an applied index too,
//! which sends every batch through a redb transaction (the path all batches took before the
//! log). Prints a table; asserts that every batch costs exactly one fsync whatever the group
//! count, plus the transactions that absorb the log into redb past its bound (counted
//! apart). Run: `cargo bench --bench storage`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardkv::raft::{Entry, EntryPayload, GroupId, HardState, LogIndex, Term};
use shardkv::storage::{GroupCommitWriter, GroupWrite, NodeDb};

/// How long each row runs.
const ROW_DURATION: Duration = Duration::from_secs(3);
/// Entries each group adds to each batch.
const ENTRIES_PER_GROUP_PER_BATCH: u64 = 4;
/// Payload of each entry.
const ENTRY_PAYLOAD_BYTES: usize = 128;
/// What the raw fsync loop writes before each `sync_data`.
const RAW_WRITE_BYTES: usize = 4096;
/// Submitting threads of the threaded-writer row.
const THREADED_SUBMITTERS: u64 = 64;

fn raw_fsyncs_per_s(dir: &Path) -> f64 {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.join("raw"))
        .expect("raw file");
    let block = vec![0xA5u8; RAW_WRITE_BYTES];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < ROW_DURATION {
        file.write_all(&block).expect("write");
        file.sync_data().expect("sync_data");
        syncs += 1;
    }
    syncs as f64 / started.elapsed().as_secs_f64()
}

fn batch(groups: u64, next_index: u64, redb: bool) -> Vec<GroupWrite> {
    let payload = Bytes::from(vec![b'x'; ENTRY_PAYLOAD_BYTES]);
    let last = next_index + ENTRIES_PER_GROUP_PER_BATCH - 1;
    (1..=groups)
        .map(|g| GroupWrite {
            entries: (next_index..=last)
                .map(|i| Entry {
                    term: Term(1),
                    index: LogIndex(i),
                    payload: EntryPayload::Normal(payload.clone()),
                })
                .collect(),
            hard_state: Some(HardState {
                term: Term(1),
                commit_index: LogIndex(last),
                ..HardState::default()
            }),
            applied_index: redb.then_some(LogIndex(next_index)),
            ..GroupWrite::new(GroupId(g))
        })
        .collect()
}

struct Row {
    label: String,
    /// Group writes that shared one fsync, on average.
    groups_per_fsync: f64,
    batches: u64,
    entries: u64,
    fsyncs: u64,
    /// Fsyncs of transactions that absorbed the write-ahead log, among `fsyncs`.
    absorbs: u64,
    seconds: f64,
}

fn group_commit_row(dir: &Path, groups: u64, redb: bool) -> Row {
    let path = if redb { "redb" } else { "log" };
    let db = Arc::new(NodeDb::open(dir.join(format!("sync-{path}-{groups}.redb"))).expect("open"));
    let writer = GroupCommitWriter::new(Arc::clone(&db));
    let fsyncs_before = db.fsync_count();
    let absorbs_before = db.absorption_count();
    let started = Instant::now();
    let (mut batches, mut next) = (0u64, 1u64);
    while started.elapsed() < ROW_DURATION {
        let before = db.fsync_count() - db.absorption_count();
        writer.write_batch(&batch(groups, next, redb)).expect("write batch");
        let after = db.fsync_count() - db.absorption_count();
        assert_eq!(after - before, 1, "one fsync per batch with {groups} groups");
        next += ENTRIES_PER_GROUP_PER_BATCH;
        batches += 1;
    }
    Row {
        label: format!("write_batch, {groups} groups, {path}"),
        groups_per_fsync: groups as f64,
        batches,
        entries: batches * groups * ENTRIES_PER_GROUP_PER_BATCH,
        fsyncs: db.fsync_count() - fsyncs_before,
        absorbs: db.absorption_count() - absorbs_before,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Every submitter is one group writing its own entries and waiting for each answer, as a
/// group's Ready loop does; the writer thread batches whatever is queued.
fn threaded_row(dir: &Path) -> Row {
    let db = Arc::new(NodeDb::open(dir.join("threaded.redb")).expect("open"));
    let threaded = Arc::new(GroupCommitWriter::new(Arc::clone(&db)).spawn().expect("spawn"));
    let started = Instant::now();
    let fsyncs_before = db.fsync_count();
    let submitters: Vec<_> = (1..=THREADED_SUBMITTERS)
        .map(|g| {
            let threaded = Arc::clone(&threaded);
            std::thread::spawn(move || {
                let mut next = 1;
                let mut writes = 0u64;
                while started.elapsed() < ROW_DURATION {
                    let mut w = batch(1, next, false);
                    w[0].group = GroupId(g);
                    threaded.write(w).expect("write");
                    next += ENTRIES_PER_GROUP_PER_BATCH;
                    writes += 1;
                }
                writes
            })
        })
        .collect();
    let writes: u64 = submitters.into_iter().map(|s| s.join().expect("submitter")).sum();
    let fsyncs = db.fsync_count() - fsyncs_before;
    Row {
        label: format!("threaded, {THREADED_SUBMITTERS} submitters"),
        groups_per_fsync: writes as f64 / fsyncs.max(1) as f64,
        batches: fsyncs,
        entries: writes * ENTRIES_PER_GROUP_PER_BATCH,
        fsyncs,
        absorbs: db.absorption_count(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The disk is shared: measure the raw rate before and after the rows, and compare
    // against their mean.
    let raw_before = raw_fsyncs_per_s(dir.path());
    println!(
        "entries of {ENTRY_PAYLOAD_BYTES} B, {ENTRIES_PER_GROUP_PER_BATCH} per group per batch, \
         {} s per row\n",
        ROW_DURATION.as_secs()
    );
    println!(
        "| {:<34} | {:>7} | {:>9} | {:>8} | {:>7} | {:>12} | {:>12} | {:>14} |",
        "row",
        "batches",
        "entries/s",
        "fsyncs/s",
        "absorbs",
        "fsyncs/batch",
        "groups/fsync",
        "fsyncs/s / raw"
    );
    println!(
        "|{:-<36}|{:->9}|{:->11}|{:->10}|{:->9}|{:->14}|{:->14}|{:->16}|",
        "", "", "", "", "", "", "", ""
    );
    let mut rows: Vec<Row> = Vec::new();
    for g in [1, 16, 64, 256] {
        rows.push(group_commit_row(dir.path(), g, false));
        rows.push(group_commit_row(dir.path(), g, true));
    }
    rows.push(threaded_row(dir.path()));
    let raw_after = raw_fsyncs_per_s(dir.path());
    let raw = (raw_before + raw_after) / 2.0;
    for r in &rows {
        let fsyncs_per_s = r.fsyncs as f64 / r.seconds;
        println!(
            "| {:<34} | {:>7} | {:>9.0} | {:>8.0} | {:>7} | {:>12.2} | {:>12.1} | {:>14.2} |",
            r.label,
            r.batches,
            r.entries as f64 / r.seconds,
            fsyncs_per_s,
            r.absorbs,
            r.fsyncs as f64 / r.batches.max(1) as f64,
            r.groups_per_fsync,
            fsyncs_per_s / raw,
        );
    }
    println!(
        "\nraw fsync (write {RAW_WRITE_BYTES} B + sync_data): {raw_before:.0}/s before the rows, \
         {raw_after:.0}/s after; ratios use the mean {raw:.0}/s"
    );
}
