//! Throughput of the Raft core alone: three replicas over `MemStorage` in one thread, no
//! I/O, messages handed over directly. The leader proposes a batch of 64-byte entries per
//! Ready cycle; a row runs for a bounded time and reports the entries applied on all three
//! replicas per second, and the messages stepped per second.
//!
//! Run: `cargo bench --bench raft_core` (`RAFT_BENCH_MS=500` shortens each row).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardkv::raft::*;

/// Payload size of one proposed entry.
const ENTRY_BYTES: usize = 64;
/// Batch sizes measured, one row each.
const BATCHES: [usize; 5] = [1, 16, 64, 256, 1024];
/// Default time spent on one row.
const ROW_MS_DEFAULT: u64 = 2000;
/// Log entries kept before the replicas compact their logs (bounds memory on long rows).
const COMPACT_EVERY_ENTRIES: u64 = 200_000;

struct Group {
    nodes: Vec<RawNode<MemStorage>>,
    applied: Vec<u64>,
    queue: VecDeque<Message>,
    msgs_stepped: u64,
}

impl Group {
    fn new() -> Group {
        let conf = ConfState::with_voters((1..=3).map(NodeId));
        let nodes = (1..=3)
            .map(|id| {
                let mut cfg = Config::new(NodeId(id), GroupId(1));
                cfg.rng_seed = id;
                cfg.pre_vote = false;
                RawNode::new(cfg, MemStorage::new_with_conf_state(conf.clone())).expect("node")
            })
            .collect();
        Group { nodes, applied: vec![0; 3], queue: VecDeque::new(), msgs_stepped: 0 }
    }

    /// One Ready of node `i`, persisted, sent and applied.
    fn handle_ready(&mut self, i: usize) -> bool {
        let node = &mut self.nodes[i];
        if !node.has_ready() {
            return false;
        }
        let rd = node.ready();
        let store = node.store_mut();
        if let Some(s) = &rd.snapshot {
            store.apply_snapshot(s.clone()).expect("snapshot");
        }
        store.append(&rd.entries).expect("append");
        if let Some(hs) = rd.hard_state {
            store.set_hard_state(hs);
        }
        if let Some(cs) = &rd.conf_state {
            store.set_conf_state(cs.clone());
        }
        self.applied[i] += rd.committed_entries.len() as u64;
        node.advance(&rd);
        self.queue.extend(rd.messages);
        self.queue.extend(rd.persisted_messages);
        true
    }

    /// Readies and deliveries until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                moved |= self.handle_ready(i);
            }
            while let Some(m) = self.queue.pop_front() {
                moved = true;
                self.msgs_stepped += 1;
                let to = (m.to.get() - 1) as usize;
                self.nodes[to].step(m).expect("step");
            }
            if !moved {
                return;
            }
        }
    }

    fn elect(&mut self) {
        self.nodes[0].campaign();
        self.settle();
        assert_eq!(self.nodes[0].role(), Role::Leader, "node 1 must lead");
    }

    fn compact(&mut self) {
        for n in &mut self.nodes {
            let applied = n.applied_index();
            let conf = n.conf_state().clone();
            let first = n.first_index();
            if applied.get() >= first.get() + COMPACT_EVERY_ENTRIES {
                n.store_mut().compact_to_snapshot(applied, conf, Bytes::new()).expect("compact");
            }
        }
    }
}

struct Row {
    batch: usize,
    entries_per_s: f64,
    msgs_per_s: f64,
}

fn run_row(batch: usize, row: Duration) -> Row {
    let mut g = Group::new();
    g.elect();
    let base = g.applied.iter().copied().min().unwrap_or(0);
    let payload = Bytes::from(vec![7u8; ENTRY_BYTES]);
    let start = Instant::now();
    let msgs_before = g.msgs_stepped;
    while start.elapsed() < row {
        let data = vec![payload.clone(); batch];
        g.nodes[0].propose_batch(data).expect("propose");
        g.settle();
        g.compact();
    }
    let secs = start.elapsed().as_secs_f64();
    let committed_all = g.applied.iter().copied().min().unwrap_or(0) - base;
    Row {
        batch,
        entries_per_s: committed_all as f64 / secs,
        msgs_per_s: (g.msgs_stepped - msgs_before) as f64 / secs,
    }
}

fn main() {
    let row_ms = std::env::var("RAFT_BENCH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROW_MS_DEFAULT);
    let filter: Option<usize> = std::env::var("RAFT_BENCH_BATCH").ok().and_then(|v| v.parse().ok());
    println!("raft core, 3 replicas, {ENTRY_BYTES}-byte entries, {row_ms} ms per row");
    println!("{:>6} {:>14} {:>12}", "batch", "entries/s", "msgs/s");
    for batch in BATCHES.into_iter().filter(|b| filter.is_none_or(|f| f == *b)) {
        let r = run_row(batch, Duration::from_millis(row_ms));
        println!("{:>6} {:>14.0} {:>12.0}", r.batch, r.entries_per_s, r.msgs_per_s);
    }
}
