//! Deterministic simulation of shardkv's Raft core: N nodes × M groups in one thread from
//! one seed, with network and node faults, clients with retries, invariants checked at
//! every step, a liveness phase, and a linearizability check of every group's history.
//!
//! Modules: `rng` (the seeded stream), `network` (codec, links, faults), `state_machine`
//! (the test-only KV store with sessions), `workload` (clients), `history` (recording and
//! the linearizability check), `invariants` (one file per safety property), `faults`
//! (swarm fault mix and schedule), `world` (nodes, Ready loop, crash and restart),
//! `liveness` (the convergence goal), and this file: seeds → shapes, running a seed,
//! running many in parallel.
//!
//! A seed decides everything: its tier (shape), its fault mix, its client load, and the
//! schedule. The state machine counts as persisted together with each apply, so a restart
//! resumes from the state machine's applied index (`Config.applied`).

pub mod faults;
pub mod history;
pub mod invariants;
pub mod liveness;
pub mod network;
pub mod rng;
pub mod state_machine;
pub mod workload;
pub mod world;

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::Instant;

use shardkv::raft::{InjectedBug, ReadMode};

use faults::{Allowed, FaultMix};
use rng::SimRng;
use workload::ClientParams;
use world::{Shape, World};

/// What one passing seed measured.
#[derive(Clone, Debug)]
pub struct SeedReport {
    pub tier: &'static str,
    pub elapsed_ms: f64,
    pub messages: u64,
    pub ops: (usize, usize, usize),
    pub trace: u64,
    pub counters: world::Counters,
}

/// The tier (shape) of a seed: 60 % small, 36 % medium, 4 % large.
fn draw_shape(seed: u64, rng: &mut SimRng, bug: Option<InjectedBug>) -> (Shape, Allowed) {
    let (tier, nodes, groups, fault_ticks, node_faults) = match seed % 100 {
        0..=59 => ("S", 3, rng.range(1, 2), 500, false),
        60..=95 => ("M", if rng.percent(50) { 3 } else { 5 }, rng.range(1, 4), 1000, true),
        _ => ("L", if rng.percent(50) { 5 } else { 7 }, rng.range(4, 8), 500, true),
    };
    let check_quorum = rng.percent(75);
    let read_mode =
        if check_quorum && rng.percent(30) { ReadMode::LeaseBased } else { ReadMode::Safe };
    let shape = Shape {
        tier,
        nodes,
        groups: groups as usize,
        fault_ticks,
        liveness_ticks_max: 600,
        pre_vote: rng.percent(75),
        check_quorum,
        read_mode,
        entries_bytes_per_msg_max: if rng.percent(50) { 1 } else { 512 },
        bug,
    };
    (shape, Allowed { node_faults })
}

fn draw_clients(rng: &mut SimRng) -> ClientParams {
    ClientParams {
        clients_per_group: rng.range(1, 4) as usize,
        keys_per_group: rng.range(1, 4),
        think_ticks_max: rng.range(0, 6),
        read_pct: rng.range(10, 50),
        retry_ticks: rng.range(8, 30),
        give_up_ticks: rng.range(60, 200),
    }
}

/// Builds the world of `seed` (with `bug` planted in every replica, if any).
pub fn build_world(seed: u64, bug: Option<InjectedBug>) -> World {
    let mut rng = SimRng::new(seed);
    let (mut shape, allowed) = draw_shape(seed, &mut rng, bug);
    let mut mix = FaultMix::draw(&mut rng, allowed);
    if !shape.check_quorum {
        // A removed server that never learns of its removal disrupts the group unless
        // voters ignore it while they hear from a leader (dissertation §4.2.3).
        mix.membership = false;
    }
    let mut clients = draw_clients(&mut rng);
    if let Some(bug) = bug {
        tune_for_bug(bug, &mut shape, &mut mix, &mut clients);
    }
    World::new(seed, shape, mix, clients, rng)
}

/// Makes the planted bug reachable: leader changes while entries are uncommitted and
/// followers acknowledge one entry at a time (Figure 8), and reads right after elections
/// with writes pending.
fn tune_for_bug(bug: InjectedBug, shape: &mut Shape, mix: &mut FaultMix, c: &mut ClientParams) {
    mix.isolate_leader = true;
    mix.partitions = true;
    mix.crashes = true;
    mix.fault_gap_ticks = mix.fault_gap_ticks.min(15);
    mix.fault_len_ticks_max = mix.fault_len_ticks_max.min(40);
    c.clients_per_group = c.clients_per_group.max(3);
    c.think_ticks_max = 0;
    match bug {
        InjectedBug::CommitPriorTermByCounting => {
            shape.entries_bytes_per_msg_max = 1;
            mix.link.loss_pct = mix.link.loss_pct.max(20);
            c.read_pct = c.read_pct.min(20);
        }
        InjectedBug::ReadBeforeNoopCommit => mix.transfers = true,
        InjectedBug::EndorsementWithoutQuorum => {
            // Two voters of three are a quorum: only bigger groups can show the bug, when a
            // partition leaves a deposed leader with a follower still in its term (not alone,
            // not crashed) and many reads go through that follower.
            shape.nodes = shape.nodes.max(5);
            c.read_pct = c.read_pct.max(60);
            c.clients_per_group = c.clients_per_group.max(6);
            mix.isolate_leader = false;
            mix.crashes = false;
        }
        InjectedBug::VoteWithoutLogCheck | InjectedBug::SkipConflictTruncation => {}
    }
}

/// Runs one seed to the end; panics on any violation (message starts with the seed).
pub fn run_seed(seed: u64, bug: Option<InjectedBug>) -> SeedReport {
    let start = Instant::now();
    let mut w = build_world(seed, bug);
    w.plan.active = true;
    for _ in 0..w.shape.fault_ticks {
        w.step_tick();
    }
    w.heal_everything();
    w.workload.start_liveness(w.shape.groups, w.tick);
    let mut converged = w.converged();
    let mut left = w.shape.liveness_ticks_max;
    while converged.is_err() && left > 0 {
        w.step_tick();
        left -= 1;
        converged = w.converged();
    }
    if let Err(what) = converged {
        panic!(
            "seed {seed}: LIVENESS: not converged {} ticks after healing: {what}",
            w.shape.liveness_ticks_max
        );
    }
    w.workload.history.check_linearizable(seed);
    SeedReport {
        tier: w.shape.tier,
        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
        messages: w.net.delivered_messages,
        ops: w.workload.history.counts(),
        trace: w.net.trace,
        counters: world::Counters {
            elections: w.checks.groups.iter().map(|g| g.leaders.len() as u64).sum(),
            ..w.counters
        },
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs a seed, turning a panic into `Err(message)` without printing it.
pub fn try_seed(seed: u64, bug: Option<InjectedBug>) -> Result<SeedReport, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| run_seed(seed, bug)));
    QUIET.with(|q| q.set(false));
    result.map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else if let Some(s) = payload.downcast_ref::<&str>() {
            s.to_string()
        } else {
            format!("seed {seed}: panicked")
        }
    })
}

/// The command that replays `seed` (with `bug` planted, if any).
pub fn replay_command(seed: u64, bug: Option<InjectedBug>) -> String {
    let bug = bug.map(|b| format!("SIM_BUG={b:?} ")).unwrap_or_default();
    format!("{bug}SIM_SEED={seed} cargo test --release --test simulation -- --nocapture replay")
}

/// Worker threads: at most 2 (the CI machine's cores).
pub fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(2)
}

/// Runs every seed on `threads()` workers pulling from an atomic counter.
pub fn run_many(seeds: &[u64], bug: Option<InjectedBug>) -> Vec<Result<SeedReport, String>> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![None; seeds.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads() {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = seeds.get(i) else { break };
                let r = try_seed(seed, bug);
                results.lock().expect("results lock")[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().expect("results lock");
    results.into_iter().map(|r| r.expect("every seed ran")).collect()
}

/// Runs seeds in order until one fails; returns (seeds run, the failing seed and message).
/// Deterministic: every seed before the first failing one is run.
pub fn first_failure(seeds: &[u64], bug: Option<InjectedBug>) -> Option<(usize, u64, String)> {
    let next = AtomicUsize::new(0);
    let best = AtomicU64::new(u64::MAX);
    let found = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads() {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= seeds.len() || i as u64 > best.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(msg) = try_seed(seeds[i], bug) {
                    best.fetch_min(i as u64, Ordering::Relaxed);
                    found.lock().expect("lock").push((i, seeds[i], msg));
                }
            });
        }
    });
    let mut found = found.into_inner().expect("lock");
    found.sort_by_key(|f| f.0);
    found.into_iter().next().map(|(i, seed, msg)| (i + 1, seed, msg))
}

/// Reads a `u64` from the environment.
pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Parses `SIM_BUG`.
pub fn env_bug() -> Option<InjectedBug> {
    let v = std::env::var("SIM_BUG").ok()?;
    [
        InjectedBug::CommitPriorTermByCounting,
        InjectedBug::VoteWithoutLogCheck,
        InjectedBug::SkipConflictTruncation,
        InjectedBug::ReadBeforeNoopCommit,
        InjectedBug::EndorsementWithoutQuorum,
    ]
    .into_iter()
    .find(|b| format!("{b:?}") == v)
}
