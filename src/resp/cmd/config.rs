//! CONFIG GET: the server parameters a Redis client or tool asks about (redis-benchmark
//! reads `save` and `appendonly`), with the values that describe shardkv truthfully — every
//! write is fsynced on a majority before its reply, so `appendonly yes` and
//! `appendfsync always`; there are no RDB saves. Parameters come from the node's file; CONFIG
//! SET changes only `notify-keyspace-events` (this node's, until it restarts, as a Redis
//! Cluster node's own), and answers that the others, and REWRITE, are not supported. CONFIG
//! RESETSTAT zeroes INFO's
//! stats, commandstats and errorstats, as Redis does (the Prometheus series, which are
//! counters, never go back).

use bytes::Bytes;

use super::Ctx;
use crate::kv::glob::glob_match;
use crate::kv::notify::{NotifyFlags, LETTERS_SHOWN};
use crate::resp::backend::Backend;
use crate::resp::exec::Job;
use crate::resp::frame::Frame;

use super::unknown_subcommand;

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let sub = args.get(1).map(|a| String::from_utf8_lossy(a).to_ascii_lowercase());
    match sub.as_deref() {
        Some("get") if args.len() >= 3 => Job::Now(get(cx, &args[2..])),
        Some("get") => Job::Now(Frame::error(
            "ERR wrong number of arguments for 'config|get' command",
        )),
        Some("resetstat") if args.len() == 2 => {
            cx.shared.stats.reset(cx.backend.expired_keys());
            Job::Now(Frame::ok())
        }
        Some("resetstat") => Job::Now(Frame::error(
            "ERR wrong number of arguments for 'config|resetstat' command",
        )),
        Some("set") if cx.client.multi.is_some() => Job::Now(Frame::error(SET_IN_MULTI)),
        Some("set") if args.len() >= 4 => Job::Now(set(cx, &args[2..])),
        Some("set") => Job::Now(Frame::error(
            "ERR wrong number of arguments for 'config|set' command",
        )),
        Some("rewrite") => Job::Now(Frame::error(
            "ERR CONFIG REWRITE is not supported: shardkv reads its parameters from the node's \
             configuration file",
        )),
        _ => Job::Now(unknown_subcommand(&args[1], "config")),
    }
}

/// The parameter CONFIG SET changes.
const NOTIFY_PARAM: &str = "notify-keyspace-events";

/// CONFIG SET after MULTI: it would change the node's flags when queued, before EXEC (or a
/// DISCARD) decides (a refusal before it runs: `multi::SHARDKV_REFUSALS`).
pub const SET_IN_MULTI: &str = "ERR CONFIG SET cannot be queued in a transaction";

/// CONFIG SET of (name, value) pairs: every name checked, then every value, before any is
/// set, as Redis does.
fn set<B: Backend>(cx: &Ctx<'_, B>, pairs: &[Bytes]) -> Frame {
    if !pairs.len().is_multiple_of(2) {
        return Frame::error("ERR syntax error");
    }
    let failed = |name: &[u8], why: &str| {
        let name = String::from_utf8_lossy(name);
        let text = format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}");
        Frame::error(text)
    };
    for (i, pair) in pairs.chunks(2).enumerate() {
        if !pair[0].eq_ignore_ascii_case(NOTIFY_PARAM.as_bytes()) {
            return Frame::error(format!(
                "ERR CONFIG SET {} is not supported: shardkv reads its parameters from the \
                 node's configuration file, and changes only {NOTIFY_PARAM} at run time",
                String::from_utf8_lossy(&pair[0])
            ));
        }
        if i > 0 {
            return failed(&pair[0], "duplicate parameter");
        }
    }
    match std::str::from_utf8(&pairs[1]).ok().map(NotifyFlags::parse) {
        Some(Ok(flags)) => cx.backend.notifier().set(flags),
        _ => {
            let why = format!("Invalid event class character. Use '{LETTERS_SHOWN}'.");
            return failed(NOTIFY_PARAM.as_bytes(), &why);
        }
    }
    Frame::ok()
}

/// Every (name, value) pair whose name matches one of `patterns`, as a map.
fn get<B: Backend>(cx: &Ctx<'_, B>, patterns: &[Bytes]) -> Frame {
    let limits = &cx.shared.options.limits;
    let slowlog = cx.shared.slowlog.config();
    let params: [(&str, String); 12] = [
        ("appendonly", "yes".into()),
        ("appendfsync", "always".into()),
        ("save", String::new()),
        ("databases", "1".into()),
        ("cluster-enabled", "yes".into()),
        ("maxclients", limits.clients_max.to_string()),
        ("proto-max-bulk-len", limits.bulk_bytes_max.to_string()),
        ("client-query-buffer-limit", limits.request_bytes_max.to_string()),
        ("requirepass", String::new()),
        ("slowlog-log-slower-than", slowlog.log_slower_than_us.to_string()),
        ("slowlog-max-len", slowlog.max_len.to_string()),
        (NOTIFY_PARAM, cx.backend.notifier().flags().to_string()),
    ];
    let mut out = Vec::new();
    for (name, value) in params {
        // The password itself is never shown; Redis shows it, shardkv chooses not to.
        if patterns.iter().any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes())) {
            out.push((Frame::text(name), Frame::text(&value)));
        }
    }
    Frame::Map(out)
}
