//! The simulated world of one seed: N nodes, each hosting a replica of each of M groups,
//! driven by one thread in ticks. Owns the replicas (a `RawNode` while up, its durable
//! `MemStorage` and state machine always), the Ready loop (send, persist, send after
//! persist, apply, serve reads, advance), crash and restart, and the per-tick schedule:
//! faults, ticks, client attempts, message deliveries, compaction.

use shardkv::raft::{
    ConfState, Config, EntryPayload, GroupId, InjectedBug, LogIndex, MemStorage, Message,
    Endorsement, MessageBody, NodeId, RawNode, ReadMode, ReadState, Ready, Role, Term,
};

use super::faults::{FaultMix, FaultPlan};
use super::invariants::Checks;
use super::network::Network;
use super::rng::SimRng;
use super::state_machine::{Command, KvStateMachine};
use super::workload::{Attempt, ClientParams, Workload};

/// Time units per tick; message delays are drawn in units, so deliveries interleave.
pub const UNITS_PER_TICK: u64 = 8;
/// Readies handled in a row for one replica before the loop is declared stuck.
const READY_ROUNDS_MAX: usize = 64;

/// The shape of one seed's world.
#[derive(Clone, Debug)]
pub struct Shape {
    pub tier: &'static str,
    pub nodes: u64,
    pub groups: usize,
    pub fault_ticks: u64,
    pub liveness_ticks_max: u64,
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub read_mode: ReadMode,
    /// 1 sends one entry per Append (so followers acknowledge prefixes of a leader's tail).
    pub entries_bytes_per_msg_max: u64,
    pub bug: Option<InjectedBug>,
}

/// How often each fault and recovery path ran, to show a seed exercised what it claims.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub crashes: u64,
    pub readies_lost_before_persist: u64,
    pub readies_cut_after_persist: u64,
    pub partitions: u64,
    pub one_way_cuts: u64,
    pub leader_isolations: u64,
    pub transfers: u64,
    pub conf_changes_proposed: u64,
    pub joint_changes_proposed: u64,
    pub conf_changes_applied: u64,
    pub compactions: u64,
    pub snapshots_installed: u64,
    pub snapshot_failures_reported: u64,
    pub elections: u64,
    /// Reads a follower forwarded to its leader with its endorsement, and of those the ones
    /// the leader answered at once (`RawNode::read_index_endorsed`).
    pub reads_forwarded: u64,
    pub reads_endorsed: u64,
    /// Reads at a leader endorsed by a peer's term read when a probe reached it (a node
    /// read round, `node::read_rounds`); answered at once, they count in `reads_endorsed`.
    pub reads_probed: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.crashes += o.crashes;
        self.readies_lost_before_persist += o.readies_lost_before_persist;
        self.readies_cut_after_persist += o.readies_cut_after_persist;
        self.partitions += o.partitions;
        self.one_way_cuts += o.one_way_cuts;
        self.leader_isolations += o.leader_isolations;
        self.transfers += o.transfers;
        self.conf_changes_proposed += o.conf_changes_proposed;
        self.joint_changes_proposed += o.joint_changes_proposed;
        self.conf_changes_applied += o.conf_changes_applied;
        self.compactions += o.compactions;
        self.snapshots_installed += o.snapshots_installed;
        self.snapshot_failures_reported += o.snapshot_failures_reported;
        self.elections += o.elections;
        self.reads_forwarded += o.reads_forwarded;
        self.reads_endorsed += o.reads_endorsed;
        self.reads_probed += o.reads_probed;
    }
}

/// One replica of one group on one node.
pub struct Replica {
    pub raw: Option<RawNode<MemStorage>>,
    /// The store while the node is down.
    pub disk: Option<MemStorage>,
    /// Persisted atomically with each apply (see `state_machine`).
    pub sm: KvStateMachine,
    /// Read states waiting for the state machine to reach their index.
    pub reads: Vec<ReadState>,
    /// Commit index last observed in this process life.
    pub last_commit: LogIndex,
    pub incarnation: u64,
}

pub struct World {
    pub seed: u64,
    pub shape: Shape,
    pub mix: FaultMix,
    pub rng: SimRng,
    pub tick: u64,
    pub now_units: u64,
    pub up: Vec<bool>,
    /// `replicas[node - 1][group - 1]`.
    pub replicas: Vec<Vec<Replica>>,
    pub net: Network,
    pub checks: Checks,
    pub workload: Workload,
    pub plan: FaultPlan,
    pub counters: Counters,
    /// `Some(restart tick)`: the node crashes inside its next Ready.
    pub crash_armed: Vec<Option<u64>>,
    /// Reads forwarded to a leader, delivered at their tick.
    pub forwards: Vec<Forwarded>,
    /// Reads at a leader waiting for a peer's term, asked at their tick.
    pub probes: Vec<Probed>,
}

/// A read a follower's node forwarded to the leader it knew, with the term of the
/// follower's replica when it forwarded it (its endorsement), as shardkv's request path does.
pub struct Forwarded {
    due_tick: u64,
    leader: usize,
    endorser: usize,
    term: Term,
    attempt: Attempt,
}

/// A read at a leader's node in a node-level read round (`node::read_rounds`): the probe
/// reaches `peer` at `due_tick`, which answers with its replica's term then (after the read
/// began); the answer travels back to the leader as a `Forwarded` endorsement by `peer`.
pub struct Probed {
    due_tick: u64,
    leader: usize,
    peer: usize,
    attempt: Attempt,
}

/// Forwarded reads take up to this many ticks to reach the leader; so do probes and their
/// answers.
const FORWARD_DELAY_TICKS_MAX: u64 = 3;

/// Takes the items of `queue` due by `tick`, leaving the others in order.
fn take_due<T>(queue: &mut Vec<T>, tick: u64, due_tick: fn(&T) -> u64) -> Vec<T> {
    let (due, later) = std::mem::take(queue).into_iter().partition(|x| due_tick(x) <= tick);
    *queue = later;
    due
}

pub fn node_id(n: usize) -> NodeId {
    NodeId(n as u64 + 1)
}

impl World {
    pub fn new(
        seed: u64,
        shape: Shape,
        mix: FaultMix,
        clients: ClientParams,
        rng: SimRng,
    ) -> World {
        let conf = ConfState::with_voters((1..=shape.nodes).map(NodeId));
        let mut w = World {
            seed,
            net: Network::new(mix.link),
            checks: Checks::new(seed, shape.groups),
            workload: Workload::new(clients, shape.nodes, shape.groups),
            plan: FaultPlan::default(),
            counters: Counters::default(),
            crash_armed: vec![None; shape.nodes as usize],
            forwards: Vec::new(),
            probes: Vec::new(),
            up: vec![true; shape.nodes as usize],
            replicas: Vec::new(),
            tick: 0,
            now_units: 0,
            rng,
            mix,
            shape,
        };
        for n in 0..w.shape.nodes as usize {
            let row = (0..w.shape.groups)
                .map(|g| Replica {
                    raw: Some(w.new_raw(n, g, 0, MemStorage::new_with_conf_state(conf.clone()), 0)),
                    disk: None,
                    sm: KvStateMachine::default(),
                    reads: Vec::new(),
                    last_commit: LogIndex(0),
                    incarnation: 0,
                })
                .collect();
            w.replicas.push(row);
        }
        w
    }

    fn new_raw(
        &self,
        n: usize,
        g: usize,
        inc: u64,
        store: MemStorage,
        applied: u64,
    ) -> RawNode<MemStorage> {
        let mut cfg = Config::new(node_id(n), GroupId(g as u64 + 1));
        cfg.pre_vote = self.shape.pre_vote;
        cfg.check_quorum = self.shape.check_quorum;
        cfg.read_mode = self.shape.read_mode;
        cfg.applied = LogIndex(applied);
        cfg.injected_bug = self.shape.bug;
        cfg.max_inflight_msgs = 8;
        cfg.max_entries_bytes_per_msg = self.shape.entries_bytes_per_msg_max;
        cfg.snapshot_timeout_ticks = 30;
        cfg.rng_seed = self.seed ^ (n as u64 + 1) << 48 ^ (g as u64 + 1) << 32 ^ inc << 16;
        RawNode::new(cfg, store).unwrap_or_else(|e| panic!("seed {}: raw node: {e}", self.seed))
    }

    /// One tick: faults, every replica ticks, clients act, messages of this tick arrive.
    pub fn step_tick(&mut self) {
        self.tick += 1;
        self.now_units = self.tick * UNITS_PER_TICK;
        self.fire_faults();
        for n in 0..self.up.len() {
            if !self.up[n] {
                continue;
            }
            for g in 0..self.shape.groups {
                if let Some(raw) = self.replicas[n][g].raw.as_mut() {
                    raw.tick();
                }
                self.after_input(n, g);
            }
        }
        self.client_attempts();
        self.deliver_probes();
        self.deliver_forwards();
        self.deliver_until((self.tick + 1) * UNITS_PER_TICK);
        self.maybe_compact();
    }

    fn deliver_until(&mut self, end_units: u64) {
        while let Some((time_units, env)) = self.net.pop_due(end_units) {
            self.now_units = time_units;
            let n = (env.to.get() - 1) as usize;
            if !self.up[n] {
                continue;
            }
            let g = (env.group.get() - 1) as usize;
            let m = env.decode();
            let Some(raw) = self.replicas[n][g].raw.as_mut() else { continue };
            if let Err(e) = raw.step(m) {
                panic!("seed {}: group {} node {}: step failed: {e}", self.seed, g + 1, n + 1);
            }
            self.after_input(n, g);
        }
    }

    /// Checks the invariants on a replica that just took input, then drains its Readies.
    pub fn after_input(&mut self, n: usize, g: usize) {
        let rep = &mut self.replicas[n][g];
        if let Some(raw) = rep.raw.as_ref() {
            self.checks.observe(g, raw, &mut rep.last_commit);
        }
        for _ in 0..READY_ROUNDS_MAX {
            let Some(raw) = self.replicas[n][g].raw.as_mut() else { return };
            if !raw.has_ready() {
                return;
            }
            let rd = raw.ready();
            if let Some(restart_tick) = self.crash_armed[n].take() {
                return self.crash_mid_ready(n, g, rd, restart_tick);
            }
            self.handle_ready(n, g, rd);
        }
        let status = self.replicas[n][g].raw.as_ref().map(|r| r.status());
        panic!(
            "seed {}: group {} node {}: has_ready() stays true after {READY_ROUNDS_MAX} Readies: \
             {status:?}",
            self.seed,
            g + 1,
            n + 1
        );
    }

    /// Sends messages; a snapshot that cannot reach its peer is reported back to the
    /// sender's core, as a real transport would (`report_snapshot_failure`).
    fn send_all(&mut self, g: usize, msgs: &[Message]) {
        for m in msgs {
            let reachable = self.net.send(&mut self.rng, self.now_units, GroupId(g as u64 + 1), m);
            if reachable || !matches!(m.body, MessageBody::Snapshot { .. }) {
                continue;
            }
            let n = (m.from.get() - 1) as usize;
            if let Some(raw) = self.replicas[n][g].raw.as_mut() {
                raw.report_snapshot_failure(m.to);
                self.counters.snapshot_failures_reported += 1;
            }
        }
    }

    /// Step 2 of a Ready: make the snapshot, entries, hard state and conf state durable.
    fn persist(&mut self, n: usize, g: usize, rd: &Ready) {
        let rep = &mut self.replicas[n][g];
        let raw = rep.raw.as_mut().expect("persisting on a live replica");
        let store = raw.store_mut();
        if let Some(s) = &rd.snapshot {
            store.apply_snapshot(s.clone()).expect("snapshot installs");
            rep.sm = KvStateMachine::from_snapshot(&s.data);
            rep.sm.applied_index = s.metadata.index.get();
            self.counters.snapshots_installed += 1;
            let digest = rep.sm.digest();
            self.checks.on_snapshot(g, node_id(n), s.metadata.index, digest);
        }
        let store = rep.raw.as_mut().expect("live").store_mut();
        store.append(&rd.entries).expect("entries append");
        if let Some(hs) = rd.hard_state {
            self.checks.on_persist_hard_state(g, node_id(n), store.hard_state(), hs);
            store.set_hard_state(hs);
        }
        if let Some(cs) = &rd.conf_state {
            store.set_conf_state(cs.clone());
        }
    }

    fn handle_ready(&mut self, n: usize, g: usize, rd: Ready) {
        self.send_all(g, &rd.messages);
        self.persist(n, g, &rd);
        self.send_all(g, &rd.persisted_messages);
        self.apply(n, g, &rd);
        let rep = &mut self.replicas[n][g];
        rep.reads.extend(rd.read_states.iter().cloned());
        let raw = rep.raw.as_mut().expect("live");
        raw.advance(&rd);
        self.checks.after_advance(g, raw, rep.sm.applied_index);
        self.checks.observe(g, raw, &mut rep.last_commit);
        self.serve_reads(n, g);
    }

    fn apply(&mut self, n: usize, g: usize, rd: &Ready) {
        let id = node_id(n);
        for e in &rd.committed_entries {
            let rep = &mut self.replicas[n][g];
            let index = e.index.get();
            if index <= rep.sm.applied_index {
                continue; // already in the state machine (restored from a snapshot)
            }
            if index != rep.sm.applied_index + 1 {
                panic!(
                    "seed {}: group {} node {}: applies {index} after {}: a gap",
                    self.seed,
                    g + 1,
                    n + 1,
                    rep.sm.applied_index
                );
            }
            match &e.payload {
                EntryPayload::Normal(data) => {
                    let cmd = Command::decode(data);
                    if let Some(reply) = rep.sm.apply(index, &cmd) {
                        self.workload.on_write_applied(id, &cmd, reply, self.now_units);
                    }
                }
                EntryPayload::ConfChange(_) => {
                    rep.sm.applied_index = index;
                    self.counters.conf_changes_applied += 1;
                }
                EntryPayload::Noop => rep.sm.applied_index = index,
            }
            let digest = self.replicas[n][g].sm.digest();
            self.checks.on_apply(g, id, e, digest);
        }
    }

    fn serve_reads(&mut self, n: usize, g: usize) {
        let rep = &mut self.replicas[n][g];
        let applied = rep.sm.applied_index;
        let (due, wait): (Vec<_>, Vec<_>) =
            rep.reads.drain(..).partition(|r| r.index.get() <= applied);
        rep.reads = wait;
        for r in due {
            self.workload.on_read_served(node_id(n), &r.context, &rep.sm, self.now_units);
        }
    }

    /// Where a read attempted at follower `n` may be forwarded, endorsed: the leader it
    /// knows (if that node exists) and the follower's term now.
    fn forward_target(&self, n: usize, g: usize) -> Option<(usize, Term)> {
        let raw = self.replicas[n][g].raw.as_ref().filter(|_| self.up[n])?;
        let leader = raw.leader_id();
        if raw.role() != Role::Follower || leader == NodeId::NONE {
            return None;
        }
        let l = (leader.get() - 1) as usize;
        (l < self.up.len() && l != n).then_some((l, raw.term()))
    }

    /// Probes reaching their peer: its replica's term now becomes an endorsement on its way
    /// back to the leader. A peer down or holding no replica leaves the read to the leader's
    /// own ReadIndex round, as a round no peer answers does.
    fn deliver_probes(&mut self) {
        for p in take_due(&mut self.probes, self.tick, |p| p.due_tick) {
            if !self.workload.still_in_flight(&p.attempt) {
                continue;
            }
            let term = self.replicas[p.peer][p.attempt.group].raw.as_ref().map(|r| r.term());
            if let Some(term) = term.filter(|_| self.up[p.peer]) {
                let due_tick = self.tick + self.rng.range(0, FORWARD_DELAY_TICKS_MAX);
                self.counters.reads_probed += 1;
                let (leader, endorser, attempt) = (p.leader, p.peer, p.attempt);
                self.forwards.push(Forwarded { due_tick, leader, endorser, term, attempt });
                continue;
            }
            self.attempt_at(p.leader, &p.attempt);
        }
    }

    fn deliver_forwards(&mut self) {
        for f in take_due(&mut self.forwards, self.tick, |f| f.due_tick) {
            if !self.workload.still_in_flight(&f.attempt) {
                continue;
            }
            let g = f.attempt.group;
            let at_leader = Attempt { node: node_id(f.leader), ..f.attempt.clone() };
            let Some(raw) = self.replicas[f.leader][g].raw.as_mut().filter(|_| self.up[f.leader])
            else {
                self.workload.attempt_result(&mut self.rng, &at_leader, false, NodeId::NONE);
                continue;
            };
            let by = Endorsement { node: node_id(f.endorser), term: f.term };
            let r = raw.read_index_endorsed(f.attempt.context.clone(), by);
            let hint = raw.leader_id();
            self.counters.reads_endorsed += u64::from(matches!(r, Ok(true)));
            self.workload.attempt_result(&mut self.rng, &at_leader, r.is_ok(), hint);
            self.after_input(f.leader, g);
        }
    }

    fn client_attempts(&mut self) {
        let attempts = self.workload.attempts(&mut self.rng, self.tick, self.now_units);
        for a in attempts {
            let n = (a.node.get() - 1) as usize;
            if a.command.is_none() {
                let leads = self.replicas[n][a.group].raw.as_ref().filter(|_| self.up[n]);
                let leads = leads.is_some_and(|raw| raw.role() == Role::Leader);
                if leads && self.up.len() > 1 && self.rng.percent(50) {
                    let others = self.up.len() as u64 - 1;
                    let peer = self.rng.range(0, others - 1) as usize;
                    let peer = if peer >= n { peer + 1 } else { peer };
                    let due_tick = self.tick + self.rng.range(0, FORWARD_DELAY_TICKS_MAX);
                    self.probes.push(Probed { due_tick, leader: n, peer, attempt: a });
                    continue;
                }
                if let Some((leader, term)) = self.forward_target(n, a.group) {
                    if self.rng.percent(50) {
                        let due_tick = self.tick + self.rng.range(0, FORWARD_DELAY_TICKS_MAX);
                        self.counters.reads_forwarded += 1;
                        let f = Forwarded { due_tick, leader, endorser: n, term, attempt: a };
                        self.forwards.push(f);
                        continue;
                    }
                }
            }
            self.attempt_at(n, &a);
        }
    }

    /// Attempt `a` on node `n`'s replica: a write proposed, a read given to ReadIndex.
    fn attempt_at(&mut self, n: usize, a: &Attempt) {
        let (accepted, hint) = match self.replicas[n][a.group].raw.as_mut() {
            Some(raw) if self.up[n] => {
                let r = match &a.command {
                    Some(cmd) => raw.propose(cmd.clone()),
                    None => raw.read_index(a.context.clone()),
                };
                (r.is_ok(), raw.leader_id())
            }
            _ => (false, NodeId::NONE),
        };
        self.workload.attempt_result(&mut self.rng, a, accepted, hint);
        if self.up[n] {
            self.after_input(n, a.group);
        }
    }

    /// Crashes node `n`: volatile state is lost, durable stores and state machines stay.
    pub fn crash(&mut self, n: usize) {
        for g in 0..self.shape.groups {
            let rep = &mut self.replicas[n][g];
            if let Some(raw) = rep.raw.take() {
                rep.disk = Some(raw.into_store());
            }
            rep.reads.clear();
        }
        self.up[n] = false;
        self.counters.crashes += 1;
    }

    /// Crashes node `n` in the middle of handling `rd`: between `ready()` and persisting
    /// (the whole Ready is lost), or just after persisting (its `persisted_messages` are
    /// never sent and its committed entries never applied).
    fn crash_mid_ready(&mut self, n: usize, g: usize, rd: Ready, restart_tick: u64) {
        if self.rng.percent(50) {
            self.send_all(g, &rd.messages);
            self.persist(n, g, &rd);
            self.counters.readies_cut_after_persist += 1;
        } else {
            self.counters.readies_lost_before_persist += 1;
        }
        self.crash(n);
        self.plan.schedule_restart(restart_tick, n);
    }

    /// Restarts node `n` over its durable stores and state machines.
    pub fn restart(&mut self, n: usize) {
        self.up[n] = true;
        for g in 0..self.shape.groups {
            let rep = &mut self.replicas[n][g];
            let Some(store) = rep.disk.take() else { continue };
            rep.incarnation += 1;
            let (inc, applied) = (rep.incarnation, rep.sm.applied_index);
            let raw = self.new_raw(n, g, inc, store, applied);
            self.checks.on_restart(g, &raw);
            let rep = &mut self.replicas[n][g];
            rep.last_commit = raw.commit_index();
            rep.raw = Some(raw);
            self.after_input(n, g);
        }
    }

    /// The node believed leader of group `g` with the highest term, if any.
    pub fn leader_of(&self, g: usize) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for n in 0..self.up.len() {
            let Some(raw) = self.replicas[n][g].raw.as_ref() else { continue };
            if raw.role() == shardkv::raft::Role::Leader
                && best.is_none_or(|(t, _)| raw.term().get() > t)
            {
                best = Some((raw.term().get(), n));
            }
        }
        best.map(|(_, n)| n)
    }

    /// A replica compacts its log to its applied index with a state-machine snapshot.
    fn maybe_compact(&mut self) {
        if !self.mix.compaction || !self.rng.percent(20) {
            return;
        }
        let n = self.rng.below(self.up.len() as u64) as usize;
        let g = self.rng.below(self.shape.groups as u64) as usize;
        let rep = &mut self.replicas[n][g];
        let Some(raw) = rep.raw.as_mut() else { return };
        let applied = LogIndex(rep.sm.applied_index);
        if applied.get() < raw.first_index().get() + self.mix.compact_entries_min {
            return;
        }
        let conf = raw.conf_state().clone();
        let data = rep.sm.snapshot_bytes();
        raw.store_mut().compact_to_snapshot(applied, conf, data).expect("compaction");
        self.counters.compactions += 1;
    }
}
