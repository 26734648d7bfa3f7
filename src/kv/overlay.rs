//! The pending mutations of one apply batch, layered over the committed state so that a
//! later entry of the batch sees what an earlier one wrote. Owns that bookkeeping only;
//! it never decodes records and never persists anything (storage drains it). Also the
//! `Cleared` view: a committed view with the slot ranges a flush cleared taken away, shared
//! with the replica's undurable layer (`shard::undurable`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;

use bytes::Bytes;

use super::apply::KvRead;
use super::read::{KeyCount, Tally};
use super::session::SESSIONS_PER_GROUP_MAX;
use super::KvMutation;

/// This batch's writes: `None` is a pending delete; `cleared`, slot ranges whose stored keys
/// a flush removed (the writes in `kv` came after it).
#[derive(Clone, Debug)]
pub struct Overlay {
    kv: BTreeMap<u16, BTreeMap<Bytes, Option<Bytes>>>,
    cleared: Vec<RangeInclusive<u16>>,
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
            cleared: Vec::new(),
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
        let keys: usize = self.kv.values().map(BTreeMap::len).sum();
        keys + self.cleared.len() + self.sessions.len()
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

    /// Removes every key of `slots`: this batch's writes there at once, the stored keys with
    /// one `KvMutation::ClearSlots` when drained (an earlier range of the batch it covers
    /// goes). Costs the batch's own writes, not the keys stored.
    pub fn clear_slots(&mut self, slots: RangeInclusive<u16>) {
        self.kv.retain(|slot, _| !slots.contains(slot));
        self.cleared.retain(|r| r.start() < slots.start() || r.end() > slots.end());
        self.cleared.push(slots);
    }

    /// What the batch holds for each of `keys` (slot, key): a write, a delete, or nothing
    /// (`None`), to be put back with `restore`.
    pub fn entries<'k>(
        &self,
        keys: impl Iterator<Item = (u16, &'k [u8])>,
    ) -> Vec<(u16, Bytes, Option<Option<Bytes>>)> {
        let entry = |(slot, key): (u16, &[u8])| {
            let held = self.kv.get(&slot).and_then(|keys| keys.get(key)).cloned();
            (slot, Bytes::copy_from_slice(key), held)
        };
        keys.map(entry).collect()
    }

    /// Puts back `entries` (taken in order with `entries`, the earliest of a key last), and
    /// with them what the batch held for those keys.
    pub fn restore(&mut self, entries: Vec<(u16, Bytes, Option<Option<Bytes>>)>) {
        for (slot, key, held) in entries.into_iter().rev() {
            let keys = self.kv.entry(slot).or_default();
            match held {
                Some(held) => keys.insert(key, held),
                None => keys.remove(&key),
            };
            if keys.is_empty() {
                self.kv.remove(&slot);
            }
        }
    }

    pub fn put_session(&mut self, client_id: u64, record: Bytes) {
        self.sessions.insert(client_id, Some(record));
    }

    pub fn delete_session(&mut self, client_id: u64) {
        self.sessions.insert(client_id, None);
    }

    /// The net mutations of the batch: its cleared slot ranges first, then its key writes in
    /// (slot, key) order, then its sessions in client id order; the overlay is left empty for
    /// the next batch.
    pub fn drain(&mut self) -> Vec<KvMutation> {
        let mut out = Vec::with_capacity(self.pending_len());
        for slots in std::mem::take(&mut self.cleared) {
            out.push(KvMutation::ClearSlots { first: *slots.start(), last: *slots.end() });
        }
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

impl<'a, V: KvRead> Layered<'a, V> {
    /// The committed view without the slots this batch cleared.
    fn base(&self) -> Cleared<'a, V> {
        Cleared::new(self.view, &self.overlay.cleared)
    }

    /// The batch's writes to keys of `slots` as (slot, key, record), in order.
    fn pending_in(
        &self,
        slots: &RangeInclusive<u16>,
    ) -> impl Iterator<Item = (u16, &'a Bytes, Option<&'a Bytes>)> + use<'a, V> {
        let keys = self.overlay.kv.range(slots.clone());
        keys.flat_map(|(slot, keys)| keys.iter().map(|(k, v)| (*slot, k, v.as_ref())))
    }
}

impl<V: KvRead> KvRead for Layered<'_, V> {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        match self.overlay.kv.get(&slot).and_then(|keys| keys.get(key)) {
            Some(pending) => pending.clone(),
            None => self.base().get(slot, key),
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

    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)> {
        layered_scan(&self.base(), self.pending_in(&slots), slots, after, limit)
    }

    fn count_keys(&self, slots: RangeInclusive<u16>, tally: Tally) -> KeyCount {
        layered_count(&self.base(), self.pending_in(&slots), slots, tally)
    }
}

/// A committed view with the keys of some slot ranges gone: the ranges flushes cleared
/// whose range delete (`KvMutation::ClearSlots`) the view may not hold yet. Sessions are
/// kept. With no range cleared it reads as the view does, at the cost of one empty check.
pub struct Cleared<'a, V> {
    view: &'a V,
    cleared: &'a [RangeInclusive<u16>],
}

impl<'a, V: KvRead> Cleared<'a, V> {
    pub fn new(view: &'a V, cleared: &'a [RangeInclusive<u16>]) -> Cleared<'a, V> {
        Cleared { view, cleared }
    }

    /// Whether a cleared range holds `slot`.
    pub fn covers(&self, slot: u16) -> bool {
        self.cleared.iter().any(|range| range.contains(&slot))
    }

    /// The parts of `slots` no cleared range covers, in slot order.
    fn kept(&self, slots: RangeInclusive<u16>) -> Vec<RangeInclusive<u16>> {
        let mut parts = vec![slots];
        for cut in self.cleared {
            parts = parts.into_iter().flat_map(|part| without(part, cut)).collect();
        }
        parts.sort_by_key(|part| *part.start());
        parts
    }
}

/// `part` without the slots of `cut`: none, one or two ranges, in order.
fn without(part: RangeInclusive<u16>, cut: &RangeInclusive<u16>) -> Vec<RangeInclusive<u16>> {
    if part.is_empty() {
        return Vec::new();
    }
    if cut.is_empty() || cut.end() < part.start() || cut.start() > part.end() {
        return vec![part];
    }
    // They overlap: `cut` starts at most at `part`'s end and ends at least at its start.
    let mut out = Vec::new();
    if cut.start() > part.start() {
        out.push(*part.start()..=*cut.start() - 1);
    }
    if cut.end() < part.end() {
        out.push(*cut.end() + 1..=*part.end());
    }
    out
}

impl<V: KvRead> KvRead for Cleared<'_, V> {
    fn get(&self, slot: u16, key: &[u8]) -> Option<Bytes> {
        if self.covers(slot) {
            return None;
        }
        self.view.get(slot, key)
    }

    fn session(&self, client_id: u64) -> Option<Bytes> {
        self.view.session(client_id)
    }

    fn sessions(&self) -> Vec<(u64, Bytes)> {
        self.view.sessions()
    }

    fn scan(
        &self,
        slots: RangeInclusive<u16>,
        after: Option<(u16, &[u8])>,
        limit: usize,
    ) -> Vec<(u16, Bytes)> {
        if self.cleared.is_empty() {
            return self.view.scan(slots, after, limit);
        }
        let mut out = Vec::new();
        for part in self.kept(slots) {
            if out.len() >= limit {
                break;
            }
            let after = match after {
                Some((slot, _)) if slot > *part.end() => continue,
                Some((slot, _)) if slot < *part.start() => None,
                after => after,
            };
            out.extend(self.view.scan(part, after, limit - out.len()));
        }
        out
    }

    fn count_keys(&self, slots: RangeInclusive<u16>, tally: Tally) -> KeyCount {
        if self.cleared.is_empty() {
            return self.view.count_keys(slots, tally);
        }
        let parts = self.kept(slots).into_iter().map(|part| self.view.count_keys(part, tally));
        parts.fold(KeyCount::default(), KeyCount::merge)
    }
}

/// One bounded page of keys of `view` with pending writes on top: `pending` yields
/// (slot, key, record) in (slot, key) order, `None` being a pending delete. Shared by
/// every layered view (an apply batch's overlay, a replica's not-yet-durable mutations).
pub fn layered_scan<'p, V: KvRead>(
    view: &V,
    pending: impl Iterator<Item = (u16, &'p Bytes, Option<&'p Bytes>)>,
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
        .map(|(slot, key, record)| (slot, key, record.is_some()))
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

/// A pending write to a key, owned (taken off a replica's thread), as (slot, key, record):
/// `None` is a delete.
pub type PendingKey = (u16, Bytes, Option<Bytes>);

/// `pending`, in (slot, key) order, as `layered_count` and `layered_scan` take it.
pub fn pending_refs(pending: &[PendingKey]) -> impl Iterator<Item = (u16, &Bytes, Option<&Bytes>)> {
    pending.iter().map(|(slot, key, record)| (*slot, key, record.as_ref()))
}

/// The count of the keys of `view` in `slots` with pending writes on top (see
/// `layered_scan`): each pending key's committed record is taken away and its pending
/// one added.
pub fn layered_count<'p, V: KvRead>(
    view: &V,
    pending: impl Iterator<Item = (u16, &'p Bytes, Option<&'p Bytes>)>,
    slots: RangeInclusive<u16>,
    tally: Tally,
) -> KeyCount {
    let mut count = view.count_keys(slots.clone(), tally);
    for (slot, key, record) in pending.filter(|(slot, _, _)| slots.contains(slot)) {
        if let Some(committed) = view.get(slot, key) {
            count.remove(&committed, tally);
        }
        if let Some(record) = record {
            count.add(record, tally);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;

    fn store(keys: &[(u16, &str)]) -> MemKv {
        let mut kv = MemKv::new();
        let put = |&(slot, key): &(u16, &str)| {
            let (key, record) = (Bytes::from(key.to_string()), Bytes::from_static(b"r"));
            KvMutation::Put { slot, key, record }
        };
        kv.apply_mutations(&keys.iter().map(put).collect::<Vec<_>>());
        kv
    }

    #[test]
    fn a_part_without_a_cut_keeps_the_slots_outside_it() {
        assert_eq!(without(0..=16383, &(0..=16383)), vec![]);
        assert_eq!(without(0..=16383, &(0..=9)), vec![10..=16383]);
        assert_eq!(without(0..=16383, &(16383..=16383)), vec![0..=16382]);
        assert_eq!(without(5..=9, &(7..=7)), vec![5..=6, 8..=9]);
        assert_eq!(without(5..=9, &(0..=4)), vec![5..=9]);
        assert_eq!(without(5..=9, &(10..=20)), vec![5..=9]);
        assert_eq!(without(5..=9, &(9..=20)), vec![5..=8]);
    }

    #[test]
    fn a_cleared_view_lists_counts_and_reads_only_the_slots_left() {
        let kv = store(&[(0, "a"), (3, "b"), (3, "c"), (5, "d"), (9, "e"), (16383, "z")]);
        let cleared = [3..=4, 9..=9, 16383..=16383];
        let view = Cleared::new(&kv, &cleared);
        let keys = |found: Vec<(u16, Bytes)>| -> Vec<String> {
            found.into_iter().map(|(_, k)| String::from_utf8_lossy(&k).into_owned()).collect()
        };
        assert_eq!(keys(view.scan(0..=16383, None, 10)), ["a", "d"]);
        assert_eq!(keys(view.scan(0..=16383, None, 1)), ["a"]);
        assert_eq!(keys(view.scan(0..=16383, Some((0, &b"a"[..])), 10)), ["d"]);
        assert_eq!(keys(view.scan(0..=16383, Some((3, &b"b"[..])), 10)), ["d"]);
        assert_eq!(keys(view.scan(4..=16383, Some((9, &b"a"[..])), 10)), Vec::<String>::new());
        assert_eq!(view.count_keys(0..=16383, Tally::Keys).keys, 2);
        assert_eq!(view.count_keys(3..=9, Tally::Keys).keys, 1);
        assert_eq!(view.get(3, b"b"), None);
        assert_eq!(view.get(5, b"d"), Some(Bytes::from_static(b"r")));
        let none = Cleared::new(&kv, &[]);
        assert_eq!(none.count_keys(0..=16383, Tally::Keys).keys, 6);
        assert_eq!(keys(none.scan(1..=16383, None, 3)), ["b", "c", "d"]);
    }

    #[test]
    fn a_flush_in_a_batch_drops_the_batch_writes_before_it_and_drains_first() {
        let kv = store(&[(1, "old"), (2, "other")]);
        let mut overlay = Overlay::new();
        overlay.put(1, Bytes::from("before"), Bytes::from_static(b"v"));
        overlay.clear_slots(0..=1);
        overlay.put(1, Bytes::from("after"), Bytes::from_static(b"v"));
        let layered = overlay.over(&kv);
        assert_eq!(layered.get(1, b"old"), None);
        assert_eq!(layered.get(1, b"before"), None);
        assert_eq!(layered.get(2, b"other"), Some(Bytes::from_static(b"r")));
        assert_eq!(layered.count_keys(0..=16383, Tally::Keys).keys, 2);
        let after = KvMutation::Put { slot: 1, key: "after".into(), record: "v".into() };
        assert_eq!(overlay.drain(), vec![KvMutation::ClearSlots { first: 0, last: 1 }, after]);
        assert!(overlay.is_empty());
    }
}
