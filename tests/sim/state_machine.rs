//! The test-only replicated state machine of one group: a `BTreeMap<u64, u64>` with put,
//! incr and cas commands (reads go through ReadIndex), each tagged `(client_id, seq)`, and a
//! session table (client id → last seq and its reply) so a retried command is applied at
//! most once. The session table is part of the snapshot; the applied index is stored with
//! the data (the simulation treats the state machine as persisted atomically with each
//! apply, so a restarted replica resumes from it with `Config.applied`).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shardkv::linearizability::{KvInput, KvOutput};

/// A write a client proposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    Put { key: u64, value: u64 },
    Incr { key: u64, by: u64 },
    Cas { key: u64, expected: Option<u64>, new: u64 },
}

impl WriteOp {
    pub fn input(self) -> KvInput {
        match self {
            WriteOp::Put { key, value } => KvInput::Put(key, value),
            WriteOp::Incr { key, by } => KvInput::Incr(key, by),
            WriteOp::Cas { key, expected, new } => KvInput::Cas(key, expected, new),
        }
    }
}

/// The log payload of a client write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub client_id: u64,
    pub seq: u64,
    pub op: WriteOp,
}

impl Command {
    pub fn encode(&self) -> Bytes {
        Bytes::from(rmp_serde::to_vec(self).expect("command encodes"))
    }
    pub fn decode(data: &[u8]) -> Command {
        rmp_serde::from_slice(data).expect("a command written by the simulation decodes")
    }
}

/// What applying a write answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Put,
    Incr(u64),
    Cas(bool),
}

impl Reply {
    pub fn output(self) -> KvOutput {
        match self {
            Reply::Put => KvOutput::Put,
            Reply::Incr(v) => KvOutput::Incr(v),
            Reply::Cas(b) => KvOutput::Cas(b),
        }
    }
}

/// One group's state machine as one replica holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStateMachine {
    pub data: BTreeMap<u64, u64>,
    /// client id → (last applied seq, its reply).
    pub sessions: BTreeMap<u64, (u64, Reply)>,
    pub applied_index: u64,
}

impl KvStateMachine {
    /// Applies a command at most once per `(client_id, seq)`. A retry of the last seq gets
    /// the recorded reply; an older seq (a stale duplicate) changes nothing.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Option<Reply> {
        self.applied_index = index;
        match self.sessions.get(&cmd.client_id) {
            Some(&(seq, reply)) if seq == cmd.seq => return Some(reply),
            Some(&(seq, _)) if seq > cmd.seq => return None,
            _ => {}
        }
        let reply = self.execute(cmd.op);
        self.sessions.insert(cmd.client_id, (cmd.seq, reply));
        Some(reply)
    }

    fn execute(&mut self, op: WriteOp) -> Reply {
        match op {
            WriteOp::Put { key, value } => {
                self.data.insert(key, value);
                Reply::Put
            }
            WriteOp::Incr { key, by } => {
                let v = self.data.get(&key).copied().unwrap_or(0).wrapping_add(by);
                self.data.insert(key, v);
                Reply::Incr(v)
            }
            WriteOp::Cas { key, expected, new } => {
                let ok = self.data.get(&key).copied() == expected;
                if ok {
                    self.data.insert(key, new);
                }
                Reply::Cas(ok)
            }
        }
    }

    /// A digest of the data and the sessions (not the applied index).
    pub fn digest(&self) -> u64 {
        let mut h = Fnv64::new();
        for (&k, &v) in &self.data {
            h.write_u64(k);
            h.write_u64(v);
        }
        h.write_u64(u64::MAX);
        for (&c, &(seq, reply)) in &self.sessions {
            h.write_u64(c);
            h.write_u64(seq);
            let r = match reply {
                Reply::Put => 1,
                Reply::Incr(v) => 2 ^ (v << 2),
                Reply::Cas(b) => 3 ^ ((b as u64) << 2),
            };
            h.write_u64(r);
        }
        h.finish()
    }

    pub fn snapshot_bytes(&self) -> Bytes {
        Bytes::from(rmp_serde::to_vec(self).expect("state machine encodes"))
    }

    pub fn from_snapshot(data: &[u8]) -> KvStateMachine {
        rmp_serde::from_slice(data).expect("a snapshot written by the simulation decodes")
    }
}

/// 64-bit FNV-1a, for digests of entries and states (deterministic, unlike `DefaultHasher`
/// across Rust versions).
pub struct Fnv64(u64);

impl Fnv64 {
    pub fn new() -> Fnv64 {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}
