//! `ReadDoor`: linearizable reads answered on the request path. A leader that has applied
//! its commit index opens its door at the end of each drive of its Ready loop if its core
//! would answer some reads at once, at that commit index:
//! - on its lease (`RawNode::lease_ticks_left`, lease-based mode only);
//! - on a voter's endorsement in its term (`RawNode::endorsement_answers_now`): a read a
//!   node forwards with its replica's term, or one a node-level read round endorsed.
//!
//! Until anything steps its core, the node's request path answers such key reads of the
//! group's slots itself, from the replica's applied state (the undurable overlay over
//! redb), with no message to the replica and no wait for its next Ready. That is the
//! answer the replica would give: `read_index` or `read_index_endorsed` would hand out
//! the same commit index, already applied.
//!
//! The door closes:
//! - on every mutable use of the core: `GatedRaw` closes it before it lends the core out
//!   (a tick, a message, a proposal, a Ready), so it is never open on a stale decision;
//!   the replica opens it again, if it still may, at the end of its next drive;
//! - for lease reads, at the lease's end in real time: `tick_clock` plus the ticks left,
//!   which is where the core's ticks, caught up with the monotonic clock, would find the
//!   lease expired (a paused process, or late timers, do not stretch it);
//! - when the replica fails, retires, is removed, stops or is dropped.
//!
//! A read the door does not answer (closed, another slot, not a key read, more keys than
//! `DOOR_READ_KEYS_MAX`, its lock busy with the replica or another door read on another
//! thread) takes the usual path through the replica, which answers every case as before.
//! A door read holds the lock while it reads, as the replica would have held its thread:
//! a key the caches do not hold is read from redb.
//!
//! Owns: the replica's undurable overlay and clean cache, which its actor and the request
//! path share under one lock. Must never: be open while the replica may not answer a read
//! at once at an applied index, nor answer from any state but the replica's applied one.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use crate::kv::range::{key_reads_within, SlotRange};
use crate::kv::read::{self, ReadCommand};
use crate::metrics::group::GroupMetrics;
use crate::raft::{Endorsement, GroupId, NodeId, RawNode, Term};
use crate::shard::api::{ShardError, ShardResult};
use crate::shard::limits::DOOR_READ_KEYS_MAX;
use crate::shard::undurable::{Layered, Undurable};
use crate::storage::group_snapshot::LazyKvView;
use crate::storage::{NodeDb, RedbStorage};

/// One replica's door; made by `ShardConfig::new`, shared with the node's request path.
#[derive(Default)]
pub struct ReadDoor {
    /// Read first, without the lock: a closed door costs a read path one atomic load.
    open: AtomicBool,
    state: Mutex<DoorState>,
}

struct Backing {
    db: Arc<NodeDb>,
    group: GroupId,
    metrics: GroupMetrics,
}

#[derive(Default)]
struct DoorState {
    undurable: Undurable,
    /// Until when, and for which slots, the open door answers.
    gate: Option<Gate>,
    /// From when the replica opens until it stops.
    backing: Option<Backing>,
}

/// Endorsers an open door lists at most. A voter's word and the leader's make a quorum
/// only in a configuration of at most three voters (in both halves of a joint one), so
/// there are never more than two.
const GATE_ENDORSERS_MAX: usize = 2;

#[derive(Clone, Copy, Debug)]
struct Gate {
    slots: SlotRange,
    /// Where the lease ends in real time, if reads may be answered on it.
    lease_until: Option<Instant>,
    /// The leader's term, and the voters whose endorsement in it answers a read.
    term: Term,
    endorsers: [NodeId; GATE_ENDORSERS_MAX],
    endorsers_len: usize,
}

impl Gate {
    fn answers(&self, endorsement: Option<Endorsement>) -> Option<Answered> {
        let endorsers = &self.endorsers[..self.endorsers_len];
        if endorsement.is_some_and(|by| by.term == self.term && endorsers.contains(&by.node)) {
            return Some(Answered::Endorsed);
        }
        self.lease_until.filter(|&until| Instant::now() < until).map(|_| Answered::Lease)
    }
}

/// What let the door answer a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answered {
    Lease,
    Endorsed,
}

impl std::fmt::Debug for ReadDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadDoor").field("open", &self.open.load(Ordering::Relaxed)).finish()
    }
}

impl ReadDoor {
    /// The replica opened: its database, group, series and overlay.
    pub(crate) fn init(
        &self,
        db: Arc<NodeDb>,
        group: GroupId,
        metrics: GroupMetrics,
        undurable: Undurable,
    ) {
        self.close();
        let mut state = self.lock();
        state.undurable = undurable;
        state.backing = Some(Backing { db, group, metrics });
    }

    /// The replica stopped: the door closes for good and lets go of the database and of
    /// the overlay's memory (the node may hold the door a little longer).
    pub(crate) fn shut(&self) {
        self.close();
        *self.lock() = DoorState::default();
    }

    fn lock(&self) -> MutexGuard<'_, DoorState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The replica's overlay, for the replica itself.
    pub(crate) fn undurable(&self) -> UndurableGuard<'_> {
        UndurableGuard(self.lock())
    }

    pub(crate) fn close(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// Opens the door for key reads of `slots`: on the lease until `lease_until`, and on
    /// an endorsement in `term` by one of `endorsers`; closes it if neither answers any.
    pub(crate) fn open(
        &self,
        slots: SlotRange,
        lease_until: Option<Instant>,
        term: Term,
        endorsers: impl IntoIterator<Item = NodeId>,
    ) {
        let mut gate = Gate {
            slots,
            lease_until,
            term,
            endorsers: [NodeId(0); GATE_ENDORSERS_MAX],
            endorsers_len: 0,
        };
        // More than fit cannot be (see `GATE_ENDORSERS_MAX`); they would only send their
        // reads the usual way.
        for (slot, node) in gate.endorsers.iter_mut().zip(endorsers) {
            *slot = node;
            gate.endorsers_len += 1;
        }
        if gate.lease_until.is_none() && gate.endorsers_len == 0 {
            return self.close();
        }
        let mut state = self.lock();
        state.gate = Some(gate);
        self.open.store(true, Ordering::Release);
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Answers `command`, endorsed as `endorsement` says if it is, as the replica would
    /// now, if the door is open for it; `None`: the read takes the usual path.
    pub fn read(
        &self,
        command: &ReadCommand,
        now_ms: u64,
        endorsement: Option<Endorsement>,
    ) -> Option<ShardResult> {
        if !self.is_open() {
            return None;
        }
        // Busy (the replica, or another door read, on another thread): the usual path.
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        let gate = state.gate.filter(|_| self.is_open())?;
        // First what lets it answer, which turns away a read that needs a round before its
        // keys are hashed.
        let answered = gate.answers(endorsement)?;
        if !key_reads_within(command, gate.slots, DOOR_READ_KEYS_MAX) {
            return None;
        }
        let state = &mut *state;
        let Backing { db, group, metrics } = state.backing.as_ref()?;
        let (reply, checked) = read_applied(db, *group, &mut state.undurable, metrics, |view| {
            read::execute(view, now_ms, command)
        });
        if let Err(reason) = checked {
            return Some(Err(ShardError::Storage { group: *group, reason }));
        }
        metrics.reads_direct.inc();
        if answered == Answered::Endorsed {
            metrics.reads_endorsed.inc();
        }
        Some(Ok(reply))
    }

    /// The term and endorsers of the open door (tests).
    #[cfg(test)]
    pub(crate) fn endorsers(&self) -> Option<(Term, Vec<NodeId>)> {
        let gate = self.lock().gate.filter(|_| self.is_open())?;
        Some((gate.term, gate.endorsers[..gate.endorsers_len].to_vec()))
    }
}

/// Reads a replica's applied state: `read` runs over its undurable overlay and clean cache
/// on top of redb's latest view of `group`; the lookups are counted, and the records read
/// from redb are kept in the clean cache if the view reported no error. Returns what `read`
/// returned and the view's error, if any: every answer read through the view is then void.
pub(crate) fn read_applied<R>(
    db: &NodeDb,
    group: GroupId,
    undurable: &mut Undurable,
    metrics: &GroupMetrics,
    read: impl FnOnce(&Layered<'_, LazyKvView<'_>>) -> R,
) -> (R, Result<(), String>) {
    // Opened at the first read the undurable and clean records do not answer.
    let view = LazyKvView::new(db, group);
    let layered = undurable.over(&view);
    let out = read(&layered);
    let fetched = layered.into_fetched();
    let checked = view.check();
    metrics.clean_cache_hits.inc_by(fetched.hits);
    metrics.clean_cache_misses.inc_by(fetched.misses);
    if checked.is_ok() {
        undurable.remember(fetched);
    }
    (out, checked)
}

/// The replica's overlay, locked.
pub(crate) struct UndurableGuard<'a>(MutexGuard<'a, DoorState>);

impl Deref for UndurableGuard<'_> {
    type Target = Undurable;
    fn deref(&self) -> &Undurable {
        &self.0.undurable
    }
}

impl DerefMut for UndurableGuard<'_> {
    fn deref_mut(&mut self) -> &mut Undurable {
        &mut self.0.undurable
    }
}

/// The replica's Raft core, which closes the door before every mutable use.
pub(crate) struct GatedRaw {
    raw: RawNode<RedbStorage>,
    door: Arc<ReadDoor>,
}

impl GatedRaw {
    pub(crate) fn new(raw: RawNode<RedbStorage>, door: Arc<ReadDoor>) -> GatedRaw {
        GatedRaw { raw, door }
    }
}

impl Deref for GatedRaw {
    type Target = RawNode<RedbStorage>;
    fn deref(&self) -> &RawNode<RedbStorage> {
        &self.raw
    }
}

impl DerefMut for GatedRaw {
    fn deref_mut(&mut self) -> &mut RawNode<RedbStorage> {
        self.door.close();
        &mut self.raw
    }
}

impl Drop for GatedRaw {
    /// However the replica ends (a panic skips `stopped`), its door shuts with its core.
    fn drop(&mut self) {
        self.door.shut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Config, NodeId};
    use crate::shard::{bootstrap_group, ShardWriter};

    /// Every mutable use of the core shuts the door; reading the core leaves it as it is.
    #[test]
    fn a_mutable_use_of_the_core_shuts_the_door() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(NodeDb::open(dir.path().join("node.redb")).expect("db"));
        let writer = ShardWriter::start(Arc::clone(&db)).expect("writer");
        let (group, slots) = (GroupId(1), SlotRange::new(0, 16383));
        bootstrap_group(&writer, group, &[NodeId(1), NodeId(2), NodeId(3)], slots)
            .expect("bootstrap");
        let storage = RedbStorage::open(Arc::clone(&db), group).expect("storage");
        let raw = RawNode::new(Config::new(NodeId(1), group), storage).expect("raw node");
        let door = Arc::new(ReadDoor::default());
        door.init(db, group, GroupMetrics::detached(), Undurable::default());
        let mut gated = GatedRaw::new(raw, Arc::clone(&door));
        let until = Instant::now() + std::time::Duration::from_secs(60);

        door.open(slots, Some(until), Term(1), []);
        let _ = (gated.role(), gated.term(), gated.commit_index(), gated.lease_ticks_left());
        assert!(door.is_open(), "reading the core leaves the door open");
        gated.tick();
        assert!(!door.is_open(), "a tick shuts it");

        door.open(slots, Some(until), Term(1), []);
        gated.campaign();
        assert!(!door.is_open(), "a campaign shuts it");

        door.open(slots, Some(until), Term(1), []);
        let core: &mut RawNode<RedbStorage> = &mut gated;
        let _ = core.has_ready();
        assert!(!door.is_open(), "lending the core out mutably shuts it");

        door.open(slots, Some(until), Term(1), []);
        door.shut();
        assert!(!door.is_open());
        let get = ReadCommand::Get { key: bytes::Bytes::from_static(b"k") };
        door.open(slots, Some(until), Term(1), []);
        assert_eq!(door.read(&get, 0, None), None, "a shut door has no state to answer from");
    }
}
