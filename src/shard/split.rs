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

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::kv::command::{KvCommand, NO_CLIENT_ID};
use crate::kv::range::{read_slots, write_keys, GroupRange, SlotRange, SplitOff};
use crate::kv::read::ReadCommand;
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
    /// Leader: proposes the split of this group at `at` (or at the slot that halves its
    /// keys) into `child`.
    pub(crate) fn propose_split(
        &mut self,
        at: Option<u16>,
        child: GroupId,
        tx: oneshot::Sender<ShardResult>,
    ) {
        let at = match at {
            Some(at) => at,
            None => match self.halving_slot() {
                Ok(at) => at,
                Err(reason) => {
                    return drop(tx.send(Err(ShardError::Storage {
                        group: self.cfg.group,
                        reason,
                    })))
                }
            },
        };
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

    /// The slot that splits the group's keys in two halves (the middle slot when it holds
    /// none), found by bisection over key counts of the current state.
    fn halving_slot(&self) -> Result<u16, String> {
        let SlotRange { first, last } = self.range.range;
        if first == last {
            return Ok(last);
        }
        let view = latest_kv_view(&self.deps.db, self.cfg.group).map_err(|e| e.to_string())?;
        let state = self.undurable.over(&view);
        let total = state.count_keys(first..=last);
        if total < 2 {
            return Ok(first + (last - first).div_ceil(2));
        }
        // The smallest `at` in (first, last] with at least half the keys below it.
        let (mut lo, mut hi) = (first + 1, last);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if state.count_keys(first..=mid - 1) * 2 >= total {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        view.check().map_err(|e| e.to_string())?;
        Ok(lo)
    }
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
    if let Some(slot) = range.first_foreign_slot(write_keys(&req.command)) {
        return Err(ShardError::SlotMoved {
            group,
            slot,
            moved: range.moved(slot).cloned(),
        });
    }
    Ok(kv::apply(state, batch, req))
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
