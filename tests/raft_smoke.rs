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
        let conf = ConfState::with_voters((1..=n).map(NodeId));
        let nodes = (1..=n)
            .map(|id| {
                let mut cfg = Config::new(NodeId(id), GroupId(1));
                cfg.rng_seed = id;
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
