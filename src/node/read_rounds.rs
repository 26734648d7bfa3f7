//! Node-level read rounds: one question to each peer confirms the reads of every group this
//! node leads. A linearizable read at a leader needs a voter's word, given after the read
//! began, that it was still in the leader's term (`RawNode::read_index_endorsed`); a
//! group's own ReadIndex round asks it with a heartbeat to every follower, per group, and
//! wakes every follower replica to answer. Here the reads waiting at this node, whatever
//! their group, go out as one `TermProbe` per peer; the peer's transport task answers it
//! from the terms its replicas published (`ShardConfig::published_term`) without waking
//! them, and each read goes to its replica with that peer's endorsement. Reads that arrive
//! while a round is out wait for the next one, which leaves as soon as the round ends: the
//! peer must read its term after the read began.
//!
//! The endorsement only ever saves a group its round: a replica that finds it wanting (not
//! the leader's term, a learner, a group of five, no no-op committed yet) runs its own
//! ReadIndex round, as it does for a read that got no endorsement (no peer answered for the
//! group within a heartbeat interval, too many reads waiting).

use std::collections::{BTreeSet, HashMap};
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

/// Reads waiting for a node-level round before more are sent without one (to their
/// group's own round).
pub const ROUND_WAITERS_MAX: usize = 100_000;

type Waiter = oneshot::Sender<Option<Endorsement>>;

/// The read rounds of one node; shared by the request path's tasks.
pub struct ReadRounds {
    table: Arc<RoutingTable>,
    local: Arc<dyn LocalGroups>,
    peers: Arc<dyn PeerSender>,
    /// A round not over by then ends: its unanswered reads go without an endorsement.
    wait: Duration,
    counters: ReadRoundCounters,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Reads that arrived after the round out was sent, by group.
    queued: HashMap<GroupId, Vec<Waiter>>,
    queued_reads: usize,
    round: Option<Round>,
}

struct Round {
    id: u64,
    sent: Instant,
    /// Reads not endorsed yet, by group.
    waiters: HashMap<GroupId, Vec<Waiter>>,
    /// Peers asked that have not answered.
    unanswered: BTreeSet<NodeId>,
}

impl ReadRounds {
    pub fn new(
        table: Arc<RoutingTable>,
        local: Arc<dyn LocalGroups>,
        peers: Arc<dyn PeerSender>,
        wait: Duration,
        counters: ReadRoundCounters,
    ) -> ReadRounds {
        let state = Mutex::new(State::default());
        ReadRounds { table, local, peers, wait, counters, state }
    }

    /// A peer's endorsement of a read of `group` that began before this call, from the next
    /// round; `None` if none came within the wait.
    pub async fn endorsement(&self, group: GroupId) -> Option<Endorsement> {
        let (tx, rx) = oneshot::channel();
        let probes = {
            let mut st = self.lock();
            if st.queued_reads >= ROUND_WAITERS_MAX {
                return None;
            }
            st.queued.entry(group).or_default().push(tx);
            st.queued_reads += 1;
            let stale = st.round.as_ref().is_some_and(|r| r.sent.elapsed() >= self.wait);
            if stale {
                self.end_round(&mut st)
            } else if st.round.is_none() {
                self.start_round(&mut st)
            } else {
                Vec::new()
            }
        };
        self.send(probes);
        // The round's own end answers every waiter (and counts those it leaves without);
        // this only bounds a round still out.
        tokio::time::timeout(self.wait, rx).await.ok().and_then(Result::ok).flatten()
    }

    /// A peer answered a round: each group it gives this node's replica's term for is
    /// endorsed (a term that is not the leader's is no use to it).
    pub fn on_answer(&self, from: NodeId, answer: TermAnswer) {
        let probes = self.take_answer(from, answer);
        self.send(probes);
    }

    /// `on_answer` under the lock: the next round's probes, if it ended the round.
    fn take_answer(&self, from: NodeId, answer: TermAnswer) -> Vec<(NodeId, TermProbe)> {
        let mut st = self.lock();
        let Some(round) = st.round.as_mut().filter(|r| r.id == answer.probe_id) else {
            return Vec::new(); // a round that already ended
        };
        if !round.unanswered.remove(&from) {
            return Vec::new();
        }
        for (group, term) in answer.terms {
            if self.local.term(group) != Some(term) {
                continue;
            }
            for tx in round.waiters.remove(&group).unwrap_or_default() {
                let _ = tx.send(Some(Endorsement { node: from, term }));
            }
        }
        if round.waiters.is_empty() || round.unanswered.is_empty() {
            return self.end_round(&mut st);
        }
        Vec::new()
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

    /// Ends the round out (its reads not endorsed go without) and starts the next if reads
    /// wait for it: its probes, to send.
    fn end_round(&self, st: &mut State) -> Vec<(NodeId, TermProbe)> {
        if let Some(round) = st.round.take() {
            for tx in round.waiters.into_values().flatten() {
                self.counters.unendorsed.inc();
                let _ = tx.send(None);
            }
        }
        if st.queued.is_empty() {
            return Vec::new();
        }
        self.start_round(st)
    }

    /// Starts the queued reads' round: its probes, to send, ask each peer that is up for
    /// the groups it holds a replica of. Reads of a group no such peer holds go without at
    /// once.
    fn start_round(&self, st: &mut State) -> Vec<(NodeId, TermProbe)> {
        let waiters = std::mem::take(&mut st.queued);
        st.queued_reads = 0;
        let id = st.next_id;
        st.next_id += 1;
        let me = self.table.me();
        let mut asked: HashMap<NodeId, Vec<GroupId>> = HashMap::new();
        let mut waiting = HashMap::with_capacity(waiters.len());
        for (group, txs) in waiters {
            let replicas = self.table.group(group).map(|r| r.replicas).unwrap_or_default();
            let mut covered = false;
            for node in replicas.into_iter().filter(|n| *n != me && self.peers.is_up(*n)) {
                asked.entry(node).or_default().push(group);
                covered = true;
            }
            if covered {
                waiting.insert(group, txs);
            } else {
                for tx in txs {
                    self.counters.unendorsed.inc();
                    let _ = tx.send(None);
                }
            }
        }
        if asked.is_empty() {
            return Vec::new();
        }
        self.counters.rounds.inc();
        let unanswered = asked.keys().copied().collect();
        st.round = Some(Round { id, sent: Instant::now(), waiters: waiting, unanswered });
        let probe = |(node, groups)| (node, TermProbe { probe_id: id, groups });
        asked.into_iter().map(probe).collect()
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
        down: Vec<NodeId>,
    }

    impl PeerSender for Sent {
        fn send_raft(&self, _: NodeId, _: GroupMessage, _: Urgency) {}
        fn send_forward(&self, _: NodeId, _: ForwardRequest) {}
        fn send_forward_reply(&self, _: NodeId, _: ForwardReply) {}
        fn send_term_probe(&self, to: NodeId, probe: TermProbe) {
            self.probes.lock().expect("probes").push((to, probe));
        }
        fn send_term_answer(&self, _: NodeId, _: TermAnswer) {}
        fn is_up(&self, to: NodeId) -> bool {
            !self.down.contains(&to)
        }
    }

    impl Sent {
        fn take(&self) -> Vec<(NodeId, TermProbe)> {
            std::mem::take(&mut *self.probes.lock().expect("probes"))
        }
    }

    /// Node 1 of three, every group on every node, replicas in term 5.
    fn rounds(down: Vec<NodeId>) -> (Arc<ReadRounds>, Arc<Sent>) {
        let layout = Layout::even(3, 4, 3);
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let addrs: Vec<(NodeId, NodeAddrs)> =
            (1..=3).map(|i| (NodeId(i), NodeAddrs { resp: addr, peer: addr })).collect();
        let table = RoutingTable::new(NodeId(1), &layout, &addrs);
        let sent = Arc::new(Sent { down, ..Sent::default() });
        let wait = Duration::from_millis(100);
        let terms = Arc::new(Terms(Term(5)));
        let counters = ReadRoundCounters::unregistered();
        let rounds = ReadRounds::new(table, terms, sent.clone(), wait, counters);
        (Arc::new(rounds), sent)
    }

    fn answer(probe_id: u64, terms: &[(u64, u64)]) -> TermAnswer {
        TermAnswer { probe_id, terms: terms.iter().map(|(g, t)| (GroupId(*g), Term(*t))).collect() }
    }

    /// Lets the spawned reads queue themselves.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn read(rounds: &Arc<ReadRounds>, group: u64) -> tokio::task::JoinHandle<Option<Endorsement>> {
        let rounds = rounds.clone();
        tokio::spawn(async move { rounds.endorsement(GroupId(group)).await })
    }

    /// The reads that waited for a round go out as one probe per peer, every group in it;
    /// each group takes the first answer in the leader's term, from whichever peer.
    #[tokio::test]
    async fn one_probe_per_peer_carries_every_group_and_the_leaders_term_endorses() {
        let (rounds, sent) = rounds(vec![]);
        let first = read(&rounds, 4);
        settle().await;
        let id = sent.take()[0].1.probe_id;
        let (one, two) = (read(&rounds, 1), read(&rounds, 2));
        settle().await;
        assert!(sent.take().is_empty(), "one round out at a time");
        rounds.on_answer(NodeId(2), answer(id, &[(4, 5)]));
        assert_eq!(first.await.unwrap().map(|e| e.node), Some(NodeId(2)));
        let probes = sent.take();
        let mut to: Vec<NodeId> = probes.iter().map(|(n, _)| *n).collect();
        to.sort();
        assert_eq!(to, vec![NodeId(2), NodeId(3)]);
        let id = probes[0].1.probe_id;
        for (_, p) in &probes {
            let mut groups = p.groups.clone();
            groups.sort();
            assert_eq!((p.probe_id, groups), (id, vec![GroupId(1), GroupId(2)]));
        }
        // Node 3 is still in term 4 for group 2: no use to the leader.
        rounds.on_answer(NodeId(3), answer(id, &[(1, 5), (2, 4)]));
        assert_eq!(one.await.unwrap(), Some(Endorsement { node: NodeId(3), term: Term(5) }));
        settle().await;
        assert!(!two.is_finished());
        rounds.on_answer(NodeId(2), answer(id, &[(2, 5)]));
        assert_eq!(two.await.unwrap(), Some(Endorsement { node: NodeId(2), term: Term(5) }));
        assert!(sent.take().is_empty(), "nothing waits: no next round");
        let c = &rounds.counters;
        assert_eq!((c.rounds.get(), c.unendorsed.get()), (2, 0));
    }

    /// A read that arrives while a round is out waits for the next one, which leaves as
    /// the round ends; a late answer to the old round endorses nothing.
    #[tokio::test]
    async fn a_read_arriving_during_a_round_waits_for_the_next() {
        let (rounds, sent) = rounds(vec![]);
        let first = read(&rounds, 1);
        settle().await;
        let id = sent.take()[0].1.probe_id;
        let second = read(&rounds, 1);
        settle().await;
        assert!(sent.take().is_empty(), "one round out at a time");
        rounds.on_answer(NodeId(2), answer(id, &[(1, 5)]));
        assert_eq!(first.await.unwrap().map(|e| e.node), Some(NodeId(2)));
        let next = sent.take();
        assert_eq!(next.len(), 2);
        assert!(next.iter().all(|(_, p)| p.probe_id != id && p.groups == vec![GroupId(1)]));
        rounds.on_answer(NodeId(3), answer(id, &[(1, 5)]));
        settle().await;
        assert!(!second.is_finished(), "an answer to the old round");
        rounds.on_answer(NodeId(3), answer(next[0].1.probe_id, &[(1, 5)]));
        assert_eq!(second.await.unwrap().map(|e| e.node), Some(NodeId(3)));
    }

    /// Every peer answered and a group is still wanting: its reads go without at once.
    #[tokio::test]
    async fn a_group_no_peer_endorses_goes_without_once_all_answered() {
        let (rounds, sent) = rounds(vec![]);
        let r = read(&rounds, 3);
        settle().await;
        let id = sent.take()[0].1.probe_id;
        rounds.on_answer(NodeId(2), answer(id, &[(3, 6)]));
        settle().await;
        assert!(!r.is_finished());
        rounds.on_answer(NodeId(3), answer(id, &[]));
        assert_eq!(r.await.unwrap(), None);
        let c = &rounds.counters;
        assert_eq!((c.rounds.get(), c.unendorsed.get()), (1, 1));
    }

    /// No peer holding the group is up: nothing is asked, the read goes without at once.
    #[tokio::test]
    async fn with_every_peer_down_nothing_is_asked() {
        let (rounds, sent) = rounds(vec![NodeId(2), NodeId(3)]);
        assert_eq!(rounds.endorsement(GroupId(1)).await, None);
        assert!(sent.take().is_empty());
        let c = &rounds.counters;
        assert_eq!((c.rounds.get(), c.unendorsed.get()), (0, 1));
    }

    /// A peer that never answers holds no read past the wait, and the next read starts a
    /// new round once the old one is past it.
    #[tokio::test]
    async fn a_round_nobody_answers_ends_within_the_wait() {
        let (rounds, sent) = rounds(vec![]);
        let began = Instant::now();
        assert_eq!(rounds.endorsement(GroupId(1)).await, None);
        assert!(began.elapsed() >= Duration::from_millis(100));
        assert_eq!(sent.take().len(), 2);
        let r = read(&rounds, 1);
        settle().await;
        let next = sent.take();
        assert_eq!(next.len(), 2, "a stale round is replaced");
        rounds.on_answer(NodeId(2), answer(next[0].1.probe_id, &[(1, 5)]));
        assert_eq!(r.await.unwrap().map(|e| e.node), Some(NodeId(2)));
    }
}
