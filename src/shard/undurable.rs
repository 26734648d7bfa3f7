//! `Undurable`: mutations a replica has applied but the writer has not yet reported
//! durable, layered over the committed redb view. Reads and later applies go through it,
//! so that a client who got a write's answer sees that write at once (linearizability)
//! even while the fsync that carries it is still running.
//!
//! Beneath them, a bounded cache of records as redb holds them (`Clean`): the records of
//! mutations once durable, and records a read fetched from redb. A key read goes pending,
//! cleared ranges, clean, then redb: a hot key is answered from memory, with no read
//! transaction and no B-tree descent.
//!
//! A flush is a cleared slot range in the same bookkeeping: until the writer's range delete
//! is durable, the range hides redb's keys and the clean cache's (the cache empties at the
//! flush), and the keys written after it are pending as any write is. An unflushed range
//! that a later one covers is dropped: a loop of FLUSHALLs holds one range, not one each.
//!
//! Owns: that bookkeeping, tagged by the persist generation that carries each mutation,
//! and the clean cache.
//! Must never: drop a mutation before the write carrying it (or a later one for the same
//! key) is durable; answer a key of the group's slots that pending does not hide with a
//! clean record other than the latest one applied (a record leaves pending for the clean
//! cache only once durable, a fetched one is kept only if its view, the latest committed
//! one, reported no error; dropped unflushed state, a snapshot and a flush empty it, and so
//! does a split, though records of the slots that left may come back with jobs sent before
//! it: reads and applies refuse those slots first).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use quick_cache::Equivalent;

use crate::kv::overlay::{layered_count, layered_scan, Cleared, PendingKey};
use crate::kv::read::{KeyCount, Tally, ENTRY_OVERHEAD_BYTES};
use crate::kv::{KvMutation, KvRead};
use crate::shard::limits::{CLEAN_CACHE_BYTES_DEFAULT, CLEAN_FETCHED_PER_STEP_MAX};

/// One pending value: `None` is a delete; `gen` the persist that carries it.
#[derive(Clone, Debug)]
struct Pending {
    value: Option<Bytes>,
    gen: u64,
}

/// The generation of mutations applied but not yet handed to the writer (see
/// `take_unflushed`); no persist generation reaches it.
pub const UNFLUSHED: u64 = u64::MAX;

/// Slot ranges flushes cleared (`KvMutation::ClearSlots`) not yet durable, in the order
/// applied, each with the persist generation that carries it.
#[derive(Debug, Default)]
struct ClearedSlots {
    slots: Vec<RangeInclusive<u16>>,
    gens: Vec<u64>,
}

impl ClearedSlots {
    /// Keeps the ranges `keep` takes, given each with its generation.
    fn keep_where(&mut self, keep: impl Fn(&RangeInclusive<u16>, u64) -> bool) {
        let all = std::mem::take(&mut self.slots).into_iter().zip(std::mem::take(&mut self.gens));
        (self.slots, self.gens) = all.filter(|(slots, gen)| keep(slots, *gen)).unzip();
    }

    /// Adds `slots`, cleared by generation `gen`; an unflushed range it covers goes, as
    /// both would be handed to the same job, this one after it.
    fn push(&mut self, slots: RangeInclusive<u16>, gen: u64) {
        if gen == UNFLUSHED {
            let (first, last) = (*slots.start(), *slots.end());
            self.keep_where(|r, g| g != UNFLUSHED || *r.start() < first || *r.end() > last);
        }
        self.slots.push(slots);
        self.gens.push(gen);
    }
}

/// A key of the clean cache, hashed as `KeyRef` so that a lookup borrows the key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CleanKey {
    slot: u16,
    key: Bytes,
}

impl Hash for CleanKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KeyRef(self.slot, &self.key).hash(state);
    }
}

/// A borrowed `CleanKey`.
#[derive(Hash)]
struct KeyRef<'a>(u16, &'a [u8]);

impl Equivalent<CleanKey> for KeyRef<'_> {
    fn equivalent(&self, key: &CleanKey) -> bool {
        self.0 == key.slot && self.1 == &key.key[..]
    }
}


#[derive(Clone)]
struct CleanWeight;

impl quick_cache::Weighter<CleanKey, Option<Bytes>> for CleanWeight {
    fn weight(&self, key: &CleanKey, record: &Option<Bytes>) -> u64 {
        let record = record.as_ref().map_or(0, Bytes::len);
        ENTRY_OVERHEAD_BYTES + (key.key.len() + record) as u64
    }
}

/// Records as redb holds them, `None` for a key redb does not hold; at most the replica's
/// share of the node's `CleanBudget` by `CleanWeight`, evicted by quick_cache's policy.
struct Clean(quick_cache::unsync::Cache<CleanKey, Option<Bytes>, CleanWeight>);

impl Clean {
    fn with_bytes(bytes: u64) -> Clean {
        let items = (bytes / 256).max(16) as usize;
        Clean(quick_cache::unsync::Cache::with_weighter(items, bytes, CleanWeight))
    }

    fn get(&self, slot: u16, key: &[u8]) -> Option<Option<Bytes>> {
        self.0.get(&KeyRef(slot, key)).cloned()
    }

    fn put(&mut self, slot: u16, key: Bytes, record: Option<Bytes>) {
        self.0.insert(CleanKey { slot, key }, record);
    }
}

impl std::fmt::Debug for Clean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (len, bytes) = (self.0.len(), self.0.weight());
        f.debug_struct("Clean").field("len", &len).field("bytes", &bytes).finish()
    }
}

impl Default for Clean {
    fn default() -> Clean {
        Clean::with_bytes(CLEAN_CACHE_BYTES_DEFAULT)
    }
}

/// A node's bytes for its replicas' clean caches (`limits.clean_cache_bytes_max`), split
/// evenly among the replicas that joined it: each keeps a `CleanShare` while it runs and
/// sizes its cache to `CleanShare::bytes` on every tick.
#[derive(Debug)]
pub struct CleanBudget {
    bytes_max: u64,
    replicas: AtomicU64,
}

impl CleanBudget {
    pub fn new(bytes_max: u64) -> Arc<CleanBudget> {
        Arc::new(CleanBudget { bytes_max, replicas: AtomicU64::new(0) })
    }

    /// A replica's claim on the budget, until it is dropped.
    pub fn join(self: &Arc<CleanBudget>) -> CleanShare {
        self.replicas.fetch_add(1, Ordering::Relaxed);
        CleanShare(Arc::clone(self))
    }
}

/// One replica's part of a `CleanBudget`.
#[derive(Debug)]
pub struct CleanShare(Arc<CleanBudget>);

impl CleanShare {
    /// The budget over the replicas holding a share now.
    pub fn bytes(&self) -> u64 {
        self.0.bytes_max / self.0.replicas.load(Ordering::Relaxed).max(1)
    }
}

impl Drop for CleanShare {
    fn drop(&mut self) {
        self.0.replicas.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Records a `Layered` read fetched from its view, to be kept by `Undurable::remember`
/// once the view reported no error, and how its key lookups went.
#[derive(Debug, Default)]
pub struct Fetched {
    records: Vec<(u16, Bytes, Option<Bytes>)>,
    /// Lookups the clean cache answered.
    pub hits: u64,
    /// Lookups that went to the view (some of them, past `CLEAN_FETCHED_PER_STEP_MAX`, not
    /// in `records`).
    pub misses: u64,
}

/// Applied, not yet durable mutations of one group.
#[derive(Debug, Default)]
pub struct Undurable {
    kv: BTreeMap<(u16, Bytes), Pending>,
    /// Slot ranges cleared: every key of theirs in `kv` was written after the range was.
    cleared: ClearedSlots,
    sessions: BTreeMap<u64, Pending>,
    /// Generations `take_unflushed` handed mutations to, not yet released: a release that
    /// reaches none of them has nothing to drop and skips the walk over every key.
    carrying: BTreeSet<u64>,
    /// Bytes of keys and records pushed since the last `take_unflushed` (an upper bound: a
    /// key written twice counts twice).
    unflushed_bytes: u64,
    clean: Clean,
}

impl Undurable {
    /// With a clean cache of at most `bytes` (the default is `CLEAN_CACHE_BYTES_DEFAULT`).
    pub fn with_clean_bytes(bytes: u64) -> Undurable {
        Undurable { clean: Clean::with_bytes(bytes), ..Undurable::default() }
    }

    /// Bounds the clean cache to `bytes` from now on, evicting down to it at once.
    pub fn resize_clean(&mut self, bytes: u64) {
        if self.clean.0.capacity() != bytes {
            self.clean.0.set_capacity(bytes);
        }
    }

    /// Entries in the clean cache.
    #[cfg(test)]
    pub fn clean_len(&self) -> usize {
        self.clean.0.len()
    }

    /// Keeps the records `fetched` read from a view that reported no error: the view was
    /// the latest committed one, so they are what redb holds until a release replaces them.
    pub fn remember(&mut self, fetched: Fetched) {
        for (slot, key, record) in fetched.records {
            self.clean.put(slot, key, record);
        }
    }

    /// Empties the clean cache (the group's slots changed).
    pub fn forget_clean(&mut self) {
        self.clean.0.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.kv.is_empty() && self.cleared.slots.is_empty() && self.sessions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.kv.len() + self.cleared.slots.len() + self.sessions.len()
    }

    /// Bytes applied since the applied state was last handed to the writer (at most).
    pub fn unflushed_bytes(&self) -> u64 {
        self.unflushed_bytes
    }

    /// Records the mutations carried by persist generation `gen`.
    pub fn push(&mut self, gen: u64, mutations: &[KvMutation]) {
        if gen != UNFLUSHED && !mutations.is_empty() {
            self.carrying.insert(gen);
        }
        for m in mutations {
            self.unflushed_bytes += m.data_bytes();
            match m {
                KvMutation::Put { slot, key, record } => {
                    let value = Some(record.clone());
                    self.kv.insert((*slot, key.clone()), Pending { value, gen });
                }
                KvMutation::Delete { slot, key } => {
                    self.kv.insert((*slot, key.clone()), Pending { value: None, gen });
                }
                KvMutation::PutSession { client_id, record } => {
                    let value = Some(record.clone());
                    self.sessions.insert(*client_id, Pending { value, gen });
                }
                KvMutation::DeleteSession { client_id } => {
                    self.sessions.insert(*client_id, Pending { value: None, gen });
                }
                KvMutation::ClearSlots { first, last } => {
                    let slots = *first..=*last;
                    // The range hides what was pending there, and what redb and the clean
                    // cache hold, until its range delete is durable.
                    self.kv.retain(|(slot, _), _| !slots.contains(slot));
                    self.clean.0.clear();
                    self.cleared.push(slots, gen);
                }
            }
        }
    }

    /// Hands every mutation still `UNFLUSHED` to persist generation `gen`: the slot ranges
    /// cleared, then the latest value of each key and session, as one batch of mutations for
    /// that job (a key pending in a cleared range was written after the range was cleared).
    pub fn take_unflushed(&mut self, gen: u64) -> Vec<KvMutation> {
        self.unflushed_bytes = 0;
        let mut out = Vec::new();
        let cleared = &mut self.cleared;
        for (slots, g) in cleared.slots.iter().zip(&mut cleared.gens) {
            if *g == UNFLUSHED {
                *g = gen;
                out.push(KvMutation::ClearSlots { first: *slots.start(), last: *slots.end() });
            }
        }
        for ((slot, key), p) in self.kv.iter_mut().filter(|(_, p)| p.gen == UNFLUSHED) {
            p.gen = gen;
            out.push(match &p.value {
                Some(record) => KvMutation::Put { slot: *slot, key: key.clone(), record: record.clone() },
                None => KvMutation::Delete { slot: *slot, key: key.clone() },
            });
        }
        for (client_id, p) in self.sessions.iter_mut().filter(|(_, p)| p.gen == UNFLUSHED) {
            p.gen = gen;
            out.push(match &p.value {
                Some(record) => KvMutation::PutSession { client_id: *client_id, record: record.clone() },
                None => KvMutation::DeleteSession { client_id: *client_id },
            });
        }
        if !out.is_empty() {
            self.carrying.insert(gen);
        }
        out
    }

    /// Forgets the mutations not yet handed to the writer (a snapshot replaces them), and
    /// the clean cache: a record it holds may be older than the dropped one, which hid it.
    pub fn drop_unflushed(&mut self) {
        self.clean.0.clear();
        self.unflushed_bytes = 0;
        self.kv.retain(|_, p| p.gen != UNFLUSHED);
        self.cleared.keep_where(|_, g| g != UNFLUSHED);
        self.sessions.retain(|_, p| p.gen != UNFLUSHED);
    }

    /// Persist generations up to `gen` are durable: their mutations are now in redb, and
    /// their records move to the clean cache.
    pub fn release_through(&mut self, gen: u64) {
        if self.carrying.first().is_none_or(|&first| first > gen) {
            return;
        }
        self.carrying = self.carrying.split_off(&(gen + 1));
        let clean = &mut self.clean;
        self.kv.retain(|(slot, key), p| {
            let keep = p.gen > gen;
            if !keep {
                clean.put(*slot, key.clone(), p.value.take());
            }
            keep
        });
        self.cleared.keep_where(|_, g| g > gen);
        self.sessions.retain(|_, p| p.gen > gen);
    }

    /// Forgets everything (a snapshot replaced the state machine).
    pub fn clear(&mut self) {
        self.clean.0.clear();
        self.carrying.clear();
        self.unflushed_bytes = 0;
        self.kv.clear();
        self.cleared = ClearedSlots::default();
        self.sessions.clear();
    }

    /// The pending keys of `slots` as (slot, key, record), in order, and the slot ranges
    /// cleared: what a count of the committed view must add or take away (over the view
    /// without those ranges, `Cleared`), for work done off the replica's thread.
    pub fn pending_keys(
        &self,
        slots: RangeInclusive<u16>,
    ) -> (Vec<PendingKey>, Vec<RangeInclusive<u16>>) {
        let keys = self.pending_in(&slots);
        let keys = keys.map(|(slot, key, record)| (slot, key.clone(), record.cloned()));
        (keys.collect(), self.cleared.slots.clone())
    }

    /// Pending keys of `slots` as (slot, key, record), in order; `None` is a delete.
    fn pending_in(
        &self,
        slots: &RangeInclusive<u16>,
    ) -> impl Iterator<Item = (u16, &Bytes, Option<&Bytes>)> + use<'_> {
        let (lower, last) = ((*slots.start(), Bytes::new()), *slots.end());
        self.kv
            .range(lower..)
            .take_while(move |((slot, _), _)| *slot <= last)
            .map(|((slot, key), p)| (*slot, key, p.value.as_ref()))
    }

    /// `view` as this replica has applied it; `view` must be the latest committed one (a
    /// record released from pending is only in redb, and a fetched one may be kept).
    pub fn over<'a, V: KvRead>(&'a self, view: &'a V) -> Layered<'a, V> {
        Layered { view, pending: self, fetched: RefCell::default() }
    }
}

/// A committed view with the undurable mutations on top, and the clean cache between.
pub struct Layered<'a, V> {
    view: &'a V,
    pending: &'a Undurable,
    fetched: RefCell<Fetched>,
}

impl<V> Layered<'_, V> {
    /// What its reads fetched from the view, for `Undurable::remember`.
    pub fn into_fetched(self) -> Fetched {
        self.fetched.into_inner()
    }
}

impl<'a, V: KvRead> Layered<'a, V> {
    /// The committed view without the slot ranges cleared.
    fn base(&self) -> Cleared<'a, V> {
        Cleared::new(self.view, &self.pending.cleared.slots)
    }
}

impl<V: KvRead> KvRead for Layered<'_, V> {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        let pending = &self.pending.kv;
        // The map is keyed by owned `Bytes`; a lookup key costs one copy of the key.
        if let Some(p) = (!pending.is_empty())
            .then(|| pending.get(&(slot, Bytes::copy_from_slice(key))))
            .flatten()
        {
            return p.value.clone();
        }
        if self.base().covers(slot) {
            return None;
        }
        let mut fetched = self.fetched.borrow_mut();
        if let Some(record) = self.pending.clean.get(slot, key) {
            fetched.hits += 1;
            return record;
        }
        let record = self.view.get(slot, key);
        fetched.misses += 1;
        if fetched.records.len() < CLEAN_FETCHED_PER_STEP_MAX {
            fetched.records.push((slot, Bytes::copy_from_slice(key), record.clone()));
        }
        record
    }

    fn session(&self, client_id: u64) -> Option<Bytes> {
        match self.pending.sessions.get(&client_id) {
            Some(p) => p.value.clone(),
            None => self.view.session(client_id),
        }
    }

    fn sessions(&self) -> Vec<(u64, Bytes)> {
        let mut all: BTreeMap<u64, Bytes> = self.view.sessions().into_iter().collect();
        for (client_id, p) in &self.pending.sessions {
            match &p.value {
                Some(record) => all.insert(*client_id, record.clone()),
                None => all.remove(client_id),
            };
        }
        all.into_iter().collect()
    }

    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)> {
        let pending = self.pending.pending_in(&slots);
        layered_scan(&self.base(), pending, slots, after, limit)
    }

    fn count_keys(&self, slots: RangeInclusive<u16>, tally: Tally) -> KeyCount {
        let pending = self.pending.pending_in(&slots);
        layered_count(&self.base(), pending, slots, tally)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;
    use std::collections::VecDeque;

    fn put(key: &str, value: &str) -> KvMutation {
        let (key, record) = (Bytes::from(key.to_string()), Bytes::from(value.to_string()));
        KvMutation::Put { slot: 1, key, record }
    }

    #[test]
    fn a_mutation_stays_visible_until_its_own_write_is_durable() {
        let mut mem = MemKv::new();
        mem.apply_mutations(&[put("a", "old")]);
        let mut pending = Undurable::default();
        pending.push(1, &[put("a", "one")]);
        pending.push(2, &[put("b", "two")]);
        assert_eq!(pending.over(&mem).get(1, b"a"), Some(Bytes::from("one")));
        pending.release_through(1);
        assert_eq!(pending.over(&mem).get(1, b"b"), Some(Bytes::from("two")));
        // Released: the record is redb's now, and the clean cache answers with it.
        assert_eq!(pending.over(&mem).get(1, b"a"), Some(Bytes::from("one")));
        pending.forget_clean();
        assert_eq!(pending.over(&mem).get(1, b"a"), Some(Bytes::from("old")), "mem not written");
        pending.push(3, &[KvMutation::Delete { slot: 1, key: Bytes::from("a") }]);
        assert_eq!(pending.over(&mem).get(1, b"a"), None);
        assert_eq!(pending.over(&mem).scan(0..=5, None, 10).len(), 1);
        pending.release_through(3);
        assert!(pending.is_empty());
    }

    #[test]
    fn unflushed_mutations_wait_for_the_generation_they_are_handed_to() {
        let mem = MemKv::new();
        let mut pending = Undurable::default();
        pending.push(UNFLUSHED, &[put("a", "1"), put("b", "22")]);
        assert_eq!(pending.unflushed_bytes(), 5);
        pending.release_through(7);
        assert_eq!(pending.len(), 2, "a release before the hand-over drops nothing");
        assert_eq!(pending.take_unflushed(8).len(), 2);
        assert_eq!(pending.unflushed_bytes(), 0);
        pending.push(UNFLUSHED, &[put("c", "3")]);
        pending.release_through(7);
        assert_eq!(pending.len(), 3);
        pending.release_through(8);
        assert_eq!(pending.len(), 1, "generation 8's records are durable; c is not");
        assert_eq!(pending.over(&mem).get(1, b"c"), Some(Bytes::from("3")));
        assert!(pending.take_unflushed(9).len() == 1);
        pending.release_through(9);
        assert!(pending.is_empty());
    }

    /// Reads `key` through `pending` over `view`, keeping what it fetched: the record, and
    /// whether the clean cache answered it (no lookup reached the view).
    fn read(pending: &mut Undurable, view: &MemKv, key: &str) -> (Option<Bytes>, bool) {
        let layered = pending.over(view);
        let record = layered.get(1, key.as_bytes());
        let fetched = layered.into_fetched();
        let cached = (fetched.hits, fetched.misses) == (1, 0);
        pending.remember(fetched);
        (record, cached)
    }

    #[test]
    fn durable_and_fetched_records_are_read_from_the_clean_cache() {
        let mut view = MemKv::new();
        view.apply_mutations(&[put("a", "old")]);
        let mut pending = Undurable::default();
        assert_eq!(read(&mut pending, &view, "a"), (Some(Bytes::from("old")), false));
        assert_eq!(read(&mut pending, &view, "none"), (None, false));
        assert_eq!(read(&mut pending, &view, "a"), (Some(Bytes::from("old")), true));
        assert_eq!(read(&mut pending, &view, "none"), (None, true), "absent keys are kept too");

        // A write shadows the clean record until durable, then replaces it.
        pending.push(1, &[put("a", "new"), KvMutation::Delete { slot: 1, key: "b".into() }]);
        assert_eq!(read(&mut pending, &view, "a").0, Some(Bytes::from("new")));
        view.apply_mutations(&[put("a", "new")]);
        pending.release_through(1);
        assert!(pending.is_empty());
        assert_eq!(read(&mut pending, &view, "a"), (Some(Bytes::from("new")), true));
        assert_eq!(read(&mut pending, &view, "b"), (None, true), "a released delete too");

        // A read that is not remembered (its view failed) leaves nothing behind.
        let layered = pending.over(&view);
        assert_eq!(layered.get(1, b"c"), None);
        drop(layered);
        assert_eq!(read(&mut pending, &view, "c"), (None, false));
    }

    #[test]
    fn the_clean_cache_empties_when_redb_may_hold_other_records() {
        let mut view = MemKv::new();
        view.apply_mutations(&[put("a", "1")]);
        let mut pending = Undurable::default();
        read(&mut pending, &view, "a");
        pending.forget_clean();
        assert_eq!(pending.clean_len(), 0, "a split empties it");
        read(&mut pending, &view, "a");
        pending.push(UNFLUSHED, &[put("a", "2")]);
        pending.drop_unflushed();
        assert_eq!(pending.clean_len(), 0, "dropped unflushed state empties it");
        read(&mut pending, &view, "a");
        pending.clear();
        assert_eq!(pending.clean_len(), 0, "a snapshot empties it");
        view.apply_mutations(&[put("a", "3")]);
        assert_eq!(read(&mut pending, &view, "a"), (Some(Bytes::from("3")), false));
    }

    #[test]
    fn the_clean_cache_stays_within_its_bytes() {
        let view = MemKv::new();
        let bytes = 64 * (ENTRY_OVERHEAD_BYTES + 16);
        let mut pending = Undurable::with_clean_bytes(bytes);
        for i in 0..1000 {
            pending.push(i + 1, &[put(&format!("key-{i:04}"), "value-8")]);
            pending.release_through(i + 1);
        }
        assert!(pending.clean.0.weight() <= bytes);
        assert!(pending.clean_len() <= 64 && pending.clean_len() > 0);
        let hits = (0..1000).filter(|i| read(&mut pending, &view, &format!("key-{i:04}")).1);
        assert!(hits.count() <= 64);
    }

    #[test]
    fn the_nodes_budget_is_split_among_its_replicas() {
        let budget = CleanBudget::new(1200);
        let first = budget.join();
        assert_eq!(first.bytes(), 1200);
        let (second, third) = (budget.join(), budget.join());
        assert_eq!((first.bytes(), second.bytes(), third.bytes()), (400, 400, 400));
        drop((second, third));
        assert_eq!(first.bytes(), 1200, "a stopped replica's share goes back");
        // A cache shrunk to its share evicts down to it at once.
        let bytes = 64 * (ENTRY_OVERHEAD_BYTES + 16);
        let mut pending = Undurable::with_clean_bytes(bytes);
        for i in 0..64 {
            pending.push(i + 1, &[put(&format!("key-{i:04}"), "value-8")]);
            pending.release_through(i + 1);
        }
        assert!(pending.clean_len() > 32);
        pending.resize_clean(bytes / 4);
        assert!(pending.clean.0.weight() <= bytes / 4);
        assert!(pending.clean_len() <= 16 && pending.clean_len() > 0);
    }

    /// A flush (`ClearSlots`) hides what redb, the clean cache and pending writes before it
    /// hold in its slots, until its range delete is durable; writes after it show; it goes
    /// to the writer ahead of them, and a snapshot's drop of unflushed state drops it.
    #[test]
    fn a_cleared_range_hides_older_records_until_its_delete_is_durable() {
        let mut view = MemKv::new();
        let keep = KvMutation::Put { slot: 2, key: Bytes::from("c"), record: Bytes::from("c") };
        view.apply_mutations(&[put("a", "old"), put("b", "old"), keep]);
        let mut pending = Undurable::default();
        assert_eq!(read(&mut pending, &view, "a"), (Some(Bytes::from("old")), false));
        pending.push(UNFLUSHED, &[put("b", "before")]);
        let clear = KvMutation::ClearSlots { first: 0, last: 1 };
        pending.push(UNFLUSHED, &[clear.clone(), put("a", "after")]);
        assert_eq!(read(&mut pending, &view, "a").0, Some(Bytes::from("after")));
        assert_eq!(read(&mut pending, &view, "b"), (None, false), "neither cache nor redb");
        let listed = |pending: &Undurable, view: &MemKv| -> Vec<(u16, Bytes)> {
            pending.over(view).scan(0..=16383, None, 10)
        };
        let (a, c) = ((1, Bytes::from("a")), (2, Bytes::from("c")));
        assert_eq!(listed(&pending, &view), vec![a.clone(), c.clone()]);
        assert_eq!(pending.over(&view).count_keys(0..=16383, Tally::Keys).keys, 2);
        assert_eq!(pending.pending_keys(0..=16383).1, vec![0..=1]);

        let taken = pending.take_unflushed(5);
        assert_eq!(taken, vec![clear, put("a", "after")], "the range first");
        pending.release_through(4);
        assert_eq!(read(&mut pending, &view, "b").0, None, "not durable yet");
        view.apply_mutations(&taken);
        pending.release_through(5);
        assert!(pending.is_empty());
        assert_eq!(read(&mut pending, &view, "a"), (Some(Bytes::from("after")), true));
        assert_eq!(read(&mut pending, &view, "b"), (None, false), "read from redb");
        assert_eq!(listed(&pending, &view), vec![a, c]);

        pending.push(UNFLUSHED, &[KvMutation::ClearSlots { first: 1, last: 1 }]);
        assert_eq!(read(&mut pending, &view, "a").0, None);
        pending.drop_unflushed();
        assert!(pending.is_empty());
        assert_eq!(read(&mut pending, &view, "a").0, Some(Bytes::from("after")));

        // A cached record of a cleared slot that nothing rewrote is gone from the cache too.
        assert_eq!(read(&mut pending, &view, "a"), (Some(Bytes::from("after")), true));
        let clear_a = KvMutation::ClearSlots { first: 1, last: 1 };
        pending.push(UNFLUSHED, &[clear_a.clone()]);
        let taken = pending.take_unflushed(6);
        view.apply_mutations(&taken);
        pending.release_through(6);
        assert_eq!(read(&mut pending, &view, "a").0, None);

        // Unflushed ranges a later one covers go: a loop of flushes holds one range.
        pending.push(UNFLUSHED, &[clear_a.clone(), clear_a.clone(), put("a", "x")]);
        pending.push(UNFLUSHED, &[KvMutation::ClearSlots { first: 0, last: 3 }]);
        pending.push(UNFLUSHED, &[clear_a.clone()]);
        let both = vec![KvMutation::ClearSlots { first: 0, last: 3 }, clear_a];
        assert_eq!(pending.take_unflushed(7), both);
    }

    /// One step of a replica's life: a mutation applied, its unflushed state handed to the
    /// writer, the writer's oldest job committed to redb, the oldest committed job reported
    /// durable to the replica (which the writer does after its commit), or a snapshot
    /// received: it replaces the state machine, what was applied and not yet handed to the
    /// writer is dropped, and no Ready is taken until its job is durable (`InFlight::exclusive`
    /// in src/shard/ready.rs), so no mutation is applied and no read is served meanwhile.
    #[derive(Clone, Debug)]
    enum Step {
        Apply(KvMutation),
        Take,
        Commit,
        Durable,
        Snapshot(Vec<KvMutation>),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let key = (1u16..4, prop_oneof![Just("a"), Just("b"), Just("c")]);
        // Records as the store writes them, some with a deadline (before or after the
        // counts' clock, 2).
        let deadline = prop_oneof![Just(None), (1u64..4).prop_map(Some)];
        let put = (key.clone(), 0u8..3, deadline).prop_map(|((slot, key), v, deadline)| {
            let value = Bytes::from(format!("{key}{v}"));
            let record = crate::kv::record::Record::string(value, deadline).encode();
            KvMutation::Put { slot, key: Bytes::from(key), record }
        });
        let session = (1u64..4, 0u8..3).prop_map(|(client_id, v)| KvMutation::PutSession {
            client_id,
            record: Bytes::from(format!("s{client_id}.{v}")),
        });
        prop_oneof![
            3 => put.clone().prop_map(Step::Apply),
            1 => key.prop_map(|(slot, key)| {
                Step::Apply(KvMutation::Delete { slot, key: key.into() })
            }),
            1 => (0u16..5, 0u16..5).prop_map(|(a, b)| {
                Step::Apply(KvMutation::ClearSlots { first: a.min(b), last: a.max(b) })
            }),
            1 => session.clone().prop_map(Step::Apply),
            1 => (1u64..4).prop_map(|client_id| {
                Step::Apply(KvMutation::DeleteSession { client_id })
            }),
            2 => Just(Step::Take),
            2 => Just(Step::Commit),
            2 => Just(Step::Durable),
            1 => proptest::collection::vec(prop_oneof![put, session], 0..4)
                .prop_map(Step::Snapshot),
        ]
    }

    /// Every key of `slots`, read through `scan` pages of `page` keys.
    fn paged(view: &impl KvRead, slots: RangeInclusive<u16>, page: usize) -> Vec<(u16, Bytes)> {
        let mut all: Vec<(u16, Bytes)> = Vec::new();
        loop {
            let after = all.last().map(|(slot, key)| (*slot, &key[..]));
            let next = view.scan(slots.clone(), after, page);
            let done = next.len() < page;
            all.extend(next);
            if done {
                return all;
            }
        }
    }

    /// What a writer's job carries: applied mutations, or a snapshot's whole state and the
    /// mutations its Ready hands over after it (none, once the unflushed ones are dropped).
    enum Job {
        Mutations(Vec<KvMutation>),
        Snapshot(MemKv, Vec<KvMutation>),
    }

    /// A replica's undurable state, the state it applied, and its writer's jobs.
    #[derive(Default)]
    struct Life {
        pending: Undurable,
        /// Every mutation applied at once.
        applied: MemKv,
        /// What committed jobs wrote.
        redb: MemKv,
        jobs: VecDeque<(u64, Job)>,
        /// Committed jobs not yet reported durable, and whether each is a snapshot's.
        committed: VecDeque<(u64, bool)>,
        gen: u64,
        /// A snapshot's job is not durable yet.
        installing: bool,
    }

    impl Life {
        fn run(&mut self, step: &Step) {
            match step {
                Step::Apply(_) | Step::Take | Step::Snapshot(_) if self.installing => {}
                Step::Apply(m) => {
                    self.pending.push(UNFLUSHED, std::slice::from_ref(m));
                    self.applied.apply_mutations(std::slice::from_ref(m));
                }
                Step::Take => {
                    self.gen += 1;
                    let taken = self.pending.take_unflushed(self.gen);
                    self.jobs.push_back((self.gen, Job::Mutations(taken)));
                }
                Step::Snapshot(records) => {
                    self.pending.drop_unflushed();
                    let mut state = MemKv::new();
                    state.apply_mutations(records);
                    self.applied = state.clone();
                    self.gen += 1;
                    let taken = self.pending.take_unflushed(self.gen);
                    self.jobs.push_back((self.gen, Job::Snapshot(state, taken)));
                    self.installing = true;
                }
                Step::Commit => match self.jobs.pop_front() {
                    Some((gen, Job::Mutations(mutations))) => {
                        self.redb.apply_mutations(&mutations);
                        self.committed.push_back((gen, false));
                    }
                    Some((gen, Job::Snapshot(state, mutations))) => {
                        self.redb = state;
                        self.redb.apply_mutations(&mutations);
                        self.committed.push_back((gen, true));
                    }
                    None => {}
                },
                Step::Durable => match self.committed.pop_front() {
                    Some((gen, false)) => self.pending.release_through(gen),
                    Some((_, true)) => {
                        self.pending.clear();
                        self.installing = false;
                    }
                    None => {}
                },
            }
        }
    }

    proptest::proptest! {
        /// Whatever the interleaving of applies, hand-overs, commits, durable reports and
        /// snapshots, every key, session, scan (whole, and page by page) and count read
        /// through the replica's undurable state (the clean cache filled by those reads) is
        /// the state applied so far: `applied`, where every mutation lands at once, against
        /// `redb`, where only committed jobs do. Once every job is durable, nothing is
        /// pending and redb holds what was applied.
        #[test]
        fn reads_see_everything_applied_whatever_is_durable(
            steps in proptest::collection::vec(step(), 1..60)
        ) {
            use proptest::prop_assert_eq;
            let mut life = Life::default();
            for step in &steps {
                life.run(step);
                if life.installing {
                    continue;
                }
                let Life { pending, applied, redb, .. } = &mut life;
                for slot in 1..4 {
                    for key in ["a", "b", "c"] {
                        let layered = pending.over(&*redb);
                        let got = layered.get(slot, key.as_bytes());
                        pending.remember(layered.into_fetched());
                        prop_assert_eq!(got, applied.get(slot, key.as_bytes()), "{} {:?}", key, step);
                    }
                }
                let layered = pending.over(&*redb);
                for client_id in 1..4 {
                    prop_assert_eq!(layered.session(client_id), applied.session(client_id));
                }
                prop_assert_eq!(layered.sessions(), applied.sessions());
                let all = applied.scan(0..=4, None, 10);
                prop_assert_eq!(&layered.scan(0..=4, None, 10), &all);
                prop_assert_eq!(&paged(&layered, 0..=4, 2), &all);
                prop_assert_eq!(&paged(&layered, 2..=3, 1), &applied.scan(2..=3, None, 10));
                for tally in [Tally::Keys, Tally::Deadlines { after_ms: 2 }] {
                    let counted = layered.count_keys(2..=4, tally);
                    prop_assert_eq!(counted, applied.count_keys(2..=4, tally));
                }
            }
            // Hand over and drain; twice, as a snapshot's job holds back the hand-over.
            for _ in 0..2 {
                life.run(&Step::Take);
                while !life.jobs.is_empty() || !life.committed.is_empty() {
                    life.run(&Step::Commit);
                    life.run(&Step::Durable);
                }
            }
            proptest::prop_assert!(life.pending.is_empty(), "{:?}", life.pending);
            prop_assert_eq!(&life.redb, &life.applied);
        }
    }

    #[test]
    fn scans_and_counts_see_pending_puts_and_hide_pending_deletes() {
        let mut mem = MemKv::new();
        mem.apply_mutations(&[put("a", "1"), put("b", "2"), put("c", "3")]);
        let mut pending = Undurable::default();
        let delete_b = KvMutation::Delete { slot: 1, key: Bytes::from_static(b"b") };
        pending.push(1, &[delete_b, put("d", "4")]);
        let view = pending.over(&mem);
        let keys: Vec<Bytes> = view.scan(0..=16383, None, 10).into_iter().map(|(_, k)| k).collect();
        assert_eq!(keys, vec![Bytes::from("a"), Bytes::from("c"), Bytes::from("d")]);
        assert_eq!(view.scan(1..=1, Some((1, &b"a"[..])), 1), vec![(1, Bytes::from("c"))]);
        assert_eq!(view.count_keys(0..=16383, Tally::Keys).keys, 3);
        assert_eq!(view.count_keys(2..=16383, Tally::Keys).keys, 0);
        pending.release_through(1);
        assert_eq!(pending.over(&mem).count_keys(0..=16383, Tally::Keys).keys, 3);
    }
}
