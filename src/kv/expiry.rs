//! Active expiry: finding the stored records whose deadline has passed, so that a group's
//! leader deletes them (`shard::expiry`). Reads never see an expired key, deleted or not;
//! but a key written with a TTL and never written again would otherwise stay in the store,
//! in DBSIZE and in INFO's `keys`, and a cache of unique keys with TTLs would grow without
//! end. Redis samples its table of keys with a TTL; shardkv keeps no such index (every
//! write would then touch two B-trees), and walks the group's records in order instead,
//! one bounded page at a time, reading only each record's header.
//!
//! A page is a hint, read from a state that may be older than the log: each
//! `KvCommand::DeleteExpired` it yields deletes its key only if the key's deadline is still
//! the one found and has passed at the entry's clock (`apply::delete_expired`), so a key
//! written again since, or given another TTL, stays. Must never: hold more than its bounds,
//! or skip a record it did not look at (the next page starts right after the last one).

use std::ops::{ControlFlow, RangeInclusive};

use bytes::Bytes;

use super::command::{KvCommand, Request, NO_CLIENT_ID};
use super::record::Record;
use super::{KvRead, Reply};

/// How much one page may look at and hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageBounds {
    /// Records looked at (at least one).
    pub rows_max: usize,
    /// Expired keys held: the `DeleteExpired` commands of one log entry.
    pub keys_max: usize,
    /// Bytes of the keys held; a first key is held whatever its length.
    pub key_bytes_max: usize,
}

/// One page of a group's walk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpiredPage {
    /// The expired keys found, each with its deadline, in (slot, key) order.
    pub keys: Vec<(Bytes, u64)>,
    /// Records looked at.
    pub rows: usize,
    /// Where the next page starts (after this record); `None` when the slots are done.
    pub resume: Option<(u16, Bytes)>,
}

impl ExpiredPage {
    /// Whether the page stopped because it held all it may (more may be expired right
    /// after it), not because it looked at `rows_max` records or reached the end.
    pub fn is_full(&self, bounds: &PageBounds) -> bool {
        self.resume.is_some() && self.rows < bounds.rows_max.max(1)
    }
}

/// The records of `slots` after `after` whose deadline is `now_ms` or before, within
/// `bounds`.
pub fn expired_page(
    view: &impl KvRead,
    slots: RangeInclusive<u16>,
    after: Option<(u16, &[u8])>,
    now_ms: u64,
    bounds: &PageBounds,
) -> ExpiredPage {
    let mut page = ExpiredPage::default();
    let mut key_bytes = 0usize;
    // The last record looked at, in one buffer: no allocation per record.
    let (mut last_slot, mut last_key) = (0u16, Vec::new());
    let mut stopped = false;
    view.walk(slots, after, &mut |slot, key, record| {
        let expired = Record::deadline_of(record).filter(|deadline_ms| *deadline_ms <= now_ms);
        let full = expired.is_some()
            && !page.keys.is_empty()
            && (page.keys.len() >= bounds.keys_max
                || key_bytes.saturating_add(key.len()) > bounds.key_bytes_max);
        if page.rows >= bounds.rows_max.max(1) || full {
            stopped = true;
            return ControlFlow::Break(());
        }
        if let Some(deadline_ms) = expired {
            key_bytes += key.len();
            page.keys.push((Bytes::copy_from_slice(key), deadline_ms));
        }
        page.rows += 1;
        last_slot = slot;
        last_key.clear();
        last_key.extend_from_slice(key);
        ControlFlow::Continue(())
    });
    page.resume = stopped.then(|| (last_slot, Bytes::from(last_key)));
    page
}

/// The log entry that deletes `keys` if they are still expired at `now_ms`: one request of
/// no client (no session), whose commands apply in order.
pub fn delete_request(keys: &[(Bytes, u64)], now_ms: u64) -> Request {
    let commands = keys
        .iter()
        .map(|(key, deadline_ms)| KvCommand::DeleteExpired {
            key: key.clone(),
            deadline_ms: *deadline_ms,
        })
        .collect();
    Request { client_id: NO_CLIENT_ID, seq: 0, now_ms, command: KvCommand::Batch { commands } }
}

/// How many keys the answer of a `delete_request` says it deleted.
pub fn deleted(reply: &Reply) -> u64 {
    match reply {
        Reply::Array(replies) => replies.iter().filter(|r| **r == Reply::Int(1)).count() as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::kv::{key_slot, KvMutation, MemKv};

    const NOW_MS: u64 = 10_000;

    /// A store of `keys`, each with its deadline (`None`: no TTL), and the keys of those
    /// expired at `NOW_MS`, in (slot, key) order.
    fn store(keys: &[(String, Option<u64>)]) -> (MemKv, Vec<(Bytes, u64)>) {
        let mut kv = MemKv::new();
        // The last write of each key is what the store holds.
        let mut last = std::collections::BTreeMap::new();
        for (key, deadline) in keys {
            let key = Bytes::copy_from_slice(key.as_bytes());
            let record = Record::string(Bytes::from_static(b"v"), *deadline).encode();
            let slot = key_slot(&key);
            kv.apply_mutations(&[KvMutation::Put { slot, key: key.clone(), record }]);
            last.insert((slot, key), *deadline);
        }
        let expired = last.into_iter().filter_map(|((_, key), deadline)| {
            deadline.filter(|d| *d <= NOW_MS).map(|deadline_ms| (key, deadline_ms))
        });
        (kv, expired.collect())
    }

    /// Every page of a whole walk, each checked against `bounds`.
    fn walk_all(kv: &MemKv, slots: RangeInclusive<u16>, bounds: &PageBounds) -> Vec<ExpiredPage> {
        let mut pages: Vec<ExpiredPage> = Vec::new();
        loop {
            let after = pages.last().and_then(|p| p.resume.as_ref()).map(|(s, k)| (*s, &k[..]));
            let page = expired_page(kv, slots.clone(), after, NOW_MS, bounds);
            assert!(page.rows <= bounds.rows_max.max(1));
            assert!(page.keys.len() <= bounds.keys_max.max(1));
            let bytes: usize = page.keys.iter().map(|(k, _)| k.len()).sum();
            assert!(page.keys.len() <= 1 || bytes <= bounds.key_bytes_max, "{page:?}");
            let done = page.resume.is_none();
            pages.push(page);
            if done {
                return pages;
            }
        }
    }

    #[test]
    fn a_page_holds_the_passed_deadlines_and_resumes_after_its_last_record() {
        let keys: Vec<(String, Option<u64>)> = vec![
            ("a".into(), Some(NOW_MS)),
            ("b".into(), Some(NOW_MS + 1)),
            ("c".into(), None),
            ("d".into(), Some(1)),
            ("e".into(), Some(NOW_MS - 1)),
        ];
        let (kv, expired) = store(&keys);
        assert_eq!(expired.len(), 3);
        let bounds = PageBounds { rows_max: 100, keys_max: 100, key_bytes_max: 100 };
        let page = expired_page(&kv, 0..=16383, None, NOW_MS, &bounds);
        assert_eq!((page.keys.clone(), page.rows), (expired.clone(), 5));
        assert_eq!(page.resume, None);
        assert!(!page.is_full(&bounds));
        // Two keys at most: the page stops before the third expired key, and is full.
        let two = PageBounds { keys_max: 2, ..bounds };
        let page = expired_page(&kv, 0..=16383, None, NOW_MS, &two);
        assert_eq!(page.keys, expired[..2].to_vec());
        assert!(page.is_full(&two));
        let after = page.resume.as_ref().map(|(s, k)| (*s, &k[..]));
        let rest = expired_page(&kv, 0..=16383, after, NOW_MS, &two);
        assert_eq!(rest.keys, expired[2..].to_vec());
        assert_eq!(page.rows + rest.rows, 5);
        // One record at a time: a page that stops on its rows is not full.
        let one = PageBounds { rows_max: 1, ..bounds };
        let page = expired_page(&kv, 0..=16383, None, NOW_MS, &one);
        assert_eq!(page.rows, 1);
        assert!(page.resume.is_some() && !page.is_full(&one));
        // A first key is held whatever its length; a second is not past the bytes.
        let tiny = PageBounds { key_bytes_max: 0, ..bounds };
        assert_eq!(expired_page(&kv, 0..=16383, None, NOW_MS, &tiny).keys.len(), 1);
        // The slots bound the walk.
        let slot = key_slot(b"d");
        let page = expired_page(&kv, slot..=slot, None, NOW_MS, &bounds);
        assert_eq!((page.keys, page.rows), (vec![(Bytes::from_static(b"d"), 1)], 1));
    }

    #[test]
    fn the_delete_request_is_a_batch_of_no_client_and_counts_its_deletes() {
        let keys = vec![(Bytes::from_static(b"a"), 5), (Bytes::from_static(b"b"), 6)];
        let req = delete_request(&keys, 9);
        assert_eq!((req.client_id, req.now_ms), (NO_CLIENT_ID, 9));
        let KvCommand::Batch { commands } = &req.command else { panic!("{req:?}") };
        let second = KvCommand::DeleteExpired { key: keys[1].0.clone(), deadline_ms: 6 };
        assert_eq!(commands[1], second);
        assert!(commands.iter().all(KvCommand::batchable));
        let reply = Reply::Array(vec![Reply::Int(1), Reply::Int(0), Reply::Int(1)]);
        assert_eq!(deleted(&reply), 2);
        assert_eq!(deleted(&Reply::Error(crate::kv::KvError::NotHere)), 0);
    }

    proptest! {
        /// A whole walk, page after page, looks at every record once and finds exactly the
        /// expired ones, in order, whatever the bounds.
        #[test]
        fn a_whole_walk_finds_every_expired_key_once(
            keys in proptest::collection::vec(
                ("[a-f]{0,3}", proptest::option::of(0u64..2 * NOW_MS)), 0..60),
            rows_max in 0usize..8,
            keys_max in 1usize..5,
            key_bytes_max in 0usize..8,
        ) {
            let (kv, expired) = store(&keys);
            let bounds = PageBounds { rows_max, keys_max, key_bytes_max };
            let pages = walk_all(&kv, 0..=16383, &bounds);
            let found: Vec<(Bytes, u64)> = pages.iter().flat_map(|p| p.keys.clone()).collect();
            prop_assert_eq!(found, expired);
            let rows: usize = pages.iter().map(|p| p.rows).sum();
            prop_assert_eq!(rows, kv.len());
        }
    }
}
