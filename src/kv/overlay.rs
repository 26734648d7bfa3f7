//! The pending mutations of one apply batch, layered over the committed state so that a
//! later entry of the batch sees what an earlier one wrote. Owns that bookkeeping only;
//! it never decodes records and never persists anything (storage drains it).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use bytes::Bytes;

use super::apply::KvRead;
use super::session::SESSIONS_PER_GROUP_MAX;
use super::KvMutation;

/// This batch's writes: `None` is a pending delete.
#[derive(Clone, Debug)]
pub struct Overlay {
    kv: BTreeMap<u16, BTreeMap<Bytes, Option<Bytes>>>,
    sessions: BTreeMap<u64, Option<Bytes>>,
    sessions_max: usize,
}

impl Default for Overlay {
    fn default() -> Overlay {
        Overlay::new()
    }
}

impl Overlay {
    /// An empty overlay with the standard session bound.
    pub fn new() -> Overlay {
        Overlay::with_sessions_max(SESSIONS_PER_GROUP_MAX)
    }

    /// An empty overlay keeping at most `sessions_max` client sessions per group. Every
    /// replica must use the same bound (it changes what apply writes).
    pub fn with_sessions_max(sessions_max: usize) -> Overlay {
        assert!(sessions_max > 0, "the session bound must be positive");
        Overlay {
            kv: BTreeMap::new(),
            sessions: BTreeMap::new(),
            sessions_max,
        }
    }

    /// The bound on client sessions per group.
    pub fn sessions_max(&self) -> usize {
        self.sessions_max
    }

    /// Number of pending mutations (the caller bounds its batch by it).
    pub fn pending_len(&self) -> usize {
        self.kv.values().map(BTreeMap::len).sum::<usize>() + self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending_len() == 0
    }

    pub fn put(&mut self, slot: u16, key: Bytes, record: Bytes) {
        self.kv.entry(slot).or_default().insert(key, Some(record));
    }

    pub fn delete(&mut self, slot: u16, key: Bytes) {
        self.kv.entry(slot).or_default().insert(key, None);
    }

    pub fn put_session(&mut self, client_id: u64, record: Bytes) {
        self.sessions.insert(client_id, Some(record));
    }

    pub fn delete_session(&mut self, client_id: u64) {
        self.sessions.insert(client_id, None);
    }

    /// The net mutations of the batch in (slot, key) then client id order; the overlay
    /// is left empty for the next batch.
    pub fn drain(&mut self) -> Vec<KvMutation> {
        let mut out = Vec::with_capacity(self.pending_len());
        for (slot, keys) in std::mem::take(&mut self.kv) {
            for (key, record) in keys {
                out.push(match record {
                    Some(record) => KvMutation::Put { slot, key, record },
                    None => KvMutation::Delete { slot, key },
                });
            }
        }
        for (client_id, record) in std::mem::take(&mut self.sessions) {
            out.push(match record {
                Some(record) => KvMutation::PutSession { client_id, record },
                None => KvMutation::DeleteSession { client_id },
            });
        }
        out
    }

    /// The committed state `view` as this batch sees it.
    pub fn over<'a, V: KvRead>(&'a self, view: &'a V) -> Layered<'a, V> {
        Layered {
            view,
            overlay: self,
        }
    }
}

/// A committed view with an overlay's pending writes on top.
pub struct Layered<'a, V> {
    view: &'a V,
    overlay: &'a Overlay,
}

impl<V: KvRead> KvRead for Layered<'_, V> {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        match self.overlay.kv.get(&slot).and_then(|keys| keys.get(key)) {
            Some(pending) => pending.clone(),
            None => self.view.get(slot, key),
        }
    }

    fn session(&self, client_id: u64) -> Option<Bytes> {
        match self.overlay.sessions.get(&client_id) {
            Some(pending) => pending.clone(),
            None => self.view.session(client_id),
        }
    }

    fn sessions(&self) -> Vec<(u64, Bytes)> {
        let mut all: BTreeMap<u64, Bytes> = self.view.sessions().into_iter().collect();
        for (client_id, pending) in &self.overlay.sessions {
            match pending {
                Some(record) => all.insert(*client_id, record.clone()),
                None => all.remove(client_id),
            };
        }
        all.into_iter().collect()
    }

    fn keys_in_slots(&self, slots: RangeInclusive<u16>) -> Vec<(u16, Bytes)> {
        let mut all: BTreeSet<(u16, Bytes)> =
            self.view.keys_in_slots(slots.clone()).into_iter().collect();
        for (slot, keys) in self.overlay.kv.range(slots) {
            for (key, pending) in keys {
                let entry = (*slot, key.clone());
                match pending {
                    Some(_) => all.insert(entry),
                    None => all.remove(&entry),
                };
            }
        }
        all.into_iter().collect()
    }

    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)> {
        let pending = self
            .overlay
            .kv
            .range(slots.clone())
            .flat_map(|(slot, keys)| keys.iter().map(|(k, v)| (*slot, k, v.is_some())));
        layered_scan(self.view, pending, slots, after, limit)
    }

    fn count_keys(&self, slots: RangeInclusive<u16>) -> u64 {
        let pending = self
            .overlay
            .kv
            .range(slots.clone())
            .flat_map(|(slot, keys)| keys.iter().map(|(k, v)| (*slot, k, v.is_some())));
        layered_count(self.view, pending, slots)
    }
}

/// One bounded page of keys of `view` with pending writes on top: `pending` yields
/// (slot, key, present) in (slot, key) order, `false` being a pending delete. Shared by
/// every layered view (an apply batch's overlay, a replica's not-yet-durable mutations).
pub fn layered_scan<'p, V: KvRead>(
    view: &V,
    pending: impl Iterator<Item = (u16, &'p Bytes, bool)>,
    slots: RangeInclusive<u16>,
    after: Option<(u16, &[u8])>,
    limit: usize,
) -> Vec<(u16, Bytes)> {
    let is_after = |slot: u16, key: &[u8]| match after {
        None => true,
        Some((after_slot, after_key)) => (slot, key) > (after_slot, after_key),
    };
    let pending: Vec<(u16, &Bytes, bool)> = pending
        .filter(|(slot, key, _)| slots.contains(slot) && is_after(*slot, key))
        .collect();
    // Pending deletes can hide at most `pending.len()` committed keys, so a page that
    // large still holds `limit` live keys unless the committed data ends.
    let want = limit.saturating_add(pending.len());
    let committed = view.scan(slots, after, want);
    let last = (committed.len() >= want).then(|| committed.last().cloned()).flatten();
    let mut all: BTreeSet<(u16, Bytes)> = committed.into_iter().collect();
    for (slot, key, present) in pending {
        let entry = (slot, key.clone());
        let beyond = last.as_ref().is_some_and(|last| &entry > last);
        if !present {
            all.remove(&entry);
        } else if !beyond {
            all.insert(entry);
        }
    }
    all.into_iter().take(limit).collect()
}

/// The number of keys of `view` in `slots` with pending writes on top (see `layered_scan`).
pub fn layered_count<'p, V: KvRead>(
    view: &V,
    pending: impl Iterator<Item = (u16, &'p Bytes, bool)>,
    slots: RangeInclusive<u16>,
) -> u64 {
    let mut count = view.count_keys(slots.clone());
    for (slot, key, present) in pending.filter(|(slot, _, _)| slots.contains(slot)) {
        match (view.get(slot, key).is_some(), present) {
            (false, true) => count += 1,
            (true, false) => count = count.saturating_sub(1),
            _ => {}
        }
    }
    count
}
