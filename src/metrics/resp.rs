//! `RespMetrics`: what the RESP front end counts — commands and their latency by command
//! name (names from the command table only, so the label set stays bounded), connected
//! clients and refused connections. Never sees keys or values.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge};

/// Label of commands that are not in the command table.
pub const UNKNOWN_COMMAND: &str = "unknown";

/// Commands whose series handles are kept by index (`RespMetrics::command_at`): more than
/// the command table holds, so every command of it, and the unknown ones, are.
pub const CACHED_COMMANDS_MAX: usize = 256;

/// One command's count and latency series.
type CommandSeries = (IntCounter, Histogram);

/// The front end's series (cheap clones of registered ones).
#[derive(Clone)]
pub struct RespMetrics {
    pub(crate) commands: IntCounterVec,
    pub(crate) command_seconds: HistogramVec,
    pub(crate) connected_clients: IntGauge,
    pub(crate) rejected_connections: IntCounter,
    /// Series by command index, made at a command's first use: a command then costs no
    /// label hashing and no lookup under the vectors' lock.
    pub(crate) by_index: Arc<[OnceLock<CommandSeries>]>,
}

impl RespMetrics {
    /// Room for `CACHED_COMMANDS_MAX` commands' series by index.
    pub(crate) fn by_index() -> Arc<[OnceLock<CommandSeries>]> {
        (0..CACHED_COMMANDS_MAX).map(|_| OnceLock::new()).collect()
    }

    /// One command answered after `elapsed`; `name` is a command-table name.
    pub fn command(&self, name: &str, elapsed: Duration) {
        self.commands.with_label_values(&[name]).inc();
        self.command_seconds
            .with_label_values(&[name])
            .observe(elapsed.as_secs_f64());
    }

    /// `command`, for a caller that gives each name one fixed `index` (its command-table
    /// index): the series are looked up once per index.
    pub fn command_at(&self, index: usize, name: &str, elapsed: Duration) {
        let Some(series) = self.by_index.get(index) else {
            return self.command(name, elapsed);
        };
        let (count, seconds) = series.get_or_init(|| {
            let count = self.commands.with_label_values(&[name]);
            (count, self.command_seconds.with_label_values(&[name]))
        });
        count.inc();
        seconds.observe(elapsed.as_secs_f64());
    }

    pub fn client_connected(&self) {
        self.connected_clients.inc();
    }

    pub fn client_disconnected(&self) {
        self.connected_clients.dec();
    }

    /// A connection refused because `clients_max` were connected.
    pub fn rejected(&self) {
        self.rejected_connections.inc();
    }
}

impl std::fmt::Debug for RespMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespMetrics")
            .field("connected_clients", &self.connected_clients.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::NodeMetrics;
    use crate::raft::NodeId;

    #[test]
    fn a_command_counted_by_index_lands_in_its_named_series() {
        let metrics = NodeMetrics::new(NodeId(1)).expect("metrics");
        let resp = metrics.resp();
        let get = crate::resp::cmd::spec_index_of_arg(b"GET").expect("get is in the table");
        resp.command_at(get, "get", Duration::from_millis(1));
        resp.command_at(get, "get", Duration::from_millis(1));
        resp.command("get", Duration::from_millis(1));
        resp.command_at(CACHED_COMMANDS_MAX, "set", Duration::from_millis(1));
        let text = metrics.render();
        let get = r#"shardkv_resp_commands_total{command="get",node="1"} 3"#;
        let set = r#"shardkv_resp_commands_total{command="set",node="1"} 1"#;
        assert!(text.contains(get) && text.contains(set), "{text}");
        let count = r#"shardkv_resp_command_duration_seconds_count{command="get",node="1"} 3"#;
        assert!(text.contains(count), "{text}");
    }
}
