//! The simulated network. Owns the in-flight queue (a `BinaryHeap` ordered by (time, seq)),
//! the link faults (loss, delay and so reordering, duplication by replaying old messages
//! from a bounded buffer, one-way and two-way cuts) and the wire codec: every message is
//! encoded with rmp-serde at send and decoded at delivery.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};

use shardkv::raft::{GroupId, Message, NodeId};

use super::rng::SimRng;
use super::state_machine::Fnv64;

/// Old messages kept for replay (stale-term duplicates arriving late).
pub const REPLAY_BUFFER_MESSAGES_MAX: usize = 64;

/// One message on the wire.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    pub bytes: Vec<u8>,
}

impl Envelope {
    pub fn decode(&self) -> Message {
        rmp_serde::from_slice(&self.bytes).expect("a message the simulation encoded decodes")
    }
}

struct Scheduled {
    time_units: u64,
    seq: u64,
    envelope: Envelope,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time_units, self.seq) == (other.time_units, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time_units, self.seq).cmp(&(other.time_units, other.seq))
    }
}

/// The faults of every link, drawn per seed and changed by the fault plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkFaults {
    pub loss_pct: u64,
    pub dup_pct: u64,
    /// Delivery takes 1..=delay_units_max time units (a tick is `UNITS_PER_TICK`).
    pub delay_units_max: u64,
}

/// Links and messages in flight.
#[derive(Default)]
pub struct Network {
    pub faults: LinkFaults,
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    /// One-way cuts: (from, to) pairs that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    replay: Vec<Envelope>,
    pub sent_messages: u64,
    pub delivered_messages: u64,
    /// A digest of every delivery (time, addresses, bytes), for the determinism check.
    pub trace: u64,
}

impl Network {
    pub fn new(faults: LinkFaults) -> Network {
        Network { faults, ..Network::default() }
    }

    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    pub fn heal_all(&mut self) {
        self.blocked.clear();
    }

    /// Encodes and schedules `m`, unless the link drops it; may also replay an old message.
    /// Returns false if the link is cut (a transport knows the peer is unreachable).
    pub fn send(&mut self, rng: &mut SimRng, now_units: u64, group: GroupId, m: &Message) -> bool {
        self.sent_messages += 1;
        let bytes = rmp_serde::to_vec(m).expect("a raft message encodes");
        let envelope = Envelope { group, from: m.from, to: m.to, bytes };
        if self.faults.dup_pct > 0 {
            self.remember(rng, envelope.clone());
            if rng.percent(self.faults.dup_pct) {
                let old = self.replay[rng.below(self.replay.len() as u64) as usize].clone();
                let late_units = rng.range(1, 4 * self.faults.delay_units_max.max(1));
                self.schedule(now_units + late_units, old);
            }
        }
        if self.is_blocked(m.from, m.to) {
            return false;
        }
        if !rng.percent(self.faults.loss_pct) {
            let delay = rng.range(1, self.faults.delay_units_max.max(1));
            self.schedule(now_units + delay, envelope);
        }
        true
    }

    fn remember(&mut self, rng: &mut SimRng, envelope: Envelope) {
        if self.replay.len() < REPLAY_BUFFER_MESSAGES_MAX {
            self.replay.push(envelope);
        } else {
            let slot = rng.below(REPLAY_BUFFER_MESSAGES_MAX as u64) as usize;
            self.replay[slot] = envelope;
        }
    }

    fn schedule(&mut self, time_units: u64, envelope: Envelope) {
        self.next_seq += 1;
        self.queue.push(Reverse(Scheduled { time_units, seq: self.next_seq, envelope }));
    }

    /// The next message due strictly before `before_units`, with its delivery time; cut
    /// links drop it at delivery too.
    pub fn pop_due(&mut self, before_units: u64) -> Option<(u64, Envelope)> {
        loop {
            let top = self.queue.peek()?;
            if top.0.time_units >= before_units {
                return None;
            }
            let Reverse(s) = self.queue.pop()?;
            if self.is_blocked(s.envelope.from, s.envelope.to) {
                continue;
            }
            self.delivered_messages += 1;
            let mut h = Fnv64::new();
            h.write_u64(self.trace);
            h.write_u64(s.time_units);
            h.write_u64(s.envelope.to.get() << 32 | s.envelope.group.get());
            h.write(&s.envelope.bytes);
            self.trace = h.finish();
            return Some((s.time_units, s.envelope));
        }
    }
}
