//! `ServerStats`: what INFO's stats, commandstats and errorstats sections report, counted
//! as Redis counts them since the front end started or since `CONFIG RESETSTAT`:
//! connections accepted and refused, calls of each command with their time, the calls
//! refused before they ran and those that failed, error replies by their first word, bytes
//! read and written, and the recent rate of commands from samples taken every
//! `OPS_SAMPLE_INTERVAL`. A command's time is from its preparation to its reply, its Raft
//! round included (Redis's is the time the command ran). A refused call is one Redis
//! refuses before it runs (unknown command or subcommand, wrong arity, NOAUTH, a cluster
//! redirection or refusal, BUSY); any other error reply of a command is a failed call.
//! Commands are counted by their name (`cmdstat_config`), where Redis 7 counts a command's
//! subcommands apart (`cmdstat_config|get`).
//! Key lookups are counted from the replies of the reads that name one key each and say
//! whether it was there (GET, GETEX, GETDEL, MGET, TYPE, TTL, PTTL, EXPIRETIME,
//! PEXPIRETIME): Redis counts the lookups of other reads too (EXISTS, STRLEN, GETRANGE,
//! SET with GET), whose replies do not tell.
//! Owns these counters only; the Prometheus series (`RespMetrics`) are apart, as they
//! never reset. Never sees keys or values.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::cmd::SPECS;
use super::frame::Frame;

/// Distinct error kinds (first words) counted one by one; errors of a kind past these are
/// counted in `total_error_replies` only (Redis, past its 128, stops counting kinds and
/// shows `errorstat_ERRORSTATS_DISABLED`).
pub const ERROR_KINDS_MAX: usize = 128;
/// How often the recent rates are sampled (Redis: every 100 ms).
pub const OPS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Samples the recent rates span (Redis: 16, 1.6 s).
pub const OPS_SAMPLES: usize = 16;

/// Error replies Redis gives before a command runs (`rejected_calls`); every other error
/// reply of a command is a failure of its own (`failed_calls`).
const REJECTED_PREFIXES: [&str; 10] = [
    "ERR unknown command",
    "ERR unknown subcommand",
    "ERR wrong number of arguments",
    "NOAUTH ",
    "MOVED ",
    "CROSSSLOT ",
    "CLUSTERDOWN ",
    "TRYAGAIN ",
    "BUSY ",
    "ERR Can't execute '",
];

/// What a command's reply says about its key lookups.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lookups {
    /// Nothing (a write, or a reply that does not tell).
    Untold,
    /// One key: a nil reply missed it.
    NilMisses,
    /// One key per element: a nil element missed its key.
    EachNilMisses,
    /// One key: `none` missed it (TYPE).
    NoneMisses,
    /// One key: -2 missed it (the TTL family).
    MinusTwoMisses,
}

/// `Lookups` by command-table index (the unknown commands' last).
fn lookups(index: usize) -> Lookups {
    static BY_INDEX: OnceLock<Box<[Lookups]>> = OnceLock::new();
    let by_index = BY_INDEX.get_or_init(|| {
        let of = |name: &str| match name {
            "get" | "getex" | "getdel" | "dump" => Lookups::NilMisses,
            "mget" => Lookups::EachNilMisses,
            "type" => Lookups::NoneMisses,
            "ttl" | "pttl" | "expiretime" | "pexpiretime" => Lookups::MinusTwoMisses,
            _ => Lookups::Untold,
        };
        SPECS.iter().map(|spec| of(spec.name)).chain([Lookups::Untold]).collect()
    });
    by_index.get(index).copied().unwrap_or(Lookups::Untold)
}

/// One command's counters, on a cache line of their own (connections on several threads
/// count different commands without sharing a line).
#[derive(Default)]
#[repr(align(64))]
struct CommandStats {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

/// One sample of the totals the recent rates come from.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    calls: u64,
    input: u64,
    output: u64,
}

/// The front end's counters, shared by every connection of one server.
pub struct ServerStats {
    /// By command-table index; the last one for commands not in the table.
    commands: Box<[CommandStats]>,
    connections_received: AtomicU64,
    rejected_connections: AtomicU64,
    net_input_bytes: AtomicU64,
    net_output_bytes: AtomicU64,
    error_replies: AtomicU64,
    keyspace_hits: AtomicU64,
    keyspace_misses: AtomicU64,
    /// The node's active expiry deletes at the last `CONFIG RESETSTAT`.
    expired_keys_at_reset: AtomicU64,
    /// Error replies by their first word, at most `ERROR_KINDS_MAX` words.
    errors: Mutex<BTreeMap<String, u64>>,
    samples: Mutex<VecDeque<Sample>>,
}

impl Default for ServerStats {
    fn default() -> ServerStats {
        ServerStats {
            commands: (0..=SPECS.len()).map(|_| CommandStats::default()).collect(),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            error_replies: AtomicU64::new(0),
            keyspace_hits: AtomicU64::new(0),
            keyspace_misses: AtomicU64::new(0),
            expired_keys_at_reset: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            samples: Mutex::new(VecDeque::with_capacity(OPS_SAMPLES)),
        }
    }
}

impl std::fmt::Debug for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStats")
            .field("commands_processed", &self.commands_processed())
            .finish_non_exhaustive()
    }
}

/// Whether an error reply is one Redis gives before a command runs (`REJECTED_PREFIXES`).
fn rejected_text(text: &str) -> bool {
    REJECTED_PREFIXES.iter().any(|p| text.starts_with(p))
}

/// Whether `reply` refuses a command before it runs (a transaction queueing it aborts).
pub fn is_rejected(reply: &Frame) -> bool {
    matches!(reply, Frame::Error(text) if rejected_text(text))
}

impl ServerStats {
    /// A command (by command-table index, the table's length for an unknown one) answered
    /// `reply` after `elapsed`.
    pub fn command(&self, index: usize, elapsed: Duration, reply: &Frame) {
        let Some(stats) = self.commands.get(index) else { return };
        if let Frame::Error(text) = reply {
            self.error_reply(text);
            if rejected_text(text) {
                stats.rejected.fetch_add(1, Relaxed);
                return;
            }
            stats.failed.fetch_add(1, Relaxed);
        } else if !matches!(reply, Frame::Simple(text) if text == "QUEUED") {
            // A command queued in a transaction has looked nothing up yet.
            self.count_lookups(index, reply);
        }
        stats.calls.fetch_add(1, Relaxed);
        let usec = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        stats.usec.fetch_add(usec, Relaxed);
    }

    /// The key lookups `reply` (not an error) of command `index` tells of.
    fn count_lookups(&self, index: usize, reply: &Frame) {
        let kind = lookups(index);
        let count = |frame: &Frame| {
            let missed = match kind {
                Lookups::NoneMisses => matches!(frame, Frame::Simple(s) if s == "none"),
                Lookups::MinusTwoMisses => *frame == Frame::Int(-2),
                _ => *frame == Frame::Null,
            };
            let counter = if missed { &self.keyspace_misses } else { &self.keyspace_hits };
            counter.fetch_add(1, Relaxed);
        };
        match (kind, reply) {
            (Lookups::EachNilMisses, Frame::Array(each)) => each.iter().for_each(count),
            (Lookups::Untold | Lookups::EachNilMisses, _) => {}
            _ => count(reply),
        }
    }

    /// An error reply that no command gave (a protocol error), or one a command gave.
    pub fn error_reply(&self, text: &str) {
        self.error_replies.fetch_add(1, Relaxed);
        let kind = text.split(' ').next().unwrap_or_default();
        let kind = if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_uppercase()) {
            kind
        } else {
            "ERR"
        };
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = errors.get_mut(kind) {
            *count += 1;
        } else if errors.len() < ERROR_KINDS_MAX {
            errors.insert(kind.to_owned(), 1);
        }
    }

    pub fn connection_accepted(&self) {
        self.connections_received.fetch_add(1, Relaxed);
    }

    pub fn connection_rejected(&self) {
        self.rejected_connections.fetch_add(1, Relaxed);
    }

    /// Bytes read from a client.
    pub fn input(&self, bytes: usize) {
        self.net_input_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Bytes written to a client.
    pub fn output(&self, bytes: usize) {
        self.net_output_bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Calls of every command (refused ones not included), as `total_commands_processed`.
    pub fn commands_processed(&self) -> u64 {
        self.commands.iter().map(|c| c.calls.load(Relaxed)).sum()
    }

    /// Takes one sample of the totals; the oldest of `OPS_SAMPLES` goes.
    pub fn sample(&self, at: Instant) {
        let sample = Sample {
            at,
            calls: self.commands_processed(),
            input: self.net_input_bytes.load(Relaxed),
            output: self.net_output_bytes.load(Relaxed),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == OPS_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(sample);
    }

    /// Every counter back to zero (`CONFIG RESETSTAT`); `expired_keys`: the node's active
    /// expiry deletes so far, from which INFO counts again.
    pub fn reset(&self, expired_keys: u64) {
        self.expired_keys_at_reset.store(expired_keys, Relaxed);
        for c in self.commands.iter() {
            for counter in [&c.calls, &c.usec, &c.rejected, &c.failed] {
                counter.store(0, Relaxed);
            }
        }
        for counter in [
            &self.connections_received,
            &self.rejected_connections,
            &self.net_input_bytes,
            &self.net_output_bytes,
            &self.error_replies,
            &self.keyspace_hits,
            &self.keyspace_misses,
        ] {
            counter.store(0, Relaxed);
        }
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Commands, input kilobytes and output kilobytes per second over the samples.
    fn recent_rates(&self) -> (u64, f64, f64) {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let (Some(first), Some(last)) = (samples.front(), samples.back()) else {
            return (0, 0.0, 0.0);
        };
        let seconds = last.at.saturating_duration_since(first.at).as_secs_f64();
        if seconds <= 0.0 {
            return (0, 0.0, 0.0);
        }
        let per_second = |from: u64, to: u64| to.saturating_sub(from) as f64 / seconds;
        let ops = per_second(first.calls, last.calls).round() as u64;
        let kbps = |from, to| per_second(from, to) / 1024.0;
        (ops, kbps(first.input, last.input), kbps(first.output, last.output))
    }

    /// INFO's `# Stats` section; `expired_keys`: the node's active expiry deletes so far
    /// (`Backend::expired_keys`), counted from the last reset.
    /// `pubsub`: this node's channels, patterns and shard channels with a subscriber.
    pub fn stats_section(&self, expired_keys: u64, pubsub: [usize; 3]) -> String {
        let (ops, input_kbps, output_kbps) = self.recent_rates();
        let expired_keys = expired_keys.saturating_sub(self.expired_keys_at_reset.load(Relaxed));
        format!(
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             instantaneous_ops_per_sec:{ops}\r\ntotal_net_input_bytes:{}\r\n\
             total_net_output_bytes:{}\r\ninstantaneous_input_kbps:{input_kbps:.2}\r\n\
             instantaneous_output_kbps:{output_kbps:.2}\r\nrejected_connections:{}\r\n\
             expired_keys:{expired_keys}\r\nevicted_keys:0\r\n\
             keyspace_hits:{}\r\nkeyspace_misses:{}\r\npubsub_channels:{}\r\n\
             pubsub_patterns:{}\r\npubsubshard_channels:{}\r\ntotal_error_replies:{}\r\n\r\n",
            self.connections_received.load(Relaxed),
            self.commands_processed(),
            self.net_input_bytes.load(Relaxed),
            self.net_output_bytes.load(Relaxed),
            self.rejected_connections.load(Relaxed),
            self.keyspace_hits.load(Relaxed),
            self.keyspace_misses.load(Relaxed),
            pubsub[0],
            pubsub[1],
            pubsub[2],
            self.error_replies.load(Relaxed),
        )
    }

    /// INFO's `# Commandstats` section: every command of the table used since the reset.
    pub fn commandstats_section(&self) -> String {
        let mut text = String::from("# Commandstats\r\n");
        for (spec, c) in SPECS.iter().zip(self.commands.iter()) {
            let calls = c.calls.load(Relaxed);
            let (rejected, failed) = (c.rejected.load(Relaxed), c.failed.load(Relaxed));
            if calls == 0 && rejected == 0 && failed == 0 {
                continue;
            }
            let usec = c.usec.load(Relaxed);
            let per_call = if calls == 0 { 0.0 } else { usec as f64 / calls as f64 };
            let _ = write!(
                text,
                "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
                 rejected_calls={rejected},failed_calls={failed}\r\n",
                spec.name
            );
        }
        text.push_str("\r\n");
        text
    }

    /// INFO's `# Errorstats` section.
    pub fn errorstats_section(&self) -> String {
        let mut text = String::from("# Errorstats\r\n");
        for (kind, count) in self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = write!(text, "errorstat_{kind}:count={count}\r\n");
        }
        text.push_str("\r\n");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::cmd::spec_index_of_arg;

    fn field(text: &str, name: &str) -> String {
        let line = text.lines().find(|l| l.starts_with(&format!("{name}:")));
        line.unwrap_or_else(|| panic!("no {name} in {text}"))[name.len() + 1..].to_owned()
    }

    #[test]
    fn calls_failures_refusals_and_errors_are_counted_as_redis_counts_them() {
        let stats = ServerStats::default();
        let get = spec_index_of_arg(b"GET").expect("get");
        let incr = spec_index_of_arg(b"INCR").expect("incr");
        let ms = Duration::from_millis(1);
        stats.command(get, ms, &Frame::Null);
        stats.command(get, ms, &Frame::error("MOVED 1 127.0.0.1:7002"));
        stats.command(get, ms, &Frame::error("ERR wrong number of arguments for 'get' command"));
        stats.command(incr, ms, &Frame::error("ERR value is not an integer or out of range"));
        stats.command(incr, ms, &Frame::error("WRONGTYPE Operation against a key"));
        stats.command(SPECS.len(), ms, &Frame::error("ERR unknown command 'x'"));
        stats.error_reply("ERR Protocol error: invalid bulk length");

        let commands = stats.commandstats_section();
        let get = "cmdstat_get:calls=1,usec=1000,usec_per_call=1000.00,rejected_calls=2,\
                   failed_calls=0\r\n";
        let incr = "cmdstat_incr:calls=2,usec=2000,usec_per_call=1000.00,rejected_calls=0,\
                    failed_calls=2\r\n";
        assert!(commands.contains(get) && commands.contains(incr), "{commands}");
        assert_eq!(commands.lines().filter(|l| l.starts_with("cmdstat_")).count(), 2);
        let errors = stats.errorstats_section();
        assert_eq!(
            errors,
            "# Errorstats\r\nerrorstat_ERR:count=4\r\nerrorstat_MOVED:count=1\r\n\
             errorstat_WRONGTYPE:count=1\r\n\r\n"
        );
        let text = stats.stats_section(40, [0; 3]);
        assert_eq!(field(&text, "total_commands_processed"), "3");
        assert_eq!(field(&text, "total_error_replies"), "6");
        assert_eq!(field(&text, "expired_keys"), "40");

        // The node's expired keys count on; INFO counts them from the reset.
        stats.reset(40);
        assert_eq!(stats.commandstats_section(), "# Commandstats\r\n\r\n");
        assert_eq!(stats.errorstats_section(), "# Errorstats\r\n\r\n");
        assert_eq!(field(&stats.stats_section(45, [0; 3]), "total_error_replies"), "0");
        assert_eq!(field(&stats.stats_section(45, [0; 3]), "expired_keys"), "5");
    }

    #[test]
    fn key_lookups_are_counted_from_the_replies_that_tell_them() {
        let stats = ServerStats::default();
        let index = |name: &[u8]| spec_index_of_arg(name).expect("in the table");
        let zero = Duration::ZERO;
        let bulk = || Frame::bulk(bytes::Bytes::from_static(b"v"));
        stats.command(index(b"GET"), zero, &bulk());
        stats.command(index(b"GETDEL"), zero, &Frame::Null);
        stats.command(index(b"MGET"), zero, &Frame::Array(vec![bulk(), Frame::Null, bulk()]));
        stats.command(index(b"TYPE"), zero, &Frame::Simple("none".into()));
        stats.command(index(b"TYPE"), zero, &Frame::Simple("string".into()));
        stats.command(index(b"PTTL"), zero, &Frame::Int(-2));
        stats.command(index(b"TTL"), zero, &Frame::Int(-1));
        // Writes, errors and replies that do not tell count nothing.
        stats.command(index(b"SET"), zero, &Frame::Null);
        stats.command(index(b"STRLEN"), zero, &Frame::Int(0));
        stats.command(index(b"GET"), zero, &Frame::error("ERR wrong number of arguments x"));
        let text = stats.stats_section(0, [0; 3]);
        assert_eq!(field(&text, "keyspace_hits"), "5");
        assert_eq!(field(&text, "keyspace_misses"), "4");
    }

    #[test]
    fn error_kinds_past_the_bound_count_in_the_total_only() {
        let stats = ServerStats::default();
        for i in 0..ERROR_KINDS_MAX + 5 {
            let letter = |d: usize| (b'A' + ((i >> (4 * d)) & 15) as u8) as char;
            let kind: String = (0..4).map(letter).collect();
            stats.error_reply(&format!("{kind} something"));
        }
        stats.error_reply("lower-case text");
        let section = stats.errorstats_section();
        let kinds = section.lines().filter(|l| l.starts_with("errorstat_")).count();
        assert_eq!(kinds, ERROR_KINDS_MAX);
        assert_eq!(field(&stats.stats_section(0, [0; 3]), "total_error_replies"), "134");
    }

    #[test]
    fn recent_rates_come_from_the_samples() {
        let stats = ServerStats::default();
        let get = spec_index_of_arg(b"GET").expect("get");
        let start = Instant::now();
        assert_eq!(field(&stats.stats_section(0, [0; 3]), "instantaneous_ops_per_sec"), "0");
        stats.sample(start);
        for _ in 0..300 {
            stats.command(get, Duration::ZERO, &Frame::Null);
        }
        stats.input(3 * 1024);
        stats.output(6 * 1024);
        stats.sample(start + Duration::from_millis(1500));
        let text = stats.stats_section(0, [0; 3]);
        assert_eq!(field(&text, "instantaneous_ops_per_sec"), "200");
        assert_eq!(field(&text, "instantaneous_input_kbps"), "2.00");
        assert_eq!(field(&text, "instantaneous_output_kbps"), "4.00");
        assert_eq!(field(&text, "total_net_output_bytes"), "6144");
        for i in 0..OPS_SAMPLES as u64 {
            stats.sample(start + Duration::from_millis(2000 + 100 * i));
        }
        let idle = stats.stats_section(0, [0; 3]);
        assert_eq!(field(&idle, "instantaneous_ops_per_sec"), "0", "idle");
    }
}
