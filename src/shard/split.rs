//! Splits, as the replica runs them: the leader picks the slot and proposes a `Split`
//! entry; every replica applies it at the same index, keeping the lower slots and writing
//! the child group (same voters, a snapshot point at index 1, the parent's sessions, the
//! upper slots) in the same persist job as the parent's new range. No record moves: the
//! key-value table is keyed by slot, and the child starts from the records the parent
//! left. After the job is durable the node starts the child (`SplitDone`).
//!
//! Also the ownership rule every apply and read follows: a keyed command for a slot the
//! group handed away is refused (`SlotMoved`, never applied) on every replica alike; a
//! range command is cut to the group's slots.
//!
//! Must never: apply a write for a slot the group does not own, or start a child before
//! the split is durable.

use std::ops::RangeInclusive;

use actix::{fut, ActorFutureExt, AsyncContext, Context};
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::kv::command::{KvCommand, NO_CLIENT_ID};
use crate::kv::overlay::{layered_count, pending_refs, Cleared, PendingKey};
use crate::kv::range::{read_slots, write_keys, GroupRange, SlotRange, SplitOff};
use crate::kv::read::{ReadCommand, Tally};
use crate::kv::{self, KvError, KvMutation, KvRead, Overlay, Reply, Request};
use crate::raft::{GroupId, NodeId};
use crate::shard::actor::{first_state_write, ShardActor};
use crate::shard::api::{ShardError, ShardResult, SplitDone};
use crate::storage::group_snapshot::latest_kv_view;
use crate::storage::GroupWrite;

/// A child written by a split in this Ready, and what to tell the node once durable.
pub(crate) struct ChildWrite {
    pub write: GroupWrite,
    pub done: SplitDone,
}

impl ShardActor {
    /// Leader: proposes the split of this group at `at`, or at the slot that halves its
    /// keys. That slot is found off the replica's thread (`spawn_blocking`): counting keys
    /// walks the group's records, and the replica's thread may be the node's I/O thread.
    /// One count at a time. The count reads the replica's state as of this call: writes
    /// applied meanwhile may leave the slot off the middle, and a split applied meanwhile
    /// may leave it outside the range, which the proposal's apply refuses.
    pub(crate) fn propose_split(
        &mut self,
        at: Option<u16>,
        child: GroupId,
        tx: oneshot::Sender<ShardResult>,
        ctx: &mut Context<ShardActor>,
    ) {
        if let Some(at) = at {
            return self.propose_split_at(at, child, tx);
        }
        let SlotRange { first, last } = self.range.range;
        if first == last {
            return self.propose_split_at(last, child, tx);
        }
        if let Some(err) = self.refusal() {
            return drop(tx.send(Err(err)));
        }
        let group = self.cfg.group;
        if self.counting_split {
            let reason = "a split is already being prepared".to_string();
            return drop(tx.send(Err(ShardError::Busy { group, reason })));
        }
        let view = match latest_kv_view(&self.deps.db, group) {
            Ok(view) => view,
            Err(e) => {
                let reason = e.to_string();
                return drop(tx.send(Err(ShardError::Storage { group, reason })));
            }
        };
        let (pending, cleared) = self.undurable().pending_keys(first..=last);
        let count = tokio::task::spawn_blocking(move || {
            let at = halving_slot(&Cleared::new(&view, &cleared), &pending, first, last);
            view.check().map(|()| at)
        });
        self.counting_split = true;
        ctx.spawn(fut::wrap_future(count).map(move |counted, act: &mut ShardActor, ctx| {
            act.counting_split = false;
            let reason = match counted {
                Ok(Ok(at)) => {
                    act.propose_split_at(at, child, tx);
                    return act.drive_soon(ctx);
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => format!("counting keys to split: {e}"),
            };
            let _ = tx.send(Err(ShardError::Storage { group, reason }));
        }));
    }

    fn propose_split_at(&mut self, at: u16, child: GroupId, tx: oneshot::Sender<ShardResult>) {
        let replicas = self.raw.conf_state().voters.iter().copied().collect();
        let command = KvCommand::Split {
            at,
            child,
            replicas,
        };
        let req = Request {
            client_id: NO_CLIENT_ID,
            seq: 0,
            now_ms: 0,
            command,
        };
        self.propose_write(req, tx);
    }
}

/// The slot that splits the keys of `first..=last` in two halves (the middle slot when
/// they are fewer than two), found by bisection over key counts of `view` with `pending`
/// (slot, key, record) on top.
fn halving_slot<V: KvRead>(view: &V, pending: &[PendingKey], first: u16, last: u16) -> u16 {
    let count = |slots: RangeInclusive<u16>| {
        layered_count(view, pending_refs(pending), slots, Tally::Keys).keys
    };
    let total = count(first..=last);
    if total < 2 {
        return first + (last - first).div_ceil(2);
    }
    // The smallest `at` in (first, last] with at least half the keys below it.
    let (mut lo, mut hi) = (first + 1, last);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count(first..=mid - 1) * 2 >= total {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Applies one committed request of `group` under its current `range`: a split changes
/// the range and adds a child write; anything else applies only inside the range.
pub(crate) fn apply_request<V: KvRead>(
    group: GroupId,
    range: &mut GroupRange,
    state: &V,
    batch: &mut Overlay,
    req: &Request,
    children: &mut Vec<ChildWrite>,
    events: Option<&mut crate::kv::notify::KeyEvents>,
) -> ShardResult {
    if let KvCommand::Split {
        at,
        child,
        replicas,
    } = &req.command
    {
        let sessions = batch.over(state).sessions();
        return Ok(apply_split(
            group, range, *at, *child, replicas, sessions, children,
        ));
    }
    // The cluster map is the metadata group's alone: any other group refuses to touch it
    // (every replica of that group the same way: the check reads no node-local state).
    if matches!(req.command, KvCommand::Meta(_)) && group != crate::kv::meta::META_GROUP {
        let text = format!("ERR group {group} holds no cluster map");
        return Ok(crate::kv::Reply::Error(crate::kv::KvError::Meta(text)));
    }
    if let KvCommand::FlushSlots {
        slot_first,
        slot_last,
    } = req.command
    {
        // A flush names the slots its sender saw; only this group's part is flushed.
        let Some((first, last)) = range.range.clamp(slot_first, slot_last) else {
            return Ok(Reply::Ok);
        };
        let command = KvCommand::FlushSlots {
            slot_first: first,
            slot_last: last,
        };
        return Ok(kv::apply(
            state,
            batch,
            &Request {
                command,
                ..req.clone()
            },
        ));
    }
    // A retried batch that was applied answers from the session even if a split has since
    // taken some of its slots: run one by one instead, its writes would meet their own
    // earlier seqs. (A single write retried finds its session in the group that has its
    // slot now: a split child starts with the parent's sessions.)
    let several = matches!(req.command, KvCommand::Batch { .. } | KvCommand::Transaction { .. });
    if several && kv::apply::is_retry(state, batch, req) {
        return Ok(kv::apply(state, batch, req));
    }
    if let Some(slot) = range.first_foreign_slot(write_keys(&req.command)) {
        return Err(ShardError::SlotMoved {
            group,
            slot,
            moved: range.moved(slot).cloned(),
        });
    }
    Ok(kv::apply::apply_notified(state, batch, req, events))
}

fn apply_split(
    group: GroupId,
    range: &mut GroupRange,
    at: u16,
    child: GroupId,
    replicas: &[NodeId],
    sessions: Vec<(u64, Bytes)>,
    children: &mut Vec<ChildWrite>,
) -> Reply {
    let off = match range.split(group, at, child, replicas.to_vec()) {
        Ok(off) => off,
        Err(e) => return Reply::Error(KvError::Split(e.to_string())),
    };
    tracing::info!(group = %group, child = %child, parent_slots = %range.range,
        child_slots = %off.range, "split applied");
    let reply = Reply::Array(vec![
        Reply::Int(child.get() as i64),
        Reply::Int(i64::from(off.range.first)),
        Reply::Int(i64::from(off.range.last)),
    ]);
    let mutations = sessions
        .into_iter()
        .map(|(client_id, record)| KvMutation::PutSession { client_id, record })
        .collect();
    let write = GroupWrite {
        mutations,
        ..child_write(&off)
    };
    let done = SplitDone {
        parent: group,
        parent_range: range.range,
        child: off,
        campaign: false,
    };
    children.push(ChildWrite { write, done });
    reply
}

/// The first state of the group `off` describes (the caller adds the parent's sessions).
pub fn child_write(off: &SplitOff) -> GroupWrite {
    first_state_write(off.group, &off.replicas, off.range)
}

/// Refuses a read that names a slot the group does not own (no copy of the command: this
/// runs for every read as it arrives).
pub(crate) fn check_read_slots(
    group: GroupId,
    range: &GroupRange,
    command: &ReadCommand,
) -> Result<(), ShardError> {
    match read_slots(command).into_iter().find(|&s| !range.range.contains(s)) {
        Some(slot) => Err(ShardError::SlotMoved { group, slot, moved: range.moved(slot).cloned() }),
        None => Ok(()),
    }
}

/// A read as this group may serve it: every slot it names must be the group's, and a range
/// read is cut to the group's slots. A read for slots the group handed away is refused
/// with where they went (the request path retries there).
pub(crate) fn prepare_read(
    group: GroupId,
    range: &GroupRange,
    command: &ReadCommand,
) -> Result<ReadCommand, ShardError> {
    let moved = |slot: u16| ShardError::SlotMoved {
        group,
        slot,
        moved: range.moved(slot).cloned(),
    };
    if let Some(slot) = read_slots(command)
        .into_iter()
        .find(|&s| !range.range.contains(s))
    {
        return Err(moved(slot));
    }
    let r = range.range;
    let mut c = command.clone();
    match &mut c {
        ReadCommand::Keys {
            slot_first,
            slot_last,
            ..
        }
        | ReadCommand::DbSize {
            slot_first,
            slot_last,
        }
        | ReadCommand::Keyspace {
            slot_first,
            slot_last,
        }
        | ReadCommand::RandomKey {
            slot_first,
            slot_last,
            ..
        } => {
            let (a, b) = r
                .clamp(*slot_first, *slot_last)
                .ok_or_else(|| moved(*slot_first))?;
            (*slot_first, *slot_last) = (a, b);
        }
        ReadCommand::Scan(step) => {
            // A cursor into slots handed away continues in the group that has them.
            if !r.contains(step.slot) {
                return Err(moved(step.slot));
            }
            step.slot_last = step.slot_last.min(r.last);
        }
        _ => {}
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;

    fn put(slot: u16, key: &str) -> KvMutation {
        let key = Bytes::from(key.to_string());
        KvMutation::Put { slot, key, record: Bytes::from_static(b"v") }
    }

    #[test]
    fn the_halving_slot_counts_pending_keys_over_the_committed_ones() {
        let mut mem = MemKv::new();
        // Committed: four keys in slot 10, one in slot 20.
        let committed = [put(10, "a"), put(10, "b"), put(10, "c"), put(10, "d"), put(20, "e")];
        mem.apply_mutations(&committed);
        assert_eq!(halving_slot(&mem, &[], 0, 99), 11, "four of five keys lie below 11");
        // Pending: three of slot 10's keys deleted, three added in slot 30 and one in 40.
        let deleted = [(10, "a", false), (10, "b", false), (10, "c", false)];
        let pending: Vec<PendingKey> = deleted
            .into_iter()
            .chain([(30, "x", true), (30, "y", true), (30, "z", true), (40, "w", true)])
            .map(|(slot, key, present)| {
                (slot, Bytes::from(key), present.then(|| Bytes::from_static(b"v")))
            })
            .collect();
        // Now: slot 10 holds 1, slot 20 holds 1, slot 30 holds 3, slot 40 holds 1 (6 keys).
        assert_eq!(halving_slot(&mem, &pending, 0, 99), 31, "2 of 6 keys lie below 30, 5 below 31");
        assert_eq!(halving_slot(&mem, &[], 50, 99), 75, "no keys: the middle slot");
        assert_eq!(halving_slot(&mem, &[], 20, 21), 21);
    }

    /// A batch applied, then retried after a split took one of its slots, gets its cached
    /// answers (run one by one, its writes would meet their own earlier seqs); a new batch
    /// on those slots is refused as moved.
    #[test]
    fn a_retried_batch_answers_from_its_session_after_a_split() {
        let mut mem = MemKv::new();
        let (moving, staying) = (Bytes::from_static(b"{a}"), Bytes::from_static(b"{b}"));
        assert!(crate::kv::key_slot(&moving) > crate::kv::key_slot(&staying));
        let set = |key: &Bytes| KvCommand::plain_set(key.clone(), Bytes::from_static(b"1"));
        let batch = |seq| Request {
            client_id: 3,
            seq,
            now_ms: 1,
            command: KvCommand::Batch { commands: vec![set(&moving), set(&staying)] },
        };
        let mut run = |range: &mut GroupRange, req: &Request| {
            let mut overlay = Overlay::new();
            let answer =
                apply_request(GroupId(1), range, &mem, &mut overlay, req, &mut Vec::new(), None);
            mem.apply_mutations(&overlay.drain());
            answer
        };
        let mut whole = GroupRange::new(SlotRange::new(0, 16383));
        let applied = run(&mut whole, &batch(5)).expect("applied");
        assert_eq!(applied, Reply::Array(vec![Reply::Ok, Reply::Ok]));
        // The split keeps the slots below `{a}`'s: `{b}` stays, `{a}` moved.
        let mut kept = GroupRange::new(SlotRange::new(0, crate::kv::key_slot(&moving) - 1));
        assert_eq!(run(&mut kept, &batch(5)), Ok(applied));
        assert!(matches!(run(&mut kept, &batch(6)), Err(ShardError::SlotMoved { .. })));
    }
}
