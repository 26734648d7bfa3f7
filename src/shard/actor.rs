//! `ShardActor`: one replica of one group on this node. It owns the group's `RawNode`
//! over `RedbStorage`, ticks it, feeds it messages, proposals and reads, and turns each
//! `Ready` into sends, one persist job on the node's `ShardWriter`, applies and answers
//! (see `ready`). Handlers are synchronous and short: disk work runs on the writer's
//! threads or the blocking pool and comes back as messages.
//!
//! Must never: hold Raft state across an await, block on disk, or answer a write before
//! it is committed and applied.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::kv::range::{GroupRange, SlotRange};
use crate::kv::read::ReadCommand;
use crate::kv::{KvMutation, Request};
use crate::metrics::GroupMetrics;
use crate::raft::{
    Config, ConfState, GroupId, HardState, LogIndex, Message, NodeId, RaftError, RawNode, Role,
    SnapshotMetadata, Storage, Term,
};
use crate::shard::api::{Endorsement, LeaderChange, ShardError, ShardOp, ShardResult, SplitDone};
use crate::shard::counts::Counts;
use crate::shard::expiry::Expiry;
use crate::shard::limits::{
    APPLY_FLUSH_MS_DEFAULT, COMPACT_EVERY_ENTRIES, ENTRY_BYTES_MAX_DEFAULT, EXPIRY_STEP_MS_DEFAULT,
    LOG_KEEP_ENTRIES, MAILBOX_MESSAGES_MAX, PENDING_REQUESTS_MAX, PERSIST_JOBS_IN_FLIGHT_MAX,
};
use crate::shard::persist::ShardWriter;
use crate::shard::snapshot::{IncomingSnapshot, OutgoingSnapshot};
use crate::storage::group_snapshot::GroupSnapshotData;
use crate::shard::follower_reads::FollowerReads;
use crate::shard::ready::InFlight;
use crate::shard::read_door::{GatedRaw, ReadDoor, UndurableGuard};
use crate::shard::undurable::{CleanBudget, CleanShare, Undurable};
use crate::storage::{GroupWrite, NodeDb, RedbStorage, StorageError};
use crate::transport::api::{GroupMessage, PeerSender, Urgency};

/// What a replica is told about itself.
#[derive(Clone, Debug)]
pub struct ShardConfig {
    pub node: NodeId,
    pub group: GroupId,
    /// The group's hash slots (its snapshot data is the records of these slots).
    pub slots: RangeInclusive<u16>,
    /// One Raft tick.
    pub tick: Duration,
    pub election_ticks_min: u64,
    pub election_ticks_max: u64,
    pub heartbeat_ticks: u64,
    /// Client writes and reads waiting for an answer, each; more are refused with `Busy`.
    pub pending_requests_max: usize,
    /// Largest log entry the replica proposes: what one peer frame carries, less
    /// `ENTRY_FRAME_ENVELOPE_BYTES`. A larger write is refused, not applied.
    pub entry_bytes_max: u64,
    /// The applied state is written at the latest this long after it last was, on a tick.
    pub apply_flush: Duration,
    /// A Ready that commits `APPLY_PAUSE_KEYS_MIN` keys or more applies `APPLY_PAUSE` after
    /// its messages go (`shard::limits`): for a replica that shares its thread with the
    /// node's transport, whose tasks must run for the messages to leave before the apply.
    /// `false` for a replica on a thread of its own, where they leave meanwhile.
    pub pause_long_applies: bool,
    /// Compact the log every this many durably applied entries.
    pub compact_every_entries: u64,
    /// Entries kept below the applied index at a compaction.
    pub log_keep_entries: u64,
    /// Seed of the election-timeout RNG (mixed with node and group).
    pub rng_seed: u64,
    /// `Some(drift)`: the leader answers reads on its lease (`ReadMode::LeaseBased`),
    /// trusting clocks to drift less than `drift` ticks over an election time-out; `None`:
    /// ReadIndex, a heartbeat round per batch of reads, unless a voter's endorsement stands
    /// for it (`RawNode::read_index_endorsed`): a forwarding node's, or a peer's answer to
    /// a node-level read round (`node::read_rounds`).
    pub lease_reads: Option<u64>,
    /// Serve the node's own reads as a follower, after a read index from the leader
    /// (`follower_reads`), when the request path asks (`ShardOp::Read::follower_ok`).
    pub follower_reads: bool,
    /// As leader, look for expired records to delete once per this long (`shard::expiry`);
    /// `None`: never (an expired key stays stored, unseen by reads, until a write meets it).
    pub expiry_step: Option<Duration>,
    /// Counters and histograms this replica updates (detached unless the node sets them).
    pub metrics: GroupMetrics,
    /// The replica's term as of its latest Ready, stored before that Ready's messages go
    /// out, and its durable term at open. Votes and append acknowledgements leave only once
    /// their term is durable, so this is at least the term of every vote and acknowledgement
    /// the replica ever sent: the node reads it to endorse a read it forwards to the leader
    /// (`ShardOp::Read::endorsement`) and to answer a leader node's read round
    /// (`node::read_rounds`). Made fresh by `ShardConfig::new`: a config cloned for
    /// another replica would share it.
    pub published_term: Arc<AtomicU64>,
    /// The replica's door for reads answered on the request path (`read_door`): the node
    /// keeps it beside the replica's address. Made fresh by `ShardConfig::new`, as
    /// `published_term` is.
    pub read_door: Arc<ReadDoor>,
}

impl ShardConfig {
    /// Defaults for a 50 ms tick: elections after 0.5–1 s, heartbeats every 100 ms.
    pub fn new(node: NodeId, group: GroupId, slots: RangeInclusive<u16>) -> ShardConfig {
        ShardConfig {
            node,
            group,
            slots,
            tick: Duration::from_millis(50),
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            apply_flush: Duration::from_millis(APPLY_FLUSH_MS_DEFAULT),
            pause_long_applies: true,
            pending_requests_max: PENDING_REQUESTS_MAX,
            entry_bytes_max: ENTRY_BYTES_MAX_DEFAULT,
            compact_every_entries: COMPACT_EVERY_ENTRIES,
            log_keep_entries: LOG_KEEP_ENTRIES,
            rng_seed: 0,
            lease_reads: None,
            follower_reads: true,
            expiry_step: Some(Duration::from_millis(EXPIRY_STEP_MS_DEFAULT)),
            metrics: GroupMetrics::detached(),
            published_term: Arc::new(AtomicU64::new(0)),
            read_door: Arc::new(ReadDoor::default()),
        }
    }

    fn raft_config(&self, applied: LogIndex) -> Config {
        let mut cfg = Config::new(self.node, self.group);
        cfg.election_timeout_ticks_min = self.election_ticks_min;
        cfg.election_timeout_ticks_max = self.election_ticks_max;
        cfg.heartbeat_interval_ticks = self.heartbeat_ticks;
        cfg.max_pending_reads = self.pending_requests_max.max(1);
        cfg.snapshot_timeout_ticks = crate::shard::limits::SNAPSHOT_TIMEOUT_TICKS;
        cfg.applied = applied;
        let mix = self.node.get().wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.group.get();
        cfg.rng_seed = self.rng_seed ^ mix;
        if let Some(drift) = self.lease_reads {
            cfg.read_mode = crate::raft::ReadMode::LeaseBased;
            cfg.lease_clock_drift_ticks = drift;
        }
        cfg
    }
}

/// Fed every leader or term change a replica sees (the router's leader cache). Called on
/// the replica's arbiter: it must only enqueue or update a map.
pub type LeaderChangeFn = Arc<dyn Fn(LeaderChange) + Send + Sync>;

/// Called once a split this replica applied is durable: the node starts the child and
/// updates its routing. Called on the replica's arbiter: it must not block.
pub type SplitFn = Arc<dyn Fn(SplitDone) + Send + Sync>;

/// Called once a replica applied (durably) a configuration without its node: the node
/// stops it and deletes its state, with the records of these slots (`None`: it never
/// installed any). Called on the replica's arbiter: it must not block.
pub type RemovedFn = Arc<dyn Fn(GroupId, Option<RangeInclusive<u16>>) + Send + Sync>;

/// Fed a group's replicas (voters, then learners) whenever a replica of it on this node
/// applied a new configuration (the routing table's replica lists). Must not block.
pub type MembersFn = Arc<dyn Fn(GroupId, Vec<NodeId>) + Send + Sync>;

/// Fed the group's state by its leader for the cluster map: on winning an election, and
/// whenever its configuration or slots changed since. Must not block.
pub type ReportFn = Arc<dyn Fn(crate::shard::api::GroupReport) + Send + Sync>;

/// Fed the keyspace events a replica's apply batch raised (`kv::notify`), before the
/// writes that raised them are answered. Called on the replica's arbiter: must not block.
pub type KeyEventsFn = Arc<dyn Fn(crate::kv::notify::KeyEvents) + Send + Sync>;

/// What a replica shares with the rest of the node.
#[derive(Clone)]
pub struct ShardDeps {
    pub db: Arc<NodeDb>,
    /// The node's one writer (group commit across every replica of the node).
    pub writer: ShardWriter,
    pub peers: Arc<dyn PeerSender>,
    pub on_leader_change: LeaderChangeFn,
    pub on_split: SplitFn,
    pub on_removed: RemovedFn,
    pub on_members: MembersFn,
    pub on_report: ReportFn,
    /// The node's bytes for its replicas' clean caches, shared among them.
    pub clean_budget: Arc<CleanBudget>,
    /// The node's keyspace notification flags, read at each apply batch.
    pub notifier: Arc<crate::kv::notify::Notifier>,
    /// Where the events of an apply batch go (the node's delivery task).
    pub on_key_events: KeyEventsFn,
}

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ShardStartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("group {group}: {source}")]
    Raft { group: GroupId, source: RaftError },
    #[error("group {group} has no state on this node and no voters to bootstrap it with")]
    NoState { group: GroupId },
}

/// Every group's first state is a snapshot point at this index (empty data, the first
/// voters), written alike on each first replica: a layout group's at bootstrap, a split
/// child's with the split. Its log therefore starts above it, so a replica added later
/// (empty) is always sent a snapshot, never entries it could not check against a range
/// and configuration it does not know.
pub const FIRST_INDEX: LogIndex = LogIndex(1);

/// The first state of a group: `voters`, a snapshot point at `FIRST_INDEX`, `slots`.
pub fn first_state_write(group: GroupId, voters: &[NodeId], slots: SlotRange) -> GroupWrite {
    let conf_state = ConfState::with_voters(voters.iter().copied());
    let snapshot = SnapshotMetadata { index: FIRST_INDEX, term: Term(1), conf_state };
    GroupWrite {
        snapshot: Some(snapshot),
        applied_index: Some(FIRST_INDEX),
        range: Some(GroupRange::new(slots)),
        ..GroupWrite::new(group)
    }
}

/// Writes a new group's first state if the node holds no state for it; a group that has
/// state is left alone (restart). Blocking: call it at start-up, before `start`.
/// Returns whether it wrote.
pub fn bootstrap_group(
    writer: &ShardWriter,
    group: GroupId,
    voters: &[NodeId],
    slots: SlotRange,
) -> Result<bool, ShardStartError> {
    bootstrap_group_with(writer, group, voters, slots, Vec::new())
}

/// `bootstrap_group` with the state machine's first records (the metadata group's map).
pub fn bootstrap_group_with(
    writer: &ShardWriter,
    group: GroupId,
    voters: &[NodeId],
    slots: SlotRange,
    records: Vec<KvMutation>,
) -> Result<bool, ShardStartError> {
    let storage = RedbStorage::open(Arc::clone(writer.db()), group)?;
    if has_state(&storage)? {
        return Ok(false);
    }
    if voters.is_empty() {
        return Err(ShardStartError::NoState { group });
    }
    let mut write = first_state_write(group, voters, slots);
    write.mutations = records;
    writer.write_now(write)?;
    info!(group = %group, ?voters, "bootstrapped group");
    Ok(true)
}

fn has_state(storage: &RedbStorage) -> Result<bool, ShardStartError> {
    let group = storage.group();
    let raft = |source| ShardStartError::Raft { group, source };
    let state = storage.initial_state().map_err(raft)?;
    let last = storage.last_index().map_err(raft)?;
    Ok(!state.conf_state.all_nodes().is_empty() || last > LogIndex(0))
}

/// One operation of a client (or of a forwarded request).
#[derive(Debug, Message)]
#[rtype(result = "ShardResult")]
pub struct Execute(pub ShardOp);

/// Raft messages from the transport (any group; others than this replica's are dropped).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Vec<(GroupMessage, Urgency)>);

/// Asks for a `ShardStatus`.
#[derive(Debug, Message)]
#[rtype(result = "ShardStatus")]
pub struct GetStatus;

/// Asks the leader to hand leadership to a node.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ShardError>")]
pub struct TransferLeader(pub NodeId);

/// Retires the replica (its node was removed from the group): it takes no more Readies
/// and, once nothing it handed the writer is pending, tells the node, which deletes it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Retire;

/// Starts an election at once (the child of a split, on the node that led its parent).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Campaign;

/// Stops the replica: waiters are answered `Stopped`; the applied state kept in memory is
/// handed to the writer, and what was handed to the writer is still written.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Stop;

/// A replica's state, for status commands, metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardStatus {
    pub node: NodeId,
    pub group: GroupId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: Term,
    pub commit_index: LogIndex,
    /// Applied to the state machine (possibly not durable yet).
    pub applied_index: LogIndex,
    /// Applied and durable.
    pub durable_applied_index: LogIndex,
    pub first_index: LogIndex,
    pub last_index: LogIndex,
    pub conf_state: ConfState,
    pub pending_writes: usize,
    pub pending_reads: usize,
    /// Snapshots received from a leader and installed since the replica started.
    pub snapshots_installed: u64,
    /// The group's hash slots, first and last.
    pub slots: (u16, u16),
    /// On the leader: each other replica's match index; empty elsewhere.
    pub followers: Vec<(NodeId, LogIndex)>,
    /// Why the replica stopped serving, if it did (a storage failure).
    pub failed: Option<String>,
    /// False while an added replica waits for its first snapshot.
    pub initialized: bool,
}

/// A committed entry's request, decoded before it applies; `None` for a no-op or a
/// membership change.
pub(crate) type Decoded = Option<Result<Request, rmp_serde::decode::Error>>;

/// A write waiting for its entry to apply.
pub(crate) struct PendingWrite {
    pub term: Term,
    /// When it was proposed (the proposal latency histogram).
    pub proposed: std::time::Instant,
    pub tx: oneshot::Sender<ShardResult>,
}

/// A read waiting for its ReadIndex and then for the apply of that index.
pub(crate) struct PendingRead {
    pub command: ReadCommand,
    pub now_ms: u64,
    pub tx: oneshot::Sender<ShardResult>,
}

/// One replica of one group.
pub struct ShardActor {
    /// Real time up to which the core was ticked (see `catch_up_ticks`).
    pub(crate) tick_clock: std::time::Instant,
    /// When the stall the core owes its election timer is settled (`catch_up_ticks`).
    stall_settles_at: Option<std::time::Instant>,
    pub(crate) cfg: ShardConfig,
    pub(crate) deps: ShardDeps,
    /// The Raft core; every mutable use closes the read door (`GatedRaw`). The applied but
    /// not yet durable mutations are the door's (`undurable`).
    pub(crate) raw: GatedRaw,
    /// This replica's part of the node's clean-cache budget (the cache is resized to it
    /// every tick).
    pub(crate) clean_share: CleanShare,
    /// Last index applied to the state machine (durable or not).
    pub(crate) applied: LogIndex,
    pub(crate) durable_applied: LogIndex,
    /// The hard state of the last Ready that had one: a later one with the same term and
    /// vote only moves the commit index.
    pub(crate) last_hard_state: Option<HardState>,
    /// A hard state that only moved the commit index, not yet handed to the writer. It needs
    /// no sync of its own: Raft's commit index is volatile (after a restart the leader tells
    /// it again, or a lone voter finds it again), so it rides with the group's next write,
    /// and an applied index never goes without it (`defer_commit_only`).
    pub(crate) unsynced_hard_state: Option<HardState>,
    /// A split's halving slot is being counted off the replica's thread (`propose_split`).
    pub(crate) counting_split: bool,
    /// Key counts served off the replica's thread (`counts`).
    pub(crate) counts: Counts,
    /// The active expiry's walk, as leader (`expiry`).
    pub(crate) expiry: Expiry,
    /// Persist jobs handed to the writer, oldest first, answered in this order (at most
    /// `PERSIST_JOBS_IN_FLIGHT_MAX`).
    pub(crate) in_flight: VecDeque<InFlight>,
    /// A drive is queued behind the messages now in the mailbox (`drive_soon`).
    pub(crate) drive_scheduled: bool,
    /// A persist job the writer's queue had no room for, retried on the next tick.
    pub(crate) deferred: Option<InFlight>,
    /// A Ready whose messages went out and whose large apply waits `APPLY_PAUSE` for them
    /// to reach the wire (`ShardActor::handle_ready`); no other Ready is taken meanwhile.
    pub(crate) paused_ready: Option<(crate::raft::Ready, Vec<Decoded>)>,
    pub(crate) next_gen: u64,
    /// The applied index whose state is in memory only (`undurable`, as `UNFLUSHED`).
    pub(crate) unflushed_applied: Option<LogIndex>,
    /// The flush window (`ready::flush_window`) in which the applied state was last handed
    /// to the writer.
    pub(crate) flushed_window: u64,
    pub(crate) writes: BTreeMap<LogIndex, PendingWrite>,
    /// Reads waiting for their ReadIndex, by read id (`first_read_id`, then counting up).
    pub(crate) reads: BTreeMap<u64, PendingRead>,
    /// `Members` requests waiting for their ReadIndex round, by read id.
    pub(crate) member_reads: BTreeMap<u64, oneshot::Sender<ShardResult>>,
    /// Reads whose index is known, waiting for the apply of that index.
    pub(crate) confirmed_reads: BTreeMap<(LogIndex, u64), PendingRead>,
    /// Reads served as a follower, waiting for their read index from the leader.
    pub(crate) follower_reads: FollowerReads,
    pub(crate) next_read_id: u64,
    /// (from, read round) of heartbeats that arrived `Urgency::Now`: their answers are too.
    pub(crate) urgent_heartbeats: BTreeSet<(NodeId, u64)>,
    pub(crate) reported: (Option<NodeId>, Term),
    pub(crate) role: Role,
    pub(crate) snapshot_sends: usize,
    pub(crate) last_compact: LogIndex,
    pub(crate) compacting: bool,
    pub(crate) snapshots_installed: u64,
    pub(crate) failed: Option<String>,
    /// The slots this group owns as of `applied`, and what it split off.
    pub(crate) range: GroupRange,
    /// False for an empty replica (`start_empty`) until its first snapshot is installed:
    /// `range` and `cfg.slots` are placeholders until then.
    pub(crate) initialized: bool,
    /// The configuration named this node once (a replica added by a snapshot taken just
    /// before its own addition is not yet named, and must not take that as a removal).
    pub(crate) was_member: bool,
    /// The node was told this replica is removed; it takes no more Readies.
    pub(crate) removed: bool,
    /// Asked to retire (`Retire`): takes no more Readies, reports itself removed once idle.
    pub(crate) retiring: bool,
    /// The configuration last reported through `on_members`.
    pub(crate) reported_conf: ConfState,
    /// What this replica last reported through `on_report`, as leader: term,
    /// configuration, slots.
    pub(crate) reported_group: Option<(Term, ConfState, (u16, u16))>,
    /// Snapshots this leader is streaming, at most `SNAPSHOT_SENDS_MAX` with the exports.
    pub(crate) outgoing: Vec<OutgoingSnapshot>,
    /// A snapshot arriving in parts.
    pub(crate) incoming: Option<IncomingSnapshot>,
    /// The data of the last snapshot assembled and handed to the core, until installed.
    pub(crate) assembled: Option<(LogIndex, GroupSnapshotData)>,
}

impl ShardActor {
    /// Opens the group's replica from what the node's database holds (bootstrap a new
    /// group first with `bootstrap_group`) and starts it on `arbiter`.
    pub fn start(
        arbiter: &ArbiterHandle,
        cfg: ShardConfig,
        deps: ShardDeps,
    ) -> Result<Addr<ShardActor>, ShardStartError> {
        let actor = ShardActor::open(cfg, deps, false)?;
        Ok(ShardActor::spawn(arbiter, actor))
    }

    /// Starts a replica of a group this node holds no state for, to be added to the group
    /// (a learner first): it knows neither the group's configuration nor its slots, never
    /// campaigns, and serves nothing until the leader's snapshot is installed. A group the
    /// node holds state for opens as `start` would. The empty replica writes nothing, so
    /// a restart before its snapshot forgets it (the operator's add is then re-run).
    pub fn start_empty(
        arbiter: &ArbiterHandle,
        cfg: ShardConfig,
        deps: ShardDeps,
    ) -> Result<Addr<ShardActor>, ShardStartError> {
        let actor = ShardActor::open(cfg, deps, true)?;
        Ok(ShardActor::spawn(arbiter, actor))
    }

    fn spawn(arbiter: &ArbiterHandle, actor: ShardActor) -> Addr<ShardActor> {
        ShardActor::start_in_arbiter(arbiter, move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX_MESSAGES_MAX);
            actor
        })
    }

    fn open(cfg: ShardConfig, deps: ShardDeps, empty_ok: bool) -> Result<ShardActor, ShardStartError> {
        let group = cfg.group;
        let storage = RedbStorage::open(Arc::clone(&deps.db), group)?;
        let initialized = has_state(&storage)?;
        if !initialized && !empty_ok {
            return Err(ShardStartError::NoState { group });
        }
        let applied = storage.applied_index();
        let snapshot_index = storage.snapshot_metadata().index;
        let raft_cfg = cfg.raft_config(applied);
        raft_cfg.validate().map_err(|source| ShardStartError::Raft { group, source })?;
        let raft_err = |source| ShardStartError::Raft { group, source };
        let raw = RawNode::new(raft_cfg, storage).map_err(raft_err)?;
        let mut cfg = cfg;
        let range = match deps.db.group_range(group)? {
            Some(range) => range,
            None => {
                let (first, last) = (*cfg.slots.start(), *cfg.slots.end());
                let slots = SlotRange::of_group(group, first, last)
                    .ok_or(ShardStartError::NoState { group })?;
                GroupRange::new(slots)
            }
        };
        cfg.slots = range.range.first..=range.range.last;
        info!(group = %group, node = %cfg.node, applied = %applied, term = %raw.term(),
            last_index = %raw.last_index(), slots = %range.range, "replica opened");
        let was_member = raw.conf_state().all_nodes().contains(&cfg.node);
        let clean_share = deps.clean_budget.join();
        cfg.published_term.store(raw.term().get(), Ordering::Release);
        let undurable = Undurable::with_clean_bytes(clean_share.bytes());
        cfg.read_door.init(deps.db.clone(), group, cfg.metrics.clone(), undurable);
        let raw = GatedRaw::new(raw, cfg.read_door.clone());
        Ok(ShardActor {
            tick_clock: std::time::Instant::now(),
            stall_settles_at: None,
            initialized,
            was_member,
            removed: false,
            retiring: false,
            reported_conf: ConfState::default(),
            reported_group: None,
            outgoing: Vec::new(),
            incoming: None,
            assembled: None,
            range,
            cfg,
            deps,
            role: raw.role(),
            raw,
            clean_share,
            applied,
            durable_applied: applied,
            last_hard_state: None,
            unsynced_hard_state: None,
            counting_split: false,
            counts: Counts::default(),
            expiry: Expiry::default(),
            in_flight: VecDeque::with_capacity(PERSIST_JOBS_IN_FLIGHT_MAX),
            drive_scheduled: false,
            deferred: None,
            paused_ready: None,
            next_gen: 1,
            unflushed_applied: None,
            flushed_window: 0,
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            confirmed_reads: BTreeMap::new(),
            member_reads: BTreeMap::new(),
            follower_reads: FollowerReads::default(),
            next_read_id: first_read_id(),
            urgent_heartbeats: BTreeSet::new(),
            reported: (None, Term(0)),
            snapshot_sends: 0,
            last_compact: snapshot_index,
            compacting: false,
            snapshots_installed: 0,
            failed: None,
        })
    }

    pub(crate) fn leader_hint(&self) -> Option<NodeId> {
        let leader = self.raw.leader_id();
        (leader != NodeId::NONE).then_some(leader)
    }

    pub(crate) fn not_leader(&self) -> ShardError {
        ShardError::NotLeader { group: self.cfg.group, leader: self.leader_hint() }
    }

    fn busy(&self, reason: impl Into<String>) -> ShardError {
        ShardError::Busy { group: self.cfg.group, reason: reason.into() }
    }

    /// The applied but not yet durable mutations and the clean cache, which the replica
    /// shares with its read door.
    pub(crate) fn undurable(&self) -> UndurableGuard<'_> {
        self.cfg.read_door.undurable()
    }

    /// Opens the read door (`read_door`) for the reads this leader's core would answer at
    /// once now at its commit index, applied: on its lease, until the lease ends in real
    /// time, and on an endorsement in its term by a voter that makes a quorum with it.
    /// Closes it if there are none (`ReadDoor::open`).
    pub(crate) fn publish_read_door(&self) {
        let door = &self.cfg.read_door;
        let may = self.failed.is_none()
            && self.initialized
            && !self.removed
            && !self.retiring
            && self.raw.role() == Role::Leader
            && self.raw.lead_transferee().is_none()
            && self.applied >= self.raw.commit_index();
        if !may {
            return door.close();
        }
        // `tick_clock` is when the core's ticks were last caught up with real time, so its
        // lease ends `left` whole ticks after it (`catch_up_ticks`).
        let lease_until = self.raw.lease_ticks_left().and_then(|left| {
            let left = u32::try_from(left).unwrap_or(u32::MAX);
            self.tick_clock.checked_add(self.cfg.tick.saturating_mul(left))
        });
        let term = self.raw.term();
        let conf = self.raw.conf_state();
        let raw = &self.raw;
        let endorses = |&node: &NodeId| raw.endorsement_answers_now(Endorsement { node, term });
        let endorsers = conf.voters.union(&conf.voters_outgoing).copied().filter(endorses);
        door.open(self.range.range, lease_until, term, endorsers);
    }

    pub(crate) fn refusal(&self) -> Option<ShardError> {
        if let Some(reason) = &self.failed {
            return Some(ShardError::Storage { group: self.cfg.group, reason: reason.clone() });
        }
        (self.raw.role() != Role::Leader).then(|| self.not_leader())
    }

    fn transfer_leadership(&mut self, to: NodeId) -> Result<(), ShardError> {
        if let Some(err) = self.refusal() {
            return Err(err);
        }
        if to == self.cfg.node {
            return Ok(());
        }
        self.raw.transfer_leader(to).map_err(|e| self.busy(e.to_string()))
    }

    pub(crate) fn propose_write(&mut self, req: Request, tx: oneshot::Sender<ShardResult>) {
        if let Some(err) = self.refusal() {
            let _ = tx.send(Err(err));
            return;
        }
        if self.writes.len() >= self.cfg.pending_requests_max {
            let _ = tx.send(Err(self.busy("too many pending writes")));
            return;
        }
        let data = match rmp_serde::to_vec(&req) {
            Ok(data) => Bytes::from(data),
            Err(e) => {
                let _ = tx.send(Err(self.busy(format!("request does not encode: {e}"))));
                return;
            }
        };
        if data.len() as u64 > self.cfg.entry_bytes_max {
            let (bytes, max) = (data.len(), self.cfg.entry_bytes_max);
            let reason = format!(
                "a log entry of {bytes} bytes exceeds the {max} bytes a peer frame carries; \
                 not applied"
            );
            let _ = tx.send(Err(ShardError::Refused { group: self.cfg.group, reason }));
            return;
        }
        match self.raw.propose(data) {
            Ok(()) => {
                let index = self.raw.last_index();
                self.cfg.metrics.proposals.inc();
                let proposed = std::time::Instant::now();
                let pending = PendingWrite { term: self.raw.term(), proposed, tx };
                self.writes.insert(index, pending);
            }
            Err(RaftError::ProposalDropped(reason)) => {
                let error = match self.raw.lead_transferee() {
                    Some(to) => ShardError::Transferring { group: self.cfg.group, to },
                    None => self.busy(reason),
                };
                let _ = tx.send(Err(error));
            }
            Err(e) => {
                let _ = tx.send(Err(self.busy(e.to_string())));
            }
        }
    }

    fn start_read(
        &mut self,
        command: ReadCommand,
        now_ms: u64,
        endorsement: Option<Endorsement>,
        follower_ok: bool,
        tx: oneshot::Sender<ShardResult>,
    ) {
        // A node's own sync of the cluster map is a cache: any replica of the metadata
        // group answers it from what it applied, without a ReadIndex round.
        if matches!(command, ReadCommand::ClusterMap { linearizable: false, .. })
            && self.initialized
            && self.failed.is_none()
        {
            let id = self.next_read_id;
            self.next_read_id += 1;
            self.confirmed_reads.insert((self.applied, id), PendingRead { command, now_ms, tx });
            self.serve_reads();
            return;
        }
        let as_follower = follower_ok && self.serves_follower_reads();
        if let Some(err) = self.refusal().filter(|_| !as_follower) {
            let _ = tx.send(Err(err));
            return;
        }
        // Checked again when served: a split may apply before the read index does.
        if let Err(err) = crate::shard::split::check_read_slots(self.cfg.group, &self.range, &command) {
            let _ = tx.send(Err(err));
            return;
        }
        if self.pending_reads() >= self.cfg.pending_requests_max {
            let _ = tx.send(Err(self.busy("too many pending reads")));
            return;
        }
        let id = self.next_read_id;
        self.next_read_id += 1;
        if as_follower {
            self.queue_follower_read(id, PendingRead { command, now_ms, tx });
            return;
        }
        if self.cfg.lease_reads.is_some() {
            // The lease is counted in ticks: they must be the real time's before it is used.
            self.catch_up_ticks();
        }
        let context = Bytes::copy_from_slice(&id.to_be_bytes());
        let asked = match endorsement {
            Some(by) => self.raw.read_index_endorsed(context, by).map(|at_once| {
                if at_once {
                    self.cfg.metrics.reads_endorsed.inc();
                }
            }),
            None => self.raw.read_index(context),
        };
        match asked {
            Ok(()) => {
                self.reads.insert(id, PendingRead { command, now_ms, tx });
            }
            Err(e) => {
                let _ = tx.send(Err(self.busy(e.to_string())));
            }
        }
    }

    fn step_inbound(&mut self, messages: Vec<(GroupMessage, Urgency)>) {
        if self.cfg.lease_reads.is_some() {
            // A follower's election timer restarts on a leader's message: the ticks owed for
            // the time before it must be counted first, or they would shorten the wait the
            // leader's lease relies on.
            self.catch_up_ticks();
        }
        for (gm, urgency) in messages {
            if gm.group != self.cfg.group {
                warn!(group = %self.cfg.group, to_group = %gm.group, "message for another group");
                continue;
            }
            self.note_heartbeat(&gm.msg, urgency);
            let Some(msg) = self.receive_snapshot_part(gm.msg) else { continue };
            if let Err(e) = self.raw.step(msg) {
                tracing::debug!(group = %self.cfg.group, error = %e, "message refused");
            }
        }
    }

    fn note_heartbeat(&mut self, msg: &Message, urgency: Urgency) {
        if let crate::raft::MessageBody::Heartbeat { read_round, .. } = msg.body {
            if urgency == Urgency::Now && self.urgent_heartbeats.len() < MAILBOX_MESSAGES_MAX {
                self.urgent_heartbeats.insert((msg.from, read_round));
            }
        }
    }

    fn status(&self) -> ShardStatus {
        ShardStatus {
            node: self.cfg.node,
            group: self.cfg.group,
            role: self.raw.role(),
            leader: self.leader_hint(),
            term: self.raw.term(),
            commit_index: self.raw.commit_index(),
            applied_index: self.applied,
            durable_applied_index: self.durable_applied,
            first_index: self.raw.first_index(),
            last_index: self.raw.last_index(),
            conf_state: self.raw.conf_state().clone(),
            pending_writes: self.writes.len(),
            pending_reads: self.pending_reads(),
            snapshots_installed: self.snapshots_installed,
            slots: (*self.cfg.slots.start(), *self.cfg.slots.end()),
            followers: self.followers_matched(),
            failed: self.failed.clone(),
            initialized: self.initialized,
        }
    }

    /// Reads waiting for a read index or for its apply.
    fn pending_reads(&self) -> usize {
        let confirmed = self.confirmed_reads.len() + self.counts.len();
        self.reads.len() + confirmed + self.follower_reads.len()
    }

    /// The leader's match index of every other replica (empty on a non-leader).
    fn followers_matched(&self) -> Vec<(NodeId, LogIndex)> {
        if self.raw.role() != Role::Leader {
            return Vec::new();
        }
        let me = self.cfg.node;
        let status = self.raw.status();
        let others = status.followers.iter().filter(|(id, _)| *id != me);
        others.map(|(id, f)| (*id, f.matched)).collect()
    }

    /// Answers every waiter (stop, storage failure).
    pub(crate) fn fail_all(&mut self, err: &ShardError) {
        for (_, w) in std::mem::take(&mut self.writes) {
            let _ = w.tx.send(Err(err.clone()));
        }
        for (_, r) in std::mem::take(&mut self.reads) {
            let _ = r.tx.send(Err(err.clone()));
        }
        for (_, r) in std::mem::take(&mut self.confirmed_reads) {
            let _ = r.tx.send(Err(err.clone()));
        }
        for r in self.follower_reads.take_all() {
            let _ = r.tx.send(Err(err.clone()));
        }
        for r in self.counts.take_waiting() {
            let _ = r.tx.send(Err(err.clone()));
        }
        for (_, tx) in std::mem::take(&mut self.member_reads) {
            let _ = tx.send(Err(err.clone()));
        }
    }
}

/// Where a replica's read ids (ReadIndex contexts) start: random, so that an answer the
/// leader addressed to an earlier run of this replica (a restart, a drop and re-add) cannot
/// match a round of this one. Below 2^63: the ids only count up from here. A node's read
/// rounds (`node::read_rounds`) number theirs the same way, for the same reason.
pub(crate) fn first_read_id() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the clock, which also differs between runs.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        bytes = now.map_or(1, |d| d.as_nanos() as u64).to_le_bytes();
    }
    (u64::from_le_bytes(bytes) >> 1).max(1)
}

/// Ticks owed at once that mean the replica's thread stalled (half the shortest election
/// time-out, 250 ms by default), not that a timer fired late on a busy machine.
fn stall_ticks_min(cfg: &ShardConfig) -> u64 {
    (cfg.election_ticks_min / 2).max(cfg.heartbeat_ticks + 1)
}

impl ShardActor {
    /// Counts on the core's clock every whole tick of real (monotonic) time since the last
    /// catch-up, even when timers fire late or the process was paused: a leader's lease,
    /// counted in ticks, must never outlast the real time it stands for. A few ticks owed
    /// are ticked. After a stall (`stall_ticks_min` owed: a long apply on this thread, a
    /// paused process) the timers tick a heartbeat interval of it (a leader's heartbeats go
    /// out), the lease clock counts all of it, and the election timer counts the rest a few
    /// ticks later (`RawNode::advance_clock`, `settle_stall_when_due`), after the
    /// peers' messages that waited behind the stall were read, unless one of them reset it.
    /// Counted whole at once, a follower would campaign and a leader step down for a
    /// silence that was its own, as when every node applied one large command at once (a
    /// DEL of 500,000 keys: two dozen elections).
    pub(crate) fn catch_up_ticks(&mut self) {
        let now = std::time::Instant::now();
        let tick = self.cfg.tick.as_nanos().max(1);
        let elapsed = now.saturating_duration_since(self.tick_clock).as_nanos();
        let due = elapsed / tick;
        if due == 0 {
            return;
        }
        let remainder = std::time::Duration::from_nanos((elapsed % tick) as u64);
        self.tick_clock = now - remainder;
        let due = due as u64;
        let stalled = due >= stall_ticks_min(&self.cfg);
        let timers = if stalled { due.min(self.cfg.heartbeat_ticks) } else { due };
        if due > timers {
            self.raw.advance_clock(due - timers);
            let wait = self.cfg.tick.saturating_mul(stall_ticks_min(&self.cfg) as u32);
            self.stall_settles_at = Some(now + wait);
        }
        for _ in 0..timers {
            self.raw.tick();
        }
    }

    /// Settles the stall `catch_up_ticks` left owed to the election timer `stall_ticks_min`
    /// ticks of real time after it: time for a heartbeat round, its messages and their
    /// answers, to be read. Real time, not timer firings: a timer late by a stall fires
    /// the firings it missed in a burst.
    fn settle_stall_when_due(&mut self) {
        if self.stall_settles_at.is_some_and(|at| std::time::Instant::now() >= at) {
            self.stall_settles_at = None;
            self.raw.settle_stall();
        }
    }
}

impl Actor for ShardActor {
    type Context = Context<ShardActor>;

    fn started(&mut self, ctx: &mut Context<ShardActor>) {
        // Half a tick in the past: each timer firing finds one whole tick due, however it
        // jitters by less than half a tick.
        self.tick_clock = std::time::Instant::now() - self.cfg.tick / 2;
        ctx.run_interval(self.cfg.tick, |act, ctx| {
            // A replica whose storage failed takes no Ready any more: stepping it would
            // only pile up entries and answers in memory.
            if act.failed.is_some() {
                return;
            }
            act.settle_stall_when_due();
            act.catch_up_ticks();
            act.undurable().resize_clean(act.clean_share.bytes());
            act.check_follower_round();
            act.pump_snapshots();
            act.retry_deferred(ctx);
            act.drive(ctx);
            act.flush_applied(ctx);
            act.expire_when_due(ctx);
            act.maybe_report_removal();
        });
        self.drive(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<ShardActor>) {
        self.cfg.read_door.shut();
        self.fail_all(&ShardError::Stopped { group: self.cfg.group });
        info!(group = %self.cfg.group, node = %self.cfg.node, "replica stopped");
    }
}

impl Handler<Execute> for ShardActor {
    type Result = ResponseFuture<ShardResult>;

    fn handle(&mut self, msg: Execute, ctx: &mut Context<ShardActor>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        match msg.0 {
            ShardOp::Write(req) => self.propose_write(req, tx),
            ShardOp::Read { command, now_ms, endorsement, follower_ok } => {
                self.start_read(command, now_ms, endorsement, follower_ok, tx)
            }
            ShardOp::Split { at, child } => self.propose_split(at, child, tx, ctx),
            ShardOp::TransferLeader { to } => {
                // The term it started in: a new leader, `to` or not, comes in a later one.
                let term = self.raw.term().0;
                let answer = self.transfer_leadership(to);
                let term = i64::try_from(term).unwrap_or(i64::MAX);
                let _ = tx.send(answer.map(|()| crate::kv::Reply::Int(term)));
            }
            ShardOp::ChangeMembers { steps } => self.propose_members(&steps, tx),
            ShardOp::Members => self.start_members_read(tx),
            ShardOp::OpenReplica | ShardOp::DropReplica => {
                let reason = "a node-local operation reached a replica".to_string();
                let _ = tx.send(Err(ShardError::Refused { group: self.cfg.group, reason }));
            }
        }
        self.drive_soon(ctx);
        let group = self.cfg.group;
        Box::pin(async move { rx.await.unwrap_or(Err(ShardError::Stopped { group })) })
    }
}

impl Handler<Inbound> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<ShardActor>) {
        if self.failed.is_some() {
            return;
        }
        self.step_inbound(msg.0);
        self.drive_soon(ctx);
    }
}

impl Handler<GetStatus> for ShardActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Context<ShardActor>) -> Self::Result {
        MessageResult(self.status())
    }
}

impl Handler<TransferLeader> for ShardActor {
    type Result = Result<(), ShardError>;

    fn handle(&mut self, msg: TransferLeader, ctx: &mut Context<ShardActor>) -> Self::Result {
        let result = self.transfer_leadership(msg.0);
        self.drive(ctx);
        result
    }
}

impl Handler<Retire> for ShardActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, _ctx: &mut Context<ShardActor>) {
        self.retiring = true;
        self.cfg.read_door.close();
        self.maybe_report_removal();
    }
}

impl Handler<Campaign> for ShardActor {
    type Result = ();

    fn handle(&mut self, _msg: Campaign, ctx: &mut Context<ShardActor>) {
        self.raw.campaign();
        self.drive(ctx);
    }
}

impl Handler<Stop> for ShardActor {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<ShardActor>) {
        // The writer finishes what is queued before it closes the database.
        self.write_applied(ctx);
        ctx.stop();
    }
}
