//! A node's configuration file (`shardkv server --config FILE`): who it is, where it
//! listens, where its data lives, the cluster's layout and peers, the shared secret, and
//! every time-out and bound an operator may tune. Parsing and validation only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kv::notify::{NotifyFlags, LETTERS_SHOWN};
use crate::router::layout::{Layout, LayoutError};
use crate::shard::limits::{APPLY_FLUSH_MS_MAX, ENTRY_FRAME_ENVELOPE_BYTES};

/// A configuration that cannot be used; the text says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("layout {path}: {source}")]
    Layout { path: PathBuf, source: LayoutError },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The addresses a node listens on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Redis clients (RESP2/RESP3).
    pub resp: SocketAddr,
    /// Other shardkv nodes (the transport).
    pub peer: SocketAddr,
    /// Prometheus `/metrics`.
    pub metrics: SocketAddr,
}

/// Another node (or this one) of the cluster, as clients and peers reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub id: u64,
    /// Its transport address.
    pub peer: SocketAddr,
    /// Its RESP address, announced in CLUSTER SLOTS/SHARDS/NODES and `-MOVED`.
    pub resp: SocketAddr,
}

/// Time-outs; every one has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutConfig {
    /// One Raft tick.
    pub tick_ms: u64,
    /// Election time-out, drawn from [min, max) ticks.
    pub election_ticks_min: u64,
    pub election_ticks_max: u64,
    /// A leader heartbeats every this many ticks; the transport sends one coalesced
    /// heartbeat frame per peer per `tick_ms * heartbeat_ticks`.
    pub heartbeat_ticks: u64,
    /// A client request (including forwarding and retries) gives up after this long.
    pub request_ms: u64,
    /// Connecting to a peer.
    pub connect_ms: u64,
    /// Reconnect back-off to a peer, doubling from min to max.
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Graceful shutdown gives up waiting after this long.
    pub shutdown_ms: u64,
    /// How often the node reads the cluster map (new nodes, groups it holds no replica
    /// of) and sends its leaders' pending reports to it.
    pub meta_sync_ms: u64,
    /// A replica writes the state it applied (records and applied index) with its first
    /// Ready, or on its first tick, in each window of this length (sooner past its bounds
    /// of keys and bytes held, at a split or a configuration change). The windows are the
    /// node's, so its replicas flush together and one B-tree transaction carries several.
    /// Longer: fewer, larger transactions under load; a restart re-applies about this much
    /// of the log. 0: with every Ready and tick; at most `APPLY_FLUSH_MS_MAX` (a minute).
    pub apply_flush_ms: u64,
    /// At its first start (no state on disk), a node asks for the leadership of the layout
    /// groups that list it first, for at most this long after it started (start every
    /// node within it), so that a new cluster's leaders are spread as its layout lists
    /// them (see `node::placement`). 0: leaders stay where the first elections put them.
    pub leader_placement_ms: u64,
    /// Leaders follow the workload: every this long, a node hands the leadership of each
    /// group it led for the whole time to the other node, among the group's replicas, that
    /// brought the most of its requests, if that was at least 100 a second and more than
    /// twice what came in here (see `node::workload`). 0: leaders stay where elections,
    /// placement and operators put them; else at least `FOLLOW_WINDOW_MIN` (100 ms).
    pub follow_workload_ms: u64,
    /// Each leader looks for expired keys once per this long (`shard::expiry`): it walks a
    /// page of its group's records (`EXPIRY_ROWS_PER_STEP`) and deletes those whose TTL
    /// passed (at most `EXPIRY_KEYS_PER_ENTRY` in one log entry, and then again soon after).
    /// Reads never see an expired key either way; this is what removes it from the store,
    /// DBSIZE and INFO. 0: off (an expired key stays stored until a write meets it).
    pub expiry_step_ms: u64,
}

impl Default for TimeoutConfig {
    fn default() -> TimeoutConfig {
        TimeoutConfig {
            tick_ms: 50,
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            request_ms: 5_000,
            connect_ms: 1_000,
            reconnect_min_ms: 50,
            reconnect_max_ms: 2_000,
            shutdown_ms: 5_000,
            meta_sync_ms: 500,
            apply_flush_ms: crate::shard::limits::APPLY_FLUSH_MS_DEFAULT,
            leader_placement_ms: 30_000,
            follow_workload_ms: 5_000,
            expiry_step_ms: crate::shard::limits::EXPIRY_STEP_MS_DEFAULT,
        }
    }
}

impl TimeoutConfig {
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.tick_ms.saturating_mul(self.heartbeat_ticks))
    }

    pub fn request(&self) -> Duration {
        Duration::from_millis(self.request_ms)
    }

    pub fn apply_flush(&self) -> Duration {
        Duration::from_millis(self.apply_flush_ms)
    }

    /// The active expiry's step, `None` when it is off.
    pub fn expiry_step(&self) -> Option<Duration> {
        (self.expiry_step_ms > 0).then(|| Duration::from_millis(self.expiry_step_ms))
    }

    /// The longest election time-out: a leader transfer ends within it.
    pub fn election_max(&self) -> Duration {
        Duration::from_millis(self.tick_ms * self.election_ticks_max)
    }
}

/// Bounds; every one has a default.
///
/// Every node of a cluster must have the same `frame_bytes_max`: a node with a larger one
/// would propose entries, and forward answers, its peers' frames cannot carry. Peers whose
/// bounds differ refuse each other at the handshake (`transport::handshake`). The other
/// bounds may differ between nodes: each checks what reaches it against its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    /// Largest peer frame, either direction; at least `kv::apply::STRING_BYTES_MAX` and
    /// twice `ENTRY_FRAME_ENVELOPE_BYTES` (8 MiB and 128 KiB), at most `u32::MAX`.
    pub frame_bytes_max: u64,
    /// Frames queued to one peer before new ones are dropped (Raft retries).
    pub peer_queue_frames_max: usize,
    /// Client connections at once.
    pub clients_max: usize,
    /// Largest bulk string a client may send (Redis's proto-max-bulk-len); at most
    /// `kv::apply::STRING_BYTES_MAX`, the largest value. A longer one is a protocol error.
    pub bulk_bytes_max: u64,
    /// Most elements of one multibulk request.
    pub multibulk_len_max: u64,
    /// Largest multibulk request, headers included (Redis's client-query-buffer-limit); at
    /// least `write_bytes_max` and `ENTRY_FRAME_ENVELOPE_BYTES`. A request declaring more
    /// is a protocol error, refused before its bytes are buffered. Inline requests have
    /// their own bound, 64 KiB.
    pub request_bytes_max: u64,
    /// Most bytes of one write command's arguments, counting `ENCODING_BYTES_PER_ITEM`
    /// more for each: it becomes one log entry per shard, which crosses the wire whole in
    /// one peer frame and is copied on every replica's node. A larger write is refused at
    /// once, not applied. From `bulk_bytes_max` plus `ENTRY_FRAME_ENVELOPE_BYTES` up to
    /// `entry_bytes_max()` (`frame_bytes_max` less the same).
    pub write_bytes_max: u64,
    /// Reply bytes buffered for one client before it is disconnected.
    pub client_output_bytes_max: u64,
    /// Proposals and reads waiting in one group replica.
    pub pending_requests_per_group_max: usize,
    /// Threads hosting the node's group replicas; 0: one per core (at most 8). Nodes that
    /// share one machine (`shardkv local`) divide its cores between them. 1: the replicas
    /// share the node's own thread (the client connections' and the transport's), so a
    /// message between them wakes no other thread; a replica's synchronous work (a split
    /// counting keys, DBSIZE) then also delays the node's I/O.
    pub replica_threads: usize,
    /// Bytes of records the node's replicas keep in memory as the database holds them
    /// (their clean caches: hot keys read without a database read), split evenly among
    /// the replicas; 0: no cache.
    pub clean_cache_bytes_max: u64,
}

impl Default for LimitConfig {
    fn default() -> LimitConfig {
        LimitConfig {
            frame_bytes_max: 64 * 1024 * 1024,
            peer_queue_frames_max: 1024,
            clients_max: 10_000,
            bulk_bytes_max: crate::kv::apply::STRING_BYTES_MAX,
            multibulk_len_max: 1024 * 1024,
            request_bytes_max: 64 * 1024 * 1024,
            write_bytes_max: 16 * 1024 * 1024,
            client_output_bytes_max: 64 * 1024 * 1024,
            pending_requests_per_group_max: 10_000,
            replica_threads: 0,
            clean_cache_bytes_max: crate::shard::limits::CLEAN_CACHE_BYTES_DEFAULT,
        }
    }
}

impl LimitConfig {
    /// The largest log entry, or forwarded answer, one peer frame carries.
    pub fn entry_bytes_max(&self) -> u64 {
        self.frame_bytes_max.saturating_sub(ENTRY_FRAME_ENVELOPE_BYTES)
    }

    /// Whatever a client may send fits what the node can carry: a value its frames, a
    /// write's entry its frames, a bulk string its request.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let string_max = crate::kv::apply::STRING_BYTES_MAX;
        let frame_room = self.entry_bytes_max();
        if self.bulk_bytes_max == 0 || self.bulk_bytes_max > string_max {
            return invalid(format!(
                "limits.bulk_bytes_max must be between 1 and {string_max}, the largest value \
                 (remove the line to take the default, {string_max})"
            ));
        }
        // A frame carries the largest write: the largest value, room for its key and
        // encoding, and the frame's own envelope.
        let frame_min = string_max + 2 * ENTRY_FRAME_ENVELOPE_BYTES;
        if self.frame_bytes_max < frame_min || self.frame_bytes_max > u64::from(u32::MAX) {
            return invalid(format!(
                "limits.frame_bytes_max must be between {frame_min} (the largest value, \
                 {string_max}, and twice {ENTRY_FRAME_ENVELOPE_BYTES} for its key and its \
                 frame) and {}",
                u32::MAX
            ));
        }
        // Room for the largest value with its key and their encoding, in a write and in a
        // request (with its headers).
        let room = ENTRY_FRAME_ENVELOPE_BYTES;
        let write_min = self.bulk_bytes_max + room;
        if self.write_bytes_max < write_min || self.write_bytes_max > frame_room {
            return invalid(format!(
                "limits.write_bytes_max must be between limits.bulk_bytes_max and {room} more \
                 ({write_min}) and limits.frame_bytes_max less {room} ({frame_room})"
            ));
        }
        if self.request_bytes_max < self.write_bytes_max + room {
            return invalid(format!(
                "limits.request_bytes_max must be at least limits.write_bytes_max and {room} \
                 more ({})",
                self.write_bytes_max + room
            ));
        }
        Ok(())
    }
}

/// How a group's leader confirms that a read is linearizable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadConsistency {
    /// A heartbeat round acknowledged by a majority (ReadIndex) per batch of reads: no
    /// assumption about clocks. A read forwarded by another voter of the group needs no
    /// round when the leader and it are a majority (its endorsement stands for its answer).
    #[default]
    ReadIndex,
    /// The leader's lease: within an election time-out (less `lease_drift_ticks`) of a
    /// round a majority acknowledged, no other leader can exist, so the leader answers at
    /// once. Correct only while clocks run at about the same rate on every node.
    Lease,
}

/// `[reads]`: the read path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadConfig {
    pub mode: ReadConsistency,
    /// With `lease`: ticks taken off the lease for clock drift between nodes and the
    /// granularity of ticks (at least 1).
    pub lease_drift_ticks: u64,
    /// A read reaching a node that holds a follower of the key's group is offered to that
    /// follower: it asks the leader for a read index (one message for every read waiting
    /// then), waits to have applied it, and reads its own state; linearizable as a read at
    /// the leader. A follower that cannot (no leader known, no answer within an election
    /// time-out, far behind) hands the read back, and it is forwarded. False forwards
    /// every read to the leader.
    pub follower: bool,
    /// With `read-index`: reads of the groups of two or three replicas this node leads
    /// are confirmed together, by one question to a peer answered from the terms its
    /// replicas published, instead of a heartbeat round per group (`node::read_rounds`).
    /// A read no peer endorses (every peer asked answered in another term, or none within
    /// a heartbeat interval) runs its group's own round. False: a round per group.
    pub node_rounds: bool,
    /// With `node_rounds`: a read asks one of its group's other replicas first (the next
    /// node id around the ring), so that a node's questions go to one peer where its
    /// groups share replicas; one that has waited this long without a word, that peer's
    /// "no", or a question out to it already this old, makes it ask the others too. With
    /// node rounds on, it must be below the heartbeat interval (`timeouts`), the longest a
    /// read waits for a round, or the file is refused. 0: every read asks every peer at
    /// once.
    pub node_round_backup_ms: u64,
}

impl Default for ReadConfig {
    fn default() -> ReadConfig {
        ReadConfig {
            mode: ReadConsistency::ReadIndex,
            lease_drift_ticks: 3,
            follower: true,
            node_rounds: true,
            node_round_backup_ms: 2,
        }
    }
}

impl ReadConfig {
    /// The replicas' setting: `Some(drift ticks)` for lease reads.
    pub fn lease(&self) -> Option<u64> {
        (self.mode == ReadConsistency::Lease).then_some(self.lease_drift_ticks)
    }

    /// How long a read waits for its first peer's word before it asks the others too.
    pub fn node_round_backup(&self) -> Duration {
        Duration::from_millis(self.node_round_backup_ms)
    }

    /// How long a node-level read round may take, when the node runs them.
    pub fn node_round_wait(&self, timeouts: &TimeoutConfig) -> Option<Duration> {
        let on = self.node_rounds && self.mode == ReadConsistency::ReadIndex;
        on.then(|| timeouts.heartbeat())
    }
}

/// `[scheduling]`: how the operating system runs the node's threads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulingConfig {
    /// Linux: the node's threads run under the `SCHED_BATCH` policy, so that one of them
    /// woken on a busy CPU waits for the thread running there to block or end its time
    /// slice instead of preempting it (`node::scheduling`). Where the node shares its
    /// cores with other processes (other nodes, clients) this spares context switches:
    /// every write hands work between the node's threads and its peers'. A node started
    /// under a policy other than the default one keeps it. False: the threads keep the
    /// policy the node was started with. Elsewhere than on Linux it has no effect.
    pub batch: bool,
}

impl Default for SchedulingConfig {
    fn default() -> SchedulingConfig {
        SchedulingConfig { batch: true }
    }
}

/// `[slowlog]`: the commands SLOWLOG keeps, as Redis's `slowlog-log-slower-than` and
/// `slowlog-max-len` choose them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowlogConfig {
    /// A command whose reply took at least this many µs, from its preparation (once
    /// decoded) to its reply (replication and fsync included), is kept; 0: every command;
    /// negative: none.
    pub log_slower_than_us: i64,
    /// Entries kept, the oldest dropped first; at most `SLOWLOG_LEN_MAX`.
    pub max_len: usize,
}

/// Most SLOWLOG entries a node keeps, whatever `slowlog.max_len` asks: each holds up to
/// 32 arguments of 128 bytes.
pub const SLOWLOG_LEN_MAX: usize = 10_000;

impl Default for SlowlogConfig {
    fn default() -> SlowlogConfig {
        SlowlogConfig { log_slower_than_us: 10_000, max_len: 128 }
    }
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node_id: u64,
    /// This node's redb database and nothing else lives here.
    pub data_dir: PathBuf,
    /// The layout file; relative paths are relative to the configuration file. A node
    /// started with `--join` takes the layout from the cluster and needs none.
    #[serde(default)]
    pub layout: PathBuf,
    /// Every peer must present it when it connects; at least 16 bytes.
    pub secret: String,
    /// `requirepass` for clients; empty: no authentication.
    #[serde(default)]
    pub requirepass: String,
    /// Every client connection starts cluster-aware, as after `CLIENT REDIRECTS ON`: a key
    /// led elsewhere answers `-MOVED`, and INFO says `cluster_enabled:1` and
    /// `redis_mode:cluster`, which `redis-cli --cluster` and tools that look for a Redis
    /// Cluster check. `false` (the default): plain connections, which any node serves for
    /// any key, as standalone clients expect; `CLIENT REDIRECTS ON|OFF` switches one.
    #[serde(default)]
    pub cluster_redirects: bool,
    pub listen: ListenConfig,
    /// Every node of the layout, this one included (a node started with `--join` learns
    /// them from the cluster; it may list only itself, to give its announced addresses).
    #[serde(default)]
    pub nodes: Vec<PeerConfig>,
    #[serde(default)]
    pub timeouts: TimeoutConfig,
    #[serde(default)]
    pub limits: LimitConfig,
    #[serde(default)]
    pub reads: ReadConfig,
    #[serde(default)]
    pub scheduling: SchedulingConfig,
    #[serde(default)]
    pub slowlog: SlowlogConfig,
    /// Redis's `notify-keyspace-events` at start (`KEA`, `Ex`, ...; empty: none), which
    /// `CONFIG SET notify-keyspace-events` changes until the node restarts.
    #[serde(default)]
    pub notify_keyspace_events: String,
    /// Set by `shardkv server --join`: the layout and `nodes` came from the cluster map,
    /// so the node bootstraps no group from them (its replicas arrive by replica moves).
    #[serde(skip)]
    pub joined: bool,
}

impl NodeConfig {
    /// `notify_keyspace_events` parsed (`validate` refused any other).
    pub fn notify_flags(&self) -> NotifyFlags {
        NotifyFlags::parse(&self.notify_keyspace_events).unwrap_or_default()
    }
}

/// Smallest accepted shared secret.
pub const SECRET_BYTES_MIN: usize = 16;

impl NodeConfig {
    /// Reads, parses and validates a configuration file and the layout it names.
    pub fn load(path: &Path) -> Result<(NodeConfig, Layout), ConfigError> {
        let mut config = NodeConfig::load_alone(path)?;
        if config.layout.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "no layout: name the layout file, or start the node with --join".into(),
            ));
        }
        if config.layout.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.layout = base.join(&config.layout);
        }
        let layout_text = std::fs::read_to_string(&config.layout)
            .map_err(|source| ConfigError::Read { path: config.layout.clone(), source })?;
        let layout = Layout::parse(&layout_text)
            .map_err(|source| ConfigError::Layout { path: config.layout.clone(), source })?;
        config.validate(&layout)?;
        Ok((config, layout))
    }

    /// Reads and parses a configuration file, without its layout (a node that joins a
    /// cluster gets the layout from it, then `validate`s against that).
    pub fn load_alone(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string() })
    }

    /// The addresses this node announces to the cluster: its `nodes` entry, else where it
    /// listens (which must then be a specific address, not 0.0.0.0).
    pub fn announced(&self) -> Result<PeerConfig, ConfigError> {
        if let Some(me) = self.node(self.node_id) {
            return Ok(me.clone());
        }
        let (peer, resp) = (self.listen.peer, self.listen.resp);
        if peer.ip().is_unspecified() || resp.ip().is_unspecified() {
            return Err(ConfigError::Invalid(format!(
                "node {} listens on an unspecified address: give its reachable addresses \
                in a [[nodes]] entry of its own",
                self.node_id
            )));
        }
        Ok(PeerConfig { id: self.node_id, peer, resp })
    }

    /// Checks the file against itself and against the layout.
    pub fn validate(&self, layout: &Layout) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.secret.len() < SECRET_BYTES_MIN {
            return invalid(format!("secret must be at least {SECRET_BYTES_MIN} bytes"));
        }
        if !layout.nodes.iter().any(|n| n.id == self.node_id) {
            return invalid(format!("node_id {} is not a node of the layout", self.node_id));
        }
        for n in &layout.nodes {
            if !self.nodes.iter().any(|p| p.id == n.id) {
                return invalid(format!("node {} of the layout has no [[nodes]] entry", n.id));
            }
        }
        if let Err(c) = NotifyFlags::parse(&self.notify_keyspace_events) {
            return invalid(format!(
                "notify_keyspace_events: '{c}' is no event class; use letters of \
                 '{LETTERS_SHOWN}'"
            ));
        }
        if self.slowlog.max_len > SLOWLOG_LEN_MAX {
            return invalid(format!("slowlog.max_len must be at most {SLOWLOG_LEN_MAX}"));
        }
        let t = &self.timeouts;
        if t.tick_ms == 0 || t.heartbeat_ticks == 0 || t.election_ticks_min <= t.heartbeat_ticks {
            return invalid("need tick_ms > 0 and 0 < heartbeat_ticks < election_ticks_min".into());
        }
        if t.election_ticks_max <= t.election_ticks_min {
            return invalid("election_ticks_max must exceed election_ticks_min".into());
        }
        if t.apply_flush_ms > APPLY_FLUSH_MS_MAX {
            return invalid(format!("timeouts.apply_flush_ms must be at most {APPLY_FLUSH_MS_MAX}"));
        }
        let window_min = crate::node::workload::FOLLOW_WINDOW_MIN.as_millis();
        if t.follow_workload_ms > 0 && u128::from(t.follow_workload_ms) < window_min {
            return invalid(format!(
                "timeouts.follow_workload_ms must be 0 (off) or at least {window_min}"
            ));
        }
        self.limits.validate()?;
        let heartbeat = t.heartbeat();
        if self.reads.node_round_wait(t).is_some() && self.reads.node_round_backup() >= heartbeat
        {
            return invalid(format!(
                "reads.node_round_backup_ms ({} ms) must be below the heartbeat interval \
                 ({} ms = timeouts.tick_ms * timeouts.heartbeat_ticks)",
                self.reads.node_round_backup_ms,
                heartbeat.as_millis()
            ));
        }
        if self.reads.mode == ReadConsistency::Lease
            && (self.reads.lease_drift_ticks == 0
                || self.reads.lease_drift_ticks >= t.election_ticks_min)
        {
            return invalid(
                "reads.lease_drift_ticks must be at least 1 and below election_ticks_min".into(),
            );
        }
        Ok(())
    }

    /// The entry of node `id` in `nodes`.
    pub fn node(&self, id: u64) -> Option<&PeerConfig> {
        self.nodes.iter().find(|p| p.id == id)
    }
}
