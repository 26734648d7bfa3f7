//! `NodeMetrics`: the node's registry and every metric family in it, plus the process's own
//! series (Linux: CPU, memory, file descriptors, threads) in a second, unprefixed registry.
//! Per-group gauges are set by the status poll; counters of other layers (transport, fsyncs)
//! are copied in at scrape time by adding what their monotonic totals gained since the last
//! copy. Must never be shared between nodes: the `node` label is constant per registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[cfg(target_os = "linux")]
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::{LATENCY_BUCKETS_SECONDS, READ_ROUND_BUCKETS_SECONDS};
use super::{GroupMetrics, MetricsError, RespMetrics, BATCH_BUCKETS_WRITES};
use crate::raft::types::{GroupId, NodeId};
use crate::transport::stats::{PeerStats, TransportStats};

/// Namespace of every series.
pub const NAMESPACE: &str = "shardkv";

/// Per-group gauges, set from each replica's `ShardStatus`.
pub(crate) struct GroupGauges {
    pub term: IntGaugeVec,
    pub role: IntGaugeVec,
    pub is_leader: IntGaugeVec,
    pub leader_node: IntGaugeVec,
    pub last_index: IntGaugeVec,
    pub commit_index: IntGaugeVec,
    pub applied_index: IntGaugeVec,
    pub commit_lag: IntGaugeVec,
    pub follower_match_lag: IntGaugeVec,
    pub slot_first: IntGaugeVec,
    pub slot_last: IntGaugeVec,
    pub replicas: IntGaugeVec,
}

struct GroupCounters {
    elections_started: IntCounterVec,
    elections_won: IntCounterVec,
    proposals: IntCounterVec,
    proposal_seconds: HistogramVec,
    apply_seconds: HistogramVec,
    snapshots_sent: IntCounterVec,
    snapshots_installed: IntCounterVec,
    apply_pauses: IntCounterVec,
    reads_endorsed: IntCounterVec,
    reads_follower: IntCounterVec,
    reads_direct: IntCounterVec,
    clean_cache_hits: IntCounterVec,
    clean_cache_misses: IntCounterVec,
    expired_keys: IntCounterVec,
}

/// The counters of the node's read rounds (`node::read_rounds`).
#[derive(Clone)]
pub struct ReadRoundCounters {
    pub rounds: IntCounter,
    pub endorsed: IntCounter,
    pub unendorsed: IntCounter,
    pub backed_up: IntCounter,
    /// From a round's probe to its peer's answer.
    pub round_seconds: Histogram,
}

impl ReadRoundCounters {
    /// Counters in no registry (tests).
    #[cfg(test)]
    pub(crate) fn unregistered() -> ReadRoundCounters {
        let counter = |name| IntCounter::new(name, "unregistered").expect("a valid name");
        ReadRoundCounters {
            rounds: counter("rounds"),
            endorsed: counter("endorsed"),
            unendorsed: counter("unendorsed"),
            backed_up: counter("backed_up"),
            round_seconds: Histogram::with_opts(HistogramOpts::new("round", "unregistered"))
                .expect("a valid name"),
        }
    }
}

/// Copies of monotonic totals kept elsewhere, by (metric, peer).
struct Copied {
    transport: Vec<(&'static str, IntCounterVec, fn(&PeerStats) -> u64)>,
    fsyncs: IntCounter,
    pubsub_delivered: IntCounter,
    pubsub_from_peers: IntCounter,
    pubsub_disconnected: IntCounter,
    pubsub_keyspace: IntCounter,
    pubsub_keyspace_dropped: IntCounter,
    /// Names with a subscriber, by kind (`channel`, `pattern`, `shard`).
    pubsub_names: IntGaugeVec,
}

/// A hook run before every scrape (copies the transport and fsync totals).
pub type ScrapeHook = Box<dyn Fn(&NodeMetrics) + Send + Sync>;

struct Inner {
    registry: Registry,
    /// The process's own series under their conventional names (`process_cpu_seconds_total`,
    /// `process_resident_memory_bytes`, open file descriptors, threads, start time), with the
    /// `node` label: outside `registry`, which would prefix them.
    process: Registry,
    node: NodeId,
    groups: GroupGauges,
    counters: GroupCounters,
    copied: Copied,
    fsync_seconds: Histogram,
    fsync_batch_writes: Histogram,
    /// Leaderships handed over to follow the workload (`node::workload`).
    workload_moves: IntCounter,
    read_rounds: ReadRoundCounters,
    resp: RespMetrics,
    on_scrape: OnceLock<ScrapeHook>,
    /// Serialises scrape-time copies so two scrapes never add the same gain twice.
    copy_lock: Mutex<()>,
}

/// A node's metrics; cheap to clone.
#[derive(Clone)]
pub struct NodeMetrics {
    inner: Arc<Inner>,
}

fn gauge(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, MetricsError> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

/// A counter without labels.
fn plain_counter(r: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<HistogramVec, MetricsError> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_SECONDS.to_vec());
    let h = HistogramVec::new(opts, labels)?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

fn group_gauges(r: &Registry) -> Result<GroupGauges, MetricsError> {
    let g = &["group"];
    Ok(GroupGauges {
        term: gauge(r, "raft_term", "Current Raft term of the replica.", g)?,
        role: gauge(
            r,
            "raft_role",
            "Role: 0 follower, 1 pre-candidate, 2 candidate, 3 leader.",
            g,
        )?,
        is_leader: gauge(r, "raft_is_leader", "1 if this replica leads its group.", g)?,
        leader_node: gauge(
            r,
            "raft_leader_node",
            "Node id of the leader as seen here; 0: none.",
            g,
        )?,
        last_index: gauge(
            r,
            "raft_last_index",
            "Index of the last entry of the log.",
            g,
        )?,
        commit_index: gauge(r, "raft_commit_index", "Highest index known committed.", g)?,
        applied_index: gauge(r, "raft_applied_index", "Highest index applied.", g)?,
        commit_lag: gauge(
            r,
            "raft_commit_lag_entries",
            "Last log index minus commit index.",
            g,
        )?,
        follower_match_lag: gauge(
            r,
            "raft_follower_match_lag_entries",
            "On the leader: its last index minus the follower's match index.",
            &["group", "follower"],
        )?,
        slot_first: gauge(r, "group_slot_first", "First hash slot of the group.", g)?,
        slot_last: gauge(r, "group_slot_last", "Last hash slot of the group.", g)?,
        replicas: gauge(r, "group_replicas", "Voters and learners of the group.", g)?,
    })
}

fn group_counters(r: &Registry) -> Result<GroupCounters, MetricsError> {
    let g = &["group"];
    Ok(GroupCounters {
        elections_started: counter(
            r,
            "raft_elections_started_total",
            "Times the replica became a candidate.",
            g,
        )?,
        elections_won: counter(
            r,
            "raft_elections_won_total",
            "Times the replica became leader.",
            g,
        )?,
        proposals: counter(
            r,
            "raft_proposals_total",
            "Client writes proposed as leader.",
            g,
        )?,
        proposal_seconds: histogram(
            r,
            "raft_proposal_duration_seconds",
            "From proposal to the applied answer.",
            g,
        )?,
        apply_seconds: histogram(
            r,
            "raft_apply_duration_seconds",
            "Applying one batch of committed entries.",
            g,
        )?,
        snapshots_sent: counter(
            r,
            "raft_snapshots_sent_total",
            "Snapshots sent to followers.",
            g,
        )?,
        snapshots_installed: counter(
            r,
            "raft_snapshots_installed_total",
            "Snapshots installed from a leader.",
            g,
        )?,
        apply_pauses: counter(
            r,
            "raft_apply_pauses_total",
            "Long applies (a command of many keys) that let the Ready's messages reach the \
             wire first.",
            g,
        )?,
        reads_endorsed: counter(
            r,
            "raft_reads_endorsed_total",
            "Reads answered on a voter's endorsement (a forwarding node's or a node read \
             round's), with no heartbeat round.",
            g,
        )?,
        reads_follower: counter(
            r,
            "raft_reads_follower_total",
            "Reads a follower took to serve itself once the leader gave their read index.",
            g,
        )?,
        reads_direct: counter(
            r,
            "raft_reads_direct_total",
            "Reads a leader's node answered from its applied state through the replica's \
             read door (on its lease or a voter's endorsement), without a message to it.",
            g,
        )?,
        clean_cache_hits: counter(
            r,
            "kv_clean_cache_hits_total",
            "Key lookups answered by the replica's cache of records as the database holds them.",
            g,
        )?,
        clean_cache_misses: counter(
            r,
            "kv_clean_cache_misses_total",
            "Key lookups that went past the replica's clean cache to the database.",
            g,
        )?,
        expired_keys: counter(
            r,
            "kv_expired_keys_total",
            "Expired keys this replica deleted as the group's leader (active expiry).",
            g,
        )?,
    })
}

fn copied(r: &Registry) -> Result<Copied, MetricsError> {
    type Field = fn(&PeerStats) -> u64;
    let fields: [(&'static str, &str, Field); 12] = [
        (
            "transport_frames_sent_total",
            "Frames written to the peer.",
            |s| s.frames_sent,
        ),
        (
            "transport_frames_received_total",
            "Frames read from the peer.",
            |s| s.frames_received,
        ),
        (
            "transport_heartbeat_frames_sent_total",
            "Frames that carried coalesced heartbeats.",
            |s| s.heartbeat_frames_sent,
        ),
        (
            "transport_heartbeat_entries_sent_total",
            "Coalesced heartbeat entries sent.",
            |s| s.heartbeat_entries_sent,
        ),
        (
            "transport_messages_sent_total",
            "Raft messages, forwards and replies sent.",
            |s| s.messages_sent,
        ),
        (
            "transport_messages_received_total",
            "Raft messages, forwards and replies received.",
            |s| s.messages_received,
        ),
        (
            "transport_bytes_sent_total",
            "Bytes written to the peer.",
            |s| s.bytes_sent,
        ),
        (
            "transport_bytes_received_total",
            "Bytes read from the peer.",
            |s| s.bytes_received,
        ),
        (
            "transport_dropped_total",
            "Items dropped: full queue or oversized.",
            |s| s.dropped_full_queue,
        ),
        (
            "transport_refused_handshakes_total",
            "Inbound handshakes refused.",
            |s| s.refused_handshakes,
        ),
        (
            "transport_refused_by_peer_total",
            "Outbound handshakes the peer refused: it does not admit this node's data \
             directory.",
            |s| s.refused_by_peer,
        ),
        (
            "transport_connects_total",
            "Outbound connections established.",
            |s| s.connects,
        ),
    ];
    let mut transport = Vec::with_capacity(fields.len());
    for (name, help, field) in fields {
        transport.push((name, counter(r, name, help, &["peer"])?, field));
    }
    let fsyncs = plain_counter(r, "storage_fsyncs_total", "Durable commits (one fsync each).")?;
    Ok(Copied {
        transport,
        fsyncs,
        pubsub_delivered: plain_counter(
            r,
            "pubsub_delivered_total",
            "Pub/Sub messages handed to this node's subscribers (one per subscriber and match).",
        )?,
        pubsub_from_peers: plain_counter(
            r,
            "pubsub_from_peers_total",
            "Pub/Sub messages other nodes relayed to this one.",
        )?,
        pubsub_disconnected: plain_counter(
            r,
            "pubsub_disconnected_total",
            "Subscribers and monitors disconnected past their mailbox's bound.",
        )?,
        pubsub_keyspace: plain_counter(
            r,
            "pubsub_keyspace_total",
            "Keyspace notification messages this node's replicas published.",
        )?,
        pubsub_keyspace_dropped: plain_counter(
            r,
            "pubsub_keyspace_dropped_total",
            "Keyspace events dropped before delivery: the node's queue of them was full.",
        )?,
        pubsub_names: gauge(
            r,
            "pubsub_names",
            "Channels, patterns and shard channels with a subscriber on this node.",
            &["kind"],
        )?,
    })
}

fn resp(r: &Registry) -> Result<RespMetrics, MetricsError> {
    let connected_clients = IntGauge::new("resp_connected_clients", "RESP clients connected.")?;
    r.register(Box::new(connected_clients.clone()))?;
    let rejected_connections = plain_counter(
        r,
        "resp_rejected_connections_total",
        "RESP connections refused at clients_max.",
    )?;
    Ok(RespMetrics {
        commands: counter(
            r,
            "resp_commands_total",
            "RESP commands answered.",
            &["command"],
        )?,
        command_seconds: histogram(
            r,
            "resp_command_duration_seconds",
            "RESP command latency.",
            &["command"],
        )?,
        connected_clients,
        rejected_connections,
        by_index: RespMetrics::by_index(),
    })
}

fn plain_histogram(
    r: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
) -> Result<Histogram, MetricsError> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

/// Adds to `counter` what `total` gained over it (totals only grow).
fn copy_total(counter: &IntCounter, total: u64) {
    let gain = total.saturating_sub(counter.get());
    if gain > 0 {
        counter.inc_by(gain);
    }
}

impl NodeMetrics {
    /// A registry for node `node` with every family registered.
    pub fn new(node: NodeId) -> Result<NodeMetrics, MetricsError> {
        let labels = HashMap::from([("node".to_string(), node.get().to_string())]);
        let r = Registry::new_custom(Some(NAMESPACE.to_string()), Some(labels.clone()))?;
        let process = Registry::new_custom(None, Some(labels))?;
        #[cfg(target_os = "linux")]
        process.register(Box::new(ProcessCollector::for_self()))?;
        let inner = Inner {
            groups: group_gauges(&r)?,
            counters: group_counters(&r)?,
            copied: copied(&r)?,
            fsync_seconds: plain_histogram(
                &r,
                "storage_fsync_duration_seconds",
                "One durable commit (fsync).",
                LATENCY_BUCKETS_SECONDS,
            )?,
            fsync_batch_writes: plain_histogram(
                &r,
                "storage_fsync_batch_writes",
                "Group writes per durable commit.",
                BATCH_BUCKETS_WRITES,
            )?,
            workload_moves: plain_counter(
                &r,
                "raft_workload_leader_moves_total",
                "Leaderships this node handed to the node its group's requests came in \
                 through (timeouts.follow_workload_ms).",
            )?,
            read_rounds: ReadRoundCounters {
                rounds: plain_counter(
                    &r,
                    "raft_read_rounds_total",
                    "Node-level read rounds this node sent, one per probe to a peer: a question \
                     for the reads of every group it leads ([reads] node_rounds).",
                )?,
                endorsed: plain_counter(
                    &r,
                    "raft_read_rounds_endorsed_reads_total",
                    "Reads a node-level read round endorsed: a peer answered in the leader's \
                     term, which spares their group its own heartbeat round.",
                )?,
                unendorsed: plain_counter(
                    &r,
                    "raft_read_rounds_unendorsed_reads_total",
                    "Reads node-level read rounds left without a peer's word (every peer asked \
                     answered in another term, none answered in time, or none could be asked): \
                     each ran its group's own heartbeat round.",
                )?,
                backed_up: plain_counter(
                    &r,
                    "raft_read_rounds_backup_reads_total",
                    "Reads that asked more than one peer: the first declined, gave no word \
                     within [reads] node_round_backup_ms, or had a round out that old (none \
                     with a backup of 0, where every read asks every peer).",
                )?,
                round_seconds: plain_histogram(
                    &r,
                    "raft_read_round_duration_seconds",
                    "From a node-level read round's probe to its peer's answer ([reads] \
                     node_rounds); rounds that ended unanswered (a link down, no answer \
                     within the wait) are not observed.",
                    READ_ROUND_BUCKETS_SECONDS,
                )?,
            },
            resp: resp(&r)?,
            registry: r,
            process,
            node,
            on_scrape: OnceLock::new(),
            copy_lock: Mutex::new(()),
        };
        Ok(NodeMetrics {
            inner: Arc::new(inner),
        })
    }

    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    /// The series one replica of `group` updates itself.
    pub fn group(&self, group: GroupId) -> GroupMetrics {
        let c = &self.inner.counters;
        let g = group.get().to_string();
        let l = &[g.as_str()];
        GroupMetrics {
            elections_started: c.elections_started.with_label_values(l),
            elections_won: c.elections_won.with_label_values(l),
            proposals: c.proposals.with_label_values(l),
            proposal_seconds: c.proposal_seconds.with_label_values(l),
            apply_seconds: c.apply_seconds.with_label_values(l),
            snapshots_sent: c.snapshots_sent.with_label_values(l),
            snapshots_installed: c.snapshots_installed.with_label_values(l),
            apply_pauses: c.apply_pauses.with_label_values(l),
            reads_endorsed: c.reads_endorsed.with_label_values(l),
            reads_follower: c.reads_follower.with_label_values(l),
            reads_direct: c.reads_direct.with_label_values(l),
            clean_cache_hits: c.clean_cache_hits.with_label_values(l),
            clean_cache_misses: c.clean_cache_misses.with_label_values(l),
            expired_keys: c.expired_keys.with_label_values(l),
        }
    }

    /// Expired keys this node's replicas deleted as leaders, over every group
    /// (`kv_expired_keys_total`): INFO's `expired_keys`.
    pub fn expired_keys_total(&self) -> u64 {
        let families = prometheus::core::Collector::collect(&self.inner.counters.expired_keys);
        let counters = families.iter().flat_map(|family| family.get_metric());
        counters.map(|m| m.get_counter().get_value() as u64).sum()
    }

    pub(crate) fn gauges(&self) -> &GroupGauges {
        &self.inner.groups
    }

    pub fn resp(&self) -> RespMetrics {
        self.inner.resp.clone()
    }

    /// Counts the node-level read rounds and the reads they left without an endorsement.
    pub fn read_rounds(&self) -> ReadRoundCounters {
        self.inner.read_rounds.clone()
    }

    /// Counts the leaderships this node hands over to follow the workload.
    pub fn workload_moves(&self) -> IntCounter {
        self.inner.workload_moves.clone()
    }

    /// One durable commit of `group_writes` writes that took `elapsed`.
    pub fn observe_fsync(&self, elapsed: Duration, group_writes: usize) {
        self.inner.fsync_seconds.observe(elapsed.as_secs_f64());
        self.inner.fsync_batch_writes.observe(group_writes as f64);
    }

    /// Runs `hook` before every scrape; the first hook set wins.
    pub fn on_scrape(&self, hook: ScrapeHook) {
        let _ = self.inner.on_scrape.set(hook);
    }

    /// Copies the transport's per-peer totals.
    pub fn copy_transport(&self, stats: &TransportStats) {
        let _serial = self
            .inner
            .copy_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (peer, s) in &stats.peers {
            let p = peer.get().to_string();
            for (_, vec, field) in &self.inner.copied.transport {
                copy_total(&vec.with_label_values(&[p.as_str()]), field(s));
            }
        }
    }

    /// Copies the node's Pub/Sub totals and subscription counts.
    pub fn copy_pubsub(&self, stats: &crate::resp::pubsub::HubStats) {
        let _serial = self
            .inner
            .copy_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let c = &self.inner.copied;
        copy_total(&c.pubsub_delivered, stats.delivered);
        copy_total(&c.pubsub_from_peers, stats.from_peers);
        copy_total(&c.pubsub_disconnected, stats.disconnected);
        copy_total(&c.pubsub_keyspace, stats.keyspace);
        copy_total(&c.pubsub_keyspace_dropped, stats.keyspace_dropped);
        for (kind, names) in ["channel", "pattern", "shard"].into_iter().zip(stats.names) {
            c.pubsub_names.with_label_values(&[kind]).set(names as i64);
        }
    }

    /// Copies the database's fsync total.
    pub fn copy_fsyncs(&self, total: u64) {
        let _serial = self
            .inner
            .copy_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        copy_total(&self.inner.copied.fsyncs, total);
    }

    /// The text exposition of every series, after running the scrape hook.
    pub fn render(&self) -> String {
        if let Some(hook) = self.inner.on_scrape.get() {
            hook(self);
        }
        let mut out = Vec::new();
        let mut families = self.inner.registry.gather();
        families.extend(self.inner.process.gather());
        if let Err(error) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(%error, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The value of the series `name{node="7"}` in `text`.
    fn value(text: &str, name: &str) -> f64 {
        let series = format!("{name}{{node=\"7\"}} ");
        let line =
            text.lines().find(|l| l.starts_with(&series)).unwrap_or_else(|| panic!("{text}"));
        line[series.len()..].parse().expect("a number")
    }

    #[test]
    fn the_process_series_keep_their_conventional_names_with_the_node_label() {
        let text = NodeMetrics::new(NodeId(7)).expect("metrics").render();
        assert!(value(&text, "process_resident_memory_bytes") > 0.0);
        assert!(value(&text, "process_open_fds") > 0.0);
        assert!(value(&text, "process_start_time_seconds") > 0.0);
        // Whole seconds: a test process may not have used one yet; the series is there.
        assert!(value(&text, "process_cpu_seconds_total") >= 0.0);
        assert!(!text.contains("shardkv_process_"), "{text}");
        assert!(text.contains("shardkv_storage_fsyncs_total{node=\"7\"}"), "{text}");
        assert!(text.contains("shardkv_pubsub_delivered_total{node=\"7\"}"), "{text}");
        // The two registries render as one exposition: no family twice.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let unique: std::collections::BTreeSet<&str> = types.iter().copied().collect();
        assert_eq!(types.len(), unique.len(), "{text}");
    }
}
