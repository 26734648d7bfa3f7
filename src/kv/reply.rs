//! What applying or reading a command answers: a plain `Reply` and the `KvError`s whose
//! texts are exactly Redis's. Owns no wire format; the RESP layer renders these.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A command's answer, before any protocol encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// Another simple string, such as `TYPE`'s `string` or `none`.
    Status(String),
    /// The null bulk string (RESP3 null).
    Nil,
    Int(i64),
    Bulk(Bytes),
    Array(Vec<Reply>),
    Error(KvError),
}

impl Reply {
    /// Bytes of the values and texts this reply carries (its framing not counted).
    pub fn value_bytes(&self) -> u64 {
        match self {
            Reply::Bulk(b) => b.len() as u64,
            Reply::Status(s) => s.len() as u64,
            Reply::Array(items) => items.iter().map(Reply::value_bytes).sum(),
            Reply::Ok | Reply::Nil | Reply::Int(_) | Reply::Error(_) => 0,
        }
    }

    /// Bytes this reply takes encoded, at most: its values', and `per_item` for each reply
    /// in it (its own framing).
    pub fn encoded_bytes_bound(&self, per_item: u64) -> u64 {
        match self {
            Reply::Array(items) => {
                per_item + items.iter().map(|i| i.encoded_bytes_bound(per_item)).sum::<u64>()
            }
            reply => per_item + reply.value_bytes(),
        }
    }
}

impl From<KvError> for Reply {
    fn from(error: KvError) -> Reply {
        Reply::Error(error)
    }
}

/// Errors a command answers with; `Display` is the exact Redis text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// The command name is lower case, as Redis prints it (`set`, `getex`, `expire`).
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(String),
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR source and destination objects are the same")]
    SameObject,
    #[error("BUSYKEY Target key name already exists.")]
    BusyKey,
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    #[error("ERR syntax error")]
    Syntax,
    /// LCS's table would pass `proto-max-bulk-len` (Redis's words).
    #[error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")]
    LcsTooLarge,
    /// A retried request older than the client's last applied one.
    #[error("ERR request already applied")]
    AlreadyApplied,
    /// A stored record that does not decode (the text names what is wrong).
    #[error("ERR corrupt value record: {0}")]
    CorruptRecord(String),
    /// A command the key-value state machine does not apply (a split reaches the shard).
    #[error("ERR this command is applied by the shard, not the key-value state machine")]
    NotHere,
    /// A split the group refused (the text says why).
    #[error("{0}")]
    Split(String),
    /// A change of the cluster map the metadata group refused (the text says why).
    #[error("{0}")]
    Meta(String),
    /// A read batch whose replies would pass `READ_BATCH_REPLY_BYTES_MAX`: nothing was
    /// answered; its reads are to be sent one by one (the front end does, but for EXEC's,
    /// which are one or none).
    #[error("ERR the replies of a read batch exceed {0} bytes")]
    BatchReplyTooLarge(u64),
    /// A transaction whose replies would pass the bound: none of its commands was applied.
    #[error("ERR the replies of the transaction exceed {0} bytes; it was not applied")]
    TransactionReplyTooLarge(u64),
    /// Watched keys whose values pass `read::WATCH_DIGEST_BYTES_MAX`: not watched, or the
    /// transaction not applied.
    #[error("ERR the watched keys' values exceed {0} bytes; watch fewer or smaller keys")]
    WatchTooLarge(u64),
    /// A transaction whose commands would read and write more than the bound of records
    /// (`apply::TRANSACTION_WORK_BYTES_MAX`): none of its commands was applied.
    #[error(
        "ERR the transaction reads and writes more than {0} bytes of values; it was not applied"
    )]
    TransactionWorkTooLarge(u64),
}
