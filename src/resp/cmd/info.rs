//! INFO [section ...]: Redis's sections where shardkv has their facts — server, clients,
//! memory, persistence, stats, cpu, commandstats, errorstats, cluster and keyspace (the
//! keyspace counts keys, those with a deadline and their mean time left, in every group).
//! `default` (and no section) is every one of them but commandstats, as in Redis; `all` and
//! `everything` add it; unknown sections add nothing.
//! Memory is the process's resident size (`used_memory` is that too: shardkv does not count
//! its allocator's bytes apart), peak included; the persistence section says that no
//! snapshot or rewrite runs in a child and nothing is loading (every write is in the Raft
//! log before its reply: there is no separate save to report; `aof_enabled:1` as CONFIG GET
//! appendonly says, every write being fsynced on a majority before its reply).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::lower;
use crate::kv::read::ReadCommand;
use crate::resp::exec::Merge;
use crate::resp::frame::Frame;

/// The Redis version this server speaks as.
pub const REDIS_VERSION: &str = "7.2.0";

/// Sections of `INFO`, `INFO default`, in their order; commandstats only with `all`.
const SECTIONS: [&str; 10] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "cpu",
    "commandstats",
    "errorstats",
    "cluster",
    "keyspace",
];

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let asked: Vec<String> = args[1..].iter().map(|a| lower(a)).collect();
    let all = asked.iter().any(|s| matches!(s.as_str(), "all" | "everything"));
    let default = asked.is_empty() || asked.iter().any(|s| s == "default");
    let wants = |section: &str| {
        all || (default && section != "commandstats") || asked.iter().any(|s| s == section)
    };
    let stats = &cx.shared.stats;
    let mut text = String::new();
    for section in SECTIONS.into_iter().filter(|s| wants(s)) {
        match section {
            "server" => text.push_str(&server_section(cx)),
            "clients" => text.push_str(&format!(
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\nblocked_clients:0\r\n\r\n",
                cx.shared.clients.count(),
                cx.shared.options.limits.clients_max
            )),
            "memory" => text.push_str(&memory_section()),
            "persistence" => text.push_str(
                "# Persistence\r\nloading:0\r\nasync_loading:0\r\nrdb_bgsave_in_progress:0\r\n\
                 aof_enabled:1\r\naof_rewrite_in_progress:0\r\n\r\n",
            ),
            "stats" => {
                let hub = cx.backend.hub();
                let pubsub = crate::resp::pubsub::Kind::ALL.map(|kind| hub.count(kind));
                text.push_str(&stats.stats_section(cx.backend.expired_keys(), pubsub));
            }
            "cpu" => text.push_str(&cpu_section()),
            "commandstats" => text.push_str(&stats.commandstats_section()),
            "errorstats" => text.push_str(&stats.errorstats_section()),
            "cluster" => {
                let enabled = u8::from(cx.client.redirects);
                text.push_str(&format!("# Cluster\r\ncluster_enabled:{enabled}\r\n\r\n"));
            }
            _ => {}
        }
    }
    if !wants("keyspace") {
        return Job::Now(Frame::Verbatim(text));
    }
    let count = |slot_first, slot_last| ReadCommand::Keyspace { slot_first, slot_last };
    let parts = super::dbsize::count_parts(cx, count);
    let now_ms = cx.now_ms();
    cx.ops(false, parts, Merge::Info { text, now_ms })
}

/// `bytes` as Redis's `*_human` fields write them (`1.50M`).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

/// The process's resident bytes and their peak (`/proc/self/status`; zeros where there is
/// no such file).
fn resident_bytes() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

fn memory_section() -> String {
    let (rss, peak) = resident_bytes();
    let (rss_human, peak_human) = (human(rss), human(peak));
    format!(
        "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{rss_human}\r\n\
         used_memory_rss:{rss}\r\nused_memory_rss_human:{rss_human}\r\n\
         used_memory_peak:{peak}\r\nused_memory_peak_human:{peak_human}\r\nmaxmemory:0\r\n\
         maxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n\r\n"
    )
}

/// CPU seconds of `who` (`RUSAGE_SELF` or `RUSAGE_CHILDREN`): system, then user.
fn cpu_seconds(who: libc::c_int) -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which points
    // to one; on failure the zeroed one stays.
    let usage = unsafe {
        libc::getrusage(who, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (seconds(usage.ru_stime), seconds(usage.ru_utime))
}

fn cpu_section() -> String {
    let (sys, user) = cpu_seconds(libc::RUSAGE_SELF);
    let (sys_children, user_children) = cpu_seconds(libc::RUSAGE_CHILDREN);
    format!(
        "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\n\
         used_cpu_sys_children:{sys_children:.6}\r\n\
         used_cpu_user_children:{user_children:.6}\r\n\r\n"
    )
}

fn server_section<B: Backend>(cx: &Ctx<'_, B>) -> String {
    let uptime = cx.shared.started.elapsed().as_secs();
    let mode = if cx.client.redirects {
        "cluster"
    } else {
        "standalone"
    };
    format!(
        "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:{mode}\r\n\
         server_name:shardkv\r\nshardkv_version:{}\r\nshardkv_node_id:{}\r\n\
         process_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\n\
         uptime_in_days:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        cx.backend.node_id(),
        std::process::id(),
        cx.shared.local_addr.port(),
        uptime / 86_400,
    )
}
