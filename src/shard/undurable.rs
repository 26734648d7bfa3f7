//! `Undurable`: mutations a replica has applied but the writer has not yet reported
//! durable, layered over the committed redb view. Reads and later applies go through it,
//! so that a client who got a write's answer sees that write at once (linearizability)
//! even while the fsync that carries it is still running.
//!
//! Owns: that bookkeeping, tagged by the persist generation that carries each mutation.
//! Must never: drop a mutation before the write carrying it (or a later one for the same
//! key) is durable.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use bytes::Bytes;

use crate::kv::overlay::{layered_count, layered_scan};
use crate::kv::{KvMutation, KvRead};

/// One pending value: `None` is a delete; `gen` the persist that carries it.
#[derive(Clone, Debug)]
struct Pending {
    value: Option<Bytes>,
    gen: u64,
}

/// The generation of mutations applied but not yet handed to the writer (see
/// `take_unflushed`); no persist generation reaches it.
pub const UNFLUSHED: u64 = u64::MAX;

/// Applied, not yet durable mutations of one group.
#[derive(Debug, Default)]
pub struct Undurable {
    kv: BTreeMap<(u16, Bytes), Pending>,
    sessions: BTreeMap<u64, Pending>,
    /// Generations `take_unflushed` handed mutations to, not yet released: a release that
    /// reaches none of them has nothing to drop and skips the walk over every key.
    carrying: BTreeSet<u64>,
    /// Bytes of keys and records pushed since the last `take_unflushed` (an upper bound: a
    /// key written twice counts twice).
    unflushed_bytes: u64,
}

impl Undurable {
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty() && self.sessions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.kv.len() + self.sessions.len()
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
            }
        }
    }

    /// Hands every mutation still `UNFLUSHED` to persist generation `gen`: the latest value
    /// of each key and session, as one batch of mutations for that job.
    pub fn take_unflushed(&mut self, gen: u64) -> Vec<KvMutation> {
        self.unflushed_bytes = 0;
        let mut out = Vec::new();
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

    /// Forgets the mutations not yet handed to the writer (a snapshot replaces them).
    pub fn drop_unflushed(&mut self) {
        self.unflushed_bytes = 0;
        self.kv.retain(|_, p| p.gen != UNFLUSHED);
        self.sessions.retain(|_, p| p.gen != UNFLUSHED);
    }

    /// Persist generations up to `gen` are durable: their mutations are now in redb.
    pub fn release_through(&mut self, gen: u64) {
        if self.carrying.first().is_none_or(|&first| first > gen) {
            return;
        }
        self.carrying = self.carrying.split_off(&(gen + 1));
        self.kv.retain(|_, p| p.gen > gen);
        self.sessions.retain(|_, p| p.gen > gen);
    }

    /// Forgets everything (a snapshot replaced the state machine).
    pub fn clear(&mut self) {
        self.carrying.clear();
        self.unflushed_bytes = 0;
        self.kv.clear();
        self.sessions.clear();
    }

    /// The pending keys of `slots` as (slot, key, present), in order: what a count of the
    /// committed view must add or take away, for work done off the replica's thread.
    pub fn pending_keys(&self, slots: RangeInclusive<u16>) -> Vec<(u16, Bytes, bool)> {
        self.pending_in(&slots).map(|(slot, key, present)| (slot, key.clone(), present)).collect()
    }

    /// Pending keys of `slots` as (slot, key, present), in order.
    fn pending_in(
        &self,
        slots: &RangeInclusive<u16>,
    ) -> impl Iterator<Item = (u16, &Bytes, bool)> + use<'_> {
        let (lower, last) = ((*slots.start(), Bytes::new()), *slots.end());
        self.kv
            .range(lower..)
            .take_while(move |((slot, _), _)| *slot <= last)
            .map(|((slot, key), p)| (*slot, key, p.value.is_some()))
    }

    /// `view` as this replica has applied it.
    pub fn over<'a, V: KvRead>(&'a self, view: &'a V) -> Layered<'a, V> {
        Layered { view, pending: self }
    }
}

/// A committed view with the undurable mutations on top.
pub struct Layered<'a, V> {
    view: &'a V,
    pending: &'a Undurable,
}

impl<V: KvRead> KvRead for Layered<'_, V> {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        // The map is keyed by owned `Bytes`; a lookup key costs one copy of the key.
        match self.pending.kv.get(&(slot, Bytes::copy_from_slice(key))) {
            Some(p) => p.value.clone(),
            None => self.view.get(slot, key),
        }
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

    fn keys_in_slots(&self, slots: RangeInclusive<u16>) -> Vec<(u16, Bytes)> {
        let mut all: BTreeSet<(u16, Bytes)> =
            self.view.keys_in_slots(slots.clone()).into_iter().collect();
        for ((slot, key), p) in &self.pending.kv {
            if !slots.contains(slot) {
                continue;
            }
            let entry = (*slot, key.clone());
            match p.value {
                Some(_) => all.insert(entry),
                None => all.remove(&entry),
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
        layered_scan(self.view, pending, slots, after, limit)
    }

    fn count_keys(&self, slots: RangeInclusive<u16>) -> u64 {
        let pending = self.pending.pending_in(&slots);
        layered_count(self.view, pending, slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;

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
        assert_eq!(pending.over(&mem).get(1, b"a"), Some(Bytes::from("old")));
        pending.push(3, &[KvMutation::Delete { slot: 1, key: Bytes::from("a") }]);
        assert_eq!(pending.over(&mem).get(1, b"a"), None);
        assert_eq!(pending.over(&mem).keys_in_slots(0..=5).len(), 1);
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
        assert_eq!(view.count_keys(0..=16383), 3);
        assert_eq!(view.count_keys(2..=16383), 0);
        pending.release_through(1);
        assert_eq!(pending.over(&mem).count_keys(0..=16383), 3);
    }
}
