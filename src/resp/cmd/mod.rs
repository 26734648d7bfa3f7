//! The command table: one Redis command per file (a family that differs only by a unit or
//! a sign — INCR/DECR/INCRBY/DECRBY, EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT, TTL/PTTL/
//! EXPIRETIME/PEXPIRETIME, SETEX/PSETEX, DEL/UNLINK, FLUSHALL/FLUSHDB — shares one file,
//! since its members share every line but a constant). Each `prepare` checks syntax and
//! turns the arguments into a `Job`: an answer now, or shard operations routed by key
//! slot whose replies `exec` merges. Arity, authentication and, for cluster-aware
//! connections, the keys' routing (`-CROSSSLOT`, `-MOVED`) are checked here, before any
//! command reads its arguments. Never awaits and never touches a socket.

use bytes::Bytes;

use super::backend::{Backend, GroupView};
use super::client::ClientState;
use super::exec::{Job, Merge, Ops, Part};
use super::frame::{Frame, Proto};
use super::server::Shared;
use crate::kv::number::parse_i64;
use crate::kv::read::ReadCommand;
use crate::kv::slot::key_slot;
use crate::kv::{KvCommand, KvError, Request};
use crate::shard::api::ShardOp;

mod append;
mod auth;
mod bitcount;
mod bitfield;
mod bitop;
mod client;
mod cluster;
mod command;
mod config;
mod copy;
mod dbsize;
mod del;
pub mod dump;
mod echo;
mod exists;
mod expire;
mod flushall;
mod get;
mod getbit;
mod getdel;
mod getex;
mod getrange;
mod getset;
mod hello;
mod help;
mod incr;
mod incrbyfloat;
mod info;
mod keys;
mod lcs;
mod memory;
pub mod monitor;
mod mget;
mod mset;
pub mod multi;
mod persist;
mod pubsub;
mod ping;
mod quit;
mod randomkey;
mod readonly;
mod rename;
mod reset;
mod scan;
mod select;
mod set;
mod setex;
mod setnx;
mod setrange;
mod shardkv;
mod slowlog;
mod strlen;
mod time;
mod ttl;
mod type_;
mod wait;

/// A command as the table describes it (COMMAND INFO/DOCS and the arity check).
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub name: &'static str,
    /// Redis's arity: `n` exactly n arguments with the name, `-n` at least n.
    pub arity: i64,
    pub flags: &'static [&'static str],
    pub acl_categories: &'static [&'static str],
    pub first_key: i64,
    pub last_key: i64,
    pub step: i64,
    pub group: &'static str,
    pub summary: &'static str,
}

// Flags and ACL categories as Redis 7 reports them (COMMAND INFO); `no_auth` also lets a
// command run before authentication here.
const FAST: &[&str] = &["fast"];
const CONN: &[&str] = &["loading", "stale", "fast"];
const NO_AUTH: &[&str] = &["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"];
const STALE: &[&str] = &["loading", "stale"];
const CONTAINER: &[&str] = &[];
const W: &[&str] = &["write"];
const TX_FAST: &[&str] = &["noscript", "loading", "stale", "fast", "allow_busy"];
const TX_EXEC: &[&str] = &["noscript", "loading", "stale", "skip_slowlog"];
const W_FAST: &[&str] = &["write", "fast"];
const W_DENY: &[&str] = &["write", "denyoom"];
const W_DENY_ASKING: &[&str] = &["write", "denyoom", "asking"];
const W_DENY_FAST: &[&str] = &["write", "denyoom", "fast"];
const R: &[&str] = &["readonly"];
const R_FAST: &[&str] = &["readonly", "fast"];
const PUBSUB: &[&str] = &["pubsub", "noscript", "loading", "stale"];
const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];
const PUBSUB_FAST: &[&str] = &["pubsub", "loading", "stale", "fast"];

const ACL_FAST: &[&str] = &["@fast"];
const ACL_SLOW: &[&str] = &["@slow"];
const ACL_CONN_FAST: &[&str] = &["@fast", "@connection"];
const ACL_CONN_SLOW: &[&str] = &["@slow", "@connection"];
const ACL_TX_FAST: &[&str] = &["@fast", "@transaction"];
const ACL_TX_SLOW: &[&str] = &["@slow", "@transaction"];
const ACL_SLOW_DANGEROUS: &[&str] = &["@slow", "@dangerous"];
const ACL_PUBSUB_SLOW: &[&str] = &["@pubsub", "@slow"];
const ACL_PUBSUB_FAST: &[&str] = &["@pubsub", "@fast"];
const ACL_ADMIN: &[&str] = &["@admin", "@slow", "@dangerous"];
const ACL_STRING_READ_FAST: &[&str] = &["@read", "@string", "@fast"];
const ACL_STRING_READ_SLOW: &[&str] = &["@read", "@string", "@slow"];
const ACL_STRING_WRITE_FAST: &[&str] = &["@write", "@string", "@fast"];
const ACL_STRING_WRITE_SLOW: &[&str] = &["@write", "@string", "@slow"];
const ACL_BITMAP_READ_FAST: &[&str] = &["@read", "@bitmap", "@fast"];
const ACL_BITMAP_READ_SLOW: &[&str] = &["@read", "@bitmap", "@slow"];
const ACL_BITMAP_WRITE_SLOW: &[&str] = &["@write", "@bitmap", "@slow"];
const ACL_KEYS_READ_FAST: &[&str] = &["@keyspace", "@read", "@fast"];
const ACL_KEYS_READ_SLOW: &[&str] = &["@keyspace", "@read", "@slow"];
const ACL_KEYS_READ_DANGEROUS: &[&str] = &["@keyspace", "@read", "@slow", "@dangerous"];
const ACL_KEYS_WRITE_FAST: &[&str] = &["@keyspace", "@write", "@fast"];
const ACL_KEYS_WRITE_SLOW: &[&str] = &["@keyspace", "@write", "@slow"];
const ACL_KEYS_WRITE_DANGEROUS: &[&str] = &["@keyspace", "@write", "@slow", "@dangerous"];

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $acl:expr, $keys:expr, $group:literal,
     $summary:literal) => {
        Spec {
            name: $name,
            arity: $arity,
            flags: $flags,
            acl_categories: $acl,
            first_key: $keys.0,
            last_key: $keys.1,
            step: $keys.2,
            group: $group,
            summary: $summary,
        }
    };
}

const NO_KEY: (i64, i64, i64) = (0, 0, 0);
const ONE_KEY: (i64, i64, i64) = (1, 1, 1);
const ALL_KEYS: (i64, i64, i64) = (1, -1, 1);

/// Every command this server knows, in no particular order.
pub const SPECS: &[Spec] = &[
    spec!(
        "ping",
        -1,
        FAST,
        ACL_CONN_FAST,
        NO_KEY,
        "connection",
        "Returns the server's liveliness response."
    ),
    spec!(
        "echo",
        2,
        CONN,
        ACL_CONN_FAST,
        NO_KEY,
        "connection",
        "Returns the given string."
    ),
    spec!(
        "hello",
        -1,
        NO_AUTH,
        ACL_CONN_FAST,
        NO_KEY,
        "connection",
        "Handshakes with the Redis server."
    ),
    spec!(
        "auth",
        -2,
        NO_AUTH,
        ACL_CONN_FAST,
        NO_KEY,
        "connection",
        "Authenticates the connection."
    ),
    spec!(
        "select",
        2,
        CONN,
        ACL_CONN_FAST,
        NO_KEY,
        "connection",
        "Changes the selected database."
    ),
    spec!(
        "quit",
        -1,
        NO_AUTH,
        ACL_CONN_FAST,
        NO_KEY,
        "connection",
        "Closes the connection."
    ),
    spec!(
        "reset",
        1,
        NO_AUTH,
        ACL_CONN_FAST,
        NO_KEY,
        "connection",
        "Resets the connection."
    ),
    spec!("multi", 1, TX_FAST, ACL_TX_FAST, NO_KEY, "transactions", "Starts a transaction."),
    spec!(
        "exec",
        1,
        TX_EXEC,
        ACL_TX_SLOW,
        NO_KEY,
        "transactions",
        "Executes all commands in a transaction."
    ),
    spec!("discard", 1, TX_FAST, ACL_TX_FAST, NO_KEY, "transactions", "Discards a transaction."),
    spec!(
        "watch",
        -2,
        TX_FAST,
        ACL_TX_FAST,
        ALL_KEYS,
        "transactions",
        "Monitors changes to keys to determine the execution of a transaction."
    ),
    spec!(
        "unwatch",
        1,
        TX_FAST,
        ACL_TX_FAST,
        NO_KEY,
        "transactions",
        "Forgets about watched keys of a transaction."
    ),
    spec!(
        "client",
        -2,
        CONTAINER,
        ACL_SLOW,
        NO_KEY,
        "connection",
        "A container for client connection commands."
    ),
    spec!(
        "command",
        -1,
        STALE,
        ACL_CONN_SLOW,
        NO_KEY,
        "server",
        "Returns detailed information about all commands."
    ),
    spec!(
        "info",
        -1,
        STALE,
        ACL_SLOW_DANGEROUS,
        NO_KEY,
        "server",
        "Returns information and statistics about the server."
    ),
    spec!(
        "dbsize",
        1,
        R_FAST,
        ACL_KEYS_READ_FAST,
        NO_KEY,
        "server",
        "Returns the number of keys in the database."
    ),
    spec!("time", 1, CONN, ACL_FAST, NO_KEY, "server", "Returns the server time."),
    spec!(
        "config",
        -2,
        CONTAINER,
        ACL_SLOW,
        NO_KEY,
        "server",
        "Returns the effective values of configuration parameters."
    ),
    spec!(
        "slowlog",
        -2,
        CONTAINER,
        ACL_SLOW,
        NO_KEY,
        "server",
        "Returns, counts or clears this node's slow commands."
    ),
    spec!(
        "memory",
        -2,
        CONTAINER,
        ACL_SLOW,
        NO_KEY,
        "server",
        "A container for memory diagnostics commands."
    ),
    spec!(
        "wait",
        3,
        &["noscript"],
        ACL_CONN_SLOW,
        NO_KEY,
        "generic",
        "Blocks until the replicas of the connection's groups hold its writes, or a time-out."
    ),
    spec!(
        "monitor",
        1,
        ADMIN,
        ACL_ADMIN,
        NO_KEY,
        "server",
        "Listens for all requests received by the server in real-time."
    ),
    spec!(
        "subscribe",
        -2,
        PUBSUB,
        ACL_PUBSUB_SLOW,
        NO_KEY,
        "pubsub",
        "Listens for messages published to channels."
    ),
    spec!(
        "unsubscribe",
        -1,
        PUBSUB,
        ACL_PUBSUB_SLOW,
        NO_KEY,
        "pubsub",
        "Stops listening to messages posted to channels."
    ),
    spec!(
        "psubscribe",
        -2,
        PUBSUB,
        ACL_PUBSUB_SLOW,
        NO_KEY,
        "pubsub",
        "Listens for messages published to channels that match one or more patterns."
    ),
    spec!(
        "punsubscribe",
        -1,
        PUBSUB,
        ACL_PUBSUB_SLOW,
        NO_KEY,
        "pubsub",
        "Stops listening to messages published to channels that match one or more patterns."
    ),
    spec!(
        "ssubscribe",
        -2,
        PUBSUB,
        ACL_PUBSUB_SLOW,
        ALL_KEYS,
        "pubsub",
        "Listens for messages published to shard channels."
    ),
    spec!(
        "sunsubscribe",
        -1,
        PUBSUB,
        ACL_PUBSUB_SLOW,
        ALL_KEYS,
        "pubsub",
        "Stops listening to messages posted to shard channels."
    ),
    spec!(
        "publish",
        3,
        PUBSUB_FAST,
        ACL_PUBSUB_FAST,
        NO_KEY,
        "pubsub",
        "Posts a message to a channel."
    ),
    spec!(
        "spublish",
        3,
        PUBSUB_FAST,
        ACL_PUBSUB_FAST,
        ONE_KEY,
        "pubsub",
        "Post a message to a shard channel"
    ),
    spec!(
        "pubsub",
        -2,
        CONTAINER,
        ACL_SLOW,
        NO_KEY,
        "pubsub",
        "A container for Pub/Sub commands."
    ),
    spec!(
        "readonly",
        1,
        CONN,
        ACL_CONN_FAST,
        NO_KEY,
        "cluster",
        "Enables read-only queries for a connection."
    ),
    spec!(
        "readwrite",
        1,
        CONN,
        ACL_CONN_FAST,
        NO_KEY,
        "cluster",
        "Enables read-write queries for a connection."
    ),
    spec!(
        "shardkv",
        -2,
        W,
        ACL_ADMIN,
        NO_KEY,
        "server",
        "shardkv operator commands: GROUPS, SPLIT, TRANSFER-LEADER."
    ),
    spec!(
        "cluster",
        -2,
        CONTAINER,
        ACL_SLOW,
        NO_KEY,
        "cluster",
        "A container for Redis Cluster commands."
    ),
    spec!(
        "get",
        2,
        R_FAST,
        ACL_STRING_READ_FAST,
        ONE_KEY,
        "string",
        "Returns the string value of a key."
    ),
    spec!(
        "set",
        -3,
        W_DENY,
        ACL_STRING_WRITE_SLOW,
        ONE_KEY,
        "string",
        "Sets the string value of a key."
    ),
    spec!(
        "setnx",
        3,
        W_DENY_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Set the string value of a key only when it does not exist."
    ),
    spec!(
        "setex",
        4,
        W_DENY,
        ACL_STRING_WRITE_SLOW,
        ONE_KEY,
        "string",
        "Sets the value and expiration time of a key."
    ),
    spec!(
        "psetex",
        4,
        W_DENY,
        ACL_STRING_WRITE_SLOW,
        ONE_KEY,
        "string",
        "Sets the value and expiration in milliseconds of a key."
    ),
    spec!(
        "getset",
        3,
        W_DENY_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Returns the previous value of a key after setting it."
    ),
    spec!(
        "getdel",
        2,
        W_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Returns the value of a key after deleting the key."
    ),
    spec!(
        "getex",
        -2,
        W_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Returns the value of a key after setting its expiration."
    ),
    spec!(
        "mget",
        -2,
        R_FAST,
        ACL_STRING_READ_FAST,
        ALL_KEYS,
        "string",
        "Atomically returns the values of one or more keys."
    ),
    spec!(
        "mset",
        -3,
        W_DENY,
        ACL_STRING_WRITE_SLOW,
        (1, -1, 2),
        "string",
        "Atomically creates or modifies keys."
    ),
    spec!(
        "msetnx",
        -3,
        W_DENY,
        ACL_STRING_WRITE_SLOW,
        (1, -1, 2),
        "string",
        "Sets keys only when none of them exist."
    ),
    spec!(
        "append",
        3,
        W_DENY_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Appends a string to the value of a key."
    ),
    spec!(
        "strlen",
        2,
        R_FAST,
        ACL_STRING_READ_FAST,
        ONE_KEY,
        "string",
        "Returns the length of a string value."
    ),
    spec!(
        "getrange",
        4,
        R,
        ACL_STRING_READ_SLOW,
        ONE_KEY,
        "string",
        "Returns a substring of the string of a key."
    ),
    spec!(
        "setrange",
        4,
        W_DENY,
        ACL_STRING_WRITE_SLOW,
        ONE_KEY,
        "string",
        "Overwrites part of a string value at an offset."
    ),
    spec!(
        "substr",
        4,
        R,
        ACL_STRING_READ_SLOW,
        ONE_KEY,
        "string",
        "Returns a substring of the string of a key (GETRANGE's old name)."
    ),
    spec!(
        "lcs",
        -3,
        R,
        ACL_STRING_READ_SLOW,
        (1, 2, 1),
        "string",
        "Finds the longest common subsequence of two strings."
    ),
    spec!(
        "getbit",
        3,
        R_FAST,
        ACL_BITMAP_READ_FAST,
        ONE_KEY,
        "bitmap",
        "Returns one bit of a string value."
    ),
    spec!(
        "setbit",
        4,
        W_DENY,
        ACL_BITMAP_WRITE_SLOW,
        ONE_KEY,
        "bitmap",
        "Sets or clears one bit of a string value, growing it with zeros if needed."
    ),
    spec!(
        "bitcount",
        -2,
        R,
        ACL_BITMAP_READ_SLOW,
        ONE_KEY,
        "bitmap",
        "Counts the set bits of a string value, or of a range of it."
    ),
    spec!(
        "bitpos",
        -3,
        R,
        ACL_BITMAP_READ_SLOW,
        ONE_KEY,
        "bitmap",
        "Finds the first set or clear bit of a string value."
    ),
    spec!(
        "bitop",
        -4,
        W_DENY,
        ACL_BITMAP_WRITE_SLOW,
        (2, -1, 1),
        "bitmap",
        "Stores the bitwise AND, OR, XOR or NOT of string values in a key."
    ),
    spec!(
        "bitfield",
        -2,
        W_DENY,
        ACL_BITMAP_WRITE_SLOW,
        ONE_KEY,
        "bitmap",
        "Reads, writes and increments integer fields of a string value."
    ),
    spec!(
        "bitfield_ro",
        -2,
        R_FAST,
        ACL_BITMAP_READ_FAST,
        ONE_KEY,
        "bitmap",
        "Reads integer fields of a string value."
    ),
    spec!(
        "incr",
        2,
        W_DENY_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Increments the integer value of a key by one."
    ),
    spec!(
        "decr",
        2,
        W_DENY_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Decrements the integer value of a key by one."
    ),
    spec!(
        "incrby",
        3,
        W_DENY_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Increments the integer value of a key by a number."
    ),
    spec!(
        "decrby",
        3,
        W_DENY_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Decrements a number from the integer value of a key."
    ),
    spec!(
        "incrbyfloat",
        3,
        W_DENY_FAST,
        ACL_STRING_WRITE_FAST,
        ONE_KEY,
        "string",
        "Increment the value of a key by a float."
    ),
    spec!(
        "del",
        -2,
        W,
        ACL_KEYS_WRITE_SLOW,
        ALL_KEYS,
        "generic",
        "Deletes one or more keys."
    ),
    spec!(
        "unlink",
        -2,
        W_FAST,
        ACL_KEYS_WRITE_FAST,
        ALL_KEYS,
        "generic",
        "Asynchronously deletes one or more keys."
    ),
    spec!(
        "exists",
        -2,
        R_FAST,
        ACL_KEYS_READ_FAST,
        ALL_KEYS,
        "generic",
        "Determines whether one or more keys exist."
    ),
    spec!(
        "touch",
        -2,
        R_FAST,
        ACL_KEYS_READ_FAST,
        ALL_KEYS,
        "generic",
        "Counts the given keys that exist (there is no access time to update)."
    ),
    spec!(
        "copy",
        -3,
        W_DENY,
        ACL_KEYS_WRITE_SLOW,
        (1, 2, 1),
        "generic",
        "Copies a key's value and deadline to another key."
    ),
    spec!(
        "dump",
        2,
        R,
        ACL_KEYS_READ_SLOW,
        ONE_KEY,
        "generic",
        "Serializes a key's value as Redis does, for RESTORE."
    ),
    spec!(
        "restore",
        -4,
        W_DENY,
        ACL_KEYS_WRITE_DANGEROUS,
        ONE_KEY,
        "generic",
        "Creates a key from a DUMP payload."
    ),
    spec!(
        "restore-asking",
        -4,
        W_DENY_ASKING,
        ACL_KEYS_WRITE_DANGEROUS,
        ONE_KEY,
        "generic",
        "Creates a key from a DUMP payload (RESTORE, as a migrating cluster sends it)."
    ),
    spec!(
        "type",
        2,
        R_FAST,
        ACL_KEYS_READ_FAST,
        ONE_KEY,
        "generic",
        "Determines the type of value stored at a key."
    ),
    spec!(
        "rename",
        3,
        W,
        ACL_KEYS_WRITE_SLOW,
        (1, 2, 1),
        "generic",
        "Renames a key and overwrites the destination."
    ),
    spec!(
        "renamenx",
        3,
        W_FAST,
        ACL_KEYS_WRITE_FAST,
        (1, 2, 1),
        "generic",
        "Renames a key only when the target does not exist."
    ),
    spec!(
        "expire",
        -3,
        W_FAST,
        ACL_KEYS_WRITE_FAST,
        ONE_KEY,
        "generic",
        "Sets the expiration time of a key in seconds."
    ),
    spec!(
        "pexpire",
        -3,
        W_FAST,
        ACL_KEYS_WRITE_FAST,
        ONE_KEY,
        "generic",
        "Sets the expiration time of a key in milliseconds."
    ),
    spec!(
        "expireat",
        -3,
        W_FAST,
        ACL_KEYS_WRITE_FAST,
        ONE_KEY,
        "generic",
        "Sets the expiration time of a key to a Unix timestamp."
    ),
    spec!(
        "pexpireat",
        -3,
        W_FAST,
        ACL_KEYS_WRITE_FAST,
        ONE_KEY,
        "generic",
        "Sets the expiration of a key to a Unix ms timestamp."
    ),
    spec!(
        "ttl",
        2,
        R_FAST,
        ACL_KEYS_READ_FAST,
        ONE_KEY,
        "generic",
        "Returns the expiration time in seconds of a key."
    ),
    spec!(
        "pttl",
        2,
        R_FAST,
        ACL_KEYS_READ_FAST,
        ONE_KEY,
        "generic",
        "Returns the expiration time in milliseconds of a key."
    ),
    spec!(
        "expiretime",
        2,
        R_FAST,
        ACL_KEYS_READ_FAST,
        ONE_KEY,
        "generic",
        "Returns the expiration time of a key as a Unix timestamp."
    ),
    spec!(
        "pexpiretime",
        2,
        R_FAST,
        ACL_KEYS_READ_FAST,
        ONE_KEY,
        "generic",
        "Returns the expiration of a key as a Unix ms timestamp."
    ),
    spec!(
        "persist",
        2,
        W_FAST,
        ACL_KEYS_WRITE_FAST,
        ONE_KEY,
        "generic",
        "Removes the expiration time of a key."
    ),
    spec!(
        "keys",
        2,
        R,
        ACL_KEYS_READ_DANGEROUS,
        NO_KEY,
        "generic",
        "Returns all key names that match a pattern."
    ),
    spec!(
        "scan",
        -2,
        R,
        ACL_KEYS_READ_SLOW,
        NO_KEY,
        "generic",
        "Iterates over the key names in the database."
    ),
    spec!(
        "randomkey",
        1,
        R,
        ACL_KEYS_READ_SLOW,
        NO_KEY,
        "generic",
        "Returns a random key name from the database."
    ),
    spec!(
        "flushall",
        -1,
        W,
        ACL_KEYS_WRITE_DANGEROUS,
        NO_KEY,
        "server",
        "Removes all keys from all databases."
    ),
    spec!(
        "flushdb",
        -1,
        W,
        ACL_KEYS_WRITE_DANGEROUS,
        NO_KEY,
        "server",
        "Remove all keys from the current database."
    ),
];

/// The table entry of a lower-case command name.
pub fn spec_of(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|spec| spec.name == name)
}

/// The index in `SPECS` of a request's first argument, whatever its ASCII case.
pub fn spec_index_of_arg(arg: &[u8]) -> Option<usize> {
    SPECS.iter().position(|spec| arg.eq_ignore_ascii_case(spec.name.as_bytes()))
}

/// What a command needs while it is prepared.
pub struct Ctx<'a, B> {
    pub backend: &'a B,
    pub client: &'a mut ClientState,
    pub shared: &'a Shared,
}

/// Turns one request into a job: arity, authentication, the keys' routing for
/// cluster-aware connections (`Ctx::route_keys`), then the command; after MULTI, the job
/// is queued and the answer is `+QUEUED` or why not (`multi::Multi::queue`). `index` is
/// `spec_index_of_arg` of its first argument (the caller's metrics need it too).
pub fn prepare<B: Backend>(
    cx: &mut Ctx<'_, B>,
    args: &[Bytes],
    index: Option<usize>,
) -> Job {
    if cx.client.multi.is_none() {
        return prepare_now(cx, args, index);
    }
    let name = index.and_then(|index| SPECS.get(index)).map_or("", |spec| spec.name);
    let job = prepare_now(cx, args, index);
    if multi::runs_inside(name) {
        let job = multi::ran_inside(&mut cx.client.multi, name, job);
        if cx.client.multi.is_none() {
            // EXEC refused, or RESET: the watched keys go with the transaction.
            cx.client.watched.clear();
        }
        return job;
    }
    let bytes_max = cx.shared.options.limits.write_bytes_max;
    match &mut cx.client.multi {
        Some(queue) => Job::Now(queue.queue(name, args, index, job, bytes_max)),
        None => job,
    }
}

/// `prepare`, outside a transaction.
pub(crate) fn prepare_now<B: Backend>(
    cx: &mut Ctx<'_, B>,
    args: &[Bytes],
    index: Option<usize>,
) -> Job {
    let Some(first) = args.first() else {
        return Job::Now(Frame::Null);
    };
    let Some(spec) = index.and_then(|index| SPECS.get(index)) else {
        return Job::Now(unknown_command(first, &args[1..]));
    };
    let name = spec.name;
    let argc = args.len() as i64;
    if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
        return Job::Now(wrong_args(name));
    }
    if !cx.client.authenticated && !spec.flags.contains(&"no_auth") {
        return Job::Now(Frame::error("NOAUTH Authentication required."));
    }
    cx.client.entry.show(cx.client.name.as_ref(), name, cx.client.proto);
    if cx.client.redirects {
        if let Some(redirect) = cx.route_keys(spec, args) {
            return Job::Now(redirect);
        }
    }
    if cx.client.proto == Proto::Resp2 && cx.client.subscribed() {
        if name == "ping" && args.len() <= 2 {
            return Job::Now(pubsub::ping_when_subscribed(args));
        }
        if !pubsub::allowed_when_subscribed(name) {
            return Job::Now(pubsub::not_allowed_when_subscribed(name, args));
        }
    }
    if let Some(help) = help::answer(name, args) {
        return Job::Now(help);
    }
    if spec.flags.contains(&"write") {
        if let Some(refusal) = write_too_large(cx.shared.options.limits.write_bytes_max, args) {
            return Job::Now(refusal);
        }
    }
    dispatch(cx, name, args)
}

/// The refusal of a write whose arguments pass `limits.write_bytes_max` (counted with
/// their encoding): the whole command, whose part for each shard becomes one log entry,
/// which crosses the wire whole.
fn write_too_large(write_bytes_max: u64, args: &[Bytes]) -> Option<Frame> {
    let per_arg = crate::shard::limits::ENCODING_BYTES_PER_ITEM;
    let bytes = argument_bytes(args);
    (bytes > write_bytes_max).then(|| {
        Frame::error(format!(
            "ERR write of {bytes} bytes (its arguments, {per_arg} more each for their \
             encoding) exceeds the largest a shard replicates, {write_bytes_max} bytes \
             (limits.write_bytes_max); it was not applied"
        ))
    })
}

/// The bytes a command's arguments (its name left out) take in a log entry, counted with
/// `ENCODING_BYTES_PER_ITEM` more each for their encoding.
pub(crate) fn argument_bytes(args: &[Bytes]) -> u64 {
    let per_arg = crate::shard::limits::ENCODING_BYTES_PER_ITEM;
    args.iter().skip(1).map(|a| a.len() as u64 + per_arg).sum()
}

fn dispatch<B: Backend>(cx: &mut Ctx<'_, B>, name: &str, args: &[Bytes]) -> Job {
    match name {
        "ping" => ping::prepare(cx, args),
        "echo" => echo::prepare(cx, args),
        "hello" => hello::prepare(cx, args),
        "auth" => auth::prepare(cx, args),
        "select" => select::prepare(cx, args),
        "quit" => quit::prepare(cx, args),
        "reset" => reset::prepare(cx, args),
        "multi" => multi::prepare_multi(cx, args),
        "exec" => multi::prepare_exec(cx, args),
        "discard" => multi::prepare_discard(cx, args),
        "watch" => multi::prepare_watch(cx, args),
        "unwatch" => multi::prepare_unwatch(cx, args),
        "client" => client::prepare(cx, args),
        "command" => command::prepare(cx, args),
        "info" => info::prepare(cx, args),
        "dbsize" => dbsize::prepare(cx, args),
        "time" => time::prepare(cx, args),
        "config" => config::prepare(cx, args),
        "readonly" | "readwrite" => readonly::prepare(cx, args),
        "cluster" => cluster::prepare(cx, args),
        "shardkv" => shardkv::prepare(cx, args),
        "slowlog" => slowlog::prepare(cx, args),
        "wait" => wait::prepare(cx, args),
        "memory" => memory::prepare(cx, args),
        "monitor" => monitor::prepare(cx, args),
        "subscribe" | "psubscribe" | "ssubscribe" => pubsub::prepare_subscribe(cx, name, args),
        "unsubscribe" | "punsubscribe" | "sunsubscribe" => {
            pubsub::prepare_unsubscribe(cx, name, args)
        }
        "publish" | "spublish" => pubsub::prepare_publish(cx, name, args),
        "pubsub" => pubsub::prepare_pubsub(cx, args),
        "get" => get::prepare(cx, args),
        "set" => set::prepare(cx, args),
        "setnx" => setnx::prepare(cx, args),
        "setex" | "psetex" => setex::prepare(cx, args),
        "getset" => getset::prepare(cx, args),
        "getdel" => getdel::prepare(cx, args),
        "getex" => getex::prepare(cx, args),
        "mget" => mget::prepare(cx, args),
        "mset" | "msetnx" => mset::prepare(cx, args),
        "append" => append::prepare(cx, args),
        "strlen" => strlen::prepare(cx, args),
        "getrange" | "substr" => getrange::prepare(cx, args),
        "setrange" => setrange::prepare(cx, args),
        "lcs" => lcs::prepare(cx, args),
        "getbit" | "setbit" => getbit::prepare(cx, args),
        "bitcount" | "bitpos" => bitcount::prepare(cx, args),
        "bitop" => bitop::prepare(cx, args),
        "bitfield" | "bitfield_ro" => bitfield::prepare(cx, args),
        "incr" | "decr" | "incrby" | "decrby" => incr::prepare(cx, args),
        "incrbyfloat" => incrbyfloat::prepare(cx, args),
        "del" | "unlink" => del::prepare(cx, args),
        "exists" | "touch" => exists::prepare(cx, args),
        "copy" => copy::prepare(cx, args),
        "dump" => dump::prepare_dump(cx, args),
        "restore" | "restore-asking" => dump::prepare_restore(cx, args),
        "type" => type_::prepare(cx, args),
        "rename" | "renamenx" => rename::prepare(cx, args),
        "expire" | "pexpire" | "expireat" | "pexpireat" => expire::prepare(cx, args),
        "ttl" | "pttl" | "expiretime" | "pexpiretime" => ttl::prepare(cx, args),
        "persist" => persist::prepare(cx, args),
        "keys" => keys::prepare(cx, args),
        "scan" => scan::prepare(cx, args),
        "randomkey" => randomkey::prepare(cx, args),
        "flushall" | "flushdb" => flushall::prepare(cx, args),
        _ => Job::Now(unknown_command(&args[0], &args[1..])),
    }
}

impl<B: Backend> Ctx<'_, B> {
    /// A write request of this client: the next seq, the node's clock.
    pub fn request(&mut self, command: KvCommand) -> Request {
        self.client.seq += 1;
        Request {
            client_id: self.client.id,
            seq: self.client.seq,
            now_ms: self.backend.now_ms(),
            command,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.backend.now_ms()
    }

    /// The one slot of `keys`, or `-CROSSSLOT`.
    pub fn one_slot<'k>(&self, keys: impl IntoIterator<Item = &'k Bytes>) -> Result<u16, Frame> {
        let mut slots = keys.into_iter().map(|key| key_slot(key));
        let first = slots.next().unwrap_or(0);
        match slots.all(|slot| slot == first) {
            true => Ok(first),
            false => Err(Frame::from(KvError::CrossSlot)),
        }
    }

    /// A read of one slot's group.
    pub fn read(&mut self, slot: u16, command: ReadCommand) -> Job {
        self.read_merged(slot, command, Merge::One)
    }

    /// A read of one slot's group whose reply becomes the answer as `merge` says.
    pub fn read_merged(&mut self, slot: u16, command: ReadCommand, merge: Merge) -> Job {
        let op = ShardOp::read(command, self.now_ms());
        self.routed(slot, op, false, merge)
    }

    /// A write to one slot's group.
    pub fn write(&mut self, slot: u16, command: KvCommand) -> Job {
        let op = ShardOp::Write(self.request(command));
        self.routed(slot, op, true, Merge::One)
    }

    /// A read of `slot`'s group that is never `-MOVED`, on any connection: for CLUSTER
    /// COUNTKEYSINSLOT and GETKEYSINSLOT, which Redis Cluster answers on every node (with
    /// the keys that node holds, none for a slot it does not serve); here any node answers
    /// with the group's keys, read through its leader.
    pub fn read_anywhere(&self, slot: u16, command: ReadCommand) -> Job {
        let op = ShardOp::read(command, self.now_ms());
        let part = Part { group: self.backend.group_of_slot(slot), slot, op, positions: vec![] };
        self.ops(false, vec![part], Merge::One)
    }

    /// One op on `slot`'s group; `-MOVED` first in redirect mode when another node leads.
    pub fn routed(&self, slot: u16, op: ShardOp, write: bool, merge: Merge) -> Job {
        let group = self.backend.group_of_slot(slot);
        if let Some(moved) = self.moved(slot, !write) {
            return Job::Now(moved);
        }
        let part = Part {
            group,
            slot,
            op,
            positions: Vec::new(),
        };
        Job::Run(Ops {
            write,
            parts: vec![part],
            merge,
            redirects: self.client.redirects,
        })
    }

    /// Redis Cluster's routing of a command by the keys its table entry names, before the
    /// command reads its other arguments: `-CROSSSLOT` for keys of several slots, `-MOVED`
    /// when another node leads their slot (a syntax error sent to the wrong node moves too).
    fn route_keys(&self, spec: &Spec, args: &[Bytes]) -> Option<Frame> {
        if spec.first_key <= 0 {
            return None;
        }
        let last = match spec.last_key {
            last if last < 0 => args.len() as i64 + last,
            last => last,
        };
        let positions = (spec.first_key..=last).step_by(spec.step.max(1) as usize);
        let mut keys = positions
            .filter_map(|position| args.get(position as usize))
            .peekable();
        // No key given: nothing to route (`one_slot` would say slot 0).
        keys.peek()?;
        match self.one_slot(keys) {
            Ok(slot) => self.moved(slot, spec.flags.contains(&"readonly")),
            Err(crossslot) => Some(crossslot),
        }
    }

    /// `-MOVED slot addr` when this connection wants redirects and another node leads; but
    /// a `read` on a READONLY connection is served by any node with a replica of the slot's
    /// group, as a Redis Cluster replica serves it (here linearizable still: the node asks
    /// the leader), so that clients reading from replicas are not moved on every read.
    pub fn moved(&self, slot: u16, read: bool) -> Option<Frame> {
        if !self.client.redirects {
            return None;
        }
        let group = self.backend.group_of_slot(slot);
        let leader = self.backend.leader_of(group)?;
        if leader == self.backend.node_id()
            || (read && self.client.readonly && self.backend.holds_replica(group))
        {
            return None;
        }
        let addr = self.backend.cluster_view().resp_addr(leader)?;
        Some(Frame::error(format!("MOVED {slot} {addr}")))
    }

    /// Every group, in slot order.
    pub fn groups(&self) -> Vec<GroupView> {
        let mut groups = self.backend.cluster_view().groups;
        groups.sort_by_key(|g| g.slot_first);
        groups
    }

    /// The groups a keyspace command covers (DBSIZE, INFO's keyspace, KEYS, SCAN,
    /// RANDOMKEY), in slot order: on a cluster-aware connection those this node is master
    /// of (`GroupView::master`, the slots CLUSTER SLOTS lists as its own), as a Redis
    /// Cluster node answers for its own keys, so that a cluster client summing or joining
    /// the masters' answers counts each key once; on a plain connection every group.
    pub fn keyspace_groups(&self) -> Vec<GroupView> {
        let mut groups = self.groups();
        if self.client.redirects {
            let me = self.backend.node_id();
            groups.retain(|g| g.master() == Some(me));
        }
        groups
    }

    /// Ops over several groups.
    /// A read of several keys (MGET, EXISTS): one slot on a cluster-aware connection
    /// (`-CROSSSLOT` otherwise), else split per group and merged by `merge`.
    pub fn multi_key_read(
        &mut self,
        keys: &[Bytes],
        command: impl Fn(Vec<Bytes>) -> ReadCommand,
        merge: Merge,
    ) -> Job {
        if self.client.redirects {
            let slot = match self.one_slot(keys) {
                Ok(slot) => slot,
                Err(frame) => return Job::Now(frame),
            };
            return self.read(slot, command(keys.to_vec()));
        }
        let now_ms = self.now_ms();
        let parts = split_by_group(self.backend, keys)
            .into_iter()
            .map(|(slot, positions)| {
                let group_keys = positions.iter().map(|&p| keys[p].clone()).collect();
                let op = ShardOp::read(command(group_keys), now_ms);
                Part { group: self.backend.group_of_slot(slot), slot, op, positions }
            })
            .collect();
        self.ops(false, parts, merge)
    }

    /// Ops that no key routed: a command that names none (DBSIZE, SCAN, FLUSHALL, INFO,
    /// the slot commands), or keys split by group on a plain connection. Never `-MOVED`: a
    /// cluster client routes by key, and Redis Cluster answers these on any node.
    pub fn ops(&self, write: bool, parts: Vec<Part>, merge: Merge) -> Job {
        Job::Run(Ops { write, parts, merge, redirects: false })
    }
}

/// Splits `keys` by group: (group's first key slot, key positions) per group, in order of
/// first appearance.
pub fn split_by_group<B: Backend>(backend: &B, keys: &[Bytes]) -> Vec<(u16, Vec<usize>)> {
    let mut groups: Vec<(crate::raft::types::GroupId, u16, Vec<usize>)> = Vec::new();
    for (position, key) in keys.iter().enumerate() {
        let slot = key_slot(key);
        let group = backend.group_of_slot(slot);
        match groups.iter_mut().find(|(g, _, _)| *g == group) {
            Some((_, _, positions)) => positions.push(position),
            None => groups.push((group, slot, vec![position])),
        }
    }
    groups
        .into_iter()
        .map(|(_, slot, positions)| (slot, positions))
        .collect()
}

/// ASCII lower case of a command word.
pub fn lower(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_lowercase()
}

/// Whether `arg` is `word`, ignoring ASCII case.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// An integer argument, or Redis's "not an integer" error.
pub fn int_arg(arg: &[u8]) -> Result<i64, Frame> {
    parse_i64(arg).ok_or_else(|| Frame::from(KvError::NotInteger))
}

/// A bit offset (GETBIT, SETBIT, BITFIELD): not negative, and within a string of
/// `proto-max-bulk-len` bytes (the node's `limits.bulk_bytes_max`), as Redis bounds it.
/// With `field_bits` (BITFIELD), `#n` is the n-th field of that width.
pub fn bit_offset<B: Backend>(
    cx: &Ctx<'_, B>,
    word: &[u8],
    field_bits: Option<u32>,
) -> Result<u64, Frame> {
    let bytes_max = cx.shared.options.limits.bulk_bytes_max;
    let offset = match (word.strip_prefix(b"#"), field_bits) {
        (Some(index), Some(bits)) => {
            parse_i64(index).and_then(|index| index.checked_mul(i64::from(bits)))
        }
        _ => parse_i64(word),
    };
    offset
        .and_then(|offset| u64::try_from(offset).ok())
        .filter(|offset| offset >> 3 < bytes_max)
        .ok_or_else(|| Frame::error("ERR bit offset is not an integer or out of range"))
}

pub fn syntax_error() -> Frame {
    Frame::from(KvError::Syntax)
}

pub fn wrong_args(name: &str) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// Bytes of a client's argument quoted in an error reply, at most (Redis clips at 128).
pub const ERROR_ARG_BYTES_MAX: usize = 128;

/// A client's argument as an error reply quotes it: lossy UTF-8, clipped.
pub fn clip(arg: &[u8]) -> String {
    String::from_utf8_lossy(&arg[..arg.len().min(ERROR_ARG_BYTES_MAX)]).into_owned()
}

/// Redis's text for an unknown command: the name and up to 128 bytes of each argument.
pub fn unknown_command(name: &[u8], args: &[Bytes]) -> Frame {
    // As Redis: the quoted arguments stop once their text reaches 128 bytes.
    let mut quoted = String::new();
    for arg in args {
        if quoted.len() >= ERROR_ARG_BYTES_MAX {
            break;
        }
        let room = ERROR_ARG_BYTES_MAX - quoted.len();
        let arg = String::from_utf8_lossy(&arg[..arg.len().min(room)]).into_owned();
        quoted.push_str(&format!("'{arg}' "));
    }
    let name = clip(name);
    Frame::error(format!(
        "ERR unknown command '{name}', with args beginning with: {quoted}"
    ))
}

/// Redis's text for an unknown subcommand of `container`.
pub fn unknown_subcommand(sub: &[u8], container: &str) -> Frame {
    let sub = clip(sub);
    Frame::error(format!(
        "ERR unknown subcommand '{sub}'. Try {} HELP.",
        container.to_ascii_uppercase()
    ))
}

/// Unwraps a parse step inside a `prepare` that returns `Job`.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(frame) => return $crate::resp::exec::Job::Now(frame),
        }
    };
}
pub(crate) use tri;
