//! `MemKv`: one group's state-machine data in ordered in-memory maps, for the simulation
//! and the tests. Owns nothing durable; it must behave exactly as the redb store does.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeInclusive};

use bytes::Bytes;

use super::apply::KvRead;
use super::read::{KeyCount, Tally};
use super::KvMutation;

/// The records of a slot range and the sessions of a group, as moved by a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotRangeData {
    /// (slot, key, record) in (slot, key) order.
    pub records: Vec<(u16, Bytes, Bytes)>,
    /// (client id, session record) in client id order.
    pub sessions: Vec<(u64, Bytes)>,
}

/// In-memory state of one group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemKv {
    kv: BTreeMap<u16, BTreeMap<Bytes, Bytes>>,
    sessions: BTreeMap<u64, Bytes>,
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }

    /// Number of stored keys (expired ones included until deleted).
    pub fn len(&self) -> usize {
        self.kv.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of client sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Apply a batch's mutations in order.
    pub fn apply_mutations(&mut self, mutations: &[KvMutation]) {
        for mutation in mutations {
            match mutation {
                KvMutation::Put { slot, key, record } => {
                    self.kv
                        .entry(*slot)
                        .or_default()
                        .insert(key.clone(), record.clone());
                }
                KvMutation::Delete { slot, key } => {
                    if let Some(keys) = self.kv.get_mut(slot) {
                        keys.remove(key);
                        if keys.is_empty() {
                            self.kv.remove(slot);
                        }
                    }
                }
                KvMutation::PutSession { client_id, record } => {
                    self.sessions.insert(*client_id, record.clone());
                }
                KvMutation::DeleteSession { client_id } => {
                    self.sessions.remove(client_id);
                }
                KvMutation::ClearSlots { first, last } => {
                    self.kv.retain(|slot, _| !(*first..=*last).contains(slot));
                }
            }
        }
    }

    /// Copy out the records of `slots` and every session.
    pub fn export_slots(&self, slots: RangeInclusive<u16>) -> SlotRangeData {
        let records = self
            .kv
            .range(slots)
            .flat_map(|(slot, keys)| keys.iter().map(|(k, r)| (*slot, k.clone(), r.clone())))
            .collect();
        let sessions = self
            .sessions
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        SlotRangeData { records, sessions }
    }

    /// Replace the records of `slots` and all sessions with `data`. Records of `data`
    /// outside `slots` are ignored.
    pub fn import_slots(&mut self, slots: RangeInclusive<u16>, data: &SlotRangeData) {
        let doomed: Vec<u16> = self
            .kv
            .range(slots.clone())
            .map(|(slot, _)| *slot)
            .collect();
        for slot in doomed {
            self.kv.remove(&slot);
        }
        for (slot, key, record) in &data.records {
            if slots.contains(slot) {
                self.kv
                    .entry(*slot)
                    .or_default()
                    .insert(key.clone(), record.clone());
            }
        }
        self.sessions = data.sessions.iter().cloned().collect();
    }
}

impl KvRead for MemKv {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        self.kv.get(&slot)?.get(key).cloned()
    }

    fn session(&self, client_id: u64) -> Option<Bytes> {
        self.sessions.get(&client_id).cloned()
    }

    fn sessions(&self) -> Vec<(u64, Bytes)> {
        self.sessions
            .iter()
            .map(|(id, record)| (*id, record.clone()))
            .collect()
    }

    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)> {
        let mut out = Vec::new();
        for (slot, keys) in self.kv.range(slots) {
            let lower = match after {
                Some((after_slot, _)) if *slot < after_slot => continue,
                Some((after_slot, key)) if *slot == after_slot => Bound::Excluded(key),
                _ => Bound::Unbounded,
            };
            let range = keys.range::<[u8], _>((lower, Bound::Unbounded));
            for (key, _) in range.take(limit - out.len()) {
                out.push((*slot, key.clone()));
            }
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    fn count_keys(&self, slots: RangeInclusive<u16>, tally: Tally) -> KeyCount {
        let slots = self.kv.range(slots);
        if tally == Tally::Keys {
            let keys = slots.map(|(_, keys)| keys.len() as u64).sum();
            return KeyCount { keys, ..KeyCount::default() };
        }
        let mut count = KeyCount::default();
        for record in slots.flat_map(|(_, keys)| keys.values()) {
            count.add(record, tally);
        }
        count
    }
}
