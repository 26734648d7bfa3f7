//! The RESP listener: accepts connections up to `clients_max` (one more is answered
//! `-ERR max number of clients reached` and closed), runs each on its own task, and on
//! shutdown stops accepting, asks every connection to close and waits for them. Owns the
//! accept loop and the server-wide state; never parses a request itself.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::backend::Backend;
use super::client::Clients;
use super::connection;
use super::stats::{ServerStats, OPS_SAMPLE_INTERVAL};
use crate::metrics::RespMetrics;
use crate::node::config::LimitConfig;

/// How long a refused client gets to receive its error before the socket closes.
pub const REFUSAL_WRITE_MS_MAX: u64 = 1_000;
/// Pause after a failed accept (out of file descriptors) before the next one.
pub const ACCEPT_RETRY_MS: u64 = 10;

/// How the front end behaves.
#[derive(Clone, Debug, Default)]
pub struct RespOptions {
    /// Bounds: clients, bulk and multibulk lengths, output per client.
    pub limits: LimitConfig,
    /// The default user's password; empty: no authentication.
    pub requirepass: String,
    /// Connections start cluster-aware: `-MOVED` when another node leads a key's group,
    /// `-CROSSSLOT` for MGET/DEL/EXISTS/UNLINK over several slots (as Redis Cluster).
    /// Off: any node serves any key (the backend forwards) and those commands split
    /// across groups. `READWRITE`/`READONLY` do not change it; `CLIENT REDIRECTS ON|OFF`
    /// does, per connection.
    pub cluster_redirects: bool,
    /// Where commands, latencies and connections are counted, if anywhere.
    pub metrics: Option<RespMetrics>,
    /// The commands SLOWLOG keeps.
    pub slowlog: crate::node::config::SlowlogConfig,
}

/// A listener failure (accept errors are logged and retried, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the listener's address: {0}")]
    LocalAddr(std::io::Error),
}

/// Server-wide state shared by every connection.
#[derive(Debug)]
pub struct Shared {
    pub options: RespOptions,
    pub clients: Clients,
    pub started: Instant,
    pub local_addr: SocketAddr,
    /// INFO's counters.
    pub stats: ServerStats,
    pub slowlog: super::slowlog::SlowLog,
}

/// Serves RESP clients on `listener` until `shutdown` resolves, then closes every
/// connection and returns once they are gone.
pub async fn serve<B: Backend>(
    listener: TcpListener,
    backend: B,
    options: RespOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let local_addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let clients_max = options.limits.clients_max.max(1);
    let slowlog = super::slowlog::SlowLog::new(options.slowlog.clone());
    let shared = Arc::new(Shared {
        options,
        clients: Clients::default(),
        started: Instant::now(),
        local_addr,
        stats: ServerStats::default(),
        slowlog,
    });
    let mut sampling = tokio::time::interval(OPS_SAMPLE_INTERVAL);
    sampling.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let permits = Arc::new(Semaphore::new(clients_max));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a RESP client failed");
                        tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                        continue;
                    }
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, "TCP_NODELAY not set");
                }
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        shared.stats.connection_accepted();
                        let (backend, shared) = (backend.clone(), shared.clone());
                        connections.spawn(async move {
                            let metrics = shared.options.metrics.clone();
                            metrics.iter().for_each(RespMetrics::client_connected);
                            connection::run(stream, addr, backend, shared).await;
                            metrics.iter().for_each(RespMetrics::client_disconnected);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        shared.options.metrics.iter().for_each(RespMetrics::rejected);
                        shared.stats.connection_rejected();
                        connections.spawn(refuse(stream, addr));
                    }
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            at = sampling.tick() => shared.stats.sample(at.into_std()),
        }
    }
    tracing::info!(%local_addr, "RESP listener stopping");
    drop(listener);
    for client in shared.clients.all() {
        client.kill();
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn refuse(mut stream: TcpStream, addr: SocketAddr) {
    tracing::warn!(%addr, "refusing a client: max number of clients reached");
    let write = stream.write_all(b"-ERR max number of clients reached\r\n");
    let _ = tokio::time::timeout(Duration::from_millis(REFUSAL_WRITE_MS_MAX), write).await;
    let _ = stream.shutdown().await;
}
