//! Snapshots between replicas: the leader exports the group's durable state off its
//! thread and streams it to the follower in parts (`SnapshotPart`, each a Raft `Snapshot`
//! message of at most `SNAPSHOT_PART_BYTES`), a few parts per tick, so a large snapshot
//! never holds up the other groups' messages on the shared peer link nor needs one huge
//! frame. The follower assembles the parts in order and hands the core the snapshot once
//! the last one arrived; the assembled data is installed in one persist job.
//!
//! A part lost on the way (a full peer queue, a dropped connection) leaves the assembly
//! incomplete: the follower drops it when the next snapshot's first part arrives, and the
//! leader sends the whole snapshot again after its snapshot time-out.
//!
//! Must never: install a snapshot with a part missing or out of order, or hold more than
//! `SNAPSHOT_DATA_BYTES_MAX` of parts.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::kv::range::{GroupRange, SlotRange};
use crate::raft::{LogIndex, Message, MessageBody, NodeId, Role, Snapshot, SnapshotMetadata, Term};
use crate::shard::actor::ShardActor;
use crate::shard::api::ShardError;
use crate::shard::limits::{
    SNAPSHOT_CHUNK_BYTES, SNAPSHOT_DATA_BYTES_MAX, SNAPSHOT_PARTS_PER_TICK, SNAPSHOT_PART_BYTES,
    SNAPSHOT_SENDS_MAX,
};
use crate::storage::group_snapshot::{export_group, GroupSnapshotData};
use crate::storage::GroupWrite;
use crate::transport::api::Urgency;

/// One part of a streamed snapshot: the `data` of a Raft `Snapshot` message whose metadata
/// is the whole snapshot's.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SnapshotPart {
    /// From 0.
    pub part: u32,
    pub parts: u32,
    /// Part 0 only: the snapshot's fields, its `frames` empty.
    pub header: Option<GroupSnapshotData>,
    /// Chunk frames of the data, in order.
    pub frames: Vec<Bytes>,
}

/// A snapshot on its way to one follower.
pub(crate) struct OutgoingSnapshot {
    to: NodeId,
    term: Term,
    parts: VecDeque<Message>,
}

/// A snapshot arriving in parts.
pub(crate) struct IncomingSnapshot {
    from: NodeId,
    term: Term,
    index: LogIndex,
    parts: u32,
    next: u32,
    bytes: u64,
    data: GroupSnapshotData,
}

/// An exported snapshot, encoded as the `data` of its parts.
pub(crate) struct EncodedSnapshot {
    applied: LogIndex,
    conf_state: crate::raft::ConfState,
    bytes: u64,
    parts: Vec<Bytes>,
}

/// Cuts exported data into parts of at most `SNAPSHOT_PART_BYTES` (a larger frame alone)
/// and encodes them.
fn encode_parts(mut data: GroupSnapshotData) -> Result<EncodedSnapshot, String> {
    let (applied, conf_state, bytes) = (data.applied, data.conf_state.clone(), data.size_bytes());
    let frames = std::mem::take(&mut data.frames);
    let mut groups: Vec<Vec<Bytes>> = vec![Vec::new()];
    let mut in_last = 0usize;
    for frame in frames {
        if in_last > 0 && in_last + frame.len() > SNAPSHOT_PART_BYTES {
            groups.push(Vec::new());
            in_last = 0;
        }
        in_last += frame.len();
        groups.last_mut().expect("one group at least").push(frame);
    }
    let count = groups.len() as u32;
    let mut header = Some(data);
    let mut parts = Vec::with_capacity(groups.len());
    for (i, frames) in groups.into_iter().enumerate() {
        let part = SnapshotPart { part: i as u32, parts: count, header: header.take(), frames };
        parts.push(Bytes::from(rmp_serde::to_vec(&part).map_err(|e| e.to_string())?));
    }
    Ok(EncodedSnapshot { applied, conf_state, bytes, parts })
}

/// Shipping (leader).
impl ShardActor {
    /// Exports the group's durable state off the actor's thread, then streams it with
    /// metadata that matches the exported applied index.
    pub(crate) fn send_snapshot(&mut self, m: Message, ctx: &mut Context<ShardActor>) {
        let (group, to) = (self.cfg.group, m.to);
        if self.outgoing.iter().any(|o| o.to == to && o.term == m.term) {
            // One stream per follower: the one under way is not cut short by a retry (it
            // acknowledges an index at least the one asked for).
            debug!(group = %group, to = %to, "snapshot already streaming to this follower");
            return;
        }
        if self.snapshot_sends + self.outgoing.len() >= SNAPSHOT_SENDS_MAX {
            self.raw.report_snapshot_failure(to);
            return;
        }
        self.snapshot_sends += 1;
        let db = Arc::clone(&self.deps.db);
        let slots = self.cfg.slots.clone();
        // Export and encode off the actor's thread.
        let task = tokio::task::spawn_blocking(move || {
            let data =
                export_group(&db, group, slots, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_DATA_BYTES_MAX)
                    .map_err(|e| e.to_string())?;
            encode_parts(data)
        });
        ctx.spawn(actix::fut::wrap_future(task).map(move |res, act: &mut ShardActor, _| {
            act.snapshot_sends -= 1;
            match res {
                Ok(Ok(encoded)) => act.start_snapshot_stream(m, encoded),
                Ok(Err(e)) => act.snapshot_send_failed(&m, e),
                Err(e) => act.snapshot_send_failed(&m, e.to_string()),
            }
        }));
    }

    fn snapshot_send_failed(&mut self, m: &Message, reason: String) {
        warn!(group = %self.cfg.group, to = %m.to, %reason, "snapshot export failed");
        self.raw.report_snapshot_failure(m.to);
    }

    fn start_snapshot_stream(&mut self, m: Message, encoded: EncodedSnapshot) {
        if self.raw.role() != Role::Leader || self.raw.term() != m.term {
            return;
        }
        let index = encoded.applied;
        let Some(term) = self.raw.log_term(index).filter(|_| index > LogIndex(0)) else {
            return self.snapshot_send_failed(&m, format!("no term for index {index}"));
        };
        let conf_state = if encoded.conf_state.all_nodes().is_empty() {
            self.raw.conf_state().clone()
        } else {
            encoded.conf_state
        };
        let metadata = SnapshotMetadata { index, term, conf_state };
        let parts = encoded.parts.len();
        let queue = encoded
            .parts
            .into_iter()
            .map(|data| {
                let snapshot = Snapshot { metadata: metadata.clone(), data };
                Message { body: MessageBody::Snapshot { snapshot }, ..m.clone() }
            })
            .collect();
        info!(group = %self.cfg.group, to = %m.to, index = %index, term = %term,
            bytes = encoded.bytes, parts, "sending snapshot");
        self.outgoing.push(OutgoingSnapshot { to: m.to, term: m.term, parts: queue });
        self.cfg.metrics.snapshots_sent.inc();
        self.pump_snapshots();
    }

    /// Sends the next parts of every outgoing snapshot (each tick, and when one starts);
    /// drops those of a leadership that ended.
    pub(crate) fn pump_snapshots(&mut self) {
        let (role, term) = (self.raw.role(), self.raw.term());
        self.outgoing.retain(|o| role == Role::Leader && o.term == term);
        let mut sends = Vec::new();
        for o in &mut self.outgoing {
            for _ in 0..SNAPSHOT_PARTS_PER_TICK {
                match o.parts.pop_front() {
                    Some(m) => sends.push(m),
                    None => break,
                }
            }
        }
        self.outgoing.retain(|o| !o.parts.is_empty());
        for m in sends {
            self.send_one(m, Urgency::Now);
        }
    }
}

/// Receiving and installing (follower).
impl ShardActor {
    /// A `Snapshot` message from the leader: one part. Returns the message to step into
    /// the core once the last part arrived (its data then lives in `assembled`).
    pub(crate) fn receive_snapshot_part(&mut self, mut m: Message) -> Option<Message> {
        let MessageBody::Snapshot { snapshot } = &mut m.body else { return Some(m) };
        let group = self.cfg.group;
        let part: SnapshotPart = match rmp_serde::from_slice(&snapshot.data) {
            Ok(part) => part,
            Err(e) => {
                warn!(group = %group, from = %m.from, error = %e, "snapshot part does not decode");
                return None;
            }
        };
        let index = snapshot.metadata.index;
        if m.term < self.raw.term() || index <= self.raw.commit_index() {
            // The core refuses it (an old leader, or nothing new): answer through it, do
            // not assemble.
            self.incoming = None;
            return Some(m);
        }
        let bytes: u64 = part.frames.iter().map(|f| f.len() as u64).sum();
        if part.part == 0 {
            let Some(mut data) = part.header else {
                warn!(group = %group, from = %m.from, "snapshot's first part has no header");
                return None;
            };
            data.frames = part.frames;
            self.incoming = Some(IncomingSnapshot {
                from: m.from,
                term: m.term,
                index,
                parts: part.parts,
                next: 1,
                bytes,
                data,
            });
        } else {
            let Some(inc) = self.incoming.as_mut() else { return None };
            let same = inc.from == m.from && inc.term == m.term && inc.index == index;
            if !same || part.part != inc.next || part.parts != inc.parts {
                debug!(group = %group, from = %m.from, part = part.part,
                    "snapshot part out of order; the assembly is dropped");
                self.incoming = None;
                return None;
            }
            inc.next += 1;
            inc.bytes += bytes;
            inc.data.frames.extend(part.frames);
        }
        let inc = self.incoming.as_ref()?;
        if inc.bytes > SNAPSHOT_DATA_BYTES_MAX {
            warn!(group = %group, from = %m.from, bytes = inc.bytes,
                "snapshot larger than the bound; dropped");
            self.incoming = None;
            return None;
        }
        if inc.next < inc.parts {
            return None;
        }
        let inc = self.incoming.take()?;
        let (first, last) = inc.data.slots;
        if SlotRange::of_group(group, first, last).is_none() {
            warn!(group = %group, from = %m.from, first, last,
                "snapshot with an invalid slot range; dropped");
            return None;
        }
        snapshot.data = Bytes::new();
        // A snapshot the core accepted and has not handed out yet keeps its data.
        if self.assembled.as_ref().is_none_or(|(at, _)| *at < inc.index) {
            self.assembled = Some((inc.index, inc.data));
        }
        Some(m)
    }

    /// Puts a snapshot the core accepted (metadata; its data assembled from the parts)
    /// into the write; returns its index.
    pub(crate) fn prepare_install(
        &mut self,
        s: Snapshot,
        write: &mut GroupWrite,
    ) -> Result<LogIndex, String> {
        let index = s.metadata.index;
        let mut data = match self.assembled.take() {
            Some((at, data)) if at == index => data,
            _ => return Err(format!("snapshot {index} accepted without its data")),
        };
        // The snapshot's range is the group's as of its index (splits it covers included).
        if let Some(range) = data.range.clone() {
            if range.split_off.len() > self.range.split_off.len() {
                warn!(group = %self.cfg.group, index = %index, slots = %range.range,
                    "snapshot covers a split this replica did not apply; its child must be \
                     added to this node by a replica move");
            }
            self.cfg.slots = range.range.first..=range.range.last;
            self.range = range.clone();
            write.range = Some(range);
        } else if !self.initialized {
            // A group never split: its range is the snapshot's slots.
            let (first, last) = data.slots;
            let slots = SlotRange::of_group(self.cfg.group, first, last);
            let range = GroupRange::new(slots.unwrap_or(SlotRange { first, last }));
            self.cfg.slots = data.slot_range();
            self.range = range.clone();
            write.range = Some(range);
        }
        data.slots = (*self.cfg.slots.start(), *self.cfg.slots.end());
        let group = self.cfg.group;
        // The snapshot replaces the state: writes waiting at or below it are unknown.
        while let Some(first) = self.writes.first_entry() {
            if *first.key() > index {
                break;
            }
            let _ = first.remove().tx.send(Err(ShardError::LeadershipLost { group }));
        }
        write.snapshot = Some(s.metadata);
        write.snapshot_data = Some(data);
        write.applied_index = Some(index);
        Ok(index)
    }
}
