//! `RespMetrics`: what the RESP front end counts — commands and their latency by command
//! name (names from the command table only, so the label set stays bounded), connected
//! clients and refused connections. Never sees keys or values.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge};

/// Label of commands that are not in the command table.
pub const UNKNOWN_COMMAND: &str = "unknown";

/// The front end's series (cheap clones of registered ones).
#[derive(Clone)]
pub struct RespMetrics {
    pub(crate) commands: IntCounterVec,
    pub(crate) command_seconds: HistogramVec,
    pub(crate) connected_clients: IntGauge,
    pub(crate) rejected_connections: IntCounter,
}

impl RespMetrics {
    /// One command answered after `elapsed`; `name` is a command-table name.
    pub fn command(&self, name: &str, elapsed: Duration) {
        self.commands.with_label_values(&[name]).inc();
        self.command_seconds
            .with_label_values(&[name])
            .observe(elapsed.as_secs_f64());
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
