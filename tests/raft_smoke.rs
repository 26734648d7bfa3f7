//! A small in-memory cluster driven by hand: elections, replication and commit work end
//! to end through the public `RawNode` API. The thorough tests are the simulation and the
//! scenario files.

use std::collections::VecDeque;

use bytes::Bytes;
use shardkv::raft::*;

struct Cluster {
    nodes: Vec<RawNode<MemStorage>>,
    applied: Vec<Vec<Bytes>>,
    queue: VecDeque<Message>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        Cluster::with_config(n, |_| {})
    }

    fn with_config(n: u64, edit: impl Fn(&mut Config)) -> Cluster {
        let conf = ConfState::with_voters((1..=n).map(NodeId));
        let nodes = (1..=n)
            .map(|id| {
                let mut cfg = Config::new(NodeId(id), GroupId(1));
                cfg.rng_seed = id;
                edit(&mut cfg);
                RawNode::new(cfg, MemStorage::new_with_conf_state(conf.clone())).unwrap()
            })
            .collect();
        Cluster { nodes, applied: vec![Vec::new(); n as usize], queue: VecDeque::new() }
    }

    fn idx(id: NodeId) -> usize {
        (id.get() - 1) as usize
    }

    fn process_readies(&mut self) {
        for i in 0..self.nodes.len() {
            while self.nodes[i].has_ready() {
                let rd = self.nodes[i].ready();
                self.queue.extend(rd.messages.iter().cloned());
                let store = self.nodes[i].store_mut();
                if let Some(s) = &rd.snapshot {
                    store.apply_snapshot(s.clone()).unwrap();
                }
                store.append(&rd.entries).unwrap();
                if let Some(hs) = rd.hard_state {
                    store.set_hard_state(hs);
                }
                self.queue.extend(rd.persisted_messages.iter().cloned());
                for e in &rd.committed_entries {
                    if let EntryPayload::Normal(d) = &e.payload {
                        self.applied[i].push(d.clone());
                    }
                }
                self.nodes[i].advance(&rd);
            }
        }
    }

    fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            for n in &mut self.nodes {
                n.tick();
            }
            self.deliver_all();
        }
    }

    fn deliver_all(&mut self) {
        loop {
            self.process_readies();
            let Some(m) = self.queue.pop_front() else { break };
            let to = Self::idx(m.to);
            self.nodes[to].step(m).unwrap();
        }
    }

    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|n| n.role() == Role::Leader)
    }
}

#[test]
fn three_nodes_elect_a_leader_and_commit_proposals_everywhere() {
    let mut c = Cluster::new(3);
    c.run(40);
    let l = c.leader().expect("a leader after 40 ticks");
    for i in 0..10u8 {
        c.nodes[l].propose(Bytes::from(vec![i])).unwrap();
    }
    c.deliver_all();
    c.run(5);
    for (i, applied) in c.applied.iter().enumerate() {
        assert_eq!(applied.len(), 10, "node {} applied {:?}", i + 1, applied);
    }
    let leaders = c.nodes.iter().filter(|n| n.role() == Role::Leader).count();
    assert_eq!(leaders, 1);
}

#[test]
fn a_read_index_is_answered_after_the_leaders_noop_commits() {
    let mut c = Cluster::new(3);
    c.run(40);
    let l = c.leader().unwrap();
    c.nodes[l].read_index(Bytes::from_static(b"r1")).unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        for n in &mut c.nodes {
            n.tick();
        }
        // Collect read states by hand, as the runtime would.
        for i in 0..c.nodes.len() {
            while c.nodes[i].has_ready() {
                let rd = c.nodes[i].ready();
                got.extend(rd.read_states.iter().cloned());
                c.queue.extend(rd.messages.iter().cloned());
                let store = c.nodes[i].store_mut();
                store.append(&rd.entries).unwrap();
                if let Some(hs) = rd.hard_state {
                    store.set_hard_state(hs);
                }
                c.queue.extend(rd.persisted_messages.iter().cloned());
                c.nodes[i].advance(&rd);
            }
        }
        while let Some(m) = c.queue.pop_front() {
            let to = Cluster::idx(m.to);
            c.nodes[to].step(m).unwrap();
        }
    }
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].context, Bytes::from_static(b"r1"));
    assert!(got[0].index >= c.nodes[l].commit_index().prev());
}

/// The read states and messages of `node`'s next Ready, handled as the runtime would
/// (persisted, then advanced); messages are left undelivered.
fn take_ready(c: &mut Cluster, node: usize) -> (Vec<ReadState>, Vec<Message>) {
    let (mut reads, mut messages) = (Vec::new(), Vec::new());
    while c.nodes[node].has_ready() {
        let rd = c.nodes[node].ready();
        reads.extend(rd.read_states.iter().cloned());
        messages.extend(rd.messages.iter().cloned());
        let store = c.nodes[node].store_mut();
        store.append(&rd.entries).unwrap();
        if let Some(hs) = rd.hard_state {
            store.set_hard_state(hs);
        }
        messages.extend(rd.persisted_messages.iter().cloned());
        c.nodes[node].advance(&rd);
    }
    (reads, messages)
}

fn read_rounds(messages: &[Message]) -> usize {
    let round = |m: &&Message| {
        matches!(m.body, MessageBody::Heartbeat { read_round, .. } if read_round > 0)
    };
    messages.iter().filter(round).count()
}

/// A read forwarded by a voter in the leader's term is served at the commit index at once
/// when the two make a quorum (three voters), with no heartbeat round; one endorsed in
/// another term, or by a voter of five, waits for a round like any read.
#[test]
fn an_endorsed_read_needs_no_round_only_where_leader_and_endorser_are_a_quorum() {
    let mut c = Cluster::new(3);
    c.run(40);
    let l = c.leader().expect("a leader");
    let (term, commit) = (c.nodes[l].term(), c.nodes[l].commit_index());
    let endorser = NodeId(((l + 1) % 3) as u64 + 1);
    let by = Endorsement { node: endorser, term };
    c.nodes[l].read_index_endorsed(Bytes::from_static(b"e1"), by).unwrap();
    let (reads, messages) = take_ready(&mut c, l);
    assert_eq!(reads.len(), 1, "answered in the same Ready");
    assert_eq!((reads[0].index, &reads[0].context[..]), (commit, &b"e1"[..]));
    assert_eq!(read_rounds(&messages), 0, "no heartbeat round: {messages:?}");

    // An endorsement of an older term proves nothing about this one: a round.
    let older = Term(term.get() - 1);
    let by = Endorsement { node: endorser, term: older };
    c.nodes[l].read_index_endorsed(Bytes::from_static(b"e2"), by).unwrap();
    let (reads, messages) = take_ready(&mut c, l);
    assert!(reads.is_empty(), "{reads:?}");
    assert_eq!(read_rounds(&messages), 2, "a round to both followers: {messages:?}");
    c.queue.extend(messages);
    c.deliver_all();

    // The leader itself is no endorser.
    let me = NodeId(l as u64 + 1);
    let by = Endorsement { node: me, term };
    c.nodes[l].read_index_endorsed(Bytes::from_static(b"e3"), by).unwrap();
    let (reads, messages) = take_ready(&mut c, l);
    assert!(reads.is_empty() && read_rounds(&messages) == 2, "{reads:?} {messages:?}");
    c.queue.extend(messages);
    c.deliver_all();

    let mut c = Cluster::new(5);
    c.run(60);
    let l = c.leader().expect("a leader of five");
    let term = c.nodes[l].term();
    let endorser = NodeId(((l + 1) % 5) as u64 + 1);
    let by = Endorsement { node: endorser, term };
    c.nodes[l].read_index_endorsed(Bytes::from_static(b"f1"), by).unwrap();
    let (reads, messages) = take_ready(&mut c, l);
    assert!(reads.is_empty(), "two of five are no quorum: {reads:?}");
    assert_eq!(read_rounds(&messages), 4, "{messages:?}");
}

/// A follower's ReadIndex request is that follower's endorsement: in a group of three the
/// leader answers it with its commit index without a heartbeat round.
#[test]
fn a_followers_read_index_in_a_group_of_three_takes_no_round() {
    let mut c = Cluster::new(3);
    c.run(40);
    let l = c.leader().expect("a leader");
    let f = (l + 1) % 3;
    let commit = c.nodes[l].commit_index();
    c.nodes[f].read_index(Bytes::from_static(b"r1")).unwrap();
    let (_, asked) = take_ready(&mut c, f);
    assert!(asked.iter().all(|m| matches!(m.body, MessageBody::ReadIndex { .. })), "{asked:?}");
    for m in asked {
        c.nodes[l].step(m).unwrap();
    }
    let (_, answered) = take_ready(&mut c, l);
    assert_eq!(read_rounds(&answered), 0, "{answered:?}");
    assert_eq!(answered.len(), 1, "{answered:?}");
    for m in answered {
        c.nodes[f].step(m).unwrap();
    }
    let (reads, _) = take_ready(&mut c, f);
    assert_eq!(reads.len(), 1);
    assert_eq!((reads[0].index, &reads[0].context[..]), (commit, &b"r1"[..]));
}

/// A ReadIndex request the leader refuses (its pending reads are at the bound) comes back
/// to the follower as a rejected context in its Ready, with no read state: the runtime
/// sends those reads elsewhere at once instead of waiting out an election time-out.
#[test]
fn a_refused_read_index_reaches_the_follower_as_rejected() {
    let mut c = Cluster::with_config(5, |cfg| cfg.max_pending_reads = 1);
    c.run(60);
    let l = c.leader().expect("a leader of five");
    let (f1, f2) = ((l + 1) % 5, (l + 2) % 5);
    let ask = |c: &mut Cluster, f: usize, context: &'static [u8]| {
        c.nodes[f].read_index(Bytes::from_static(context)).unwrap();
        let (_, asked) = take_ready(c, f);
        for m in asked {
            c.nodes[l].step(m).unwrap();
        }
        let (_, answered) = take_ready(c, l);
        answered.into_iter().filter(|m| m.to == NodeId(f as u64 + 1)).collect::<Vec<_>>()
    };
    // Two of five are no quorum: the first read waits for a round, filling the bound.
    let first = ask(&mut c, f1, b"r1");
    assert!(first.iter().all(|m| !matches!(m.body, MessageBody::ReadIndexResponse { .. })));
    let second = ask(&mut c, f2, b"r2");
    let refused = |m: &Message| {
        matches!(m.body, MessageBody::ReadIndexResponse { reject: true, .. })
    };
    assert!(second.iter().any(refused), "{second:?}");
    for m in second {
        c.nodes[f2].step(m).unwrap();
    }
    assert!(c.nodes[f2].has_ready());
    let rd = c.nodes[f2].ready();
    assert!(rd.read_states.is_empty(), "{:?}", rd.read_states);
    assert_eq!(rd.rejected_reads, vec![Bytes::from_static(b"r2")]);
    c.nodes[f2].advance(&rd);
}

/// Time the node could not act through (`RawNode::advance_clock`) ends a leader's lease as
/// real time does. The election timers count it only once the messages that waited behind
/// it were read (`settle_stall`), and not if one of them reset the timer: every node
/// stalled at once keeps its leader and term, while a follower whose leader stayed silent
/// through its stall campaigns at the next tick, as it would have without the stall.
#[test]
fn a_stall_ends_the_lease_and_counts_on_elections_only_if_the_leader_stayed_silent() {
    let mut c = Cluster::with_config(3, |cfg| {
        cfg.read_mode = ReadMode::LeaseBased;
        cfg.check_quorum = true;
    });
    c.run(40);
    let l = c.leader().expect("a leader after 40 ticks");
    c.run(3);
    let term = c.nodes[l].term();
    assert!(c.nodes[l].lease_ticks_left().is_some(), "a lease after a heartbeat round");
    let stall = 5 * Config::new(NodeId(1), GroupId(1)).election_timeout_ticks_max;
    // Every node stalls; the leader's heartbeats, sent as it catches up, are read before
    // the stall is settled.
    for n in &mut c.nodes {
        n.advance_clock(stall);
    }
    assert_eq!(c.nodes[l].lease_ticks_left(), None, "the lease ended with the stall");
    for _ in 0..2 {
        c.nodes[l].tick();
    }
    c.deliver_all();
    for n in &mut c.nodes {
        n.settle_stall();
    }
    c.run(3);
    assert_eq!((c.leader(), c.nodes[l].term()), (Some(l), term), "same leader, same term");
    assert!(c.nodes[l].lease_ticks_left().is_some(), "a new round renewed the lease");
    // A follower stalls while its leader is silent: its stall counts at the next tick.
    let f = (l + 1) % 3;
    c.nodes[f].advance_clock(stall);
    c.nodes[f].settle_stall();
    c.nodes[f].tick();
    assert_eq!(c.nodes[f].role(), Role::PreCandidate, "campaigns after a silent stall");
}
