//! The sequential specification of Redis `SET`/`GET`/`DEL` on one key, with byte keys and
//! values, for histories recorded against a real cluster (no I/O).

use bytes::Bytes;

use super::Model;

/// A Redis string command on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    /// `SET key value`.
    Set(Bytes, Bytes),
    /// `GET key`.
    Get(Bytes),
    /// `DEL key` (one key: multi-key `DEL` is not a single-key op and cannot be checked
    /// key by key).
    Del(Bytes),
}

/// The reply to a [`RegisterInput`], one variant per command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// `+OK`.
    Set,
    /// A bulk string, or nil for a missing key.
    Get(Option<Bytes>),
    /// The number of keys removed: 0 or 1.
    Del(u64),
}

/// The model of one Redis string key; the state is its value (`None`: missing).
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel;

impl RegisterModel {
    /// The state after `input` and the reply Redis gives.
    pub fn apply(state: &Option<Bytes>, input: &RegisterInput) -> (Option<Bytes>, RegisterOutput) {
        match input {
            RegisterInput::Set(_, value) => (Some(value.clone()), RegisterOutput::Set),
            RegisterInput::Get(_) => (state.clone(), RegisterOutput::Get(state.clone())),
            RegisterInput::Del(_) => (None, RegisterOutput::Del(u64::from(state.is_some()))),
        }
    }
}

impl Model for RegisterModel {
    type Key = Bytes;
    type State = Option<Bytes>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Option<Bytes> {
        None
    }

    fn key(&self, input: &RegisterInput) -> Bytes {
        match input {
            RegisterInput::Set(key, _) | RegisterInput::Get(key) | RegisterInput::Del(key) => {
                key.clone()
            }
        }
    }

    fn is_read_only(&self, input: &RegisterInput) -> bool {
        matches!(input, RegisterInput::Get(_))
    }

    fn step(
        &self,
        state: &Option<Bytes>,
        input: &RegisterInput,
        output: &RegisterOutput,
    ) -> Option<Option<Bytes>> {
        let (next, expected) = Self::apply(state, input);
        assert_eq!(
            std::mem::discriminant(&expected),
            std::mem::discriminant(output),
            "history records reply {output:?} for {input:?}: a recorder bug"
        );
        (expected == *output).then_some(next)
    }

    fn step_unobserved(&self, state: &Option<Bytes>, input: &RegisterInput) -> Option<Bytes> {
        Self::apply(state, input).0
    }

    fn describe(&self, input: &RegisterInput, output: Option<&RegisterOutput>) -> String {
        let call = match input {
            RegisterInput::Set(key, value) => format!("SET {key:?} {value:?}"),
            RegisterInput::Get(key) => format!("GET {key:?}"),
            RegisterInput::Del(key) => format!("DEL {key:?}"),
        };
        match output {
            None => format!("{call} -> unknown"),
            Some(RegisterOutput::Set) => format!("{call} -> OK"),
            Some(RegisterOutput::Get(Some(value))) => format!("{call} -> {value:?}"),
            Some(RegisterOutput::Get(None)) => format!("{call} -> nil"),
            Some(RegisterOutput::Del(removed)) => format!("{call} -> (integer) {removed}"),
        }
    }
}
