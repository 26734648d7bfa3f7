//! Linearizability checking of client histories of key-value operations.
//!
//! This module owns the history types ([`Operation`], [`Outcome`]), the [`Model`] trait a
//! sequential specification implements, the checker [`check`], and two ready models:
//! [`KvModel`] for the simulation's client ops and [`RegisterModel`] for Redis-style
//! `SET`/`GET`/`DEL`. It is pure computation: it must never do I/O, read clocks or spawn
//! threads, so the deterministic simulation and the real-cluster tests can share it.
//!
//! # Algorithm
//! A history is linearizable if its operations can be put in one sequential order that
//! respects real time (an op that returned before another was called comes first) and in
//! which every output is what the sequential model produces (Herlihy & Wing 1990).
//!
//! - **P-compositionality** (Herlihy & Wing 1990, §3.3; used by Porcupine): linearizability
//!   is local, so a history is linearizable iff each per-key sub-history is. [`check`]
//!   partitions by [`Model::key`] and searches each key alone; this turns one exponential
//!   search into many small ones.
//! - **Wing & Gong 1993** search, with **Lowe 2017** memoization (as in Porcupine): the
//!   call and return events sit in a doubly linked list sorted by time. Walking it, a call
//!   whose op the model accepts is *lifted* (both of its events unlinked) and the search
//!   restarts from the head; reaching a return event means its op could not be placed in
//!   time, so the last choice is undone. A set of `(linearized ops, model state)` pairs
//!   already explored prunes configurations reached by another order (Lowe's key insight:
//!   the future of the search depends only on that pair). The search is iterative, with an
//!   explicit stack, so history length never threatens the call stack.
//! - **Unknown outcomes** (Jepsen's `info`): an op that timed out may have taken effect at
//!   any point after its call, or never. It gets no return event (return time = +infinity)
//!   and its output is unconstrained ([`Model::step_unobserved`]). The search succeeds once
//!   every *completed* op is linearized: any unknown ops still pending can be placed after
//!   all of them, where nobody observes them, which is the same as skipping them.
//!   Two refinements keep unknown ops from multiplying configurations (each pending
//!   unknown write could otherwise be consumed or not at every point, 2^n subsets): the
//!   memo treats a configuration as already covered when one with the same completed ops
//!   and state, but a *subset* of its unknown ops, was entered (consuming an unknown op
//!   only removes options); and unknown calls are tried after the completed calls of their
//!   stretch of the event list, so "not yet" is explored before "now".
//! - **Failed ops** ([`Outcome::Fail`], definitely not applied) take no part: [`check`]
//!   ignores them, exactly as if the caller had dropped them. That their effects are never
//!   observed (e.g. a failed write's unique value never read) is a separate check that the
//!   caller runs; this module does not judge it.
//!
//! Ties: events are sorted by time with calls before returns at equal times, so an op that
//! returned at `t` and one called at `t` count as concurrent. Coarse clocks (simulation
//! ticks) thus never produce a false "illegal".
//!
//! # Bounds
//! Each key's search is bounded by `steps_per_key_max` model steps (see
//! [`STEPS_PER_KEY_MAX_DEFAULT`]); running out yields [`CheckResult::Inconclusive`] rather
//! than an unbounded wait. The memo set holds at most one entry per step, so memory is
//! bounded by the same number.
//!
//! # Cost
//! Measured on a 2-core build machine (release): a linearizable 3-client history of 1,000
//! ops on 10 keys checks in 0.5–2.5 ms (4–20 % unknown outcomes), 1,000 ops on one key in
//! about 3 ms. Refuting is the costly direction, since every configuration must be tried:
//! the same histories with an impossible read planted at the end of each key take 0.4 ms
//! to 0.6 s (≈ 250 ops per key, 4–10 % unknown); a single key of 1,000 ops with a dozen
//! unknown writes exceeds the default budget (≈ 2 s) and comes back inconclusive. Keep
//! histories to a few hundred ops per key, as the simulation plans.
//!
//! # Example
//! ```
//! use shardkv::linearizability::{
//!     check, CheckResult, KvInput, KvModel, KvOutput, Operation, Outcome,
//!     STEPS_PER_KEY_MAX_DEFAULT,
//! };
//! let history = vec![
//!     Operation {
//!         client_id: 1,
//!         input: KvInput::Put(7, 1),
//!         call: 0,
//!         outcome: Outcome::Ok { ret: 2, output: KvOutput::Put },
//!     },
//!     Operation {
//!         client_id: 2,
//!         input: KvInput::Get(7),
//!         call: 3,
//!         outcome: Outcome::Ok { ret: 4, output: KvOutput::Get(None) },
//!     },
//! ];
//! // The read started after the write completed, yet missed it: not linearizable.
//! let result = check(&KvModel, &history, STEPS_PER_KEY_MAX_DEFAULT);
//! assert!(matches!(result, CheckResult::Illegal { key: 7, .. }));
//! ```

pub mod kv_model;
mod register_model;
mod search;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

pub use kv_model::{KvInput, KvModel, KvOutput};
pub use register_model::{RegisterInput, RegisterModel, RegisterOutput};

/// Default bound on model steps per key. A well-formed simulation history (≤ ~300 ops per
/// key, ≤ 8 concurrent clients) needs a few thousand; ten million is about a second of
/// search for one key, which makes an inconclusive result a sign of a pathological history
/// (too many concurrent or unknown ops) rather than of a tight budget.
pub const STEPS_PER_KEY_MAX_DEFAULT: u64 = 10_000_000;

/// Ops shown from the end of the longest linearizable prefix in an explanation, so a long
/// history yields a readable message of bounded size.
pub const EXPLANATION_PREFIX_OPS_MAX: usize = 32;

/// A sequential specification of one key's behaviour.
///
/// The checker partitions a history by [`Model::key`] and runs the model on each key alone,
/// so [`Model::State`] is the state of one key and [`Model::init`] its initial state.
/// States are hashed into the memo set: keep them small.
pub trait Model {
    /// The partition an input belongs to; ops on different keys never interact.
    type Key: Clone + Ord + Debug;
    /// The state of one key.
    type State: Clone + Eq + Hash + Debug;
    /// An operation as the client issued it.
    type Input;
    /// The reply the client saw.
    type Output;

    /// The state of a key that no op has touched yet.
    fn init(&self) -> Self::State;

    /// The key (partition) `input` operates on.
    fn key(&self, input: &Self::Input) -> Self::Key;

    /// The state after applying `input` to `state` and replying `output`, or `None` if the
    /// specification cannot produce `output` from `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// The state after applying `input` to `state` when the reply was never seen (an
    /// [`Outcome::Unknown`] op). Every input is accepted; the model must be deterministic
    /// for unobserved ops (one successor state).
    fn step_unobserved(&self, state: &Self::State, input: &Self::Input) -> Self::State;

    /// Whether `input` never changes the state (a read). Unknown-outcome reads constrain
    /// nothing, so [`check`] drops them instead of searching over their placements.
    fn is_read_only(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }

    /// A short human-readable form of an op for explanations, e.g. `get(7) -> Some(3)`;
    /// `output` is `None` for an unknown outcome.
    fn describe(&self, input: &Self::Input, output: Option<&Self::Output>) -> String;
}

/// One client operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client that issued the op; used in explanations only.
    pub client_id: u64,
    /// What the client asked for.
    pub input: I,
    /// When the client issued the op, in the history's time unit (ticks, nanoseconds…).
    pub call: u64,
    /// How the op ended.
    pub outcome: Outcome<O>,
}

/// How an operation ended, as seen by its client (Jepsen's `ok` / `info` / `fail`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<O> {
    /// Completed at time `ret` (≥ `call`) with reply `output`.
    Ok { ret: u64, output: O },
    /// Timed out or lost its connection after it may have been proposed: it may take effect
    /// at any time after `call`, or never.
    Unknown,
    /// Definitely not applied (e.g. rejected before proposing). [`check`] ignores these;
    /// callers verify separately that their effects are never observed.
    Fail,
}

/// The verdict of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult<K> {
    /// Every key's sub-history is linearizable.
    Ok,
    /// The sub-history of `key` has no linearization. `explanation` lists the longest
    /// linearizable prefix the search found and the op that could not be placed after it.
    Illegal { key: K, explanation: String },
    /// The search for `key` ran out of its step budget before deciding (and no key was
    /// found illegal).
    Inconclusive { key: K },
}

/// Checks that `history` is linearizable with respect to `model`.
///
/// Keys are searched one at a time in key order, each within `steps_per_key_max` model
/// steps. The first illegal key is reported; otherwise the first inconclusive key, if any.
/// [`Outcome::Fail`] ops are ignored.
///
/// # Panics
/// If a completed op returns before it was called (`ret < call`): a broken recorder.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    steps_per_key_max: u64,
) -> CheckResult<M::Key> {
    let mut inconclusive = None;
    for (key, ops) in partition_by_key(model, history) {
        match search::check_partition(model, &ops, steps_per_key_max) {
            search::Verdict::Linearizable => {}
            search::Verdict::Illegal(explanation) => {
                return CheckResult::Illegal { key, explanation };
            }
            search::Verdict::OutOfSteps => {
                inconclusive.get_or_insert(key);
            }
        }
    }
    match inconclusive {
        Some(key) => CheckResult::Inconclusive { key },
        None => CheckResult::Ok,
    }
}

/// The ops of one key, in history order.
type SubHistory<'h, M> = Vec<&'h Operation<<M as Model>::Input, <M as Model>::Output>>;

/// Splits a history into per-key sub-histories (P-compositionality), dropping failed ops
/// and unknown-outcome reads (neither can constrain a linearization).
/// A `BTreeMap` keeps the key order, and so the verdict, deterministic.
fn partition_by_key<'h, M: Model>(
    model: &M,
    history: &'h [Operation<M::Input, M::Output>],
) -> BTreeMap<M::Key, SubHistory<'h, M>> {
    let mut partitions: BTreeMap<M::Key, Vec<_>> = BTreeMap::new();
    for op in history {
        if let Outcome::Ok { ret, .. } = op.outcome {
            assert!(
                ret >= op.call,
                "client {} op {} returned at {ret} before its call at {}",
                op.client_id,
                model.describe(&op.input, None),
                op.call
            );
        }
        let unobserved_read =
            matches!(op.outcome, Outcome::Unknown) && model.is_read_only(&op.input);
        if matches!(op.outcome, Outcome::Fail) || unobserved_read {
            continue;
        }
        partitions.entry(model.key(&op.input)).or_default().push(op);
    }
    partitions
}
