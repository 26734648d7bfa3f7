//! The node's request path: send a `ShardOp` to the replica that leads its group — here,
//! through the local replica, or on another node, forwarded over the transport with a
//! request id — following leader hints and retrying until the request's deadline. A write
//! keeps its `Request` (client id, seq) across retries, so the group applies it at most
//! once. A read of a group this node holds a follower of is first offered to that
//! follower (`[reads] follower`, `shard::follower_reads`); one it forwards carries the term
//! its own replica of the group published (an endorsement, `RawNode::read_index_endorsed`).
//! A read of a group led here waits for a peer's endorsement from a node-level read round
//! (`node::read_rounds`), and the node answers its peers' rounds with its replicas' terms.
//! Owns the table of forwards awaiting an answer; reads no Raft state but those terms.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::debug;

use crate::kv::notify::Notifier;
use crate::kv::read::ReadCommand;
use crate::metrics::node::ReadRoundCounters;
use crate::node::read_rounds::ReadRounds;
use crate::node::workload::Workload;
use crate::raft::types::{GroupId, NodeId, Term};
use crate::router::table::RoutingTable;
use crate::shard::api::{Endorsement, ShardError, ShardOp, ShardResult};
use crate::resp::pubsub::Hub;
use crate::transport::api::{ForwardReply, ForwardRequest, PeerSender, TermAnswer, TermProbe};
use crate::transport::api::Publication;

/// Forwards from this node awaiting an answer before new ones are refused (`Busy`).
pub const FORWARDS_PENDING_MAX: usize = 100_000;
/// How often a forward waiting for its answer checks that the link to its node is up.
pub const PEER_DOWN_CHECK_MS: u64 = 20;
/// Wait before asking again when a group has no known leader.
pub const NO_LEADER_RETRY_MS: u64 = 20;
/// Wait before asking a leader that is handing its leadership over again (a transfer ends
/// within an election time-out; the leader then names its successor).
pub const TRANSFER_RETRY_MS: u64 = 50;
/// One attempt (on one node) gets this share of the request time-out, so a dead leader's
/// silence leaves time to try the others.
pub const ATTEMPTS_PER_TIMEOUT_MIN: u32 = 4;

/// A boxed future of a local replica's answer.
pub type LocalFuture = Pin<Box<dyn Future<Output = ShardResult> + Send>>;

/// The replicas hosted on this node, as the request path sees them.
pub trait LocalGroups: Send + Sync + 'static {
    /// Runs `op` on this node's replica of `group`; `None` if there is none here.
    fn execute(&self, group: GroupId, op: ShardOp) -> Option<LocalFuture>;
    /// Whether this node hosts a replica of `group`.
    fn holds(&self, group: GroupId) -> bool;
    /// The term of this node's replica of `group` (`ShardConfig::published_term`), if any.
    fn term(&self, _group: GroupId) -> Option<Term> {
        None
    }
    /// The answer of this node's replica of `group` to a key read, endorsed as
    /// `endorsement` says if it is, given on the request path through the replica's open
    /// read door (`shard::read_door`: a leader's lease, or a voter's endorsement); `None`
    /// if the door does not answer it (the read then goes to the replica).
    fn read_at_door(
        &self,
        _group: GroupId,
        _command: &ReadCommand,
        _now_ms: u64,
        _endorsement: Option<Endorsement>,
    ) -> Option<ShardResult> {
        None
    }
}

/// The request path of one node; cheap to clone.
#[derive(Clone)]
pub struct NodeClient {
    inner: Arc<Inner>,
    /// Offer reads to this node's follower of the group first (`with_follower_reads`).
    follower_reads: bool,
    /// Where the requests this node's leaders serve came in (`with_workload`).
    workload: Arc<Workload>,
    /// Reads at a leader here are endorsed by a node-level round (`with_read_rounds`).
    read_rounds: Option<Arc<ReadRounds>>,
    /// Most bytes a read's answer to a peer's forwarded request may take encoded: what one
    /// peer frame holds, less its envelope (`with_forward_reply_bytes_max`).
    forward_reply_bytes_max: u64,
}

struct Inner {
    table: Arc<RoutingTable>,
    local: Arc<dyn LocalGroups>,
    peers: Arc<dyn PeerSender>,
    pending: DashMap<u64, oneshot::Sender<ShardResult>>,
    next_request_id: AtomicU64,
    request_timeout: Duration,
    /// This node's Pub/Sub subscribers.
    hub: Arc<Hub>,
    /// Which keyspace events this node's replicas publish (`kv::notify`).
    notifier: Arc<Notifier>,
}

impl NodeClient {
    pub fn new(
        table: Arc<RoutingTable>,
        local: Arc<dyn LocalGroups>,
        peers: Arc<dyn PeerSender>,
        request_timeout: Duration,
    ) -> NodeClient {
        let inner = Inner {
            table,
            local,
            peers,
            pending: DashMap::new(),
            next_request_id: AtomicU64::new(1),
            request_timeout,
            hub: Arc::default(),
            notifier: Arc::default(),
        };
        let workload = Arc::new(Workload::new(false));
        NodeClient {
            inner: Arc::new(inner),
            follower_reads: false,
            workload,
            read_rounds: None,
            forward_reply_bytes_max: crate::shard::limits::ENTRY_BYTES_MAX_DEFAULT,
        }
    }

    /// An answer to a peer holding more value bytes than `bytes_max` (an MGET of many large
    /// values) is refused instead: no frame could carry it, and the peer's client would
    /// wait for it until its time-out.
    pub fn with_forward_reply_bytes_max(self, bytes_max: u64) -> NodeClient {
        NodeClient { forward_reply_bytes_max: bytes_max, ..self }
    }

    /// Reads of a group led here wait for a node-level round (`node::read_rounds`), which
    /// asks a peer once for all of them, instead of their group's own ReadIndex round; a
    /// read waits `wait` for an endorsement at most, and asks every peer after `backup`.
    pub fn with_read_rounds(
        self,
        wait: Option<Duration>,
        backup: Duration,
        counters: ReadRoundCounters,
    ) -> NodeClient {
        let read_rounds = wait.map(|wait| {
            let (table, local) = (self.inner.table.clone(), self.inner.local.clone());
            let peers = self.inner.peers.clone();
            Arc::new(ReadRounds::new(table, local, peers, wait, backup, counters))
        });
        NodeClient { read_rounds, ..self }
    }

    /// Reads of a group whose leader is elsewhere go first to this node's replica of the
    /// group, if it has one, which serves them as a follower when it can.
    pub fn with_follower_reads(self, on: bool) -> NodeClient {
        NodeClient { follower_reads: on, ..self }
    }

    /// Counts each request a replica here served as leader by the node it came in through
    /// (`node::workload`).
    pub fn with_workload(self, workload: Arc<Workload>) -> NodeClient {
        NodeClient { workload, ..self }
    }

    pub fn table(&self) -> &Arc<RoutingTable> {
        &self.inner.table
    }

    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Runs `op` on the leader of `group`, wherever it is, within the request time-out.
    /// An operation that changes state (a write, a split, a membership change) and fails
    /// after an attempt of it ended with its outcome unknown (no answer, a leader change,
    /// a replica stopping) answers `Timeout`: outcome unknown. One refused by every
    /// attempt (a refusal, or a link that was down so nothing was sent) answers the last
    /// refusal, also once the time-out has passed.
    pub async fn execute(&self, group: GroupId, op: ShardOp) -> ShardResult {
        let mut group = group;
        // With read rounds (ReadIndex reads), a door answers a read only on the endorsement
        // a round brings (`attempt`); without, a lease or a forwarder's may let it at once.
        if self.read_rounds.is_none() {
            if let Some(answer) = self.read_at_door(group, &op, self.inner.table.me()) {
                return answer;
            }
        }
        let deadline = Instant::now() + self.inner.request_timeout;
        if let Some(served) = self.read_here(group, &op).await {
            return Ok(served);
        }
        let mut target = self.first_target(group)?;
        let mut attempt: usize = 0;
        // An attempt of this write ended with its outcome unknown: any later failure answers
        // `Timeout` (outcome unknown), never a refusal that says "not applied".
        let mut uncertain = false;
        let write = !matches!(op, ShardOp::Read { .. } | ShardOp::Members);
        let settle = |uncertain: bool, group: GroupId, error: ShardError| -> ShardError {
            if uncertain { ShardError::Timeout { group } } else { error }
        };
        // The last attempt's error: what an operation answers once the time-out has passed
        // (through `settle`: outcome unknown if any attempt's outcome was).
        let mut last_error: Option<ShardError> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let timeout = ShardError::Timeout { group };
                return Err(settle(uncertain, group, last_error.unwrap_or(timeout)));
            }
            let budget = left.min(self.inner.request_timeout / ATTEMPTS_PER_TIMEOUT_MIN);
            let result = self.attempt(target, group, op.clone(), budget).await;
            attempt += 1;
            uncertain |= write
                && matches!(
                    result,
                    Err(ShardError::Timeout { .. }
                        | ShardError::LeadershipLost { .. }
                        | ShardError::Stopped { .. })
                );
            if let Err(e) = &result {
                last_error = Some(e.clone());
            }
            match result {
                // Served by `target`: it leads the group (a node without a replica of the
                // group hears of no election, so it learns the leader here).
                Ok(reply) => {
                    if self.inner.table.leader(group) != Some(target) {
                        self.inner.table.learn_leader(group, target);
                    }
                    return Ok(reply);
                }
                Err(ShardError::NotLeader { leader: Some(leader), .. }) if leader != target => {
                    target = leader;
                }
                // A split handed the slot on: learn it, and ask the group that has it now
                // (the request was not applied, so it keeps its id).
                Err(ShardError::SlotMoved { moved: Some(off), .. }) if off.group != group => {
                    self.inner.table.apply_split(group, &off);
                    group = off.group;
                    last_error = None;
                    target = self.first_target(group).map_err(|e| settle(uncertain, group, e))?;
                }
                // Not applied; the same node answers with its successor once it is done.
                Err(ShardError::Transferring { to, .. }) => {
                    debug!(group = group.get(), to = to.get(), "leader transfer; asking again");
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(Duration::from_millis(TRANSFER_RETRY_MS).min(left)).await;
                }
                Err(e) if retryable(&e) => {
                    let (g, node) = (group.get(), target.get());
                    debug!(group = g, node, attempt, error = %e, "retrying");
                    tokio::time::sleep(Duration::from_millis(NO_LEADER_RETRY_MS).min(left)).await;
                    target = self
                        .next_target(group, target, attempt)
                        .map_err(|e| settle(uncertain, group, e))?;
                }
                Err(error) => return Err(settle(uncertain, group, error)),
            }
        }
    }

    /// Runs `op` on this node's replica of `group` only, within the request time-out:
    /// `NoReplica` if there is none here, and the replica's own refusal (`NotLeader`, say)
    /// as it gives it, never followed elsewhere.
    pub async fn execute_here(&self, group: GroupId, op: ShardOp) -> ShardResult {
        let answer = self.inner.local.execute(group, op);
        answer_within(answer, group, self.inner.request_timeout).await
    }

    /// A read (`follower_ok` unset) that came in at node `origin`, as this node's replica of
    /// `group` answers it through its read door if the door is open for it
    /// (`shard::read_door`): only a leader opens one, so this node leads the group.
    fn read_at_door(&self, group: GroupId, op: &ShardOp, origin: NodeId) -> Option<ShardResult> {
        let ShardOp::Read { command, now_ms, endorsement, follower_ok: false } = op else {
            return None;
        };
        let answer = self.inner.local.read_at_door(group, command, *now_ms, *endorsement)?;
        if answer.is_ok() {
            let (table, me) = (&self.inner.table, self.inner.table.me());
            if table.leader(group) != Some(me) {
                table.learn_leader(group, me);
            }
            self.workload.served(group, origin);
        }
        Some(answer)
    }

    /// A read of a group led elsewhere, offered to this node's replica of it as a follower
    /// read; `None` if there is none here or it did not serve it (not following a known
    /// leader, no answer from the leader in time, a slot moved): the read then takes the
    /// usual path, which sorts out every such case.
    async fn read_here(&self, group: GroupId, op: &ShardOp) -> Option<crate::kv::Reply> {
        let ShardOp::Read { command, now_ms, .. } = op else { return None };
        let table = &self.inner.table;
        if !self.follower_reads
            || table.leader(group) == Some(table.me())
            || !self.inner.local.holds(group)
        {
            return None;
        }
        let op = ShardOp::Read {
            command: command.clone(),
            now_ms: *now_ms,
            endorsement: None,
            follower_ok: true,
        };
        let answer = self.inner.local.execute(group, op)?;
        let budget = self.inner.request_timeout / ATTEMPTS_PER_TIMEOUT_MIN;
        tokio::time::timeout(budget, answer).await.ok()?.ok()
    }

    /// The cached leader, else this node if it holds a replica, else the first replica.
    fn first_target(&self, group: GroupId) -> Result<NodeId, ShardError> {
        if let Some(leader) = self.inner.table.leader(group) {
            return Ok(leader);
        }
        let route = self.inner.table.group(group).ok_or(ShardError::NoReplica { group })?;
        if let Some(leader) = route.leader {
            return Ok(leader);
        }
        let me = self.inner.table.me();
        if route.replicas.contains(&me) {
            return Ok(me);
        }
        route.replicas.first().copied().ok_or(ShardError::NoReplica { group })
    }

    /// After a failed attempt: the cached leader if it is another node, else the replicas
    /// in turn.
    fn next_target(
        &self,
        group: GroupId,
        last: NodeId,
        attempt: usize,
    ) -> Result<NodeId, ShardError> {
        let route = self.inner.table.group(group).ok_or(ShardError::NoReplica { group })?;
        match route.leader {
            Some(leader) if leader != last => Ok(leader),
            _ if route.replicas.is_empty() => Err(ShardError::NoReplica { group }),
            _ => Ok(route.replicas[attempt % route.replicas.len()]),
        }
    }

    async fn attempt(
        &self,
        target: NodeId,
        group: GroupId,
        op: ShardOp,
        left: Duration,
    ) -> ShardResult {
        if target == self.inner.table.me() {
            let (op, waited_since) = self.endorse_here(group, op).await;
            if let Some(answer) = self.read_at_door(group, &op, target) {
                return answer;
            }
            let left = waited_since.map_or(left, |began| left.saturating_sub(began.elapsed()));
            let counted = counts_as_workload(&op);
            let result = answer_within(self.inner.local.execute(group, op), group, left).await;
            if result.is_ok() && counted {
                self.workload.served(group, target);
            }
            return result;
        }
        self.forward(target, group, op, left).await
    }

    /// A read of a group this node leads, with a peer's endorsement from the next
    /// node-level round if one comes (`with_read_rounds`), and when its wait for the round
    /// began (the attempt's time runs on); any other `op` as it is, with no wait.
    async fn endorse_here(&self, group: GroupId, op: ShardOp) -> (ShardOp, Option<Instant>) {
        let Some(rounds) = &self.read_rounds else { return (op, None) };
        match op {
            // A node's own sync of the cluster map is served without a round anyway.
            ShardOp::Read { command: ReadCommand::ClusterMap { linearizable: false, .. }, .. } => {
                (op, None)
            }
            ShardOp::Read { command, now_ms, endorsement: None, follower_ok: false }
                if self.inner.table.leader(group) == Some(self.inner.table.me()) =>
            {
                let began = Instant::now();
                let endorsement = rounds.endorsement(group, began).await;
                let op = ShardOp::Read { command, now_ms, endorsement, follower_ok: false };
                (op, Some(began))
            }
            op => (op, None),
        }
    }

    /// Sends `op` to `target` and waits at most `left` for its answer.
    async fn forward(
        &self,
        target: NodeId,
        group: GroupId,
        op: ShardOp,
        left: Duration,
    ) -> ShardResult {
        if self.inner.pending.len() >= FORWARDS_PENDING_MAX {
            return Err(ShardError::Busy { group, reason: "too many forwarded requests".into() });
        }
        let request_id = self.inner.next_request_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner.pending.insert(request_id, tx);
        // Removes the id however this future ends, also when it is dropped mid-wait (a
        // multi-group command abandons its other parts after the first failure).
        let _forgotten = PendingGuard { inner: &self.inner, request_id };
        // A node whose link is down (it died, say) is not waited for: the request path
        // tries the group's other replicas at once (a write keeps its id: at most once).
        // Nothing was sent, so this attempt applied nothing.
        if !self.inner.peers.is_up(target) {
            return Err(ShardError::Unreachable { group, node: target });
        }
        // A read is endorsed with our replica's term, read now: after the read began.
        let endorsed_term = match op {
            ShardOp::Read { .. } => self.inner.local.term(group),
            _ => None,
        };
        let request = ForwardRequest { request_id, group, op, endorsed_term };
        self.inner.peers.send_forward(target, request);
        let deadline = Instant::now() + left;
        let mut rx = rx;
        loop {
            let slice = deadline.saturating_duration_since(Instant::now());
            let slice = slice.min(Duration::from_millis(PEER_DOWN_CHECK_MS));
            match tokio::time::timeout(slice, &mut rx).await {
                Ok(Ok(answer)) => return answer,
                Ok(Err(_)) => return Err(ShardError::Timeout { group }),
                Err(_) if Instant::now() >= deadline || !self.inner.peers.is_up(target) => {
                    return Err(ShardError::Timeout { group });
                }
                Err(_) => {}
            }
        }
    }

    /// A peer answered a forward of ours (late answers are dropped).
    pub fn on_forward_reply(&self, reply: ForwardReply) {
        if let Some((_, tx)) = self.inner.pending.remove(&reply.request_id) {
            let _ = tx.send(reply.result);
        }
    }

    /// A peer's node-level read round reached us: answer with the terms our replicas of
    /// its groups have published now, after every read it carries began. Answered whether
    /// or not this node runs rounds of its own.
    pub fn on_term_probe(&self, from: NodeId, probe: TermProbe) {
        let local = &self.inner.local;
        let terms = probe.groups.iter().filter_map(|g| local.term(*g).map(|t| (*g, t)));
        let answer = TermAnswer { probe_id: probe.probe_id, terms: terms.collect() };
        self.inner.peers.send_term_answer(from, answer);
    }

    /// This node's Pub/Sub subscribers.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// Which keyspace events this node's replicas publish.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.inner.notifier
    }

    /// Hands `publication` to every other node of the cluster, for their subscribers.
    pub fn publish_to_peers(&self, publication: &Publication) {
        let me = self.inner.table.me();
        for (node, _) in self.inner.table.nodes() {
            if node != me {
                self.inner.peers.send_publication(node, publication.clone());
            }
        }
    }

    /// A peer relayed a message published there: for this node's subscribers.
    pub fn on_publication(&self, _from: NodeId, publication: Publication) {
        self.inner.hub.deliver_from_peer(publication);
    }

    /// A peer answered one of our read rounds.
    pub fn on_term_answer(&self, from: NodeId, answer: TermAnswer) {
        if let Some(rounds) = &self.read_rounds {
            rounds.on_answer(from, answer);
        }
    }

    /// A peer forwarded a request to us: run it on our replica only (never forward again,
    /// so a stale cache cannot make a request circle) and answer the peer.
    pub fn on_forward(&self, from: NodeId, request: ForwardRequest) {
        let ForwardRequest { request_id, group, mut op, endorsed_term } = request;
        if let (ShardOp::Read { endorsement, .. }, Some(term)) = (&mut op, endorsed_term) {
            // The endorser is the node the request came from, whatever the frame says.
            *endorsement = Some(Endorsement { node: from, term });
        }
        // Only a read's answer is held against a frame: a write answered has been applied,
        // and a refusal would say it was not (its answer dropped, it is outcome unknown).
        let bytes_max =
            matches!(op, ShardOp::Read { .. }).then_some(self.forward_reply_bytes_max);
        if let Some(result) = self.read_at_door(group, &op, from) {
            let result = fit_frame(result, group, bytes_max);
            self.inner.peers.send_forward_reply(from, ForwardReply { request_id, result });
            return;
        }
        let counted = counts_as_workload(&op);
        let answer = self.inner.local.execute(group, op);
        let peers = self.inner.peers.clone();
        let timeout = self.inner.request_timeout;
        let workload = self.workload.clone();
        tokio::spawn(async move {
            let result = answer_within(answer, group, timeout).await;
            if result.is_ok() && counted {
                workload.served(group, from);
            }
            let result = fit_frame(result, group, bytes_max);
            peers.send_forward_reply(from, ForwardReply { request_id, result });
        });
    }
}

/// `result`, or a refusal in its place if it passes `bytes_max`, when there is one
/// (`on_forward`).
fn fit_frame(result: ShardResult, group: GroupId, bytes_max: Option<u64>) -> ShardResult {
    let per_item = crate::shard::limits::ENCODING_BYTES_PER_ITEM;
    let (Ok(reply), Some(bytes_max)) = (&result, bytes_max) else {
        return result;
    };
    let bytes = reply.encoded_bytes_bound(per_item);
    if bytes <= bytes_max {
        return result;
    }
    let reason = format!(
        "its answer of {bytes} bytes exceeds the {bytes_max} bytes a peer frame carries; ask \
         for fewer keys at once"
    );
    Err(ShardError::Refused { group, reason })
}

/// Whether a request answered here counts as the group's traffic through its node, which
/// leaders follow (`timeouts.follow_workload_ms`): a `Members` read is WAIT's polling (up
/// to 200 rounds a second at first, `resp::wait`) or an operator's, not the application's
/// traffic.
fn counts_as_workload(op: &ShardOp) -> bool {
    !matches!(op, ShardOp::Members)
}

/// A local replica's answer (`LocalGroups::execute`) within `within`: `NoReplica` if the
/// node holds none of the group, `Timeout` past it.
async fn answer_within(
    answer: Option<LocalFuture>,
    group: GroupId,
    within: Duration,
) -> ShardResult {
    let Some(answer) = answer else { return Err(ShardError::NoReplica { group }) };
    tokio::time::timeout(within, answer).await.unwrap_or(Err(ShardError::Timeout { group }))
}

/// Forgets a forward's id when its waiter goes away.
struct PendingGuard<'a> {
    inner: &'a Inner,
    request_id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.pending.remove(&self.request_id);
    }
}

/// Errors after which another attempt (the same request, maybe elsewhere) is safe and useful.
/// A write retried after `Timeout` or `LeadershipLost` is deduplicated by its request id.
fn retryable(error: &ShardError) -> bool {
    matches!(
        error,
        ShardError::NotLeader { .. }
            | ShardError::NoReplica { .. }
            | ShardError::Unreachable { .. }
            | ShardError::Timeout { .. }
            | ShardError::LeadershipLost { .. }
            | ShardError::Stopped { .. }
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use super::*;
    use crate::kv::{Reply, Request};
    use crate::raft::types::Term;
    use crate::router::layout::Layout;
    use crate::router::table::NodeAddrs;
    use crate::transport::api::{GroupMessage, Urgency};

    /// Node 2 leads every group; it answers writes with the request's seq and reads with
    /// "leader". A follower that `serves` answers the reads offered to it ("follower").
    /// The leader answers its first writes from `script`, one each: an error, or `None`
    /// for no answer ever (a write whose outcome stays unknown).
    struct FakeGroups {
        leader: NodeId,
        me: NodeId,
        serves: bool,
        script: Script,
        /// The term every replica here published (`LocalGroups::term`), if any.
        published: Option<Term>,
    }

    impl LocalGroups for FakeGroups {
        fn execute(&self, group: GroupId, op: ShardOp) -> Option<LocalFuture> {
            let (me, leader, serves) = (self.me, self.leader, self.serves);
            let scripted = if me == leader && matches!(op, ShardOp::Write(_)) {
                self.script.lock().expect("script").pop_front()
            } else {
                None
            };
            Some(Box::pin(async move {
                match scripted {
                    Some(Some(error)) => return Err(error),
                    Some(None) => std::future::pending::<()>().await,
                    None => {}
                }
                if me != leader {
                    if let (ShardOp::Read { follower_ok: true, .. }, true) = (&op, serves) {
                        return Ok(Reply::Bulk(bytes::Bytes::from_static(b"follower")));
                    }
                    return Err(ShardError::NotLeader { group, leader: Some(leader) });
                }
                match op {
                    ShardOp::Write(req) => Ok(Reply::Int(req.seq as i64)),
                    ShardOp::Read { endorsement: Some(by), .. } => {
                        let said = format!("leader, endorsed by {} in {}", by.node, by.term);
                        Ok(Reply::Bulk(said.into()))
                    }
                    ShardOp::Read { .. } => Ok(Reply::Bulk(bytes::Bytes::from_static(b"leader"))),
                    _ => Ok(Reply::Ok),
                }
            }))
        }

        fn holds(&self, _group: GroupId) -> bool {
            true
        }

        fn term(&self, _group: GroupId) -> Option<Term> {
            self.published
        }
    }

    /// Delivers forwards between NodeClients in-process.
    #[derive(Default)]
    struct Wire {
        nodes: Mutex<Vec<(NodeId, NodeClient)>>,
        /// Nodes whose links are down: nothing is sent to them.
        down: Mutex<Vec<NodeId>>,
        /// Nodes up that never hear a read round (a machine gone silent, its link not
        /// known to be down yet).
        silent: Mutex<Vec<NodeId>>,
    }

    struct WireEnd {
        me: NodeId,
        wire: Arc<Wire>,
    }

    impl WireEnd {
        fn client(&self, id: NodeId) -> NodeClient {
            let nodes = self.wire.nodes.lock().expect("wire");
            nodes.iter().find(|(n, _)| *n == id).map(|(_, c)| c.clone()).expect("known node")
        }
    }

    impl PeerSender for WireEnd {
        fn send_raft(&self, _: NodeId, _: GroupMessage, _: Urgency) {}
        fn send_forward(&self, to: NodeId, request: ForwardRequest) {
            self.client(to).on_forward(self.me, request);
        }
        fn send_forward_reply(&self, to: NodeId, reply: ForwardReply) {
            self.client(to).on_forward_reply(reply);
        }
        fn send_term_probe(&self, to: NodeId, probe: TermProbe) {
            if !self.wire.silent.lock().expect("wire").contains(&to) {
                self.client(to).on_term_probe(self.me, probe);
            }
        }
        fn send_term_answer(&self, to: NodeId, answer: TermAnswer) {
            self.client(to).on_term_answer(self.me, answer);
        }
        fn send_publication(&self, to: NodeId, publication: Publication) {
            self.client(to).on_publication(self.me, publication);
        }
        fn is_up(&self, to: NodeId) -> bool {
            !self.wire.down.lock().expect("wire").contains(&to)
        }
    }

    fn cluster() -> Vec<NodeClient> {
        cluster_with(false, false)
    }

    /// `cluster`, and the wire, to take links down.
    fn cluster_and_wire() -> (Vec<NodeClient>, Arc<Wire>) {
        let wire = Arc::new(Wire::default());
        (cluster_of_on(false, false, &Script::default(), &wire, None), wire)
    }

    /// `cluster_and_wire` with node-level read rounds, every replica in term 7.
    fn cluster_with_rounds() -> (Vec<NodeClient>, Arc<Wire>) {
        let wire = Arc::new(Wire::default());
        (cluster_of_on(false, false, &Script::default(), &wire, Some(Term(7))), wire)
    }

    /// Three nodes; `follower_reads` for their request paths, `serves` for their replicas.
    fn cluster_with(follower_reads: bool, serves: bool) -> Vec<NodeClient> {
        cluster_of(follower_reads, serves, &Arc::default())
    }

    /// Answers the leader gives its first writes (`FakeGroups::script`).
    type Script = Arc<Mutex<std::collections::VecDeque<Option<ShardError>>>>;

    /// `cluster_with`, the leader answering its first writes from `script`.
    fn cluster_of(follower_reads: bool, serves: bool, script: &Script) -> Vec<NodeClient> {
        cluster_of_on(follower_reads, serves, script, &Arc::default(), None)
    }

    /// `cluster_of`, on `wire`; with `rounds`, every replica published that term and the
    /// nodes run read rounds.
    fn cluster_of_on(
        follower_reads: bool,
        serves: bool,
        script: &Script,
        wire: &Arc<Wire>,
        rounds: Option<Term>,
    ) -> Vec<NodeClient> {
        let layout = Layout::even(3, 4, 3);
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let addrs: Vec<(NodeId, NodeAddrs)> =
            (1..=3).map(|i| (NodeId(i), NodeAddrs { resp: addr, peer: addr })).collect();
        let mut clients = Vec::new();
        for i in 1..=3 {
            let me = NodeId(i);
            let table = RoutingTable::new(me, &layout, &addrs);
            let script = script.clone();
            let published = rounds;
            let local = Arc::new(FakeGroups { leader: NodeId(2), me, serves, script, published });
            let peers = Arc::new(WireEnd { me, wire: wire.clone() });
            let client = NodeClient::new(table, local, peers, Duration::from_secs(2))
                .with_follower_reads(follower_reads)
                .with_workload(Arc::new(Workload::new(true)))
                .with_read_rounds(
                    rounds.map(|_| Duration::from_secs(60)),
                    Duration::from_secs(60),
                    ReadRoundCounters::unregistered(),
                );
            wire.nodes.lock().expect("wire").push((me, client.clone()));
            clients.push(client);
        }
        clients
    }

    fn write(seq: u64) -> ShardOp {
        let command = crate::kv::KvCommand::Del { keys: vec![] };
        ShardOp::Write(Request { client_id: 7, seq, now_ms: 0, command })
    }

    /// The leader counts each request it served once, by the node it came in through; a
    /// read a follower served and a refused request count nothing.
    #[tokio::test]
    async fn the_leader_counts_requests_by_the_node_they_came_in_through() {
        let script = Script::default();
        let clients = cluster_of(true, true, &script);
        assert_eq!(clients[0].execute(GroupId(1), write(1)).await, Ok(Reply::Int(1)));
        assert_eq!(clients[2].execute(GroupId(1), write(2)).await, Ok(Reply::Int(2)));
        assert_eq!(clients[1].execute(GroupId(1), write(3)).await, Ok(Reply::Int(3)));
        assert_eq!(clients[0].execute(GroupId(1), read()).await, said("follower"));
        let refusal = ShardError::Refused { group: GroupId(1), reason: "no".into() };
        script.lock().expect("script").push_back(Some(refusal.clone()));
        assert_eq!(clients[0].execute(GroupId(1), write(4)).await, Err(refusal));
        let counted = clients[1].workload.take();
        let by_origin = BTreeMap::from([(NodeId(1), 1), (NodeId(2), 1), (NodeId(3), 1)]);
        assert_eq!(counted, BTreeMap::from([(GroupId(1), by_origin)]));
        assert!(clients[0].workload.take().is_empty() && clients[2].workload.take().is_empty());
    }

    /// `execute_here` asks this node's replica only, and answers its refusal as it is.
    #[tokio::test]
    async fn execute_here_never_leaves_the_node() {
        let clients = cluster();
        let transfer = ShardOp::TransferLeader { to: NodeId(1) };
        let refused = clients[0].execute_here(GroupId(1), transfer.clone()).await;
        let not_leader = ShardError::NotLeader { group: GroupId(1), leader: Some(NodeId(2)) };
        assert_eq!(refused, Err(not_leader));
        assert_eq!(clients[1].execute_here(GroupId(1), transfer).await, Ok(Reply::Ok));
    }

    #[tokio::test]
    async fn a_write_on_a_follower_node_follows_the_hint_to_the_leader() {
        let clients = cluster();
        let answer = clients[0].execute(GroupId(1), write(41)).await;
        assert_eq!(answer, Ok(Reply::Int(41)));
        assert!(clients[0].inner.pending.is_empty());
    }

    fn read() -> ShardOp {
        ShardOp::read(crate::kv::read::ReadCommand::Get { key: bytes::Bytes::from_static(b"k") }, 0)
    }

    fn said(text: &str) -> ShardResult {
        Ok(Reply::Bulk(bytes::Bytes::copy_from_slice(text.as_bytes())))
    }

    /// An answer to a forwarded request that no peer frame could carry is refused in its
    /// place, so the client hears at once; the same answer given at its own node stands.
    #[tokio::test]
    async fn a_forwarded_answer_larger_than_a_frame_is_refused() {
        let (clients, wire) = cluster_and_wire();
        for (node, client) in wire.nodes.lock().expect("wire").iter_mut() {
            if *node == NodeId(2) {
                *client = client.clone().with_forward_reply_bytes_max(4);
            }
        }
        let Err(ShardError::Refused { group: GroupId(1), reason }) =
            clients[0].execute(GroupId(1), read()).await
        else {
            panic!("expected a refusal");
        };
        assert!(reason.starts_with("its answer of 22 bytes exceeds the 4 bytes"), "{reason}");
        assert_eq!(clients[1].execute(GroupId(1), read()).await, said("leader"));
        assert_eq!(clients[0].execute(GroupId(1), write(5)).await, Ok(Reply::Int(5)));
    }

    /// With follower reads, the node's own follower serves a read; one that refuses it
    /// hands it to the leader; without them, the read goes to the leader.
    #[tokio::test]
    async fn a_read_is_offered_to_the_local_follower_first() {
        let clients = cluster_with(true, true);
        assert_eq!(clients[0].execute(GroupId(1), read()).await, said("follower"));
        assert_eq!(clients[1].execute(GroupId(1), read()).await, said("leader"));
        assert_eq!(clients[0].execute(GroupId(1), write(3)).await, Ok(Reply::Int(3)));
        let refusing = cluster_with(true, false);
        assert_eq!(refusing[0].execute(GroupId(1), read()).await, said("leader"));
        let forwarding = cluster_with(false, true);
        assert_eq!(forwarding[0].execute(GroupId(1), read()).await, said("leader"));
    }

    /// A write the leader refused while handing its leadership over was not applied: the
    /// request path retries it, and the client never sees the refusal.
    #[tokio::test]
    async fn a_write_refused_during_a_leader_transfer_is_retried() {
        let transferring = || Some(ShardError::Transferring { group: GroupId(1), to: NodeId(3) });
        let script = Script::default();
        let clients = cluster_of(false, false, &script);
        script.lock().expect("script").extend([transferring(), transferring()]);
        assert_eq!(clients[0].execute(GroupId(1), write(8)).await, Ok(Reply::Int(8)));
        assert!(script.lock().expect("script").is_empty(), "forwarded, refused twice, applied");
        script.lock().expect("script").push_back(transferring());
        assert_eq!(clients[1].execute(GroupId(1), write(9)).await, Ok(Reply::Int(9)));
        assert!(script.lock().expect("script").is_empty(), "on the leader's node, refused once");
    }

    /// A write whose first attempt got no answer may have been applied: a later refusal
    /// (which only says that attempt was not) must not tell the client "not applied".
    #[tokio::test]
    async fn a_refusal_after_an_unknown_outcome_answers_outcome_unknown() {
        let busy = ShardError::Busy { group: GroupId(1), reason: "too many pending writes".into() };
        let script = Script::default();
        let clients = cluster_of(false, false, &script);
        script.lock().expect("script").extend([None, Some(busy.clone())]);
        let answer = clients[1].execute(GroupId(1), write(4)).await;
        assert_eq!(answer, Err(ShardError::Timeout { group: GroupId(1) }));
        // Refused at once, with no unknown outcome before it: the refusal stands.
        script.lock().expect("script").push_back(Some(busy.clone()));
        assert_eq!(clients[1].execute(GroupId(1), write(5)).await, Err(busy));
    }

    /// With the leader's link down nothing is sent to it: the write was applied nowhere,
    /// and says so once the time-out has passed, instead of "outcome unknown".
    #[tokio::test]
    async fn a_write_never_sent_is_refused_not_unknown() {
        let (clients, wire) = cluster_and_wire();
        wire.down.lock().expect("wire").push(NodeId(2));
        let answer = clients[0].execute(GroupId(1), write(3)).await;
        // Node 3 answers "not leader" with a hint at node 2; the last attempt (node 2's
        // link, down) sent nothing.
        let not_sent = ShardError::Unreachable { group: GroupId(1), node: NodeId(2) };
        let not_leader = ShardError::NotLeader { group: GroupId(1), leader: Some(NodeId(2)) };
        assert!(answer == Err(not_sent) || answer == Err(not_leader), "{answer:?}");
        wire.down.lock().expect("wire").clear();
        assert_eq!(clients[0].execute(GroupId(1), write(4)).await, Ok(Reply::Int(4)));
    }

    /// A leader handing over for longer than the time-out: nothing was applied, and the
    /// write says so rather than "outcome unknown".
    #[tokio::test]
    async fn a_write_refused_until_the_time_out_answers_the_refusal() {
        let transferring = ShardError::Transferring { group: GroupId(1), to: NodeId(3) };
        let script = Script::default();
        let clients = cluster_of(false, false, &script);
        script.lock().expect("script").extend(vec![Some(transferring.clone()); 1000]);
        let answer = clients[1].execute(GroupId(1), write(6)).await;
        assert_eq!(answer, Err(transferring));
    }

    #[tokio::test]
    async fn a_stale_leader_cache_is_corrected_by_the_hint() {
        let clients = cluster();
        clients[0].table().set_leader(GroupId(2), Some(NodeId(3)), Term(1));
        let answer = clients[0].execute(GroupId(2), write(5)).await;
        assert_eq!(answer, Ok(Reply::Int(5)));
    }

    #[tokio::test]
    async fn an_unknown_group_is_refused_at_once() {
        let clients = cluster();
        let answer = clients[0].execute(GroupId(99), write(1)).await;
        assert_eq!(answer, Err(ShardError::NoReplica { group: GroupId(99) }));
    }

    /// A read at the leader's node goes to its replica with a peer's endorsement from a
    /// node-level round; one forwarded there keeps the forwarder's own.
    #[tokio::test]
    async fn a_read_at_the_leader_is_endorsed_by_a_read_round() {
        let (clients, _wire) = cluster_with_rounds();
        clients[1].table().set_leader(GroupId(1), Some(NodeId(2)), Term(7));
        let Ok(Reply::Bulk(text)) = clients[1].execute(GroupId(1), read()).await else {
            panic!("no answer");
        };
        let text = String::from_utf8_lossy(&text).to_string();
        assert!(
            text == "leader, endorsed by 1 in 7" || text == "leader, endorsed by 3 in 7",
            "{text}"
        );
        let forwarded = clients[0].execute(GroupId(1), read()).await;
        assert_eq!(forwarded, said("leader, endorsed by 1 in 7"));
    }

    /// With one peer silent (its link still up) the other's answer endorses the read.
    #[tokio::test]
    async fn a_silent_peer_does_not_hold_a_read_round() {
        let (clients, wire) = cluster_with_rounds();
        wire.silent.lock().expect("wire").push(NodeId(1));
        clients[1].table().set_leader(GroupId(2), Some(NodeId(2)), Term(7));
        let answer = clients[1].execute(GroupId(2), read()).await;
        assert_eq!(answer, said("leader, endorsed by 3 in 7"));
    }

    /// Loses every forward.
    struct BlackHole;

    impl PeerSender for BlackHole {
        fn send_raft(&self, _: NodeId, _: GroupMessage, _: Urgency) {}
        fn send_forward(&self, _: NodeId, _: ForwardRequest) {}
        fn send_forward_reply(&self, _: NodeId, _: ForwardReply) {}
        fn send_term_probe(&self, _: NodeId, _: TermProbe) {}
        fn send_term_answer(&self, _: NodeId, _: TermAnswer) {}
        fn send_publication(&self, _: NodeId, _: Publication) {}
    }

    #[tokio::test]
    async fn an_abandoned_forward_forgets_its_request_id() {
        let layout = Layout::even(3, 4, 3);
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let addrs: Vec<(NodeId, NodeAddrs)> =
            (1..=3).map(|i| (NodeId(i), NodeAddrs { resp: addr, peer: addr })).collect();
        let table = RoutingTable::new(NodeId(1), &layout, &addrs);
        table.set_leader(GroupId(1), Some(NodeId(2)), Term(1));
        let local = Arc::new(FakeGroups {
            leader: NodeId(2),
            me: NodeId(1),
            serves: false,
            script: Script::default(),
            published: None,
        });
        let client = NodeClient::new(table, local, Arc::new(BlackHole), Duration::from_secs(60));
        let abandoned =
            tokio::time::timeout(Duration::from_millis(20), client.execute(GroupId(1), write(1)));
        assert!(abandoned.await.is_err(), "nobody answers, so the caller gives up first");
        assert!(client.inner.pending.is_empty(), "the dropped wait removed its id");
    }
}
