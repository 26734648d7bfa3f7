//! MONITOR: every command this node receives from then on, as a status line each
//! (`pubsub::monitor_line`), as Redis writes them. Node-local, as in Redis Cluster. Not
//! shown, as in Redis: commands refused before they run (unknown, wrong arity, NOAUTH,
//! `-MOVED`, RESP2's subscribed context, and shardkv's own refusals, `multi::refused_now`),
//! and administrative ones (the `@admin` category: SHARDKV, MONITOR itself); AUTH's
//! arguments and HELLO's AUTH pair are shown `(redacted)`. A command shows when it is
//! prepared (Redis: when it has run), so its line comes first even when it then fails, and
//! a command queued in MULTI shows when queued (Redis: at EXEC, before EXEC's own line).
//! The monitor's lines wait in its mailbox, bounded by `limits.client_output_bytes_max`:
//! a monitor that does not read them, or a line longer than that, disconnects it. A
//! second MONITOR answers nothing, as in Redis. Refused in MULTI.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{is, Ctx, Spec};
use crate::resp::backend::Backend;
use crate::resp::exec::Job;
use crate::resp::frame::Frame;
use crate::resp::pubsub::{monitor_line, Monitor};

/// The refusal of MONITOR inside MULTI (`multi::SHARDKV_REFUSALS` names it).
pub const IN_MULTI: &str = "ERR MONITOR cannot be queued in a transaction";

const REDACTED: &str = "(redacted)";

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, _args: &[Bytes]) -> Job {
    if cx.client.multi.is_some() {
        return Job::Now(Frame::error(IN_MULTI));
    }
    if cx.client.monitor.is_some() {
        // Redis answers nothing to a MONITOR on a monitor.
        return Job::Now(Frame::Several(Vec::new()));
    }
    let mailbox = cx.client.mailbox(cx.shared.options.limits.client_output_bytes_max);
    let hub = cx.backend.hub().clone();
    cx.client.monitor = Some(Monitor::start(hub, cx.client.id, &mailbox));
    cx.client.entry.show_monitor(true);
    Job::Now(Frame::ok())
}

/// Whether a command of `spec` shows to monitors.
pub fn shown(spec: &Spec) -> bool {
    !spec.acl_categories.contains(&"@admin")
}

/// The line monitors get for `args`, received now from `addr`, written only until it
/// passes `bytes_max` (`pubsub::monitor_line`).
pub fn line(spec: &Spec, addr: &str, args: &[Bytes], bytes_max: u64) -> String {
    let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    let redacted = Bytes::from_static(REDACTED.as_bytes());
    let mut args = args.to_vec();
    match spec.name {
        "auth" => args.iter_mut().skip(1).for_each(|arg| *arg = redacted.clone()),
        "hello" => {
            if let Some(at) = args.iter().position(|arg| is(arg, "auth")) {
                args.iter_mut().skip(at + 1).take(2).for_each(|arg| *arg = redacted.clone());
            }
        }
        _ => {}
    }
    monitor_line(micros as u64, addr, &args, bytes_max)
}
