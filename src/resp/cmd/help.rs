//! `<CONTAINER> HELP` for CLIENT, CLUSTER, COMMAND, CONFIG, MEMORY, SLOWLOG and SHARDKV: the
//! subcommands this node serves, in Redis's layout (an array of status lines: a usage
//! line, each subcommand with its description indented below it, then HELP itself). The
//! unknown-subcommand error points here ("Try CLIENT HELP.").

use bytes::Bytes;

use super::{is, wrong_args};
use crate::resp::frame::Frame;

/// Each container's subcommands: a usage line, then its description lines.
const HELP: &[(&str, &[&str])] = &[
    (
        "client",
        &[
            "ID",
            "    Return the ID of the current connection.",
            "GETNAME",
            "    Return the name of the current connection.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <attribute> <value>",
            "    Accepted for client libraries that send it (LIB-NAME, LIB-VER); not stored.",
            "INFO",
            "    Return information about the current connection.",
            "LIST [TYPE <NORMAL|MASTER|REPLICA|PUBSUB> | ID <id> [<id> ...]]",
            "    Return information about this node's client connections.",
            "KILL <ip:port>",
            "    Close the connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Close connections that match all the filters: ID <client-id>, TYPE <type>,",
            "    ADDR <ip:port>, LADDR <ip:port> (this node's end), USER default,",
            "    SKIPME <YES|NO> (YES by default).",
            "REDIRECTS <ON|OFF>",
            "    ON: answer -MOVED and -CROSSSLOT on this connection, as Redis Cluster does.",
            "    OFF: forward every key to its group's leader (plain clients).",
        ],
    ),
    (
        "cluster",
        &[
            "SLOTS",
            "    Return each group's slot range with its leader as master and its followers",
            "    as replicas.",
            "SHARDS",
            "    Return each group's slots and nodes.",
            "NODES",
            "    Return the cluster's nodes in Redis Cluster's text format.",
            "INFO",
            "    Return information about the cluster.",
            "MYID",
            "    Return this node's ID.",
            "KEYSLOT <key>",
            "    Return the hash slot of <key>.",
            "COUNTKEYSINSLOT <slot>",
            "    Return the number of keys in <slot>.",
            "GETKEYSINSLOT <slot> <count>",
            "    Return up to <count> keys of <slot>.",
        ],
    ),
    (
        "command",
        &[
            "(no subcommand)",
            "    Return details about every command.",
            "COUNT",
            "    Return the number of commands.",
            "INFO [<command-name> ...]",
            "    Return details about the commands named, or every command.",
            "DOCS [<command-name> ...]",
            "    Return documentation about the commands named, or every command.",
            "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
            "    Return the names of the commands, filtered if asked.",
        ],
    ),
    (
        "config",
        &[
            "GET <pattern> [<pattern> ...]",
            "    Return the parameters matching any of the glob-like patterns, with their",
            "    values.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "SET notify-keyspace-events <value>",
            "    Set which keyspace events this node publishes, until it restarts. The other",
            "    parameters come from the node's configuration file.",
            "(REWRITE is not supported.)",
        ],
    ),
    (
        "memory",
        &[
            "USAGE <key> [SAMPLES <count>]",
            "    Return memory in bytes used by <key> and its value (its stored record and a",
            "    per-entry overhead).",
        ],
    ),
    (
        "pubsub",
        &[
            "CHANNELS [<pattern>]",
            "    Return the channels with a subscriber here, matching <pattern>.",
            "NUMPAT",
            "    Return the number of patterns subscribed to on this node.",
            "NUMSUB [<channel> ...]",
            "    Return the number of subscribers on this node of each channel (patterns",
            "    left out).",
            "SHARDCHANNELS [<pattern>]",
            "    Return the shard channels with a subscriber here, matching <pattern>.",
            "SHARDNUMSUB [<shardchannel> ...]",
            "    Return the number of subscribers on this node of each shard channel.",
        ],
    ),
    (
        "slowlog",
        &[
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
        ],
    ),
    (
        "shardkv",
        &[
            "GROUPS",
            "    Return every group as this node knows it.",
            "NODES",
            "    Return every node of the cluster.",
            "MAP",
            "    Return the cluster map, read through the metadata group's leader.",
            "SPLIT <group> [<slot>] CHILD <id>",
            "    Split <group> at <slot> (by default the slot that halves its keys) into the",
            "    new group <id>.",
            "ALLOC-GROUP",
            "    Return a group id nobody else is given.",
            "JOIN <node> <peer-address> <resp-address>",
            "    Record a node in the cluster map.",
            "FORGET-NODE <node>",
            "    Remove a node that holds no replica from the cluster map.",
            "TRANSFER-LEADER <group> <node>",
            "    Ask <group>'s leader to hand over to <node>; answers the leader's term.",
            "MEMBERS <group>",
            "    Return <group>'s replicas as its leader sees them.",
            "ADD-LEARNER|PROMOTE|REMOVE-NODE <group> <node>",
            "    Change <group>'s membership by one node.",
            "REPLACE <group> <from> <to>",
            "    Replace a voter of <group> in one joint change.",
            "OPEN-REPLICA|DROP-REPLICA <group>",
            "    Start an empty replica of <group> here, or delete this node's replica.",
        ],
    ),
];

/// Whether `name` is a container command (one with subcommands).
pub fn is_container(name: &str) -> bool {
    HELP.iter().any(|(container, _)| *container == name)
}

/// The answer to `args` if it asks a container command for its HELP; `None` otherwise.
pub fn answer(container: &str, args: &[Bytes]) -> Option<Frame> {
    if !args.get(1).is_some_and(|sub| is(sub, "help")) {
        return None;
    }
    let (_, lines) = HELP.iter().find(|(name, _)| *name == container)?;
    if args.len() != 2 {
        return Some(wrong_args(&format!("{container}|help")));
    }
    let upper = container.to_ascii_uppercase();
    let usage = format!("{upper} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
    let footer = ["HELP", "    Print this help."];
    let lines = std::iter::once(usage)
        .chain(lines.iter().chain(&footer).map(|line| line.to_string()))
        .map(Frame::Simple)
        .collect();
    Some(Frame::Array(lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    #[test]
    fn every_container_answers_help_in_redis_layout() {
        for (container, lines) in HELP {
            let Some(Frame::Array(got)) = answer(container, &args(&[container, "HeLp"])) else {
                panic!("{container} HELP gave no array");
            };
            assert_eq!(got.len(), lines.len() + 3, "{container}");
            let first = format!("{} <subcommand>", container.to_ascii_uppercase());
            assert!(matches!(&got[0], Frame::Simple(s) if s.starts_with(&first)));
            assert_eq!(got[got.len() - 2], Frame::Simple("HELP".into()));
            for line in &got {
                let Frame::Simple(text) = line else { panic!("{line:?}") };
                assert!(!text.contains(['\r', '\n']) && text.len() <= 80, "{text:?}");
            }
        }
        assert_eq!(
            answer("client", &args(&["client", "help", "x"])),
            Some(wrong_args("client|help"))
        );
        assert_eq!(answer("client", &args(&["client", "list"])), None);
        assert_eq!(answer("get", &args(&["get", "help"])), None);
    }
}
