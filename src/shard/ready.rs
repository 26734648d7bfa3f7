//! The replica's loop over `Ready`, in the order `raft::Ready` documents: send `messages`
//! at once (and, when the Ready commits requests of `APPLY_PAUSE_KEYS_MIN` keys or more on
//! a replica sharing the node's thread with its transport, let them reach the wire before
//! the apply holds the thread: `handle_ready`); apply
//! committed entries (durable locally already) through the undurable overlay, answering
//! their writers; hand entries, hard state, configuration and snapshot
//! to the node's writer as one job, with the applied state (index and mutations) of this
//! and earlier Readies once per node-wide window of `apply_flush` (with the window's first
//! Ready, else on its first tick), past the bounds of what is held, at a split, a
//! configuration change or a `Stop`: the log is durable, so a crash re-applies from the
//! durable applied index. A hard state that only moves the commit index is held back and
//! rides with the next job (`defer_commit_only`). Only when the writer reports a job
//! durable send `persisted_messages` and call `on_persisted`. Up to
//! `PERSIST_JOBS_IN_FLIGHT_MAX` jobs per replica are in flight, answered in order (the
//! writer batches many replicas per fsync); a job that installs a snapshot or creates split
//! children is the last in flight until it is durable. A Ready with nothing to write still
//! completes only after every job before it, so its persisted messages never get ahead of
//! the writes they acknowledge.
//! Also: serving reads once applied, log compaction, and telling the node of a new
//! configuration or of this replica's removal (snapshots: `snapshot`).
//!
//! Must never: send a persisted message before its write is durable, serve a read before
//! its ReadIndex is applied, or send a message of a term before publishing that term
//! (`ShardConfig::published_term`: a forwarded read's endorsement and a node read round's
//! answer rely on it).

use actix::prelude::*;
use tracing::{debug, error, info, warn};

use crate::kv::range::GroupRange;
use crate::kv::{read, KvMutation, Overlay, Request};
use crate::raft::{ConfState, Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId};
use crate::raft::{ReadState, Role, Term};
use crate::shard::actor::{Decoded, PendingRead, ShardActor};
use crate::shard::api::{GroupReport, LeaderChange, ShardError, ShardResult, SplitDone};
use crate::shard::limits::{
    APPLY_PAUSE, APPLY_PAUSE_KEYS_MIN, APPLY_UNFLUSHED_BYTES_MAX, APPLY_UNFLUSHED_KEYS_MAX,
    PERSIST_JOBS_IN_FLIGHT_MAX,
};
use crate::shard::read_door::read_applied;
use crate::shard::undurable::UNFLUSHED;
use crate::shard::persist::SubmitError;
use crate::shard::split::{apply_request, prepare_read, ChildWrite};
use crate::storage::{GroupDurable, GroupWrite, StorageError};
use crate::transport::api::{GroupMessage, Urgency};

/// Readies handled in one call when each needs nothing persisted (bounds a handler).
const READY_ROUNDS_PER_CALL_MAX: usize = 8;

/// One persist job of a replica.
pub(crate) struct InFlight {
    gen: u64,
    /// Held only while the job waits for room in the writer's queue.
    write: Option<GroupWrite>,
    last_entry: Option<(LogIndex, Term)>,
    snapshot_index: Option<LogIndex>,
    persisted_messages: Vec<Message>,
    /// Child groups split off in this Ready: written in the same job, started once durable.
    children: Vec<ChildWrite>,
    /// Nothing to write: completes as soon as every job before it has.
    empty: bool,
}

impl InFlight {
    /// No Ready is taken after this job until it is durable: it replaces the state machine
    /// (a snapshot) or starts other groups (a split).
    fn exclusive(&self) -> bool {
        self.snapshot_index.is_some() || !self.children.is_empty()
    }
}

/// The writer's answer to a persist job.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Persisted {
    gen: u64,
    result: Result<GroupDurable, StorageError>,
}

fn is_empty(w: &GroupWrite) -> bool {
    w.snapshot.is_none()
        && w.entries.is_empty()
        && w.hard_state.is_none()
        && w.conf_state.is_none()
        && w.applied_index.is_none()
        && w.mutations.is_empty()
}

impl ShardActor {
    /// Handles what the core has to do, while the replica may take another Ready.
    pub(crate) fn drive(&mut self, ctx: &mut Context<ShardActor>) {
        self.drive_rounds(ctx);
        self.start_counts(ctx);
        self.publish_read_door();
    }

    fn drive_rounds(&mut self, ctx: &mut Context<ShardActor>) {
        for _ in 0..READY_ROUNDS_PER_CALL_MAX {
            self.ask_follower_round();
            if !self.may_take_ready() || self.removed || self.retiring {
                return;
            }
            if !self.raw.has_ready() || !self.handle_ready(ctx) {
                return;
            }
        }
    }

    /// Drives once the mailbox is drained: every message already queued (client requests,
    /// peer messages, persist answers) is stepped first, so that one Ready, one append per
    /// follower and one persist job carry them all. Actix polls a context's spawned futures
    /// right after its mailbox runs empty, so a lone message waits for nothing.
    pub(crate) fn drive_soon(&mut self, ctx: &mut Context<ShardActor>) {
        if self.drive_scheduled {
            return;
        }
        self.drive_scheduled = true;
        ctx.spawn(actix::fut::ready(()).map(|(), act: &mut ShardActor, ctx| {
            act.drive_scheduled = false;
            act.drive(ctx);
        }));
    }

    /// A snapshot's install is in flight: the applied state is the snapshot's, which is
    /// neither in redb nor in the undurable layer until the install is durable.
    pub(crate) fn installing_snapshot(&self) -> bool {
        self.in_flight.iter().any(|f| f.snapshot_index.is_some())
    }

    fn may_take_ready(&self) -> bool {
        self.deferred.is_none()
            && self.paused_ready.is_none()
            && self.failed.is_none()
            && self.in_flight.len() < PERSIST_JOBS_IN_FLIGHT_MAX
            && !self.in_flight.back().is_some_and(InFlight::exclusive)
    }

    /// One Ready; true if another may be taken at once (its job was queued or completed).
    /// A Ready that commits requests of `APPLY_PAUSE_KEYS_MIN` keys or more pauses after its
    /// messages (false), and goes on `APPLY_PAUSE` later.
    fn handle_ready(&mut self, ctx: &mut Context<ShardActor>) -> bool {
        let mut rd = self.raw.ready();
        self.observe_leadership();
        self.check_follower_round();
        self.send_messages(std::mem::take(&mut rd.messages), ctx);
        let requests: Vec<Decoded> = rd.committed_entries.iter().map(decode).collect();
        let keys: usize = requests
            .iter()
            .map(|r| match r {
                Some(Ok(req)) => req.command.keys_applied(),
                _ => 0,
            })
            .sum();
        if self.cfg.pause_long_applies && keys >= APPLY_PAUSE_KEYS_MIN {
            self.cfg.metrics.apply_pauses.inc();
            self.paused_ready = Some((rd, requests));
            ctx.run_later(APPLY_PAUSE, |act, ctx| {
                if let Some((rd, requests)) = act.paused_ready.take() {
                    // A removal waits for a paused Ready (`maybe_report_removal`); a `Stop`
                    // stops the context, which then runs no such closure, and the Ready
                    // applies again after a restart.
                    debug_assert!(!act.removed, "removed with a Ready paused");
                    // A storage failure meanwhile: nothing more applies (`fail_storage`).
                    if act.failed.is_none() {
                        act.apply_ready(rd, requests, ctx);
                    }
                    act.drive(ctx);
                }
            });
            return false;
        }
        self.apply_ready(rd, requests, ctx)
    }

    /// The rest of `handle_ready`, once its messages are sent; `requests` are its committed
    /// entries' own.
    fn apply_ready(
        &mut self,
        rd: crate::raft::Ready,
        requests: Vec<Decoded>,
        ctx: &mut Context<ShardActor>,
    ) -> bool {
        let applied = self.apply_committed(&rd.committed_entries, requests);
        let (mutations, children) = match applied {
            Ok(m) => m,
            Err(reason) => {
                self.fail_storage(reason);
                return false;
            }
        };
        let gen = self.next_gen;
        self.next_gen += 1;
        self.undurable().push(UNFLUSHED, &mutations);
        if !rd.committed_entries.is_empty() {
            self.unflushed_applied = Some(self.applied);
        }
        self.take_read_states(rd.read_states);
        self.take_rejected_reads(rd.rejected_reads);
        self.serve_reads();
        if !children.is_empty() {
            // The slots that moved are no longer this group's to read.
            self.undurable().forget_clean();
        }
        if rd.snapshot.is_some() {
            // The snapshot replaces the state machine, what was applied before it included.
            self.undurable().drop_unflushed();
            self.unflushed_applied = None;
        }
        // The applied state goes with a configuration (stored beside the applied index) and
        // a split (its child reads the parent's records from disk) at once, and past the
        // bounds of what is held; otherwise with the first Ready of a flush window, or on
        // its first tick (`flush_applied`) if no Ready came: under load every job slot may
        // be taken when the tick comes, and the Ready's own job needs none.
        let held = {
            let undurable = self.undurable();
            undurable.len() >= APPLY_UNFLUSHED_KEYS_MAX
                || undurable.unflushed_bytes() >= APPLY_UNFLUSHED_BYTES_MAX
        };
        let flush = !children.is_empty()
            || rd.conf_state.is_some()
            || held
            || flush_window(self.cfg.apply_flush) > self.flushed_window;
        let (mutations, applied_index) = if flush { self.take_unflushed(gen) } else { (Vec::new(), None) };
        let mut write = GroupWrite {
            entries: rd.entries,
            hard_state: rd.hard_state,
            conf_state: rd.conf_state,
            applied_index,
            mutations,
            range: (!children.is_empty()).then(|| self.range.clone()),
            ..GroupWrite::new(self.cfg.group)
        };
        if !rd.committed_entries.is_empty() {
            self.raw.on_applied(self.applied);
        }
        let snapshot_index = match rd.snapshot {
            Some(s) => match self.prepare_install(s, &mut write) {
                Ok(index) => Some(index),
                Err(reason) => {
                    self.fail_storage(reason);
                    return false;
                }
            },
            None => None,
        };
        self.defer_commit_only(&mut write);
        let flight = InFlight {
            gen,
            last_entry: write.entries.last().map(|e| (e.index, e.term)),
            snapshot_index,
            persisted_messages: rd.persisted_messages,
            write: None,
            children,
            empty: false,
        };
        if is_empty(&write) && !flight.exclusive() {
            if self.in_flight.is_empty() {
                let durable = self.durable_applied;
                self.complete(flight, durable);
            } else {
                self.in_flight.push_back(InFlight { empty: true, ..flight });
            }
            return true;
        }
        self.submit(InFlight { write: Some(write), ..flight }, ctx);
        self.deferred.is_none() && self.failed.is_none()
    }

    /// Holds back a hard state that only moves the commit index when it is all `write`
    /// carries (as etcd's raft, which syncs for entries, a term or a vote only); hands a
    /// held one over with the group's next write of anything else. Every write after it
    /// carries a newer hard state or the held one, so a durable applied index never
    /// passes the durable commit index, and a restart finds the log's commit at least as
    /// far as its applied state.
    fn defer_commit_only(&mut self, write: &mut GroupWrite) {
        match write.hard_state.take() {
            Some(hs) => {
                let same_vote = self.last_hard_state.is_some_and(|last| {
                    last.term == hs.term && last.voted_for == hs.voted_for
                });
                self.last_hard_state = Some(hs);
                if same_vote && is_empty(write) {
                    self.unsynced_hard_state = Some(hs);
                } else {
                    write.hard_state = Some(hs);
                    self.unsynced_hard_state = None;
                }
            }
            None if !is_empty(write) => write.hard_state = self.unsynced_hard_state.take(),
            None => {}
        }
    }

    /// The applied state kept in memory, handed to persist generation `gen`.
    fn take_unflushed(&mut self, gen: u64) -> (Vec<KvMutation>, Option<LogIndex>) {
        self.flushed_window = flush_window(self.cfg.apply_flush);
        let taken = self.undurable().take_unflushed(gen);
        (taken, self.unflushed_applied.take())
    }

    /// On a tick: hands the applied state kept in memory to the writer in a job of its own,
    /// once per flush window (unless a Ready handed it over in this window already).
    pub(crate) fn flush_applied(&mut self, ctx: &mut Context<ShardActor>) {
        if flush_window(self.cfg.apply_flush) > self.flushed_window {
            self.write_applied(ctx);
        }
    }

    /// Hands the applied state kept in memory to the writer now, if there is any and the
    /// replica may write (also on `Stop`: a clean restart then replays nothing, unless a
    /// Ready was paused or a job held back then, when it replays from the durable index).
    pub(crate) fn write_applied(&mut self, ctx: &mut Context<ShardActor>) {
        let nothing = self.unflushed_applied.is_none();
        if nothing || !self.may_take_ready() || self.removed || self.retiring {
            return;
        }
        let gen = self.next_gen;
        self.next_gen += 1;
        let (mutations, applied_index) = self.take_unflushed(gen);
        let write = GroupWrite {
            applied_index,
            mutations,
            hard_state: self.unsynced_hard_state.take(),
            ..GroupWrite::new(self.cfg.group)
        };
        let flight = InFlight {
            gen,
            write: Some(write),
            last_entry: None,
            snapshot_index: None,
            persisted_messages: Vec::new(),
            children: Vec::new(),
            empty: false,
        };
        self.submit(flight, ctx);
    }

    fn submit(&mut self, mut flight: InFlight, ctx: &mut Context<ShardActor>) {
        let Some(write) = flight.write.take() else { return };
        let addr = ctx.address();
        let gen = flight.gen;
        // `do_send`: one answer per replica in flight, never client-driven; it must not be
        // lost to a full mailbox.
        let done = Box::new(move |result| addr.do_send(Persisted { gen, result }));
        // A child starts on the parent's voters only: a learner of the parent writes none.
        let me = self.cfg.node;
        let children = flight
            .children
            .iter()
            .filter(|c| c.done.child.replicas.contains(&me))
            .map(|c| c.write.clone())
            .collect();
        match self.deps.writer.submit(write, children, done) {
            Ok(()) => self.in_flight.push_back(flight),
            Err((SubmitError::Full, write)) => {
                debug!(group = %self.cfg.group, "persist queue full; retrying next tick");
                self.deferred = Some(InFlight { write: Some(*write), ..flight });
            }
            Err((SubmitError::Stopped, _)) => self.fail_storage("node writer stopped".into()),
        }
    }

    /// Resubmits a job the writer's queue had no room for.
    pub(crate) fn retry_deferred(&mut self, ctx: &mut Context<ShardActor>) {
        if let Some(flight) = self.deferred.take() {
            self.submit(flight, ctx);
        }
    }

    /// The job's write is durable: finish its Ready.
    fn complete(&mut self, flight: InFlight, durable_applied: LogIndex) {
        if let Some(index) = flight.snapshot_index {
            self.raw.on_snapshot_persisted(index);
            self.undurable().clear();
            self.applied = self.applied.max(index);
            self.last_compact = self.last_compact.max(index);
            self.snapshots_installed += 1;
            self.initialized = true;
            // Recomputed below from the installed configuration: a snapshot taken just
            // before this node's addition does not name it yet, which is no removal.
            self.was_member = false;
            self.cfg.metrics.snapshots_installed.inc();
            info!(group = %self.cfg.group, node = %self.cfg.node, index = %index,
                term = %self.raw.term(), "snapshot installed");
        }
        if let Some((index, term)) = flight.last_entry {
            self.raw.on_persisted(index, term);
        }
        self.undurable().release_through(flight.gen);
        self.durable_applied = self.durable_applied.max(durable_applied);
        for m in flight.persisted_messages {
            self.send_one(m, Urgency::Now);
        }
        let leads = self.raw.role() == Role::Leader;
        for child in flight.children {
            (self.deps.on_split)(SplitDone { campaign: leads, ..child.done });
        }
        if self.raw.conf_state().all_nodes().contains(&self.cfg.node) {
            self.was_member = true;
        }
        if self.initialized && *self.raw.conf_state() != self.reported_conf {
            let conf = self.raw.conf_state().clone();
            (self.deps.on_members)(self.cfg.group, replicas_of(&conf));
            self.reported_conf = conf;
        }
        self.maybe_report_group();
        self.maybe_report_removal();
    }

    /// As leader, reports the group's state for the cluster map once per term, and again
    /// whenever its configuration or slots change.
    fn maybe_report_group(&mut self) {
        if !self.initialized || self.removed || self.raw.role() != Role::Leader {
            return;
        }
        let slots = (*self.cfg.slots.start(), *self.cfg.slots.end());
        let (term, conf) = (self.raw.term(), self.raw.conf_state());
        // Runs after every persist job: compare first, clone the configuration only on news.
        if self.reported_group.as_ref().is_some_and(|(t, c, s)| *t == term && c == conf && *s == slots) {
            return;
        }
        let now = (term, conf.clone(), slots);
        (self.deps.on_report)(GroupReport {
            group: self.cfg.group,
            epoch: self.applied.get(),
            slots,
            replicas: replicas_of(&now.1),
        });
        self.reported_group = Some(now);
    }

    /// Tells the node once a durable configuration no longer names this replica's node
    /// (after any compaction in progress ended: none may write after the state is gone).
    pub(crate) fn maybe_report_removal(&mut self) {
        let busy = !self.in_flight.is_empty()
            || self.deferred.is_some()
            || self.paused_ready.is_some()
            || self.compacting;
        if self.removed || busy {
            return;
        }
        if !self.retiring && !(self.was_member && self.removed_from_group()) {
            return;
        }
        self.removed = true;
        self.cfg.read_door.close();
        info!(group = %self.cfg.group, node = %self.cfg.node, "removed from the group");
        let slots = self.initialized.then(|| self.cfg.slots.clone());
        (self.deps.on_removed)(self.cfg.group, slots);
    }

    pub(crate) fn fail_storage(&mut self, reason: String) {
        error!(group = %self.cfg.group, node = %self.cfg.node, %reason,
            "storage failed; the replica stops serving");
        let err = ShardError::Storage { group: self.cfg.group, reason: reason.clone() };
        self.failed = Some(reason);
        self.cfg.read_door.close();
        self.fail_all(&err);
    }

    /// Role, leader and term changes: logs, the leader-change callback, and the answers
    /// owed to waiters of a leadership that ended.
    fn observe_leadership(&mut self) {
        let role = self.raw.role();
        let (group, term) = (self.cfg.group, self.raw.term());
        // Before this Ready's messages go out: a read this node forwards is endorsed with a
        // term at least that of every vote and acknowledgement the replica has sent
        // (`ShardConfig::published_term`).
        self.cfg.published_term.store(term.get(), std::sync::atomic::Ordering::Release);
        self.count_elections(role, term);
        if role != self.role {
            if self.role == Role::Leader {
                self.leadership_lost();
            }
            if role == Role::Follower {
                info!(group = %group, node = %self.cfg.node, term = %term, "became follower");
            }
            self.role = role;
        }
        let now = (self.leader_hint(), term);
        if now != self.reported {
            if now.1 != self.reported.1 {
                info!(group = %group, node = %self.cfg.node, term = %term, "term changed");
            }
            info!(group = %group, node = %self.cfg.node, term = %term, leader = ?now.0,
                "leader changed");
            self.reported = now;
            (self.deps.on_leader_change)(LeaderChange { group, leader: now.0, term });
        }
    }

    /// An election starts when the replica becomes a candidate or, still a candidate, moves
    /// to a new term; a leader reached straight from a pre-vote (a lone voter) started one too.
    fn count_elections(&self, role: Role, term: Term) {
        let m = &self.cfg.metrics;
        let new_term = term != self.reported.1;
        match role {
            Role::Candidate if self.role != Role::Candidate || new_term => {
                m.elections_started.inc();
            }
            Role::Leader if self.role != Role::Leader => {
                if self.role != Role::Candidate {
                    m.elections_started.inc();
                }
                m.elections_won.inc();
            }
            _ => {}
        }
    }

    fn leadership_lost(&mut self) {
        let group = self.cfg.group;
        for (_, w) in std::mem::take(&mut self.writes) {
            let _ = w.tx.send(Err(ShardError::LeadershipLost { group }));
        }
        let not_leader = self.not_leader();
        for (_, r) in std::mem::take(&mut self.reads) {
            let _ = r.tx.send(Err(not_leader.clone()));
        }
        for (_, r) in std::mem::take(&mut self.confirmed_reads) {
            let _ = r.tx.send(Err(not_leader.clone()));
        }
        for (_, tx) in std::mem::take(&mut self.member_reads) {
            let _ = tx.send(Err(not_leader.clone()));
        }
    }

    fn send_messages(&mut self, messages: Vec<Message>, ctx: &mut Context<ShardActor>) {
        for m in messages {
            if matches!(m.body, MessageBody::Snapshot { .. }) {
                self.send_snapshot(m, ctx);
                continue;
            }
            let urgency = self.urgency(&m);
            self.send_one(m, urgency);
        }
        // Every heartbeat stepped so far was answered in these messages.
        self.urgent_heartbeats.clear();
    }

    /// Heartbeats are urgent while reads wait for their round (this replica's, or a
    /// follower's read index), and heartbeat answers are urgent when the heartbeat was;
    /// everything else leaves now.
    fn urgency(&mut self, m: &Message) -> Urgency {
        match m.body {
            MessageBody::Heartbeat { .. }
                if self.reads.is_empty()
                    && self.member_reads.is_empty()
                    && !self.raw.read_round_in_flight() =>
            {
                Urgency::Coalesce
            }
            MessageBody::HeartbeatResponse { read_round } => {
                if self.urgent_heartbeats.remove(&(m.to, read_round)) {
                    Urgency::Now
                } else {
                    Urgency::Coalesce
                }
            }
            _ => Urgency::Now,
        }
    }

    pub(crate) fn send_one(&self, msg: Message, urgency: Urgency) {
        let to = msg.to;
        self.deps.peers.send_raft(to, GroupMessage { group: self.cfg.group, msg }, urgency);
    }

    /// Applies committed entries on top of the undurable overlay; returns the mutations
    /// and the child groups of the splits among them.
    #[allow(clippy::type_complexity)]
    fn apply_committed(
        &mut self,
        entries: &[Entry],
        requests: Vec<Decoded>,
    ) -> Result<(Vec<KvMutation>, Vec<ChildWrite>), String> {
        debug_assert_eq!(entries.len(), requests.len(), "one request per committed entry");
        let Some(last) = entries.last() else { return Ok((Vec::new(), Vec::new())) };
        let started = std::time::Instant::now();
        let mut batch = Overlay::new();
        let (group, mut children) = (self.cfg.group, Vec::new());
        // Taken, not cloned, on this hot path; put back below before any early return.
        let placeholder = GroupRange::new(self.range.range);
        let mut range = std::mem::replace(&mut self.range, placeholder);
        let door = self.cfg.read_door.clone();
        let mut events = self.deps.notifier.collector();
        let mut undurable = door.undurable();
        let (db, metrics) = (&self.deps.db, &self.cfg.metrics);
        let (answers, checked) = read_applied(db, group, &mut undurable, metrics, |layered| {
            let mut answers = Vec::with_capacity(entries.len());
            for (e, request) in entries.iter().zip(requests) {
                let reply = match (&e.payload, request) {
                    (EntryPayload::Normal(_), Some(request)) => {
                        Some(match request {
                            Ok(req) => apply_request(group, &mut range, layered, &mut batch,
                                &req, &mut children, events.as_mut()),
                            Err(err) => {
                                // Every replica skips the same entry: the state stays
                                // identical.
                                warn!(group = %group, index = %e.index, %err,
                                    "entry does not decode; skipped");
                                let reason = format!("entry {} does not decode: {err}", e.index);
                                Err(ShardError::Storage { group, reason })
                            }
                        })
                    }
                    // A membership change's proposer is answered once it applied.
                    (EntryPayload::ConfChange(_), _) => Some(Ok(crate::kv::Reply::Ok)),
                    (EntryPayload::Noop | EntryPayload::Normal(_), _) => None,
                };
                answers.push((e.index, e.term, reply));
            }
            answers
        });
        drop(undurable);
        self.cfg.slots = range.range.first..=range.range.last;
        self.range = range;
        checked?;
        if let Some(events) = events.filter(|events| !events.is_empty()) {
            (self.deps.on_key_events)(events);
        }
        for (index, term, reply) in answers {
            self.answer_write(index, term, reply);
        }
        self.applied = last.index;
        self.cfg.metrics.observe_apply(started.elapsed());
        debug!(group = %self.cfg.group, index = %last.index, commit = %self.raw.commit_index(),
            "applied committed entries");
        Ok((batch.drain(), children))
    }

    fn answer_write(&mut self, index: LogIndex, term: Term, reply: Option<ShardResult>) {
        let group = self.cfg.group;
        // Waiters below `index` whose entries never applied were overwritten: unknown.
        while let Some(first) = self.writes.first_entry() {
            if *first.key() >= index {
                break;
            }
            let _ = first.remove().tx.send(Err(ShardError::LeadershipLost { group }));
        }
        if let Some(w) = self.writes.remove(&index) {
            let answer = match reply {
                Some(reply) if w.term == term => {
                    self.cfg.metrics.observe_proposal(w.proposed.elapsed());
                    reply
                }
                _ => Err(ShardError::LeadershipLost { group }),
            };
            let _ = w.tx.send(answer);
        }
    }

    fn take_read_states(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Ok(raw_id) = <[u8; 8]>::try_from(&rs.context[..]) else { continue };
            let id = u64::from_be_bytes(raw_id);
            if self.follower_round_answered(id, rs.index) {
                continue;
            }
            if let Some(read) = self.reads.remove(&id) {
                self.confirmed_reads.insert((rs.index, id), read);
            } else if let Some(tx) = self.member_reads.remove(&id) {
                // A quorum just confirmed this leadership: its configuration is current.
                let _ = tx.send(self.members());
            }
        }
    }

    /// Read index requests the leader refused: the follower round they asked for ends at
    /// once, its reads forwarded. (Only a follower asks a leader for a read index; this
    /// replica's own reads wait for rounds it leads.)
    fn take_rejected_reads(&mut self, contexts: Vec<bytes::Bytes>) {
        for context in contexts {
            let Ok(raw_id) = <[u8; 8]>::try_from(&context[..]) else { continue };
            self.follower_round_rejected(u64::from_be_bytes(raw_id));
        }
    }

    /// Serves every confirmed read whose index is applied.
    pub(crate) fn serve_reads(&mut self) {
        let due = self.applied.next();
        if self.confirmed_reads.first_key_value().is_none_or(|((i, _), _)| *i >= due) {
            return;
        }
        let later = self.confirmed_reads.split_off(&(due, 0));
        let now = std::mem::replace(&mut self.confirmed_reads, later);
        let group = self.cfg.group;
        let door = self.cfg.read_door.clone();
        let mut undurable = door.undurable();
        let (db, metrics, range) = (&self.deps.db, &self.cfg.metrics, &self.range);
        // Counts go off the thread (`start_counts`, at the end of the next drive).
        let counts = &mut self.counts;
        let (answers, checked) = read_applied(db, group, &mut undurable, metrics, |layered| {
            let answer = |r: PendingRead| {
                let reply = prepare_read(group, range, &r.command)
                    .map(|command| read::execute(layered, r.now_ms, &command));
                (reply, r.tx)
            };
            now.into_values().filter_map(|r| counts.take(r)).map(answer).collect::<Vec<_>>()
        });
        drop(undurable);
        for (reply, tx) in answers {
            let answer = match &checked {
                Ok(()) => reply,
                Err(reason) => Err(ShardError::Storage { group, reason: reason.clone() }),
            };
            let _ = tx.send(answer);
        }
    }
}

impl Handler<Persisted> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: Persisted, ctx: &mut Context<ShardActor>) {
        let Some(flight) = self.in_flight.pop_front() else { return };
        assert_eq!(flight.gen, msg.gen, "group {}: persist answers out of order", self.cfg.group);
        assert!(!flight.empty, "group {}: an empty job got a persist answer", self.cfg.group);
        match msg.result {
            Ok(durable) => {
                self.complete(flight, durable.applied_index);
                // Jobs with nothing to write were waiting only for this one.
                while self.in_flight.front().is_some_and(|f| f.empty) {
                    let Some(empty) = self.in_flight.pop_front() else { break };
                    let durable = self.durable_applied;
                    self.complete(empty, durable);
                }
                self.serve_reads();
                self.maybe_compact(ctx);
                self.drive_soon(ctx);
            }
            Err(e) => self.fail_storage(e.to_string()),
        }
    }
}

/// Log compaction.
impl ShardActor {
    /// Compacts the log every `compact_every_entries` durably applied entries.
    pub(crate) fn maybe_compact(&mut self, ctx: &mut Context<ShardActor>) {
        let due = self.last_compact.plus(self.cfg.compact_every_entries);
        if self.compacting || self.removed || self.retiring || self.durable_applied < due {
            return;
        }
        let index = LogIndex(self.durable_applied.get().saturating_sub(self.cfg.log_keep_entries));
        if index < self.raw.first_index() {
            return;
        }
        self.compacting = true;
        let (writer, group, node) = (self.deps.writer.clone(), self.cfg.group, self.cfg.node);
        let conf = self.raw.conf_state().clone();
        let task = tokio::task::spawn_blocking(move || writer.compact(group, index, conf));
        ctx.spawn(actix::fut::wrap_future(task).map(move |res, act: &mut ShardActor, _| {
            act.compacting = false;
            match res {
                Ok(Ok(())) => {
                    act.last_compact = act.last_compact.max(index);
                    info!(group = %group, node = %node, index = %index, "log compacted");
                }
                Ok(Err(e)) => warn!(group = %group, %index, error = %e, "compaction failed"),
                Err(e) => warn!(group = %group, %index, error = %e, "compaction failed"),
            }
        }));
    }
}

/// The flush window the present falls in: windows of `interval` counted from the process's
/// first call, so that every replica of the node enters a new one at the same instant and their
/// applied states reach the writer within one tick of each other, where a few B-tree
/// transactions carry them all instead of one per replica at scattered times. A zero
/// interval makes every call a new window.
pub(crate) fn flush_window(interval: std::time::Duration) -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    let elapsed = start.elapsed().as_nanos();
    match interval.as_nanos() {
        0 => u64::try_from(elapsed).unwrap_or(u64::MAX).saturating_add(1),
        nanos => u64::try_from(elapsed / nanos).unwrap_or(u64::MAX),
    }
}

/// The request of a committed entry (see `Decoded`).
fn decode(entry: &Entry) -> Decoded {
    match &entry.payload {
        EntryPayload::Normal(data) => Some(rmp_serde::from_slice::<Request>(data)),
        EntryPayload::ConfChange(_) | EntryPayload::Noop => None,
    }
}

/// A configuration's nodes: voters (outgoing ones included), then learners.
fn replicas_of(conf: &ConfState) -> Vec<NodeId> {
    let mut replicas: Vec<_> = conf.voters.union(&conf.voters_outgoing).copied().collect();
    replicas.extend(conf.learners.iter().filter(|l| !conf.is_voter(**l)));
    replicas
}
