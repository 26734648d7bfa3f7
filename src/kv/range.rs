//! Which hash slots a group owns, and what it handed to the groups split off it. The
//! record is part of a group's replicated state: a split is a log entry, so every replica
//! changes its range at the same index, and a request for a slot the group handed away is
//! refused the same way on every replica (with where the slot went). Pure data; the shard
//! persists it beside the applied index.

use serde::{Deserialize, Serialize};

use crate::kv::command::KvCommand;
use crate::kv::read::ReadCommand;
use crate::kv::slot::{key_slot, SLOT_COUNT};
use crate::raft::types::{GroupId, NodeId};

/// Splits one group may record; a further split of it is refused (its child can split).
pub const SPLITS_PER_GROUP_MAX: usize = 1024;

/// An inclusive range of hash slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
}

impl SlotRange {
    pub fn new(first: u16, last: u16) -> SlotRange {
        assert!(
            first <= last && last < SLOT_COUNT,
            "slot range {first}-{last}"
        );
        SlotRange { first, last }
    }

    /// The range, if `group` may own it: a range of hash slots for a data group, only
    /// `META_RANGE` for the metadata group.
    pub fn of_group(group: GroupId, first: u16, last: u16) -> Option<SlotRange> {
        let range = SlotRange { first, last };
        let valid = if group == crate::kv::meta::META_GROUP {
            range == crate::kv::meta::META_RANGE
        } else {
            first <= last && last < SLOT_COUNT
        };
        valid.then_some(range)
    }

    pub fn contains(&self, slot: u16) -> bool {
        (self.first..=self.last).contains(&slot)
    }

    /// The part of `first..=last` inside this range, if any.
    pub fn clamp(&self, first: u16, last: u16) -> Option<(u16, u16)> {
        let (a, b) = (first.max(self.first), last.min(self.last));
        (a <= b).then_some((a, b))
    }
}

impl std::fmt::Display for SlotRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A range a split handed to a new group, and the replicas it started on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitOff {
    pub group: GroupId,
    pub range: SlotRange,
    pub replicas: Vec<NodeId>,
}

/// A group's slots and its split history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRange {
    pub range: SlotRange,
    /// Oldest first. A slot outside `range` was handed to the group of the entry that
    /// contains it (which may have split it further).
    pub split_off: Vec<SplitOff>,
}

/// Why a split cannot apply. Every replica reaches the same verdict at the same index.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("ERR split slot {at} must be in {first}-{last} and not its first slot")]
    BadSlot { at: u16, first: u16, last: u16 },
    #[error("ERR group {0} cannot split into itself or a group it already made")]
    BadChild(GroupId),
    #[error("ERR group has split {SPLITS_PER_GROUP_MAX} times; split its children instead")]
    TooMany,
}

impl GroupRange {
    pub fn new(range: SlotRange) -> GroupRange {
        GroupRange {
            range,
            split_off: Vec::new(),
        }
    }

    /// Hands `at..=last` to `child` on `replicas`; this group keeps `first..at`.
    pub fn split(
        &mut self,
        me: GroupId,
        at: u16,
        child: GroupId,
        replicas: Vec<NodeId>,
    ) -> Result<SplitOff, SplitError> {
        let SlotRange { first, last } = self.range;
        if at <= first || at > last {
            return Err(SplitError::BadSlot { at, first, last });
        }
        if child == me || child == GroupId(0) || self.split_off.iter().any(|s| s.group == child) {
            return Err(SplitError::BadChild(child));
        }
        if self.split_off.len() >= SPLITS_PER_GROUP_MAX {
            return Err(SplitError::TooMany);
        }
        let off = SplitOff {
            group: child,
            range: SlotRange::new(at, last),
            replicas,
        };
        self.range = SlotRange::new(first, at - 1);
        self.split_off.push(off.clone());
        Ok(off)
    }

    /// Where `slot` went, if this group handed it away (`None`: still here, or never ours).
    pub fn moved(&self, slot: u16) -> Option<&SplitOff> {
        if self.range.contains(slot) {
            return None;
        }
        self.split_off.iter().rev().find(|s| s.range.contains(slot))
    }

    /// The first slot a keyed command touches outside this group's range, if any.
    pub fn first_foreign_slot<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Option<u16> {
        keys.into_iter()
            .map(key_slot)
            .find(|&s| !self.range.contains(s))
    }
}

/// The keys a write names (empty for the range commands and the split itself).
pub fn write_keys(command: &KvCommand) -> Vec<&[u8]> {
    use KvCommand as C;
    match command {
        C::Set { key, .. }
        | C::GetSet { key, .. }
        | C::GetDel { key }
        | C::GetEx { key, .. }
        | C::SetRange { key, .. }
        | C::Append { key, .. }
        | C::IncrBy { key, .. }
        | C::IncrByFloat { key, .. }
        | C::Expire { key, .. }
        | C::Persist { key }
        | C::DeleteExpired { key, .. }
        | C::Watched { key, .. } => vec![&key[..]],
        C::Del { keys } => keys.iter().map(|k| &k[..]).collect(),
        C::Rename { key, new_key } | C::RenameNx { key, new_key } => vec![&key[..], &new_key[..]],
        C::SetBit { key, .. } | C::BitField { key, .. } | C::Restore { key, .. } => {
            vec![&key[..]]
        }
        // The sources too: every key a write reads must be the group's.
        C::BitOp { dest, keys, .. } => {
            std::iter::once(&dest[..]).chain(keys.iter().map(|k| &k[..])).collect()
        }
        C::Copy { source, dest, .. } => vec![&source[..], &dest[..]],
        C::MSet { pairs } | C::MSetNx { pairs } => pairs.iter().map(|(k, _)| &k[..]).collect(),
        C::FlushSlots { .. } | C::Split { .. } | C::Meta(_) => Vec::new(),
        C::Batch { commands } | C::Transaction { commands } => {
            commands.iter().flat_map(write_keys).collect()
        }
        C::Read(read) => read.keys().unwrap_or_default().iter().map(|k| &k[..]).collect(),
    }
}

/// The keys (or single slots) a read names; range reads name none.
pub fn read_slots(command: &ReadCommand) -> Vec<u16> {
    use ReadCommand as R;
    match command {
        R::CountKeysInSlot { slot } | R::GetKeysInSlot { slot, .. } => vec![*slot],
        // Only the metadata group owns this slot: any other group refuses the read.
        R::ClusterMap { .. } => vec![crate::kv::meta::META_SLOT],
        R::Keys { .. }
        | R::Scan(_)
        | R::DbSize { .. }
        | R::Keyspace { .. }
        | R::RandomKey { .. } => Vec::new(),
        R::Batch { commands } => commands.iter().flat_map(read_slots).collect(),
        // A read of named keys: the slot of each.
        key_read => key_read.keys().unwrap_or_default().iter().map(|k| key_slot(k)).collect(),
    }
}

/// Whether `command` reads named keys only (`ReadCommand::keys`, or a batch of such reads),
/// at most `keys_max` of them, and every one of them is in `range`. Allocates nothing, and
/// refuses a command with too many keys before it hashes any.
pub fn key_reads_within(command: &ReadCommand, range: SlotRange, keys_max: usize) -> bool {
    // How many of `keys` there are, if at most `left` and all in `range`.
    let within = |keys: &[bytes::Bytes], left: usize| {
        (keys.len() <= left && keys.iter().all(|k| range.contains(key_slot(k))))
            .then_some(keys.len())
    };
    match command {
        // Each part counts against what the parts before it left (`n <= keys_max`); a batch
        // in a batch names no keys of its own (`keys` is `None`).
        ReadCommand::Batch { commands } => commands
            .iter()
            .try_fold(0, |n, c| Some(n + within(c.keys()?, keys_max - n)?))
            .is_some(),
        command => command.keys().and_then(|keys| within(keys, keys_max)).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_reads_within_asks_every_key_of_a_key_read_and_refuses_the_rest() {
        let key = |k: &str| bytes::Bytes::copy_from_slice(k.as_bytes());
        let slot = key_slot(b"a");
        let only = SlotRange::new(slot, slot);
        let all = SlotRange::new(0, SLOT_COUNT - 1);
        let get = |k: &str| ReadCommand::Get { key: key(k) };
        let mget = |keys: &[&str]| {
            ReadCommand::MGet { keys: keys.iter().map(|k| key(k)).collect() }
        };
        assert!(key_reads_within(&get("a"), only, 1));
        // `{a}b` hashes as `a` (a hash tag); `b` does not.
        assert!(key_reads_within(&mget(&["a", "{a}b"]), only, 2));
        assert!(!key_reads_within(&mget(&["a", "{a}b"]), only, 1), "more keys than allowed");
        assert!(!key_reads_within(&mget(&["a", "b"]), only, 9));
        assert!(key_reads_within(&mget(&[]), only, 0), "no key to refuse");
        let batch = |commands| ReadCommand::Batch { commands };
        assert!(key_reads_within(&batch(vec![get("a"), mget(&["{a}x", "a"])]), only, 3));
        assert!(!key_reads_within(&batch(vec![get("a"), mget(&["{a}x", "a"])]), only, 2));
        assert!(!key_reads_within(&batch(vec![get("a"), get("b")]), only, 9));
        let scan = ReadCommand::DbSize { slot_first: 0, slot_last: SLOT_COUNT - 1 };
        assert!(!key_reads_within(&scan, all, 9), "not a key read");
        assert!(!key_reads_within(&batch(vec![get("a"), scan]), all, 9), "not all key reads");
        let nested = batch(vec![get("a"), batch(vec![get("a")])]);
        assert!(!key_reads_within(&nested, all, 9), "a batch in a batch");
        assert!(!key_reads_within(&get("a"), all, 0), "no key allowed");
    }

    #[test]
    fn a_split_keeps_the_lower_half_and_remembers_where_the_upper_went() {
        let mut r = GroupRange::new(SlotRange::new(0, 2047));
        let off = r
            .split(GroupId(1), 1024, GroupId(9), vec![NodeId(1), NodeId(2)])
            .unwrap();
        assert_eq!(r.range, SlotRange::new(0, 1023));
        assert_eq!(off.range, SlotRange::new(1024, 2047));
        assert_eq!(r.moved(1500).map(|s| s.group), Some(GroupId(9)));
        assert_eq!(r.moved(10), None);
        assert_eq!(r.moved(3000), None);
        let again = r.split(GroupId(1), 512, GroupId(10), vec![]).unwrap();
        assert_eq!(again.range, SlotRange::new(512, 1023));
        assert_eq!(r.moved(600).map(|s| s.group), Some(GroupId(10)));
    }

    #[test]
    fn a_split_at_a_bad_slot_or_into_a_known_group_is_refused() {
        let mut r = GroupRange::new(SlotRange::new(100, 200));
        assert!(matches!(
            r.split(GroupId(1), 100, GroupId(2), vec![]),
            Err(SplitError::BadSlot { .. })
        ));
        assert!(matches!(
            r.split(GroupId(1), 201, GroupId(2), vec![]),
            Err(SplitError::BadSlot { .. })
        ));
        assert_eq!(
            r.split(GroupId(1), 150, GroupId(1), vec![]),
            Err(SplitError::BadChild(GroupId(1)))
        );
        r.split(GroupId(1), 150, GroupId(2), vec![]).unwrap();
        assert_eq!(
            r.split(GroupId(1), 120, GroupId(2), vec![]),
            Err(SplitError::BadChild(GroupId(2)))
        );
        assert_eq!(r.range, SlotRange::new(100, 149));
    }
}
