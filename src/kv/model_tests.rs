//! Property test: random command sequences applied through `apply` + `MemKv` (in batches,
//! with retries) answer and end up exactly as an independent, obvious model of Redis
//! strings: a map from key to (value, deadline). The bit commands' byte work is spelled out
//! again here, not taken from `bits`.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::bits::BitOpKind;
use super::command::{ExpireCondition, KvCommand, Request, SetCondition};
use super::expiry::{delete_request, expired_page, ExpiredPage, PageBounds};
use super::read::{self, TtlForm};
use super::{apply, key_slot, KvError, KvRead, MemKv, Overlay, Reply};

const KEYS: [&str; 4] = ["a", "b", "{t}c", "{t}d"];
/// Where a flush's slot range may begin or end: the edges of the keyspace and around the
/// slots of `KEYS` (3300 "b", 15495 "a", 15891 "{t}").
const FLUSH_EDGES: [u16; 7] = [0, 3300, 3301, 15495, 15496, 15891, 16383];
const VALUES: [&str; 8] = ["", "0", "1", "-3", "10", "x", "9223372036854775807", "abc"];
const START_MS: u64 = 1_000;
/// The keys of `KEYS` that share a slot, for BITOP.
const SLOT_KEYS: [usize; 2] = [2, 3];
const BIT_OPS: [BitOpKind; 4] = [BitOpKind::And, BitOpKind::Or, BitOpKind::Xor, BitOpKind::Not];

#[derive(Clone, Debug)]
enum Op {
    Set { key: usize, value: usize, ttl_ms: Option<u64>, keep_ttl: bool, cond: u8, get: bool },
    Append { key: usize, value: usize },
    IncrBy { key: usize, delta: i64 },
    Del { keys: Vec<usize> },
    GetDel { key: usize },
    Expire { key: usize, offset_ms: u64, cond: u8 },
    Persist { key: usize },
    SetRange { key: usize, offset: u64, value: usize },
    SetBit { key: usize, offset: u64, bit: bool },
    /// BITOP over keys of one slot (`{t}c`, `{t}d`): `dest` and `keys` index `SLOT_KEYS`.
    BitOp { op: u8, dest: usize, keys: Vec<usize> },
    /// COPY between any two keys: across slots, or onto itself, an error.
    Copy { source: usize, dest: usize, replace: bool },
    Flush { first: u16, last: u16 },
    Advance { ms: u64 },
    Retry,
    Drain,
    /// The active expiry's walk: one page of the stored (drained) records, held for `Reap`.
    Sweep { rows: usize },
    /// The held page's deletions, applied at the current clock.
    Reap,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let value = 0..VALUES.len();
    prop_oneof![
        (key.clone(), value.clone(), proptest::option::of(0u64..8), any::<bool>(), 0u8..3)
            .prop_flat_map(|(key, value, ttl_ms, keep, cond)| {
                any::<bool>().prop_map(move |get| Op::Set {
                    key,
                    value,
                    ttl_ms,
                    keep_ttl: keep && ttl_ms.is_none(),
                    cond,
                    get,
                })
            }),
        (key.clone(), value.clone()).prop_map(|(key, value)| Op::Append { key, value }),
        (key.clone(), prop_oneof![-5i64..5, Just(i64::MAX), Just(i64::MIN)])
            .prop_map(|(key, delta)| Op::IncrBy { key, delta }),
        proptest::collection::vec(key.clone(), 1..4).prop_map(|keys| Op::Del { keys }),
        key.clone().prop_map(|key| Op::GetDel { key }),
        (key.clone(), 0u64..12, 0u8..6).prop_map(|(key, offset_ms, cond)| Op::Expire {
            key,
            offset_ms,
            cond
        }),
        key.clone().prop_map(|key| Op::Persist { key }),
        (key.clone(), 0u64..6, value).prop_map(|(key, offset, value)| Op::SetRange {
            key,
            offset,
            value
        }),
        (key.clone(), 0u64..24, any::<bool>())
            .prop_map(|(key, offset, bit)| Op::SetBit { key, offset, bit }),
        (0u8..4, 0..SLOT_KEYS.len(), proptest::collection::vec(0..SLOT_KEYS.len(), 1..4))
            .prop_map(|(op, dest, keys)| Op::BitOp { op, dest, keys }),
        (key.clone(), key, any::<bool>())
            .prop_map(|(source, dest, replace)| Op::Copy { source, dest, replace }),
        (0..FLUSH_EDGES.len(), 0..FLUSH_EDGES.len()).prop_map(|(i, j)| {
            let (first, last) = (FLUSH_EDGES[i.min(j)], FLUSH_EDGES[i.max(j)]);
            Op::Flush { first, last }
        }),
        (0u64..6).prop_map(|ms| Op::Advance { ms }),
        Just(Op::Retry),
        Just(Op::Drain),
        (1usize..4).prop_map(|rows| Op::Sweep { rows }),
        Just(Op::Reap),
    ]
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn expire_condition(code: u8) -> ExpireCondition {
    [
        ExpireCondition::Always,
        ExpireCondition::Nx,
        ExpireCondition::Xx,
        ExpireCondition::Gt,
        ExpireCondition::Lt,
        ExpireCondition::XxLt,
    ][code as usize]
}

fn set_condition(code: u8) -> SetCondition {
    [SetCondition::Always, SetCondition::IfAbsent, SetCondition::IfPresent][code as usize]
}

fn to_command(op: &Op, now_ms: u64) -> Option<KvCommand> {
    let key = |i: &usize| b(KEYS[*i]);
    Some(match op {
        Op::Set { key: k, value, ttl_ms, keep_ttl, cond, get } => KvCommand::Set {
            key: key(k),
            value: b(VALUES[*value]),
            expire_at_ms: ttl_ms.map(|ttl| now_ms + ttl),
            keep_ttl: *keep_ttl,
            condition: set_condition(*cond),
            get: *get,
        },
        Op::Append { key: k, value } => KvCommand::Append { key: key(k), value: b(VALUES[*value]) },
        Op::IncrBy { key: k, delta } => KvCommand::IncrBy { key: key(k), delta: *delta },
        Op::Del { keys } => KvCommand::Del { keys: keys.iter().map(key).collect() },
        Op::GetDel { key: k } => KvCommand::GetDel { key: key(k) },
        Op::Expire { key: k, offset_ms, cond } => KvCommand::Expire {
            key: key(k),
            deadline_ms: now_ms + offset_ms - 4,
            condition: expire_condition(*cond),
        },
        Op::Persist { key: k } => KvCommand::Persist { key: key(k) },
        Op::SetRange { key: k, offset, value } => {
            KvCommand::SetRange { key: key(k), offset: *offset, value: b(VALUES[*value]) }
        }
        Op::SetBit { key: k, offset, bit } => {
            KvCommand::SetBit { key: key(k), offset: *offset, bit: *bit }
        }
        Op::BitOp { op, dest, keys } => KvCommand::BitOp {
            op: BIT_OPS[*op as usize],
            dest: key(&SLOT_KEYS[*dest]),
            keys: keys.iter().map(|k| key(&SLOT_KEYS[*k])).collect(),
        },
        Op::Copy { source, dest, replace } => {
            KvCommand::Copy { source: key(source), dest: key(dest), replace: *replace }
        }
        Op::Flush { first, last } => KvCommand::FlushSlots { slot_first: *first, slot_last: *last },
        Op::Advance { .. } | Op::Retry | Op::Drain | Op::Sweep { .. } | Op::Reap => return None,
    })
}

/// The obvious model: key → (value, deadline); a deadline ≤ now hides the key.
#[derive(Default)]
struct Model {
    map: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>,
}

impl Model {
    fn live(&self, key: &str, now_ms: u64) -> Option<(Vec<u8>, Option<u64>)> {
        let (value, deadline) = self.map.get(key.as_bytes())?;
        match deadline {
            Some(deadline) if *deadline <= now_ms => None,
            _ => Some((value.clone(), *deadline)),
        }
    }

    fn put(&mut self, key: &str, value: Vec<u8>, deadline: Option<u64>, now_ms: u64) {
        match deadline {
            Some(deadline) if deadline <= now_ms => self.map.remove(key.as_bytes()),
            _ => self.map.insert(key.as_bytes().to_vec(), (value, deadline)),
        };
    }

    fn run(&mut self, op: &Op, now_ms: u64) -> Reply {
        match op {
            Op::Set { key, value, ttl_ms, keep_ttl, cond, get } => {
                let key = KEYS[*key];
                let old = self.live(key, now_ms);
                let answer = match (&old, get) {
                    (Some((value, _)), true) => Reply::Bulk(Bytes::from(value.clone())),
                    (None, true) => Reply::Nil,
                    (_, false) => Reply::Ok,
                };
                let blocked = (*cond == 1 && old.is_some()) || (*cond == 2 && old.is_none());
                if blocked {
                    return if *get { answer } else { Reply::Nil };
                }
                let deadline = match keep_ttl {
                    true => old.and_then(|(_, deadline)| deadline),
                    false => ttl_ms.map(|ttl| now_ms + ttl),
                };
                self.put(key, VALUES[*value].as_bytes().to_vec(), deadline, now_ms);
                answer
            }
            Op::Append { key, value } => {
                let (mut old, deadline) = self.live(KEYS[*key], now_ms).unwrap_or_default();
                old.extend_from_slice(VALUES[*value].as_bytes());
                let len = old.len() as i64;
                self.put(KEYS[*key], old, deadline, now_ms);
                Reply::Int(len)
            }
            Op::IncrBy { key, delta } => self.incrby(KEYS[*key], *delta, now_ms),
            Op::Del { keys } => {
                let mut removed = 0;
                for key in keys {
                    if self.live(KEYS[*key], now_ms).is_some() {
                        self.map.remove(KEYS[*key].as_bytes());
                        removed += 1;
                    }
                }
                Reply::Int(removed)
            }
            Op::GetDel { key } => match self.live(KEYS[*key], now_ms) {
                Some((value, _)) => {
                    self.map.remove(KEYS[*key].as_bytes());
                    Reply::Bulk(Bytes::from(value))
                }
                None => Reply::Nil,
            },
            Op::Expire { key, offset_ms, cond } => {
                self.expire(KEYS[*key], now_ms + offset_ms - 4, *cond, now_ms)
            }
            Op::Persist { key } => match self.live(KEYS[*key], now_ms) {
                Some((value, Some(_))) => {
                    self.put(KEYS[*key], value, None, now_ms);
                    Reply::Int(1)
                }
                _ => Reply::Int(0),
            },
            Op::SetRange { key, offset, value } => {
                self.setrange(KEYS[*key], *offset as usize, VALUES[*value], now_ms)
            }
            Op::SetBit { key, offset, bit } => {
                let (mut bytes, deadline) = self.live(KEYS[*key], now_ms).unwrap_or_default();
                let byte = (*offset / 8) as usize;
                if bytes.len() <= byte {
                    bytes.resize(byte + 1, 0);
                }
                let mask = 0x80u8 >> (offset % 8);
                let old = bytes[byte] & mask != 0;
                bytes[byte] = if *bit { bytes[byte] | mask } else { bytes[byte] & !mask };
                self.put(KEYS[*key], bytes, deadline, now_ms);
                Reply::Int(old as i64)
            }
            Op::BitOp { op, dest, keys } => {
                if *op == 3 && keys.len() != 1 {
                    return Reply::Error(KvError::Syntax);
                }
                let sources: Vec<Vec<u8>> = keys
                    .iter()
                    .map(|k| self.live(KEYS[SLOT_KEYS[*k]], now_ms).unwrap_or_default().0)
                    .collect();
                let len = sources.iter().map(Vec::len).max().unwrap_or(0);
                let mut result = Vec::new();
                for at in 0..len {
                    let mut bytes = sources.iter().map(|s| s.get(at).copied().unwrap_or(0));
                    let first = bytes.next().unwrap_or(0);
                    result.push(match op {
                        0 => bytes.fold(first, |a, b| a & b),
                        1 => bytes.fold(first, |a, b| a | b),
                        2 => bytes.fold(first, |a, b| a ^ b),
                        _ => !first,
                    });
                }
                let dest = KEYS[SLOT_KEYS[*dest]];
                match result.is_empty() {
                    true => self.map.remove(dest.as_bytes()),
                    false => self.map.insert(dest.as_bytes().to_vec(), (result, None)),
                };
                Reply::Int(len as i64)
            }
            Op::Copy { source, dest, replace } => {
                let (source, dest) = (KEYS[*source], KEYS[*dest]);
                if key_slot(source.as_bytes()) != key_slot(dest.as_bytes()) {
                    return Reply::Error(KvError::CrossSlot);
                }
                if source == dest {
                    return Reply::Error(KvError::SameObject);
                }
                let Some((value, deadline)) = self.live(source, now_ms) else {
                    return Reply::Int(0);
                };
                if !replace && self.live(dest, now_ms).is_some() {
                    return Reply::Int(0);
                }
                self.put(dest, value, deadline, now_ms);
                Reply::Int(1)
            }
            Op::Flush { first, last } => {
                self.map.retain(|key, _| !(*first..=*last).contains(&key_slot(key)));
                Reply::Ok
            }
            Op::Advance { .. } | Op::Retry | Op::Drain | Op::Sweep { .. } | Op::Reap => Reply::Nil,
        }
    }

    fn incrby(&mut self, key: &str, delta: i64, now_ms: u64) -> Reply {
        let (old, deadline) = self.live(key, now_ms).unwrap_or((b"0".to_vec(), None));
        let text = String::from_utf8(old).unwrap_or_default();
        // Canonical decimal only: the text must be exactly how the number prints.
        let current = match text.parse::<i64>() {
            Ok(n) if n.to_string() == text => n,
            _ => return Reply::Error(KvError::NotInteger),
        };
        let Some(new) = current.checked_add(delta) else {
            return Reply::Error(KvError::Overflow);
        };
        self.put(key, new.to_string().into_bytes(), deadline, now_ms);
        Reply::Int(new)
    }

    fn expire(&mut self, key: &str, deadline_ms: u64, cond: u8, now_ms: u64) -> Reply {
        let Some((value, current)) = self.live(key, now_ms) else {
            return Reply::Int(0);
        };
        let allowed = match (cond, current) {
            (0, _) => true,
            (1, current) => current.is_none(),
            (2, current) => current.is_some(),
            (3, Some(current)) => deadline_ms > current,
            (4, Some(current)) | (5, Some(current)) => deadline_ms < current,
            (4, None) => true,
            _ => false,
        };
        if allowed {
            self.put(key, value, Some(deadline_ms), now_ms);
        }
        Reply::Int(allowed as i64)
    }

    fn setrange(&mut self, key: &str, offset: usize, value: &str, now_ms: u64) -> Reply {
        let old = self.live(key, now_ms);
        if value.is_empty() {
            return Reply::Int(old.map_or(0, |(v, _)| v.len() as i64));
        }
        let (mut bytes, deadline) = old.unwrap_or_default();
        if bytes.len() < offset + value.len() {
            bytes.resize(offset + value.len(), 0);
        }
        bytes[offset..offset + value.len()].copy_from_slice(value.as_bytes());
        let len = bytes.len() as i64;
        self.put(key, bytes, deadline, now_ms);
        Reply::Int(len)
    }
}

/// `kv` answers GET and PTTL of every key as the model does; its keys (`scan`, which lists
/// expired keys until they are deleted) hold every live key of the model and no key the
/// model removed, and `count_keys` counts them.
fn assert_same_state(kv: &impl KvRead, model: &Model, now_ms: u64) -> Result<(), TestCaseError> {
    let listed: Vec<Vec<u8>> =
        kv.scan(0..=16383, None, usize::MAX).into_iter().map(|(_, k)| k.to_vec()).collect();
    for key in &listed {
        prop_assert!(model.map.contains_key(key), "{:?} listed, not in the model", key);
    }
    let counted = kv.count_keys(0..=16383, super::read::Tally::Keys).keys;
    prop_assert_eq!(counted, listed.len() as u64);
    for key in KEYS {
        let live = model.live(key, now_ms).is_some();
        prop_assert!(!live || listed.contains(&key.as_bytes().to_vec()), "{} not listed", key);
    }
    for key in KEYS {
        let expected = model.live(key, now_ms);
        let value =
            expected.as_ref().map_or(Reply::Nil, |(v, _)| Reply::Bulk(Bytes::from(v.clone())));
        prop_assert_eq!(read::get(kv, now_ms, key.as_bytes()), value, "GET {}", key);
        let pttl = match expected {
            None => -2,
            Some((_, None)) => -1,
            Some((_, Some(deadline))) => (deadline - now_ms) as i64,
        };
        let got = read::ttl(kv, now_ms, key.as_bytes(), TtlForm::Millis);
        prop_assert_eq!(got, Reply::Int(pttl), "PTTL {}", key);
    }
    Ok(())
}

/// Deletes what `page`, walked at `walked_ms`, found expired, as its leader would propose
/// it: the deletes of keys written again since change nothing, and none changes an answer.
fn reap(
    kv: &MemKv,
    overlay: &mut Overlay,
    page: &ExpiredPage,
    walked_ms: u64,
) -> Result<(), TestCaseError> {
    if page.keys.is_empty() {
        return Ok(());
    }
    let reply = apply(kv, overlay, &delete_request(&page.keys, walked_ms));
    prop_assert!(matches!(&reply, Reply::Array(r) if r.len() == page.keys.len()), "{:?}", reply);
    Ok(())
}

fn run_sequence(ops: &[Op]) -> Result<(), TestCaseError> {
    let (mut kv, mut overlay, mut model) = (MemKv::new(), Overlay::new(), Model::default());
    let mut now_ms = START_MS;
    let mut last: Option<(Request, Reply)> = None;
    // The active expiry's walk: where its next page starts, and the page it holds.
    let mut cursor: Option<(u16, Bytes)> = None;
    let mut held: Option<(ExpiredPage, u64)> = None;
    for op in ops {
        match op {
            Op::Advance { ms } => {
                kv.apply_mutations(&overlay.drain());
                now_ms += ms;
            }
            Op::Drain => kv.apply_mutations(&overlay.drain()),
            Op::Sweep { rows } => {
                let bounds = PageBounds { rows_max: *rows, keys_max: 2, key_bytes_max: 64 };
                let after = cursor.as_ref().map(|(slot, key)| (*slot, &key[..]));
                let page = expired_page(&kv, 0..=16383, after, now_ms, &bounds);
                cursor = page.resume.clone();
                held = Some((page, now_ms));
            }
            Op::Reap => {
                if let Some((page, walked_ms)) = held.take() {
                    reap(&kv, &mut overlay, &page, walked_ms)?;
                }
            }
            Op::Retry => {
                if let Some((req, reply)) = &last {
                    prop_assert_eq!(&apply(&kv, &mut overlay, req), reply, "retry of {:?}", req);
                }
            }
            _ => {
                let Some(command) = to_command(op, now_ms) else { continue };
                let seq = last.as_ref().map_or(1, |(req, _)| req.seq + 1);
                let req = Request { client_id: 1, seq, now_ms, command };
                let reply = apply(&kv, &mut overlay, &req);
                prop_assert_eq!(&reply, &model.run(op, now_ms), "{:?} at {}", op, now_ms);
                last = Some((req, reply));
            }
        }
        assert_same_state(&overlay.over(&kv), &model, now_ms)?;
        if overlay.is_empty() {
            assert_same_state(&kv, &model, now_ms)?;
        }
    }
    kv.apply_mutations(&overlay.drain());
    assert_same_state(&kv, &model, now_ms)?;
    // A whole walk from the start deletes every expired key, and only those.
    let everything =
        PageBounds { rows_max: usize::MAX, keys_max: usize::MAX, key_bytes_max: usize::MAX };
    let page = expired_page(&kv, 0..=16383, None, now_ms, &everything);
    reap(&kv, &mut overlay, &page, now_ms)?;
    kv.apply_mutations(&overlay.drain());
    assert_same_state(&kv, &model, now_ms)?;
    let stored = kv.count_keys(0..=16383, super::read::Tally::Keys).keys;
    let live = KEYS.iter().filter(|key| model.live(key, now_ms).is_some()).count();
    prop_assert_eq!(stored, live as u64, "expired keys left after a whole walk");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn apply_agrees_with_a_simple_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_sequence(&ops)?;
    }
}
