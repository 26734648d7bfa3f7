//! Group-commit throughput of the node database: entries/s and fsyncs/s with 1, 16, 64 and
//! 256 groups writing at once, beside the raw fsync rate of the same disk, in one run.
//! Prints a table; asserts that every batch costs exactly one fsync whatever the group
//! count. Run: `cargo bench --bench storage`.

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

fn batch(groups: u64, next_index: u64) -> Vec<GroupWrite> {
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
    seconds: f64,
}

fn group_commit_row(dir: &Path, groups: u64) -> Row {
    let db = Arc::new(NodeDb::open(dir.join(format!("sync-{groups}.redb"))).expect("open"));
    let writer = GroupCommitWriter::new(Arc::clone(&db));
    let fsyncs_before = db.fsync_count();
    let started = Instant::now();
    let (mut batches, mut next) = (0u64, 1u64);
    while started.elapsed() < ROW_DURATION {
        let before = db.fsync_count();
        writer.write_batch(&batch(groups, next)).expect("write batch");
        assert_eq!(db.fsync_count() - before, 1, "one fsync per batch with {groups} groups");
        next += ENTRIES_PER_GROUP_PER_BATCH;
        batches += 1;
    }
    Row {
        label: format!("write_batch, {groups} groups"),
        groups_per_fsync: groups as f64,
        batches,
        entries: batches * groups * ENTRIES_PER_GROUP_PER_BATCH,
        fsyncs: db.fsync_count() - fsyncs_before,
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
                    let mut w = batch(1, next);
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
        "| {:<28} | {:>7} | {:>9} | {:>8} | {:>12} | {:>12} | {:>14} |",
        "row", "batches", "entries/s", "fsyncs/s", "fsyncs/batch", "groups/fsync", "fsyncs/s / raw"
    );
    println!(
        "|{:-<30}|{:->9}|{:->11}|{:->10}|{:->14}|{:->14}|{:->16}|",
        "", "", "", "", "", "", ""
    );
    let mut rows: Vec<Row> =
        [1, 16, 64, 256].iter().map(|&g| group_commit_row(dir.path(), g)).collect();
    rows.push(threaded_row(dir.path()));
    let raw_after = raw_fsyncs_per_s(dir.path());
    let raw = (raw_before + raw_after) / 2.0;
    for r in &rows {
        let fsyncs_per_s = r.fsyncs as f64 / r.seconds;
        println!(
            "| {:<28} | {:>7} | {:>9.0} | {:>8.0} | {:>12.2} | {:>12.1} | {:>14.2} |",
            r.label,
            r.batches,
            r.entries as f64 / r.seconds,
            fsyncs_per_s,
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
