//! The write commands as they travel in the Raft log. The leader builds them: it checks
//! syntax and converts relative TTLs to absolute deadlines with its clock, so applying a
//! command never reads a clock and every replica computes the same result. Owns the
//! shapes only; never applies anything.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Client id of requests that need no deduplication (proposals the leader makes itself,
/// such as `DeleteExpired`); they never create a session.
pub const NO_CLIENT_ID: u64 = 0;

/// One proposal: a client's command with its request id and the leader's clock.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Who sent it; `NO_CLIENT_ID` for internal proposals.
    pub client_id: u64,
    /// Increases by one per request of the client; a retry keeps its seq.
    pub seq: u64,
    /// Leader's unix clock at proposal: every expiry decision of the apply uses it.
    pub now_ms: u64,
    pub command: KvCommand,
}

/// SET's NX / XX.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetCondition {
    Always,
    /// NX: only when the key does not exist.
    IfAbsent,
    /// XX: only when the key exists.
    IfPresent,
}

/// EXPIRE's options. A key without TTL counts as an infinite TTL for GT and LT, so
/// `XX GT` is the same as `GT`; `XX LT` is not the same as `LT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpireCondition {
    Always,
    /// NX: only when the key has no TTL.
    Nx,
    /// XX: only when the key has a TTL.
    Xx,
    /// GT: only when the new deadline is later than the current one.
    Gt,
    /// LT: only when the new deadline is earlier than the current one (or there is none).
    Lt,
    /// XX and LT together.
    XxLt,
}

/// What GETEX does to the TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GetExTtl {
    /// No option: a plain read (kept for completeness; the leader may serve it as a read).
    Keep,
    /// PERSIST.
    Persist,
    /// EX/PX/EXAT/PXAT converted to an absolute deadline.
    At { deadline_ms: u64 },
}

/// A write command. Keys of a multi-key command belong to one group; RENAME needs one slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KvCommand {
    Set {
        key: Bytes,
        value: Bytes,
        expire_at_ms: Option<u64>,
        keep_ttl: bool,
        condition: SetCondition,
        get: bool,
    },
    GetSet {
        key: Bytes,
        value: Bytes,
    },
    GetDel {
        key: Bytes,
    },
    GetEx {
        key: Bytes,
        ttl: GetExTtl,
    },
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    Append {
        key: Bytes,
        value: Bytes,
    },
    /// INCR, DECR, INCRBY, DECRBY (the leader negates DECRBY's amount).
    IncrBy {
        key: Bytes,
        delta: i64,
    },
    IncrByFloat {
        key: Bytes,
        delta: f64,
    },
    /// DEL and UNLINK.
    Del {
        keys: Vec<Bytes>,
    },
    /// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT; a deadline not after `now_ms` deletes the key.
    Expire {
        key: Bytes,
        deadline_ms: u64,
        condition: ExpireCondition,
    },
    Persist {
        key: Bytes,
    },
    Rename {
        key: Bytes,
        new_key: Bytes,
    },
    RenameNx {
        key: Bytes,
        new_key: Bytes,
    },
    MSet {
        pairs: Vec<(Bytes, Bytes)>,
    },
    MSetNx {
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// SETBIT: grows the string with zeros to reach `offset`; answers the old bit.
    SetBit {
        key: Bytes,
        offset: u64,
        bit: bool,
    },
    /// BITOP: `dest` becomes the operation over `keys` (a missing one reads as empty), or
    /// is deleted when the result is empty; answers the result's length.
    BitOp {
        op: crate::kv::bits::BitOpKind,
        dest: Bytes,
        keys: Vec<Bytes>,
    },
    /// BITFIELD with a SET or INCRBY: the string grows with zeros to reach every field
    /// they write (a missing key becomes one, even if every write fails under `OVERFLOW
    /// FAIL`), then the operations run in order (`bits::bitfield`).
    BitField {
        key: Bytes,
        ops: Vec<crate::kv::bits::FieldOp>,
    },
    /// RESTORE of a DUMP payload the receiving node decoded: `key` becomes `value` with
    /// `deadline_ms` (one already passed leaves it absent), unless it exists and not
    /// `replace` (`-BUSYKEY`).
    Restore {
        key: Bytes,
        value: Bytes,
        deadline_ms: Option<u64>,
        replace: bool,
    },
    /// COPY: `dest` becomes a copy of `source`, deadline included, if `source` exists and
    /// `dest` does not (or `replace`); answers 1 if it copied.
    Copy {
        source: Bytes,
        dest: Bytes,
        replace: bool,
    },
    /// FLUSHALL/FLUSHDB of the slots `slot_first..=slot_last` of a group.
    FlushSlots {
        slot_first: u16,
        slot_last: u16,
    },
    /// Delete `key` if its deadline is still `deadline_ms` and has passed: the leader's
    /// active expiry, harmless if the key was rewritten meanwhile.
    DeleteExpired {
        key: Bytes,
        deadline_ms: u64,
    },
    /// Split the group: slots from `at` to its last go to the new group `child`, on the
    /// same replicas. Applied by the shard (it changes the group's range and creates the
    /// child), never by `kv::apply`; no data moves, records are keyed by slot.
    Split {
        at: u16,
        child: crate::raft::types::GroupId,
        /// The child's voters: the parent's voters when the leader proposed the split.
        replicas: Vec<crate::raft::types::NodeId>,
    },
    /// A change of the cluster map (the metadata group only).
    Meta(crate::kv::meta::MetaOp),
    /// Key writes of one client's pipeline on one group, applied in their order as one
    /// request (one seq, one log entry, one session reply); answered with the array of
    /// their replies. Holds key writes only: no batch, split, flush or map change.
    Batch { commands: Vec<KvCommand> },
    /// A key read inside a `Transaction`: answered from the state as the transaction's
    /// earlier commands left it.
    Read(crate::kv::read::ReadCommand),
    /// MULTI/EXEC: key writes (value-answering ones too) and `Read`s of one client on one
    /// group, applied in order as one request, all or nothing: if their replies' values pass
    /// `TRANSACTION_REPLY_BYTES_MAX`, or the records they read and write
    /// `TRANSACTION_WORK_BYTES_MAX`, none is applied and the answer is an error; if a
    /// `Watched` key changed, none is applied and the answer is nil.
    Transaction { commands: Vec<KvCommand> },
    /// WATCH, inside a `Transaction`: the key's digest (`read::digests`) when watched (`None`:
    /// no live value). Answers nothing of its own.
    Watched { key: Bytes, digest: Option<i64> },
}

impl KvCommand {
    /// `SET key value`, without options.
    pub fn plain_set(key: Bytes, value: Bytes) -> KvCommand {
        let condition = SetCondition::Always;
        KvCommand::Set { key, value, expire_at_ms: None, keep_ttl: false, condition, get: false }
    }

    /// About how many keys applying the command visits, which is what its apply takes
    /// time by (`shard::limits::APPLY_PAUSE_KEYS_MIN`). A flush counts one: it removes its
    /// slots' stored keys as one range (`KvMutation::ClearSlots`), off the replica's thread.
    pub fn keys_applied(&self) -> usize {
        match self {
            KvCommand::Del { keys } => keys.len(),
            KvCommand::MSet { pairs } | KvCommand::MSetNx { pairs } => pairs.len(),
            KvCommand::BitOp { keys, .. } => keys.len() + 1,
            KvCommand::Copy { .. } => 2,
            KvCommand::Batch { commands } | KvCommand::Transaction { commands } => {
                commands.iter().map(KvCommand::keys_applied).sum()
            }
            KvCommand::Read(read) => read.keys().map_or(1, <[Bytes]>::len),
            _ => 1,
        }
    }

    /// Whether the command may go in a `Batch`: a write of named keys whose answer is
    /// small (no value of a key: a batch's replies are cached in the client's session and
    /// cross the wire as one message; BITFIELD's integers are), and whose log entry is as
    /// large as its arguments (not RESTORE's).
    pub fn batchable(&self) -> bool {
        match self {
            KvCommand::Set { get, .. } => !get,
            KvCommand::GetSet { .. } | KvCommand::GetDel { .. } | KvCommand::GetEx { .. } => false,
            KvCommand::Restore { .. } => false,
            KvCommand::Batch { .. }
            | KvCommand::Read(_)
            | KvCommand::Transaction { .. }
            | KvCommand::Watched { .. }
            | KvCommand::Split { .. }
            | KvCommand::Meta(_)
            | KvCommand::FlushSlots { .. } => false,
            _ => true,
        }
    }
}
