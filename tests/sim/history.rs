//! The record of every client op of every group (invoke time, completion time, outcome) and
//! the end-of-seed linearizability check, per group and partitioned per key by the shared
//! checker in `shardkv::linearizability`.

use shardkv::linearizability::{
    check, CheckResult, KvInput, KvModel, KvOutput, Operation, Outcome, STEPS_PER_KEY_MAX_DEFAULT,
};

/// The ops of every group, in invocation order.
#[derive(Default)]
pub struct History {
    groups: Vec<Vec<Operation<KvInput, KvOutput>>>,
}

/// Where an op sits in the history, to complete it later.
#[derive(Clone, Copy, Debug)]
pub struct OpRef {
    group: usize,
    index: usize,
}

impl History {
    pub fn new(groups: usize) -> History {
        History { groups: (0..groups).map(|_| Vec::new()).collect() }
    }

    /// Records an invocation; the outcome stays `Unknown` until completed or failed.
    pub fn invoke(&mut self, group: usize, client_id: u64, input: KvInput, call: u64) -> OpRef {
        let ops = &mut self.groups[group];
        ops.push(Operation { client_id, input, call, outcome: Outcome::Unknown });
        OpRef { group, index: ops.len() - 1 }
    }

    pub fn complete(&mut self, at: OpRef, ret: u64, output: KvOutput) {
        self.groups[at.group][at.index].outcome = Outcome::Ok { ret, output };
    }

    /// The op was never accepted by any node: definitely not applied.
    pub fn fail(&mut self, at: OpRef) {
        self.groups[at.group][at.index].outcome = Outcome::Fail;
    }

    /// (completed, unknown, failed) counts over all groups.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for op in self.groups.iter().flatten() {
            match op.outcome {
                Outcome::Ok { .. } => c.0 += 1,
                Outcome::Unknown => c.1 += 1,
                Outcome::Fail => c.2 += 1,
            }
        }
        c
    }

    /// Panics with the seed unless every group's history is linearizable.
    pub fn check_linearizable(&self, seed: u64) {
        for (g, ops) in self.groups.iter().enumerate() {
            match check(&KvModel, ops, STEPS_PER_KEY_MAX_DEFAULT) {
                CheckResult::Ok => {}
                CheckResult::Illegal { key, explanation } => panic!(
                    "seed {seed}: NOT LINEARIZABLE group {} key {key}:\n{explanation}",
                    g + 1
                ),
                CheckResult::Inconclusive { key } => panic!(
                    "seed {seed}: linearizability check inconclusive for group {} key {key} \
                     ({} ops): shrink the workload",
                    g + 1,
                    ops.len()
                ),
            }
        }
    }
}
