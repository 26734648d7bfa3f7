//! The sequential specification of the simulation's client ops on `u64` keys and values
//! (no I/O). The simulation writes small unique values, so a read names the write it saw.

use super::Model;

/// A client op of the simulation's workload.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Write `value` under `key`.
    Put(u64, u64),
    /// Read `key`.
    Get(u64),
    /// Add `by` to `key` (a missing key counts as 0, as Redis `INCRBY`) and return the sum.
    Incr(u64, u64),
    /// If `key` holds `expected` (`None`: missing), write `new`; reply whether it did.
    Cas(u64, Option<u64>, u64),
}

/// The reply to a [`KvInput`], one variant per input kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    Put,
    Get(Option<u64>),
    /// The value after the increment.
    Incr(u64),
    /// Whether the swap happened.
    Cas(bool),
}

/// The model of one key of the simulation's store; the state is the key's value.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl KvModel {
    /// The state after `input` and the reply a correct store gives; the single source of
    /// truth for both [`Model::step`] and [`Model::step_unobserved`].
    pub fn apply(state: Option<u64>, input: &KvInput) -> (Option<u64>, KvOutput) {
        match *input {
            KvInput::Put(_, value) => (Some(value), KvOutput::Put),
            KvInput::Get(_) => (state, KvOutput::Get(state)),
            KvInput::Incr(_, by) => {
                // Wrapping: the simulation's values are small; a panic on overflow would
                // report a harness limit as a store bug.
                let sum = state.unwrap_or(0).wrapping_add(by);
                (Some(sum), KvOutput::Incr(sum))
            }
            KvInput::Cas(_, expected, new) if state == expected => (Some(new), KvOutput::Cas(true)),
            KvInput::Cas(..) => (state, KvOutput::Cas(false)),
        }
    }
}

impl Model for KvModel {
    type Key = u64;
    type State = Option<u64>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<u64> {
        None
    }

    fn key(&self, input: &KvInput) -> u64 {
        match *input {
            KvInput::Put(key, _)
            | KvInput::Get(key)
            | KvInput::Incr(key, _)
            | KvInput::Cas(key, ..) => key,
        }
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get(_))
    }

    fn step(&self, state: &Option<u64>, input: &KvInput, output: &KvOutput) -> Option<Self::State> {
        let (next, expected) = Self::apply(*state, input);
        assert_eq!(
            std::mem::discriminant(&expected),
            std::mem::discriminant(output),
            "history records reply {output:?} for {input:?}: a recorder bug"
        );
        (expected == *output).then_some(next)
    }

    fn step_unobserved(&self, state: &Option<u64>, input: &KvInput) -> Option<u64> {
        Self::apply(*state, input).0
    }

    fn describe(&self, input: &KvInput, output: Option<&KvOutput>) -> String {
        let call = match input {
            KvInput::Put(key, value) => format!("put({key}, {value})"),
            KvInput::Get(key) => format!("get({key})"),
            KvInput::Incr(key, by) => format!("incr({key}, {by})"),
            KvInput::Cas(key, expected, new) => format!("cas({key}, {expected:?}, {new})"),
        };
        match output {
            None => format!("{call} -> unknown"),
            Some(KvOutput::Put) => format!("{call} -> ok"),
            Some(KvOutput::Get(value)) => format!("{call} -> {value:?}"),
            Some(KvOutput::Incr(value)) => format!("{call} -> {value}"),
            Some(KvOutput::Cas(swapped)) => format!("{call} -> {swapped}"),
        }
    }
}
