//! Deterministic simulation tests of the Raft core (see `sim/mod.rs`).
//!
//! - `safety_and_liveness_hold_across_seeds`: `SIM_SEEDS` seeds (default 5000) from
//!   `SIM_SEED_BASE` (default fixed, printed); prints ms/seed per tier.
//! - `replay`: `SIM_SEED=<s> cargo test --release --test simulation -- --nocapture replay`
//!   (add `SIM_BUG=<InjectedBug variant>` to replay a mutation seed).
//! - `same_seed_same_run`: the determinism guard.
//! - `regression_seeds_pass`: seeds that once failed (`tests/sim_regressions.txt`).
//! - `catches_*`: the mutation proof, one per `InjectedBug` variant.

mod sim;

use std::collections::BTreeMap;

use shardkv::raft::InjectedBug;

const SEED_BASE_DEFAULT: u64 = 0x5EED_0000;
const SEEDS_DEFAULT: u64 = 5000;
/// A planted bug must be caught within this many seeds.
const MUTATION_SEEDS_MAX: u64 = 200;

fn seed_base() -> u64 {
    sim::env_u64("SIM_SEED_BASE").unwrap_or(SEED_BASE_DEFAULT)
}

#[test]
fn safety_and_liveness_hold_across_seeds() {
    let base = seed_base();
    let count = sim::env_u64("SIM_SEEDS").unwrap_or(SEEDS_DEFAULT);
    println!("simulation: SIM_SEED_BASE={base} SIM_SEEDS={count} threads={}", sim::threads());
    let seeds: Vec<u64> = (base..base + count).collect();
    let start = std::time::Instant::now();
    let results = sim::run_many(&seeds, None);
    let wall_s = start.elapsed().as_secs_f64();
    let mut tiers: BTreeMap<&str, (u64, f64, u64)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut ops = (0, 0, 0);
    let mut counters = sim::world::Counters::default();
    for (seed, r) in seeds.iter().zip(&results) {
        match r {
            Ok(rep) => {
                let t = tiers.entry(rep.tier).or_default();
                *t = (t.0 + 1, t.1 + rep.elapsed_ms, t.2 + rep.messages);
                ops = (ops.0 + rep.ops.0, ops.1 + rep.ops.1, ops.2 + rep.ops.2);
                counters.add(&rep.counters);
            }
            Err(msg) => failures.push((*seed, msg.clone())),
        }
    }
    for (tier, (n, ms, msgs)) in &tiers {
        println!(
            "tier {tier}: {n} seeds, {:.1} ms/seed, {} messages/seed",
            ms / *n as f64,
            msgs / n
        );
    }
    println!(
        "{} seeds in {wall_s:.1} s wall; client ops ok/unknown/fail = {}/{}/{}",
        seeds.len(),
        ops.0,
        ops.1,
        ops.2
    );
    println!("faults and recoveries over all seeds: {counters:?}");
    if count >= 100 {
        // Reads forwarded with an endorsement, and answered on it in groups of three.
        assert!(counters.reads_endorsed > 0, "no read answered on an endorsement: {counters:?}");
        assert!(counters.reads_probed > 0, "no read endorsed by a probed peer: {counters:?}");
    }
    for (seed, msg) in &failures {
        println!("FAILED {msg}\n  replay: {}", sim::replay_command(*seed, None));
    }
    assert!(failures.is_empty(), "{} of {} seeds failed (see above)", failures.len(), seeds.len());
}

/// Seeds that once failed (`tests/sim_regressions.txt`).
fn regression_seeds() -> Vec<u64> {
    include_str!("sim_regressions.txt")
        .lines()
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn regression_seeds_pass() {
    let seeds = regression_seeds();
    assert!(!seeds.is_empty(), "the regression list parses");
    for (seed, r) in seeds.iter().zip(sim::run_many(&seeds, None)) {
        if let Err(msg) = r {
            panic!("{msg}\n  replay: {}", sim::replay_command(*seed, None));
        }
    }
}

#[test]
fn replay() {
    let Some(seed) = sim::env_u64("SIM_SEED") else {
        println!("replay: set SIM_SEED=<seed> (and SIM_BUG=<variant> for a mutation seed)");
        return;
    };
    let bug = sim::env_bug();
    let report = sim::run_seed(seed, bug);
    println!("seed {seed} passed: {report:?}");
}

#[test]
fn same_seed_same_run() {
    let base = seed_base();
    for seed in (base..base + 20).chain([base + 60, base + 96]) {
        let a = sim::run_seed(seed, None);
        let b = sim::run_seed(seed, None);
        assert_eq!((a.trace, a.ops), (b.trace, b.ops), "seed {seed} is not deterministic");
    }
}

fn assert_caught(bug: InjectedBug) {
    let seeds: Vec<u64> = (seed_base()..seed_base() + MUTATION_SEEDS_MAX).collect();
    match sim::first_failure(&seeds, Some(bug)) {
        Some((needed, seed, msg)) => {
            let first_line = msg.lines().next().unwrap_or_default();
            println!("{bug:?}: caught after {needed} seeds by seed {seed}: {first_line}");
            println!("  replay: {}", sim::replay_command(seed, Some(bug)));
        }
        None => panic!("{bug:?} not caught within {MUTATION_SEEDS_MAX} seeds"),
    }
}

#[test]
fn catches_commit_prior_term_by_counting() {
    assert_caught(InjectedBug::CommitPriorTermByCounting);
}

#[test]
fn catches_vote_without_log_check() {
    assert_caught(InjectedBug::VoteWithoutLogCheck);
}

#[test]
fn catches_skip_conflict_truncation() {
    assert_caught(InjectedBug::SkipConflictTruncation);
}

#[test]
fn catches_read_before_noop_commit() {
    assert_caught(InjectedBug::ReadBeforeNoopCommit);
}

#[test]
fn catches_endorsement_without_quorum() {
    assert_caught(InjectedBug::EndorsementWithoutQuorum);
}
