//! INFO [section ...]: the server, clients, cluster and keyspace sections (the keyspace
//! counts keys in every group).

use bytes::Bytes;

use super::Ctx;
use crate::resp::backend::Backend;
use crate::resp::exec::Job;

use super::lower;
use crate::resp::exec::Merge;
use crate::resp::frame::Frame;

/// The Redis version this server speaks as.
pub const REDIS_VERSION: &str = "7.2.0";

pub fn prepare<B: Backend>(cx: &mut Ctx<'_, B>, args: &[Bytes]) -> Job {
    let asked: Vec<String> = args[1..].iter().map(|a| lower(a)).collect();
    let all = asked.is_empty()
        || asked
            .iter()
            .any(|s| matches!(s.as_str(), "all" | "default" | "everything"));
    let wants = |section: &str| all || asked.iter().any(|s| s == section);
    let mut text = String::new();
    if wants("server") {
        text.push_str(&server_section(cx));
    }
    if wants("clients") {
        text.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            cx.shared.clients.count(),
            cx.shared.options.limits.clients_max
        ));
    }
    if wants("cluster") {
        let enabled = u8::from(cx.client.redirects);
        text.push_str(&format!("# Cluster\r\ncluster_enabled:{enabled}\r\n\r\n"));
    }
    if !wants("keyspace") {
        return Job::Now(Frame::Verbatim(text));
    }
    let parts = super::dbsize::count_parts(cx);
    cx.ops(
        false,
        parts,
        Merge::Info {
            text,
            keyspace: true,
        },
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
