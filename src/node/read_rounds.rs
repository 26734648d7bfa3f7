//! Node-level read rounds: one question to a peer confirms the reads of every group this
//! node leads that the peer holds. A linearizable read at a leader needs a voter's word,
//! given after the read began, that it was still in the leader's term
//! (`RawNode::read_index_endorsed`); a group's own ReadIndex round asks it with a heartbeat
//! to every follower, per group, and wakes every follower replica to answer. Here the
//! reads waiting at this node, whatever their group, go out as one `TermProbe` to a peer;
//! the peer's transport task answers it from the terms its replicas published
//! (`ShardConfig::published_term`) without waking them, and each read goes to its replica
//! with the first endorsement a peer holding its group gives. Each peer has at most one
//! round out: reads that arrive meanwhile wait for its next, which leaves as soon as the
//! peer answers (the peer must read its term after the read began).
//!
//! A read asks one peer first: of its group's other replicas, the next node id after this
//! node's around the ring (`preferred`), so that where nodes hold the same groups their
//! reads go to one peer in as few probes as possible, and each node of a cluster asks a
//! different one. Every probe costs both nodes a frame each way, and the peer a wake-up.
//! Peers are independent, so a slow peer delays a read by the backup at most (`[reads]
//! node_round_backup_ms`): a read that waited that long without a word asks its group's
//! other peers too, one whose first peer declined asks them at once, and so does one that
//! arrives while its first peer's round out is that old. A peer's round out is checked for
//! staleness and a link down only when a read asks that peer.
//!
//! The endorsement only ever saves a group its round: a replica that finds it wanting (not
//! the leader's term, a learner, a group of five, no no-op committed yet) runs its own
//! ReadIndex round, as it does for a read that got no endorsement (every peer asked
//! answered without one, or none did within a heartbeat interval, or too many reads wait).
//!
//! Must never: let a read take an answer to a probe sent before the read was queued (it
//! only ever joins a peer's next round, and an answer counts only for the round out to
//! that peer, by a probe id no earlier run of the node used), or call the transport while
//! holding the lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::metrics::node::ReadRoundCounters;
use crate::node::client::LocalGroups;
use crate::raft::types::{GroupId, NodeId};
use crate::router::table::RoutingTable;
use crate::shard::api::Endorsement;
use crate::transport::api::{PeerSender, TermAnswer, TermProbe};

/// Reads waiting for one peer's next round (as many again may be in its round out); a read
/// finding the queue full does not ask that peer (with no peer left, it goes to its group's
/// own round). As many as the node's pending forwards (`client::FORWARDS_PENDING_MAX`).
pub const ROUND_WAITERS_MAX: usize = 100_000;

/// Replicas of a group whose reads take part: up to three, a peer's word and the leader's
/// make a majority of the voters.
const REPLICAS_MAX: usize = 3;

/// One read waiting for an endorsement from any of the peers asked.
struct Read {
    tx: Mutex<Option<oneshot::Sender<Option<Endorsement>>>>,
    /// Peers asked that have not declined yet.
    asked: AtomicUsize,
}

impl Read {
    /// A read no peer asked yet, and where its answer comes.
    fn unasked() -> (Arc<Read>, oneshot::Receiver<Option<Endorsement>>) {
        let (tx, rx) = oneshot::channel();
        (Arc::new(Read { tx: Mutex::new(Some(tx)), asked: AtomicUsize::new(0) }), rx)
    }

    /// Whether no answer ended the read yet.
    fn waits(&self) -> bool {
        self.tx.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some()
    }

    /// Answers the read unless another peer's answer already did; true if this one did and
    /// the reader still waited for it.
    fn answer(&self, endorsement: Option<Endorsement>) -> bool {
        let tx = self.tx.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        tx.is_some_and(|tx| tx.send(endorsement).is_ok())
    }

    /// One peer asked gave no endorsement: the read goes without once none is left.
    fn declined(&self) {
        if self.asked.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.answer(None);
        }
    }
}

type Reads = HashMap<GroupId, Vec<Arc<Read>>>;

/// The order in which `me` asks its peers: the next node id after its own first, around
/// the ring of ids, so that each node's reads go to one peer and the nodes of a cluster
/// ask different ones.
fn preferred(me: NodeId, peer: NodeId) -> u64 {
    peer.get().wrapping_sub(me.get())
}

/// The read rounds of one node; shared by the request path's tasks.
pub struct ReadRounds {
    table: Arc<RoutingTable>,
    local: Arc<dyn LocalGroups>,
    peers: Arc<dyn PeerSender>,
    /// A read waits this long at most; a peer's round out longer is replaced by the next
    /// read for that peer (its reads take no word from it).
    wait: Duration,
    /// A read that waited this long without a word asks the group's other peers too; one
    /// whose first peer declined asks them at once, and so does one arriving while its
    /// first peer's round out is this old. Zero: every read asks every peer at once.
    backup: Duration,
    /// `ROUND_WAITERS_MAX`, but in tests.
    queued_max: usize,
    counters: ReadRoundCounters,
    state: Mutex<State>,
}

struct State {
    /// Random at start (`first_read_id`): an answer to a round of an earlier run of this
    /// node, still queued at a peer, never matches a round of this one.
    next_id: u64,
    peers: HashMap<NodeId, PeerRounds>,
}

/// One peer's rounds.
#[derive(Default)]
struct PeerRounds {
    /// Reads that arrived after the round out was sent, by group.
    queued: Reads,
    queued_reads: usize,
    out: Option<Round>,
}

struct Round {
    id: u64,
    sent: Instant,
    reads: Reads,
}

impl PeerRounds {
    /// Whether the peer has a round out sent at least `age` before `now`.
    fn out_older_than(&self, now: Instant, age: Duration) -> bool {
        self.out.as_ref().is_some_and(|r| now.saturating_duration_since(r.sent) >= age)
    }
}

impl ReadRounds {
    pub fn new(
        table: Arc<RoutingTable>,
        local: Arc<dyn LocalGroups>,
        peers: Arc<dyn PeerSender>,
        wait: Duration,
        backup: Duration,
        counters: ReadRoundCounters,
    ) -> ReadRounds {
        let next_id = crate::shard::actor::first_read_id();
        let state = Mutex::new(State { next_id, peers: HashMap::new() });
        let queued_max = ROUND_WAITERS_MAX;
        ReadRounds { table, local, peers, wait, backup, queued_max, counters, state }
    }

    /// A peer's endorsement of a read of `group` that began before this call, from the next
    /// round of a peer up that holds a replica of the group; `None` if none gave one, and
    /// at once for a group of one replica (no round to save) or of more than three (one
    /// peer's word and the leader's are no majority there). `now` is the time of the call,
    /// read once by the caller: the wait ends at `now` and `wait`.
    ///
    /// The read asks one peer, the first of `preferred`'s order, so that where nodes hold
    /// the same groups their reads go to one peer in as few rounds as possible; it asks the
    /// next too if that one's round out is already older than `backup`, and every other one
    /// once it has waited `backup` itself without a word or every peer asked declined.
    pub async fn endorsement(&self, group: GroupId, now: Instant) -> Option<Endorsement> {
        let me = self.table.me();
        // The other replicas, read in place: no copy of the route on every read.
        let mut others = [me; REPLICAS_MAX];
        let count = self.table.with_group(group, |route| {
            if !(2..=REPLICAS_MAX).contains(&route.replicas.len()) {
                return 0;
            }
            let mut count = 0;
            for (slot, node) in others.iter_mut().zip(route.replicas.iter().filter(|n| **n != me))
            {
                *slot = *node;
                count += 1;
            }
            count
        });
        let others = &mut others[..count.unwrap_or(0)];
        if others.is_empty() {
            return None;
        }
        others.sort_unstable_by_key(|node| preferred(me, *node));
        let (mut read, mut rx) = Read::unasked();
        let mut asked = [false; REPLICAS_MAX];
        let endorsement = if self.ask(group, &read, others, &mut asked, now, false) {
            // Every round's end answers its reads; the time-outs bound a round still out.
            let end = now + self.wait;
            let mut until = now + self.backup.min(self.wait);
            loop {
                let outcome = tokio::time::timeout_at(until, &mut rx).await;
                if let Ok(Ok(Some(endorsement))) = outcome {
                    break Some(endorsement);
                }
                let declined = outcome.is_ok();
                if (!declined && until == end) || Instant::now() >= end {
                    break None;
                }
                // Every peer asked declined (in another term, not holding the group, its
                // link down), which ended the read: another asks the peers left, if any.
                // Or none answered within the backup: the same read asks them too.
                if declined {
                    (read, rx) = Read::unasked();
                }
                let more = self.ask(group, &read, others, &mut asked, Instant::now(), true);
                if declined && !more {
                    break None;
                }
                until = end;
            }
        } else {
            None
        };
        if !self.backup.is_zero() && asked.iter().filter(|&&a| a).count() > 1 {
            self.counters.backed_up.inc();
        }
        if endorsement.is_none() {
            self.counters.unendorsed.inc();
        }
        endorsement
    }

    /// Queues `read` (of `group`) for the next round of peers of `others` (in the order of
    /// preference) it has not `asked` yet: with `all`, every one up, if no answer ended the
    /// read meanwhile; else the first up with room, and each next while every peer asked
    /// so far has a round out older than `backup`. Starts the round of each such peer with
    /// none out. Whether this call asked a peer (without `all`: whether the read waits).
    fn ask(
        &self,
        group: GroupId,
        read: &Arc<Read>,
        others: &[NodeId],
        asked: &mut [bool; REPLICAS_MAX],
        now: Instant,
        all: bool,
    ) -> bool {
        let mut probes = Vec::new();
        let mut asked_now = false;
        {
            let mut st = self.lock();
            if all && !read.waits() {
                return false;
            }
            // A peer asked whose round out is not old yet: the read waits for it alone.
            let mut covered = false;
            for (i, &node) in others.iter().enumerate() {
                if asked[i] {
                    continue;
                }
                if covered && !all {
                    break;
                }
                // An id for a round this peer may start (one left unused is never sent).
                let id = st.next_id;
                st.next_id += 1;
                let up = self.peers.is_up(node);
                let peer = st.peers.entry(node).or_default();
                if peer.out_older_than(now, self.wait) || !up {
                    // The peer never answered (the probe or its answer was lost, say), or
                    // its link is down: the round endorses nothing, and the next may leave.
                    let lost = peer.out.take().map(|r| r.reads).unwrap_or_default();
                    lost.into_values().flatten().for_each(|r| r.declined());
                }
                if !up {
                    // Nor will the reads waiting for its next round get a word from it.
                    peer.queued_reads = 0;
                    let queued = std::mem::take(&mut peer.queued);
                    queued.into_values().flatten().for_each(|r| r.declined());
                    continue;
                }
                if peer.queued_reads < self.queued_max {
                    read.asked.fetch_add(1, Ordering::AcqRel);
                    peer.queued.entry(group).or_default().push(read.clone());
                    peer.queued_reads += 1;
                    asked[i] = true;
                    asked_now = true;
                }
                if peer.out.is_none() && !peer.queued.is_empty() {
                    probes.push(self.start_round(node, peer, id, now));
                }
                covered |= asked[i] && !peer.out_older_than(now, self.backup);
            }
        }
        self.send(probes);
        asked_now
    }

    /// A peer answered its round: each group it gives this node's replica's term for is
    /// endorsed (a term that is not the leader's is no use to it), and its next round
    /// leaves if reads wait for it.
    pub fn on_answer(&self, from: NodeId, answer: TermAnswer) {
        let probe = {
            let mut st = self.lock();
            let id = st.next_id;
            let Some(peer) = st.peers.get_mut(&from) else { return };
            let Some(round) = peer.out.take_if(|r| r.id == answer.probe_id) else {
                return; // a round that already ended
            };
            self.counters.round_seconds.observe(round.sent.elapsed().as_secs_f64());
            let mut reads = round.reads;
            for (group, term) in answer.terms {
                if self.local.term(group) != Some(term) {
                    continue;
                }
                for read in reads.remove(&group).unwrap_or_default() {
                    if read.answer(Some(Endorsement { node: from, term })) {
                        self.counters.endorsed.inc();
                    }
                }
            }
            reads.into_values().flatten().for_each(|r| r.declined());
            if peer.queued.is_empty() {
                return;
            }
            let probe = self.start_round(from, peer, id, Instant::now());
            st.next_id += 1;
            probe
        };
        self.send(vec![probe]);
    }

    /// Sends probes, outside the lock (a peer's answer may come back on this very call).
    fn send(&self, probes: Vec<(NodeId, TermProbe)>) {
        for (node, probe) in probes {
            self.peers.send_term_probe(node, probe);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `node`'s queued reads its round `id`, sent `now`: the probe to send.
    fn start_round(
        &self,
        node: NodeId,
        peer: &mut PeerRounds,
        id: u64,
        now: Instant,
    ) -> (NodeId, TermProbe) {
        let reads = std::mem::take(&mut peer.queued);
        peer.queued_reads = 0;
        let groups = reads.keys().copied().collect();
        peer.out = Some(Round { id, sent: now, reads });
        self.counters.rounds.inc();
        (node, TermProbe { probe_id: id, groups })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::node::client::LocalFuture;
    use crate::raft::types::Term;
    use crate::router::layout::Layout;
    use crate::router::table::NodeAddrs;
    use crate::shard::api::ShardOp;
    use crate::transport::api::{ForwardReply, ForwardRequest, GroupMessage, Urgency};
    use tokio::task::JoinHandle;

    /// Node 1's replicas, all in `term`.
    struct Terms(Term);

    impl LocalGroups for Terms {
        fn execute(&self, _: GroupId, _: ShardOp) -> Option<LocalFuture> {
            None
        }
        fn holds(&self, _: GroupId) -> bool {
            true
        }
        fn term(&self, _: GroupId) -> Option<Term> {
            Some(self.0)
        }
    }

    /// Records the probes sent; nodes in `down` have their links down.
    #[derive(Default)]
    struct Sent {
        probes: Mutex<Vec<(NodeId, TermProbe)>>,
        down: Mutex<Vec<NodeId>>,
    }

    impl PeerSender for Sent {
        fn send_raft(&self, _: NodeId, _: GroupMessage, _: Urgency) {}
        fn send_forward(&self, _: NodeId, _: ForwardRequest) {}
        fn send_forward_reply(&self, _: NodeId, _: ForwardReply) {}
        fn send_term_probe(&self, to: NodeId, probe: TermProbe) {
            self.probes.lock().expect("probes").push((to, probe));
        }
        fn send_term_answer(&self, _: NodeId, _: TermAnswer) {}
        fn send_publication(&self, _: NodeId, _: crate::transport::api::Publication) {}
        fn is_up(&self, to: NodeId) -> bool {
            !self.down.lock().expect("down").contains(&to)
        }
    }

    impl Sent {
        fn take(&self) -> Vec<(NodeId, TermProbe)> {
            std::mem::take(&mut *self.probes.lock().expect("probes"))
        }
    }

    /// Node 1 of `nodes`, groups of `replicas`, replicas in term 5; a round ends after
    /// `wait` unanswered; reads ask every peer at once (a backup of 0).
    fn rounds_of(
        nodes: u64,
        replicas: u64,
        down: Vec<NodeId>,
        wait: Duration,
    ) -> (Arc<ReadRounds>, Arc<Sent>) {
        rounds_backed_up(nodes, replicas, down, wait, Duration::ZERO)
    }

    /// `rounds_of`, with reads asking one peer first and the others after `backup`.
    fn rounds_backed_up(
        nodes: u64,
        replicas: u64,
        down: Vec<NodeId>,
        wait: Duration,
        backup: Duration,
    ) -> (Arc<ReadRounds>, Arc<Sent>) {
        let layout = Layout::even(nodes, 4, replicas);
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let addrs: Vec<(NodeId, NodeAddrs)> =
            (1..=nodes).map(|i| (NodeId(i), NodeAddrs { resp: addr, peer: addr })).collect();
        let table = RoutingTable::new(NodeId(1), &layout, &addrs);
        let sent = Arc::new(Sent { down: Mutex::new(down), ..Sent::default() });
        let terms = Arc::new(Terms(Term(5)));
        let counters = ReadRoundCounters::unregistered();
        let rounds = ReadRounds::new(table, terms, sent.clone(), wait, backup, counters);
        (Arc::new(rounds), sent)
    }

    /// Node 1 of three, every group on every node; rounds wait long (no test times out).
    fn rounds(down: Vec<NodeId>) -> (Arc<ReadRounds>, Arc<Sent>) {
        rounds_of(3, 3, down, Duration::from_secs(60))
    }

    fn answer(probe_id: u64, terms: &[(u64, u64)]) -> TermAnswer {
        let terms = terms.iter().map(|(g, t)| (GroupId(*g), Term(*t))).collect();
        TermAnswer { probe_id, terms }
    }

    /// Lets the spawned reads queue themselves.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn read(rounds: &Arc<ReadRounds>, group: u64) -> JoinHandle<Option<Endorsement>> {
        let rounds = rounds.clone();
        tokio::spawn(async move { rounds.endorsement(GroupId(group), Instant::now()).await })
    }

    /// The probe sent to `node` (exactly one since the last look), groups sorted.
    fn probe_to(sent: &[(NodeId, TermProbe)], node: u64) -> (u64, Vec<GroupId>) {
        let to: Vec<&TermProbe> =
            sent.iter().filter(|(n, _)| *n == NodeId(node)).map(|(_, p)| p).collect();
        assert_eq!(to.len(), 1, "one probe to node {node}: {sent:?}");
        let mut groups = to[0].groups.clone();
        groups.sort();
        (to[0].probe_id, groups)
    }

    fn counted(rounds: &ReadRounds) -> (u64, u64, u64) {
        let c = &rounds.counters;
        (c.rounds.get(), c.endorsed.get(), c.unendorsed.get())
    }

    fn by(node: u64) -> Option<Endorsement> {
        Some(Endorsement { node: NodeId(node), term: Term(5) })
    }

    /// A read of `group`, which sends exactly one probe, to `node`, answered in term 5.
    async fn asked_alone(rounds: &Arc<ReadRounds>, sent: &Sent, group: u64, node: u64) {
        let r = read(rounds, group);
        settle().await;
        let out = sent.take();
        assert_eq!(out.len(), 1, "node {node} alone is asked: {out:?}");
        rounds.on_answer(NodeId(node), answer(probe_to(&out, node).0, &[(group, 5)]));
        assert_eq!(r.await.unwrap(), by(node));
    }

    /// Each peer has one round out; the reads that arrive meanwhile go in its next one, all
    /// groups in one probe, which leaves when it answers. A read takes the first answer in
    /// the leader's term, from whichever peer.
    #[tokio::test]
    async fn each_peer_has_one_round_out_and_the_next_carries_every_group_waiting() {
        let (rounds, sent) = rounds(vec![]);
        let first = read(&rounds, 4);
        settle().await;
        let out = sent.take();
        let ((two, g2), (three, g3)) = (probe_to(&out, 2), probe_to(&out, 3));
        assert_eq!((g2, g3), (vec![GroupId(4)], vec![GroupId(4)]));
        assert_ne!(two, three);
        let (one, other) = (read(&rounds, 1), read(&rounds, 2));
        settle().await;
        assert!(sent.take().is_empty(), "one round out per peer");
        rounds.on_answer(NodeId(2), answer(two, &[(4, 5)]));
        assert_eq!(first.await.unwrap(), by(2));
        let (two, g2) = probe_to(&sent.take(), 2);
        assert_eq!(g2, vec![GroupId(1), GroupId(2)]);
        // Node 3 answers its first round late: the read is answered already.
        rounds.on_answer(NodeId(3), answer(three, &[(4, 5)]));
        let (three, g3) = probe_to(&sent.take(), 3);
        assert_eq!(g3, vec![GroupId(1), GroupId(2)]);
        // Node 3 is still in term 4 for group 2: no use to the leader.
        rounds.on_answer(NodeId(3), answer(three, &[(1, 5), (2, 4)]));
        assert_eq!(one.await.unwrap(), by(3));
        settle().await;
        assert!(!other.is_finished());
        rounds.on_answer(NodeId(2), answer(two, &[(1, 5), (2, 5)]));
        assert_eq!(other.await.unwrap(), by(2));
        assert!(sent.take().is_empty(), "nothing waits: no next round");
        assert_eq!(counted(&rounds), (4, 3, 0));
        assert_eq!(rounds.counters.round_seconds.get_sample_count(), 4, "each answer timed");
    }

    /// Each node asks the next node id around the ring first.
    #[test]
    fn each_node_asks_the_next_node_around_first() {
        let order = |me: u64, mut peers: Vec<u64>| {
            peers.sort_unstable_by_key(|p| preferred(NodeId(me), NodeId(*p)));
            peers
        };
        assert_eq!(order(1, vec![3, 2]), vec![2, 3]);
        assert_eq!(order(2, vec![1, 3]), vec![3, 1]);
        assert_eq!(order(3, vec![2, 1]), vec![1, 2]);
        assert_eq!(order(4, vec![7, 2, 5]), vec![5, 7, 2]);
    }

    /// With a backup, a read asks one peer. One that waited the backup without a word asks
    /// the others too; one arriving while that peer's round out is older than the backup
    /// asks the next at once, and so does one whose first peer is down.
    #[tokio::test(start_paused = true)]
    async fn a_read_asks_one_peer_and_the_others_once_it_is_slow() {
        let (wait, backup) = (Duration::from_millis(100), Duration::from_millis(10));
        let (rounds, sent) = rounds_backed_up(3, 3, vec![], wait, backup);
        asked_alone(&rounds, &sent, 1, 2).await;
        // Node 2 goes quiet: once the read has waited the backup, it asks node 3 too.
        let began = Instant::now();
        let slow = read(&rounds, 2);
        settle().await;
        probe_to(&sent.take(), 2);
        tokio::time::sleep(backup).await;
        settle().await;
        let (three, groups) = probe_to(&sent.take(), 3);
        assert_eq!(groups, vec![GroupId(2)]);
        // Node 2's round out is older than the backup: the next read asks node 3 at once,
        // and waits for its next round.
        let next = read(&rounds, 3);
        settle().await;
        assert!(sent.take().is_empty(), "both peers have a round out");
        rounds.on_answer(NodeId(3), answer(three, &[(2, 5)]));
        assert_eq!(slow.await.unwrap(), by(3));
        assert!(began.elapsed() >= backup && began.elapsed() < wait);
        let (three, groups) = probe_to(&sent.take(), 3);
        assert_eq!(groups, vec![GroupId(3)]);
        rounds.on_answer(NodeId(3), answer(three, &[(3, 5)]));
        assert_eq!(next.await.unwrap(), by(3));
        assert_eq!(began.elapsed(), backup, "the next read waited for no backup");
        assert_eq!(rounds.counters.backed_up.get(), 2, "each asked both peers");
        // Node 2 down: a read asks node 3 at once.
        sent.down.lock().expect("down").push(NodeId(2));
        asked_alone(&rounds, &sent, 4, 3).await;
        assert_eq!((rounds.counters.backed_up.get(), rounds.counters.unendorsed.get()), (2, 0));
    }

    /// With a backup, a read its first peer declines (in another term, say) asks the others
    /// at once; one every peer declines goes without, and one a peer endorses is never
    /// backed up.
    #[tokio::test(start_paused = true)]
    async fn a_read_its_first_peer_declines_asks_the_others_at_once() {
        let (wait, backup) = (Duration::from_millis(100), Duration::from_millis(10));
        let (rounds, sent) = rounds_backed_up(3, 3, vec![], wait, backup);
        let began = Instant::now();
        let r = read(&rounds, 1);
        settle().await;
        rounds.on_answer(NodeId(2), answer(probe_to(&sent.take(), 2).0, &[(1, 6)]));
        settle().await;
        let (three, groups) = probe_to(&sent.take(), 3);
        assert_eq!(groups, vec![GroupId(1)]);
        rounds.on_answer(NodeId(3), answer(three, &[(1, 5)]));
        assert_eq!(r.await.unwrap(), by(3));
        // Declined by both (node 2 does not hold it, node 3 is a term behind): without.
        let r = read(&rounds, 2);
        settle().await;
        rounds.on_answer(NodeId(2), answer(probe_to(&sent.take(), 2).0, &[]));
        settle().await;
        rounds.on_answer(NodeId(3), answer(probe_to(&sent.take(), 3).0, &[(2, 4)]));
        assert_eq!(r.await.unwrap(), None);
        assert_eq!(began.elapsed(), Duration::ZERO, "no read waited for the backup");
        asked_alone(&rounds, &sent, 3, 2).await;
        assert!(sent.take().is_empty());
        let c = &rounds.counters;
        assert_eq!((c.backed_up.get(), c.endorsed.get(), c.unendorsed.get()), (2, 2, 1));
    }

    /// In a group of two replicas, a read its one peer declines goes without at once.
    #[tokio::test(start_paused = true)]
    async fn a_read_whose_only_peer_declines_goes_without_at_once() {
        let (wait, backup) = (Duration::from_millis(100), Duration::from_millis(10));
        let (rounds, sent) = rounds_backed_up(3, 2, vec![], wait, backup);
        let held = (1..=4)
            .map(GroupId)
            .find(|g| rounds.table.group(*g).unwrap().replicas.contains(&NodeId(1)))
            .expect("node 1 holds a group");
        let began = Instant::now();
        let r = read(&rounds, held.get());
        settle().await;
        let out = sent.take();
        assert_eq!(out.len(), 1, "{out:?}");
        let (peer, probe) = (out[0].0, out[0].1.probe_id);
        rounds.on_answer(peer, answer(probe, &[(held.get(), 4)]));
        assert_eq!(r.await.unwrap(), None);
        assert_eq!(began.elapsed(), Duration::ZERO, "no wait for the backup or the end");
        assert!(sent.take().is_empty(), "no other peer to ask");
        let c = &rounds.counters;
        assert_eq!((c.backed_up.get(), c.endorsed.get(), c.unendorsed.get()), (0, 0, 1));
    }

    /// A peer that does not answer holds no read the other endorses.
    #[tokio::test]
    async fn a_silent_peer_delays_no_read_another_endorses() {
        let (rounds, sent) = rounds(vec![]);
        for _ in 0..3 {
            let r = read(&rounds, 1);
            settle().await;
            let out = sent.take();
            let (id, _) = probe_to(&out, 2);
            rounds.on_answer(NodeId(2), answer(id, &[(1, 5)]));
            assert_eq!(r.await.unwrap(), by(2));
        }
        assert_eq!(counted(&rounds), (4, 3, 0), "node 3's first round is still out");
        let timed = rounds.counters.round_seconds.get_sample_count();
        assert_eq!(timed, 3, "a round is timed when its answer comes, not when it leaves");
    }

    /// Only the answer to the round out, from the peer it went to, counts.
    #[tokio::test]
    async fn a_stale_or_misdirected_answer_endorses_nothing() {
        let (rounds, sent) = rounds(vec![NodeId(3)]);
        let first = read(&rounds, 1);
        settle().await;
        let (old, _) = probe_to(&sent.take(), 2);
        let second = read(&rounds, 1);
        settle().await;
        rounds.on_answer(NodeId(2), answer(old, &[(1, 5)]));
        assert_eq!(first.await.unwrap(), by(2));
        let (next, _) = probe_to(&sent.take(), 2);
        rounds.on_answer(NodeId(2), answer(old, &[(1, 5)]));
        rounds.on_answer(NodeId(3), answer(next, &[(1, 5)]));
        settle().await;
        assert!(!second.is_finished(), "a repeated old answer, and one from another node");
        rounds.on_answer(NodeId(2), answer(next, &[(1, 5)]));
        assert_eq!(second.await.unwrap(), by(2));
        let timed = rounds.counters.round_seconds.get_sample_count();
        assert_eq!(timed, 2, "only the answers that ended a round are timed");
    }

    /// Every peer asked answered and none endorsed: the read goes without at once.
    #[tokio::test]
    async fn a_read_no_peer_endorses_goes_without_once_all_answered() {
        let (rounds, sent) = rounds(vec![]);
        let r = read(&rounds, 3);
        settle().await;
        let out = sent.take();
        rounds.on_answer(NodeId(2), answer(probe_to(&out, 2).0, &[(3, 6)]));
        settle().await;
        assert!(!r.is_finished());
        rounds.on_answer(NodeId(3), answer(probe_to(&out, 3).0, &[]));
        assert_eq!(r.await.unwrap(), None);
        assert_eq!(counted(&rounds), (2, 0, 1));
    }

    /// No peer holding the group is up: nothing is asked, the read goes without at once.
    #[tokio::test]
    async fn with_every_peer_down_nothing_is_asked() {
        let (rounds, sent) = rounds(vec![NodeId(2), NodeId(3)]);
        assert_eq!(rounds.endorsement(GroupId(1), Instant::now()).await, None);
        assert!(sent.take().is_empty());
        assert_eq!(counted(&rounds), (0, 0, 1));
    }

    /// A group of one replica has no round to save; in one of five, a peer's word and the
    /// leader's are no majority: neither asks anything.
    #[tokio::test]
    async fn groups_of_one_or_more_than_three_replicas_take_no_part() {
        for (nodes, replicas) in [(3, 1), (5, 5)] {
            let (rounds, sent) = rounds_of(nodes, replicas, vec![], Duration::from_secs(60));
            for g in 1..=4 {
                assert_eq!(rounds.endorsement(GroupId(g), Instant::now()).await, None);
            }
            assert!(sent.take().is_empty());
            assert_eq!(counted(&rounds), (0, 0, 0));
        }
    }

    /// Peers that never answer hold no read past the wait, and the next read replaces their
    /// rounds once past it.
    #[tokio::test(start_paused = true)]
    async fn a_round_nobody_answers_ends_within_the_wait() {
        let wait = Duration::from_millis(100);
        let (rounds, sent) = rounds_of(3, 3, vec![], wait);
        let began = Instant::now();
        assert_eq!(rounds.endorsement(GroupId(1), Instant::now()).await, None);
        assert!(began.elapsed() >= wait);
        assert_eq!(sent.take().len(), 2);
        let r = read(&rounds, 1);
        settle().await;
        let out = sent.take();
        let took = Duration::from_micros(300);
        tokio::time::advance(took).await;
        rounds.on_answer(NodeId(2), answer(probe_to(&out, 2).0, &[(1, 5)]));
        assert_eq!(r.await.unwrap(), by(2));
        assert_eq!(counted(&rounds), (4, 1, 1));
        // The rounds that ended unanswered are not timed; the answered one took `took`.
        let round_seconds = &rounds.counters.round_seconds;
        assert_eq!(round_seconds.get_sample_count(), 1);
        assert_eq!(round_seconds.get_sample_sum(), took.as_secs_f64());
    }

    /// With a peer's queue full, a read does not ask it; once its round is replaced, the
    /// queue leaves at once. A link going down ends the peer's round: the read the other
    /// peer declined goes without at once.
    #[tokio::test(start_paused = true)]
    async fn a_full_queue_or_a_link_down_never_wedges_a_peer() {
        let wait = Duration::from_millis(100);
        let (rounds, sent) = rounds_of(3, 3, vec![], wait);
        let rounds = Arc::new(ReadRounds { queued_max: 1, ..Arc::into_inner(rounds).unwrap() });
        let first = read(&rounds, 1);
        settle().await;
        let out = sent.take();
        let (two, three) = (probe_to(&out, 2).0, probe_to(&out, 3).0);
        let queued = read(&rounds, 1);
        settle().await;
        // Both queues hold one read: the next asks nobody.
        assert_eq!(rounds.endorsement(GroupId(2), Instant::now()).await, None);
        rounds.on_answer(NodeId(2), answer(two, &[(1, 5)]));
        assert_eq!(first.await.unwrap(), by(2));
        let next = probe_to(&sent.take(), 2).0;
        rounds.on_answer(NodeId(2), answer(next, &[(1, 5)]));
        assert_eq!(queued.await.unwrap(), by(2));
        // Node 3 never answered: past the wait, its round is replaced by the next read.
        tokio::time::sleep(wait).await;
        let late = read(&rounds, 3);
        settle().await;
        let out = sent.take();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_ne!(probe_to(&out, 3).0, three);
        // A read queued behind both rounds; node 2 answers in another term, and node 3's
        // link goes down: neither read waits for the time-out.
        let queued = read(&rounds, 3);
        settle().await;
        rounds.on_answer(NodeId(2), answer(probe_to(&out, 2).0, &[(3, 6)]));
        let behind = probe_to(&sent.take(), 2).0;
        sent.down.lock().expect("down").push(NodeId(3));
        let began = Instant::now();
        let again = read(&rounds, 3);
        assert_eq!(late.await.unwrap(), None, "declined by node 2, node 3 down");
        rounds.on_answer(NodeId(2), answer(behind, &[(3, 6)]));
        assert_eq!(queued.await.unwrap(), None, "declined by node 2, node 3 down");
        assert!(began.elapsed() < wait, "answered without waiting");
        // The new read asked node 2 only, which never answers: it goes without at the wait.
        assert_eq!(again.await.unwrap(), None);
    }
}
