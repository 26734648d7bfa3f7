//! Faults, drawn per seed (swarm testing: each kind is on or off for the whole seed, with
//! its own rates): partitions (symmetric minority, one-way links, isolating a leader),
//! crash and restart, leader transfers, membership changes and log compaction, plus the
//! heal before the liveness phase. Owns the schedule of pending heals and restarts.

use std::collections::BTreeMap;

use shardkv::raft::{ConfChangeStep, ConfState, NodeId};

use super::network::LinkFaults;
use super::rng::SimRng;
use super::world::{node_id, World};

/// Which faults a seed runs, and how often.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultMix {
    pub link: LinkFaults,
    pub partitions: bool,
    pub one_way: bool,
    pub isolate_leader: bool,
    pub crashes: bool,
    pub transfers: bool,
    pub membership: bool,
    pub compaction: bool,
    /// A fault starts every this many ticks on average.
    pub fault_gap_ticks: u64,
    pub fault_len_ticks_max: u64,
    /// A replica compacts once it applied this many entries past its first index.
    pub compact_entries_min: u64,
}

/// Which fault kinds a tier allows; a seed switches each allowed kind on with 60 %.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    pub node_faults: bool,
}

impl FaultMix {
    pub fn draw(rng: &mut SimRng, allowed: Allowed) -> FaultMix {
        let link = LinkFaults {
            loss_pct: if rng.percent(70) { rng.range(0, 30) } else { 0 },
            dup_pct: if rng.percent(60) { rng.range(0, 20) } else { 0 },
            delay_units_max: rng.range(1, 12 * super::world::UNITS_PER_TICK / 4),
        };
        let node = allowed.node_faults;
        FaultMix {
            link,
            partitions: rng.percent(60),
            one_way: rng.percent(50),
            isolate_leader: rng.percent(60),
            crashes: node && rng.percent(60),
            transfers: rng.percent(50),
            membership: node && rng.percent(50),
            compaction: node && rng.percent(60),
            fault_gap_ticks: rng.range(10, 60),
            fault_len_ticks_max: rng.range(15, 80),
            compact_entries_min: rng.range(5, 40),
        }
    }
}

/// A fault's scheduled end.
#[derive(Clone, Copy, Debug)]
pub enum FaultEnd {
    Heal,
    Restart(usize),
}

/// Pending fault ends by (tick, seq).
#[derive(Default)]
pub struct FaultPlan {
    pending: BTreeMap<(u64, u64), FaultEnd>,
    seq: u64,
    partitioned: bool,
    pub active: bool,
}

impl FaultPlan {
    pub fn schedule_restart(&mut self, tick: u64, n: usize) {
        self.schedule(tick, FaultEnd::Restart(n));
    }

    fn schedule(&mut self, tick: u64, end: FaultEnd) {
        self.seq += 1;
        self.pending.insert((tick, self.seq), end);
    }
}

impl World {
    /// Ends faults that are due, and maybe starts one.
    pub fn fire_faults(&mut self) {
        while let Some((&(t, s), &end)) = self.plan.pending.iter().next() {
            if t > self.tick {
                break;
            }
            self.plan.pending.remove(&(t, s));
            match end {
                FaultEnd::Heal => {
                    self.net.heal_all();
                    self.plan.partitioned = false;
                }
                FaultEnd::Restart(n) => self.restart(n),
            }
        }
        if self.plan.active && self.rng.below(self.mix.fault_gap_ticks) == 0 {
            self.start_fault();
        }
    }

    fn start_fault(&mut self) {
        let len = self.rng.range(5, self.mix.fault_len_ticks_max);
        let until = self.tick + len;
        match self.rng.below(6) {
            0 if self.mix.partitions && !self.plan.partitioned => self.partition_minority(until),
            1 if self.mix.one_way && !self.plan.partitioned => self.cut_one_way(until),
            2 if self.mix.isolate_leader && !self.plan.partitioned => self.isolate_leader(until),
            3 if self.mix.crashes => {
                let n = self.rng.below(self.up.len() as u64) as usize;
                if self.up[n] && self.rng.percent(50) {
                    self.crash(n);
                    self.plan.schedule_restart(until, n);
                } else if self.up[n] {
                    self.crash_armed[n] = Some(until);
                }
            }
            4 if self.mix.transfers => self.transfer_leader(),
            5 if self.mix.membership => self.change_membership(),
            _ => {}
        }
    }

    fn isolate(&mut self, side: &[usize], until: u64) {
        for &a in side {
            for b in 0..self.up.len() {
                if !side.contains(&b) {
                    self.net.block(node_id(a), node_id(b));
                    self.net.block(node_id(b), node_id(a));
                }
            }
        }
        self.plan.partitioned = true;
        self.plan.schedule(until, FaultEnd::Heal);
    }

    fn partition_minority(&mut self, until: u64) {
        self.counters.partitions += 1;
        let n = self.up.len() as u64;
        let size = self.rng.range(1, (n - 1) / 2);
        let mut side = Vec::new();
        while (side.len() as u64) < size {
            let x = self.rng.below(n) as usize;
            if !side.contains(&x) {
                side.push(x);
            }
        }
        self.isolate(&side, until);
    }

    fn cut_one_way(&mut self, until: u64) {
        self.counters.one_way_cuts += 1;
        let n = self.up.len() as u64;
        for _ in 0..self.rng.range(1, 3) {
            let (a, b) = (self.rng.below(n) as usize, self.rng.below(n) as usize);
            if a != b {
                self.net.block(node_id(a), node_id(b));
            }
        }
        self.plan.partitioned = true;
        self.plan.schedule(until, FaultEnd::Heal);
    }

    fn isolate_leader(&mut self, until: u64) {
        let g = self.rng.below(self.shape.groups as u64) as usize;
        if let Some(l) = self.leader_of(g) {
            self.counters.leader_isolations += 1;
            self.isolate(&[l], until);
        }
    }

    fn transfer_leader(&mut self) {
        let g = self.rng.below(self.shape.groups as u64) as usize;
        let Some(l) = self.leader_of(g) else { return };
        let raw = self.replicas[l][g].raw.as_mut().expect("leader is up");
        let voters: Vec<NodeId> = raw.conf_state().voters.iter().copied().collect();
        if let Some(to) = self.rng.pick(&voters) {
            if raw.transfer_leader(to).is_ok() {
                self.counters.transfers += 1;
            }
        }
        self.after_input(l, g);
    }

    fn change_membership(&mut self) {
        let g = self.rng.below(self.shape.groups as u64) as usize;
        let Some(l) = self.leader_of(g) else { return };
        let all: Vec<NodeId> = (1..=self.shape.nodes).map(NodeId).collect();
        let raw = self.replicas[l][g].raw.as_mut().expect("leader is up");
        let steps = next_membership_steps(&mut self.rng, raw.conf_state(), &all, raw.id());
        if !steps.is_empty() {
            // Refused while another change is pending: fine, a later fault tries again.
            if raw.propose_conf_change(&steps).is_ok() {
                self.counters.conf_changes_proposed += 1;
                self.counters.joint_changes_proposed += (steps.len() > 1) as u64;
            }
        }
        self.after_input(l, g);
    }

    /// Ends the fault phase: every link heals, loss and duplication stop, every node is
    /// up, and no new fault starts.
    pub fn heal_everything(&mut self) {
        self.plan.active = false;
        self.plan.pending.clear();
        self.plan.partitioned = false;
        self.net.heal_all();
        self.net.faults.loss_pct = 0;
        self.net.faults.dup_pct = 0;
        self.crash_armed.iter_mut().for_each(|c| *c = None);
        for n in 0..self.up.len() {
            if !self.up[n] {
                self.restart(n);
            }
        }
    }
}

/// The next membership change for a group: bring a missing node back as a learner (or two
/// at once as voters, a joint change), promote a learner, or remove one or two voters.
pub fn next_membership_steps(
    rng: &mut SimRng,
    conf: &ConfState,
    all: &[NodeId],
    leader: NodeId,
) -> Vec<ConfChangeStep> {
    if conf.is_joint() {
        return Vec::new();
    }
    let missing: Vec<NodeId> =
        all.iter().copied().filter(|&id| !conf.all_nodes().contains(&id)).collect();
    if let Some(&learner) = conf.learners.iter().next() {
        return vec![ConfChangeStep::AddVoter(learner)];
    }
    let others: Vec<NodeId> = conf.voters.iter().copied().filter(|&id| id != leader).collect();
    let remove_leader = rng.percent(10);
    let victim = if remove_leader { leader } else { rng.pick(&others).unwrap_or(leader) };
    if missing.len() >= 2 && rng.percent(50) {
        return vec![ConfChangeStep::AddVoter(missing[0]), ConfChangeStep::AddVoter(missing[1])];
    }
    if let Some(&m) = missing.first() {
        if conf.voters.len() >= 2 && rng.percent(30) {
            // Replace a voter by a missing node in one joint change.
            return vec![ConfChangeStep::RemoveNode(victim), ConfChangeStep::AddVoter(m)];
        }
        return vec![ConfChangeStep::AddLearner(m)];
    }
    if others.len() >= 2 && rng.percent(50) {
        let second = others.iter().copied().find(|&id| id != victim).unwrap_or(victim);
        return vec![ConfChangeStep::RemoveNode(victim), ConfChangeStep::RemoveNode(second)];
    }
    if conf.voters.len() <= 1 {
        return Vec::new();
    }
    vec![ConfChangeStep::RemoveNode(victim)]
}
