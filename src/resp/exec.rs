//! Running prepared jobs against the backend: the shard operations of one command run
//! concurrently (one per group), their replies merge into one frame, and a `ShardError`
//! becomes the Redis error a client expects, saying whether the command was definitely
//! not applied (`-MOVED`, `-TRYAGAIN`, `-CLUSTERDOWN`, `-BUSY`) or its outcome is unknown.
//! Owns no connection state; never writes to a socket.

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::backend::Backend;
use super::cmd::multi::Watch;
use super::frame::Frame;
use crate::kv::read::{scan_cursor, KeyCount, ReadCommand};
use crate::kv::{KvCommand, KvError, Reply, Request};
use crate::raft::types::GroupId;
use crate::shard::api::{ShardError, ShardOp};

/// Most keys KEYS may answer with; past it the client is told to use SCAN.
pub const KEYS_REPLY_KEYS_MAX: usize = 1_000_000;

/// What a prepared command does.
#[derive(Debug)]
pub enum Job {
    /// Answered already (errors, connection commands).
    Now(Frame),
    /// Answer, then close the connection (QUIT).
    Close(Frame),
    /// Shard operations whose replies merge into one answer.
    Run(Ops),
    /// KEYS: pages of every group in turn.
    Keys {
        pattern: Bytes,
        groups: Vec<(GroupId, u16, u16)>,
        now_ms: u64,
    },
    /// EXEC: a transaction's commands, run as one.
    Transaction(Transaction),
    /// WATCH: the keys' digests (`ReadCommand::Digests`), sent to the connection's
    /// `multi::Watch` for EXEC (`None` if the read failed); answered `+OK`.
    Watch(Ops, oneshot::Sender<Option<Vec<Frame>>>),
    /// WAIT: the replicas holding the connection's writes (`resp::wait`).
    Wait(super::wait::Wait),
}

/// The commands MULTI queued, for EXEC: answers known when they were queued, and shard
/// operations of key commands on one group, run as one (`run_transaction`). Positions are
/// the commands' places in EXEC's answer; each command is in one of the two.
#[derive(Debug, Default)]
pub struct Transaction {
    pub now: Vec<(usize, Frame)>,
    pub ops: Vec<(usize, Ops)>,
    /// The keys WATCHed since the last EXEC, compared as the transaction runs.
    pub watched: Vec<Watch>,
    /// The group (and slot) of the watched keys and the commands, when keys are watched.
    pub watch_at: Option<(GroupId, u16)>,
    /// The connection is cluster-aware (NotLeader becomes `-MOVED`).
    pub redirects: bool,
}

impl Job {
    /// Whether the job changes data (it then waits for, and holds back, the connection's
    /// commands on the same groups).
    pub fn is_write(&self) -> bool {
        match self {
            Job::Run(ops) => ops.write,
            Job::Transaction(tx) => tx.ops.iter().any(|(_, ops)| ops.write),
            _ => false,
        }
    }
}

/// The shard operations of one command.
#[derive(Debug)]
pub struct Ops {
    pub write: bool,
    pub parts: Vec<Part>,
    pub merge: Merge,
    /// The connection is cluster-aware (NotLeader becomes `-MOVED`).
    pub redirects: bool,
}

/// One operation on one group.
#[derive(Debug)]
pub struct Part {
    pub group: GroupId,
    /// A slot of the keys (the slot a `-MOVED` names).
    pub slot: u16,
    pub op: ShardOp,
    /// Where this part's answers go in the merged reply (MGET).
    pub positions: Vec<usize>,
}

/// How the replies of the parts become one answer.
#[derive(Debug)]
pub enum Merge {
    /// The single part's reply as it is.
    One,
    /// The sum of integer replies (DEL, EXISTS, DBSIZE).
    SumInt,
    /// SETNX: `+OK` becomes 1, nil becomes 0.
    SetNx,
    /// MGET: each part's array spread to its positions in a reply of `len` values.
    MGet { len: usize },
    /// `+OK` once every part answered OK (FLUSHALL).
    AllOk,
    /// One SCAN step; `next_slot` is where the next group starts (None: last group).
    Scan { next_slot: Option<u16> },
    /// RANDOMKEY: the first non-nil reply, starting at part `start`.
    RandomKey { start: usize },
    /// INFO: the text so far, then the keyspace section from every group's
    /// `ReadCommand::Keyspace` count, its `avg_ttl` as of `now_ms`.
    Info { text: String, now_ms: u64 },
    /// A read that answers nil if its key is missing, and this frame otherwise (GETEX with
    /// an invalid time: Redis looks the key up before it reads the time).
    NilOr(Frame),
    /// The single part's array, its items taken in pairs, as a map (LCS IDX).
    Map,
    /// DUMP: the single part's value as a DUMP payload (`kv::dump`); nil stays nil.
    Dump,
    /// RESTORE of a payload or a time it refused: `-BUSYKEY` if the single part (EXISTS)
    /// found the key, else this frame.
    BusyOr(Frame),
}

/// Runs a job that is not `Now`/`Close`.
pub async fn run<B: Backend>(backend: B, job: Job) -> Frame {
    match job {
        Job::Now(frame) | Job::Close(frame) => frame,
        Job::Run(ops) => run_ops(backend, ops).await,
        Job::Keys {
            pattern,
            groups,
            now_ms,
        } => keys(backend, pattern, groups, now_ms).await,
        Job::Transaction(tx) => run_transaction(backend, tx).await,
        Job::Wait(wait) => super::wait::run(backend, wait).await,
        Job::Watch(ops, digests) => match run_ops(backend, ops).await {
            Frame::Array(read) => {
                let _ = digests.send(Some(read));
                Frame::ok()
            }
            failed => {
                let _ = digests.send(None);
                failed
            }
        },
    }
}

/// EXEC's answer: every queued command's, in order, their shard operations run as one
/// request of their group (`KvCommand::Transaction`: one log entry, all or nothing; reads
/// alone, `ReadCommand::Batch`: one read index), or the one error that says none of them
/// ran (a moved slot, no leader, replies past their bound) or that their outcome is
/// unknown. Unlike a pipeline's batch, a refused one is not run again command by command:
/// that would not be atomic.
pub async fn run_transaction<B: Backend>(backend: B, tx: Transaction) -> Frame {
    let mut frames = vec![Frame::Null; tx.now.len() + tx.ops.len()];
    for (position, frame) in tx.now {
        if let Some(slot) = frames.get_mut(position) {
            *slot = frame;
        }
    }
    let Some(watched) = watched_digests(tx.watched).await else {
        return Frame::NullArray;
    };
    let write = tx.ops.iter().any(|(_, ops)| ops.write);
    let redirects = tx.redirects;
    let (at, ops): (Vec<usize>, Vec<Ops>) = tx.ops.into_iter().unzip();
    let (group, members) = members_of(ops);
    let (group, first_slot) = match (members.first(), tx.watch_at) {
        (Some(member), _) => (group, member.slot),
        (None, Some(watch_at)) if !watched.is_empty() => watch_at,
        (None, _) => return Frame::Array(frames),
    };
    let count = members.len();
    let (requests, members): (Vec<ShardOp>, Vec<(Merge, Vec<usize>)>) =
        members.into_iter().map(|m| (m.op, (m.merge, m.positions))).unzip();
    let Some(op) = transaction_op(requests, &watched, backend.now_ms()) else {
        return Frame::error("ERR internal error: a transaction holds a command it cannot run");
    };
    let watching = !watched.is_empty();
    let replies = match backend.execute(group, op).await {
        // A watched key changed: nothing was applied.
        Ok(Reply::Nil) if watching => return Frame::NullArray,
        Ok(reply) if count == 1 && !watching => vec![reply],
        // Reads (or none) at one read index, after the watched keys' digests there.
        Ok(Reply::Array(mut replies)) if watching && !write && replies.len() == count + 1 => {
            let digests = replies.remove(0);
            let expected = watched.iter().map(|(_, d)| d.map_or(Reply::Nil, Reply::Int));
            match digests {
                Reply::Error(error) => return Frame::from(error),
                digests if digests != Reply::Array(expected.collect()) => {
                    return Frame::NullArray;
                }
                _ => replies,
            }
        }
        Ok(Reply::Array(replies)) if replies.len() == count => replies,
        Ok(Reply::Error(KvError::BatchReplyTooLarge(bytes_max))) => {
            return Frame::from(KvError::TransactionReplyTooLarge(bytes_max));
        }
        Ok(Reply::Error(error)) => return Frame::from(error),
        Ok(_) => return Frame::error("ERR internal error: malformed transaction reply"),
        Err(error) => return shard_error(&backend, error, first_slot, write, redirects),
    };
    for (((merge, positions), reply), position) in members.into_iter().zip(replies).zip(at) {
        if let Some(slot) = frames.get_mut(position) {
            *slot = merge_replies(merge, vec![reply], vec![positions]);
        }
    }
    Frame::Array(frames)
}

/// Each watched key, once, and its digest when first watched (`None`: no live value),
/// leaving out the keys of a WATCH that answered an error (they are not watched); `None`
/// (EXEC aborts) if a key watched twice changed in between, or a digest is malformed.
async fn watched_digests(watched: Vec<Watch>) -> Option<Vec<(Bytes, Option<i64>)>> {
    let mut digests: Vec<(Bytes, Option<i64>)> = Vec::new();
    for watch in watched {
        let Ok(Some(read)) = watch.digests.await else { continue };
        if read.len() != watch.keys.len() {
            return None;
        }
        for (key, digest) in watch.keys.into_iter().zip(read) {
            let digest = match digest {
                Frame::Int(digest) => Some(digest),
                Frame::Null => None,
                _ => return None,
            };
            match digests.iter().find(|(k, _)| *k == key) {
                Some((_, first)) if *first != digest => return None,
                Some(_) => {}
                None => digests.push((key, digest)),
            }
        }
    }
    Some(digests)
}

/// The one request that runs a transaction's `ops`, in order, checking the `watched`
/// keys' digests first: with none watched, one alone as it is; reads alone (or none) as
/// one read batch (one read index, at `now_ms` if none has a clock), after the watched
/// keys' `Digests`; else one `KvCommand::Transaction`, its `Watched` members first, each
/// read at the point the writes before it left the keys, with the last write's seq and
/// clock. `None` if one is neither a write nor a read of keys.
fn transaction_op(
    mut ops: Vec<ShardOp>,
    watched: &[(Bytes, Option<i64>)],
    now_ms: u64,
) -> Option<ShardOp> {
    if ops.len() == 1 && watched.is_empty() {
        return ops.pop();
    }
    let last_write = ops.iter().rev().find_map(|op| match op {
        ShardOp::Write(request) => Some((request.client_id, request.seq, request.now_ms)),
        _ => None,
    });
    let Some((client_id, seq, now_ms)) = last_write else {
        let now_ms = match ops.last() {
            Some(ShardOp::Read { now_ms, .. }) => *now_ms,
            Some(_) => return None,
            None => now_ms,
        };
        let keys = watched.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>();
        let digests = (!keys.is_empty()).then_some(ReadCommand::Digests { keys });
        let commands = ops.into_iter().map(|op| match op {
            ShardOp::Read { command, .. } => Some(command),
            _ => None,
        });
        let commands = digests.into_iter().map(Some).chain(commands);
        let command = ReadCommand::Batch { commands: commands.collect::<Option<_>>()? };
        return Some(ShardOp::read(command, now_ms));
    };
    let watched = watched.iter().map(|(key, digest)| {
        Some(KvCommand::Watched { key: key.clone(), digest: *digest })
    });
    let commands = ops.into_iter().map(|op| match op {
        ShardOp::Write(request) => Some(request.command),
        ShardOp::Read { command, .. } => Some(KvCommand::Read(command)),
        _ => None,
    });
    let commands = watched.chain(commands).collect::<Option<_>>()?;
    let command = KvCommand::Transaction { commands };
    Some(ShardOp::Write(Request { client_id, seq, now_ms, command }))
}

/// The group and members of single-group `ops` (a pipeline's batch, a transaction).
fn members_of(ops: Vec<Ops>) -> (GroupId, Vec<Member>) {
    let mut members = Vec::with_capacity(ops.len());
    let mut group = GroupId(0);
    for ops in ops {
        let Some(part) = ops.parts.into_iter().next() else { continue };
        group = part.group;
        let (slot, positions, op) = (part.slot, part.positions, part.op);
        members.push(Member { slot, positions, merge: ops.merge, op });
    }
    (group, members)
}

/// The commands of one connection's pipeline on one group, all writes or all reads, in
/// request order: one shard operation when there are several (`KvCommand::Batch`: one seq,
/// one log entry, applied in order; `ReadCommand::Batch`: served at one read index), one
/// answer per command. A batch refused for a moved slot (a split took some of its keys;
/// a retry of a batch already applied gets its cached answers instead) was not applied,
/// nor was a read batch whose replies would be too large: their commands then run one
/// after another, each as it would alone. Each of `batch` is `batchable`.
pub async fn run_batch<B: Backend>(backend: B, batch: Vec<Ops>) -> Vec<Frame> {
    if batch.len() < 2 {
        let mut frames = Vec::with_capacity(1);
        for ops in batch {
            frames.push(run_ops(backend.clone(), ops).await);
        }
        return frames;
    }
    let write = batch.iter().all(|ops| ops.write);
    let redirects = batch.iter().any(|ops| ops.redirects);
    let (group, members) = members_of(batch);
    let Some(op) = batch_op(&members) else {
        let frame = Frame::error("ERR internal error: a pipeline batch mixes reads and writes");
        return members.iter().map(|_| frame.clone()).collect();
    };
    let replies = match backend.execute(group, op).await {
        Ok(Reply::Array(replies)) if replies.len() == members.len() => replies,
        Ok(Reply::Error(KvError::BatchReplyTooLarge(_))) | Err(ShardError::SlotMoved { .. }) => {
            let mut frames = Vec::with_capacity(members.len());
            for m in members {
                let parts = vec![Part { group, slot: m.slot, op: m.op, positions: m.positions }];
                let ops = Ops { write, parts, merge: m.merge, redirects };
                frames.push(run_ops(backend.clone(), ops).await);
            }
            return frames;
        }
        Ok(Reply::Error(error)) => {
            return members.iter().map(|_| Frame::from(error.clone())).collect();
        }
        Ok(_) => {
            let frame = Frame::error("ERR internal error: malformed batch reply");
            return members.iter().map(|_| frame.clone()).collect();
        }
        Err(error) => {
            return members
                .iter()
                .map(|m| shard_error(&backend, error.clone(), m.slot, write, redirects))
                .collect();
        }
    };
    members
        .into_iter()
        .zip(replies)
        .map(|(m, reply)| merge_replies(m.merge, vec![reply], vec![m.positions]))
        .collect()
}

/// One command of a pipeline batch.
struct Member {
    slot: u16,
    positions: Vec<usize>,
    merge: Merge,
    op: ShardOp,
}

/// The one operation that runs `members`: their writes as one request with the last one's
/// seq and clock (later seqs of the client are higher still), or their reads at the last
/// one's clock. `None` if they are not all writes or all reads.
fn batch_op(members: &[Member]) -> Option<ShardOp> {
    match &members.last()?.op {
        ShardOp::Write(last) => {
            let commands = members.iter().map(|m| match &m.op {
                ShardOp::Write(r) => Some(r.command.clone()),
                _ => None,
            });
            let command = KvCommand::Batch { commands: commands.collect::<Option<_>>()? };
            let (client_id, seq, now_ms) = (last.client_id, last.seq, last.now_ms);
            Some(ShardOp::Write(Request { client_id, seq, now_ms, command }))
        }
        ShardOp::Read { now_ms, .. } => {
            let commands = members.iter().map(|m| match &m.op {
                ShardOp::Read { command, .. } => Some(command.clone()),
                _ => None,
            });
            let command = ReadCommand::Batch { commands: commands.collect::<Option<_>>()? };
            Some(ShardOp::read(command, *now_ms))
        }
        _ => None,
    }
}

/// Whether `ops` may join a pipeline batch: one write of named keys, or one read of named
/// keys, on one group.
pub fn batchable(ops: &Ops) -> bool {
    match &ops.parts[..] {
        [Part { op: ShardOp::Write(r), .. }] => ops.write && r.command.batchable(),
        [Part { op: ShardOp::Read { command, .. }, .. }] => !ops.write && command.batchable(),
        _ => false,
    }
}

async fn run_ops<B: Backend>(backend: B, ops: Ops) -> Frame {
    let Ops {
        write,
        parts,
        merge,
        redirects,
    } = ops;
    if parts.len() == 1 {
        // One group: awaited here, no task of its own.
        let Some(part) = parts.into_iter().next() else { return Frame::Null };
        return match backend.execute(part.group, part.op).await {
            Ok(reply) => merge_replies(merge, vec![reply], vec![part.positions]),
            Err(error) => shard_error(&backend, error, part.slot, write, redirects),
        };
    }
    let mut replies: Vec<Option<Reply>> = vec![None; parts.len()];
    let mut positions = Vec::with_capacity(parts.len());
    let mut tasks = JoinSet::new();
    for (index, part) in parts.into_iter().enumerate() {
        positions.push(part.positions);
        let backend = backend.clone();
        tasks.spawn(async move {
            let result = backend.execute(part.group, part.op).await;
            (index, part.group, part.slot, result)
        });
    }
    // A write waits for every part (each is bounded by the request time-out): a refusal says
    // "not applied" only if no part was applied or may have been.
    let (mut refused, mut failed, mut touched) = (None, None, false);
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, group, slot, result)) = joined else {
            if write {
                // A part whose task failed may have been sent: its outcome is unknown.
                (touched, failed) = (true, failed.or(Some(None)));
                continue;
            }
            return Frame::error("ERR internal error: a shard operation failed to run");
        };
        match result {
            Ok(reply) => {
                touched = true;
                replies[index] = Some(reply);
            }
            Err(error) if !write => return shard_error(&backend, error, slot, write, redirects),
            Err(ShardError::Timeout { .. } | ShardError::LeadershipLost { .. }) => {
                (touched, failed) = (true, failed.or(Some(Some(group))));
            }
            Err(error) => {
                failed = failed.or(Some(Some(group)));
                refused = refused.or(Some((error, slot)));
            }
        }
    }
    match (refused, failed) {
        (Some((error, slot)), _) if !touched => {
            return shard_error(&backend, error, slot, write, redirects)
        }
        (_, Some(group)) => return partial_write_error(group),
        _ => {}
    }
    let replies: Vec<Reply> = replies
        .into_iter()
        .map(|r| r.unwrap_or(Reply::Nil))
        .collect();
    merge_replies(merge, replies, positions)
}

fn merge_replies(merge: Merge, replies: Vec<Reply>, positions: Vec<Vec<usize>>) -> Frame {
    if let Some(Reply::Error(error)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
        return Frame::from(error.clone());
    }
    match merge {
        Merge::One => replies.into_iter().next().map_or(Frame::Null, Frame::from),
        Merge::SumInt => Frame::Int(replies.iter().map(int_of).sum()),
        Merge::AllOk => Frame::ok(),
        Merge::SetNx => Frame::Int(i64::from(matches!(replies.first(), Some(Reply::Ok)))),
        Merge::MGet { len } => {
            let mut values = vec![Frame::Null; len];
            for (reply, positions) in replies.into_iter().zip(positions) {
                let Reply::Array(items) = reply else { continue };
                for (item, position) in items.into_iter().zip(positions) {
                    if let Some(slot) = values.get_mut(position) {
                        *slot = Frame::from(item);
                    }
                }
            }
            Frame::Array(values)
        }
        Merge::Scan { next_slot } => scan_reply(replies, next_slot),
        Merge::RandomKey { start } => {
            let count = replies.len().max(1);
            let pick = (0..replies.len()).map(|i| &replies[(start + i) % count]);
            let found = pick.into_iter().find(|r| matches!(r, Reply::Bulk(_)));
            found.cloned().map_or(Frame::Null, Frame::from)
        }
        Merge::Info { mut text, now_ms } => {
            text.push_str(&keyspace_section(&replies, now_ms));
            Frame::Verbatim(text)
        }
        Merge::NilOr(frame) => match replies.first() {
            None | Some(Reply::Nil) => Frame::Null,
            Some(_) => frame,
        },
        Merge::Dump => match replies.into_iter().next() {
            Some(Reply::Bulk(value)) => Frame::Bulk(crate::kv::dump::dump(&value)),
            other => other.map_or(Frame::Null, Frame::from),
        },
        Merge::BusyOr(frame) => match replies.first() {
            Some(Reply::Int(found)) if *found > 0 => Frame::from(KvError::BusyKey),
            _ => frame,
        },
        Merge::Map => match replies.into_iter().next() {
            Some(Reply::Array(items)) => {
                let mut items = items.into_iter().map(Frame::from);
                let mut pairs = Vec::new();
                while let (Some(name), Some(value)) = (items.next(), items.next()) {
                    pairs.push((name, value));
                }
                Frame::Map(pairs)
            }
            other => other.map_or(Frame::Null, Frame::from),
        },
    }
}

/// INFO's keyspace section from every group's count. `avg_ttl` is the mean time left, in
/// ms, of the keys with a deadline (Redis estimates it from the keys its expiry cycle
/// samples; this is exact), 0 when none has one.
fn keyspace_section(replies: &[Reply], now_ms: u64) -> String {
    let counts = replies.iter().map(KeyCount::from_keyspace_reply);
    let all = counts.fold(KeyCount::default(), KeyCount::merge);
    let mut text = "# Keyspace\r\n".to_string();
    if all.keys > 0 {
        let (keys, expires) = (all.keys, all.expires);
        let avg_ttl = all.mean_deadline_ms().map_or(0, |mean| mean.saturating_sub(now_ms));
        text.push_str(&format!("db0:keys={keys},expires={expires},avg_ttl={avg_ttl}\r\n"));
    }
    text
}

fn int_of(reply: &Reply) -> i64 {
    match reply {
        Reply::Int(value) => *value,
        _ => 0,
    }
}

/// A SCAN step's `[cursor or nil, keys]` as the client sees it: `[cursor text, keys]`.
fn scan_reply(replies: Vec<Reply>, next_slot: Option<u16>) -> Frame {
    let Some(Reply::Array(mut items)) = replies.into_iter().next() else {
        return Frame::error("ERR internal error: malformed scan reply");
    };
    let keys = if items.len() == 2 {
        items.pop().map(Frame::from)
    } else {
        None
    };
    let cursor = match items.pop() {
        Some(Reply::Int(cursor)) => cursor as u64,
        _ => next_slot.map_or(0, |slot| scan_cursor(slot, 0)),
    };
    let keys = keys.unwrap_or(Frame::Array(Vec::new()));
    Frame::Array(vec![Frame::text(&cursor.to_string()), keys])
}

async fn keys<B: Backend>(
    backend: B,
    pattern: Bytes,
    groups: Vec<(GroupId, u16, u16)>,
    now_ms: u64,
) -> Frame {
    let mut found = Vec::new();
    for (group, slot_first, slot_last) in groups {
        let mut after = None;
        loop {
            let command = ReadCommand::Keys {
                pattern: pattern.clone(),
                slot_first,
                slot_last,
                after,
            };
            let result = backend
                .execute(group, ShardOp::read(command, now_ms))
                .await;
            let reply = match result {
                Ok(reply) => reply,
                Err(error) => return shard_error(&backend, error, slot_first, false, false),
            };
            let Reply::Array(mut page) = reply else {
                return Frame::from(reply);
            };
            after = match page.pop() {
                Some(Reply::Array(resume)) => resume_point(resume),
                _ => None,
            };
            if let Some(Reply::Array(keys)) = page.pop() {
                found.extend(keys.into_iter().map(Frame::from));
            }
            if found.len() > KEYS_REPLY_KEYS_MAX {
                let text =
                    format!("ERR KEYS matches more than {KEYS_REPLY_KEYS_MAX} keys; use SCAN");
                return Frame::error(text);
            }
            if after.is_none() {
                break;
            }
        }
    }
    Frame::Array(found)
}

fn resume_point(resume: Vec<Reply>) -> Option<(u16, Bytes)> {
    match resume.as_slice() {
        [Reply::Int(slot), Reply::Bulk(key)] => Some((u16::try_from(*slot).ok()?, key.clone())),
        _ => None,
    }
}

/// The error for a write over several shards whose parts did not all succeed, some of them
/// applied or perhaps applied (`run_ops`); `group`: the first that failed, if known.
fn partial_write_error(group: Option<GroupId>) -> Frame {
    let which = group.map_or_else(|| "a shard".to_string(), |g| format!("shard {g}"));
    Frame::error(format!(
        "ERR outcome unknown: {which} did not confirm its part of the command; its parts may \
         or may not have been applied"
    ))
}

/// The Redis error for a shard failure. `write`: whether the op may have been proposed.
pub fn shard_error<B: Backend>(
    backend: &B,
    error: ShardError,
    slot: u16,
    write: bool,
    redirects: bool,
) -> Frame {
    let not_applied = "the command was not applied";
    match error {
        ShardError::NotLeader {
            leader: Some(leader),
            ..
        } if redirects => match backend.cluster_view().resp_addr(leader) {
            Some(addr) => Frame::error(format!("MOVED {slot} {addr}")),
            None => Frame::error("CLUSTERDOWN The cluster is down"),
        },
        ShardError::NotLeader { leader: None, .. } if redirects => {
            Frame::error("CLUSTERDOWN The cluster is down")
        }
        ShardError::NotLeader { group, .. } => Frame::error(format!(
            "TRYAGAIN shard {group} has no reachable leader at the moment; {not_applied}"
        )),
        ShardError::NoReplica { group }
        | ShardError::Stopped { group }
        | ShardError::Unreachable { group, .. } => Frame::error(format!(
            "TRYAGAIN shard {group} cannot be reached from this node; {not_applied}"
        )),
        ShardError::Transferring { group, .. } => Frame::error(format!(
            "TRYAGAIN shard {group} is handing its leadership over; {not_applied}"
        )),
        ShardError::Busy { group, reason } => Frame::error(format!(
            "BUSY shard {group} is busy ({reason}); {not_applied}"
        )),
        ShardError::Timeout { group } | ShardError::LeadershipLost { group } if write => {
            Frame::error(format!(
                "ERR outcome unknown: shard {group} did not confirm the write; it may or may \
                 not have been applied"
            ))
        }
        ShardError::Timeout { group } | ShardError::LeadershipLost { group } => Frame::error(
            format!("TRYAGAIN shard {group} did not answer the read in time; retry"),
        ),
        ShardError::SlotMoved { moved: Some(off), .. } if redirects => {
            let leader = backend.leader_of(off.group);
            match leader.and_then(|l| backend.cluster_view().resp_addr(l)) {
                Some(addr) => Frame::error(format!("MOVED {slot} {addr}")),
                None => Frame::error(format!(
                    "TRYAGAIN slot {slot} moved to shard {}; {not_applied}",
                    off.group
                )),
            }
        }
        ShardError::SlotMoved { group, .. } => Frame::error(format!(
            "TRYAGAIN slot {slot} is moving away from shard {group}; {not_applied}"
        )),
        ShardError::Storage { group, reason } => {
            Frame::error(format!("ERR shard {group} storage failed: {reason}"))
        }
        ShardError::Refused { group, reason } => {
            Frame::error(format!("ERR shard {group} refused: {reason}"))
        }
    }
}
