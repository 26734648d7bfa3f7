//! `shardkv server --join ADDR[,ADDR...]`: a new node asks a running cluster (any node's
//! RESP address) to record it in the cluster map (`SHARDKV JOIN`, a logged operation of
//! the metadata group), then reads the map (`SHARDKV MAP`) and starts with the layout and
//! peers it gives. It starts with no replica; `shardkv admin rebalance` (or
//! `add-replica`) gives it work. Joining again with the same id and addresses is a no-op,
//! so a joined node is restarted with the same command; if no seed answers within the
//! time-out, it starts from the cluster map its last run kept.

use std::time::{Duration, Instant};

use crate::kv::meta::ClusterMap;
use crate::node::config::{ConfigError, NodeConfig, PeerConfig};
use crate::router::layout::Layout;

/// Pause between two rounds over the seed addresses.
pub const JOIN_RETRY_MS: u64 = 500;

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the cluster refused node {node}: {reason}")]
    Refused { node: u64, reason: String },
    #[error("no node of {seeds} answered within {waited_ms} ms; last error: {last}")]
    Unreachable { seeds: String, waited_ms: u128, last: String },
}

/// One attempt's failure: worth another try, or final.
enum Attempt {
    Retry(String),
    Refused(String),
}

/// Joins the cluster through one of `seeds` (RESP addresses), retrying for `timeout`.
/// Fills `config.nodes` from the cluster map, marks the config `joined`, and returns the
/// layout the map describes (checked against the config).
pub fn join(
    config: &mut NodeConfig,
    seeds: &[String],
    timeout: Duration,
) -> Result<Layout, JoinError> {
    let me = config.announced()?;
    let deadline = Instant::now() + timeout;
    let started = Instant::now();
    let mut last = String::from("no seed address given");
    loop {
        for seed in seeds {
            match try_seed(config, &me, seed, deadline) {
                Ok(map) => return adopt(config, &map),
                Err(Attempt::Refused(reason)) => {
                    return Err(JoinError::Refused { node: me.id, reason })
                }
                Err(Attempt::Retry(e)) => {
                    tracing::warn!(seed = %seed, "joining through {seed} failed: {e}");
                    last = e;
                }
            }
        }
        if Instant::now() >= deadline {
            let saved = config.data_dir.join(crate::node::meta::SAVED_MAP_FILE);
            if let Some(map) = crate::node::meta::load_map(&saved) {
                if map.nodes.contains_key(&me.id) {
                    tracing::warn!(seeds = %seeds.join(","), "no seed answered ({last}); \
                        starting from the cluster map kept by the last run");
                    return adopt(config, &map);
                }
            }
            return Err(JoinError::Unreachable {
                seeds: seeds.join(","),
                waited_ms: started.elapsed().as_millis(),
                last,
            });
        }
        std::thread::sleep(Duration::from_millis(JOIN_RETRY_MS));
    }
}

fn try_seed(
    config: &NodeConfig,
    me: &PeerConfig,
    seed: &str,
    deadline: Instant,
) -> Result<ClusterMap, Attempt> {
    let retry = |e: redis::RedisError| Attempt::Retry(e.to_string());
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    let client = redis::Client::open(format!("redis://{seed}/")).map_err(retry)?;
    let mut con = client.get_connection_with_timeout(left).map_err(retry)?;
    con.set_read_timeout(Some(left)).map_err(retry)?;
    if !config.requirepass.is_empty() {
        redis::cmd("AUTH").arg(&config.requirepass).query::<()>(&mut con).map_err(retry)?;
    }
    let joined = redis::cmd("SHARDKV")
        .arg("JOIN")
        .arg(me.id)
        .arg(me.peer.to_string())
        .arg(me.resp.to_string())
        .query::<()>(&mut con);
    if let Err(e) = joined {
        // The map's own refusals (an id or address taken) are final; the rest (no leader
        // yet, a time-out) are worth another try.
        let text = e.to_string();
        let refused = ["addresses", "reserved", "the cluster has"].iter().any(|w| text.contains(w));
        return Err(if refused { Attempt::Refused(text) } else { Attempt::Retry(text) });
    }
    let bytes: Vec<u8> = redis::cmd("SHARDKV").arg("MAP").query(&mut con).map_err(retry)?;
    let map = ClusterMap::decode(&bytes).map_err(|e| Attempt::Retry(e.to_string()))?;
    // Between a split's two reports the map may name no owner for some slots (or, before
    // this node's own join applied on the replica read, not name this node): read again.
    Layout::from_map(&map).validate().map_err(|e| Attempt::Retry(format!("map: {e}")))?;
    Ok(map)
}

/// Takes the map's layout and nodes as this node's own.
fn adopt(config: &mut NodeConfig, map: &ClusterMap) -> Result<Layout, JoinError> {
    let layout = Layout::from_map(map);
    config.nodes = map
        .nodes
        .iter()
        .map(|(&id, n)| PeerConfig { id, peer: n.peer, resp: n.resp })
        .collect();
    config.joined = true;
    config.validate(&layout)?;
    tracing::info!(node = config.node_id, nodes = map.nodes.len(), groups = layout.groups.len(),
        map_version = map.version, "joined the cluster");
    Ok(layout)
}
