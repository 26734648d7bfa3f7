//! The world of one scenario: replicas over `MemStorage` in one thread, an inbox per node,
//! the links that are cut, and the Ready loop (send, persist, send-after-persist, apply,
//! advance) written out exactly in the order `Ready` documents, printing what it does.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;

use shardkv::raft::*;
use std::result::Result;

use super::render;

/// Bound on Ready/deliver rounds in one `stabilize`, so a livelock fails instead of hanging.
const STABILIZE_ROUNDS_MAX: usize = 1000;

/// One replica slot: its configuration, its durable storage, and the running node (None
/// while crashed).
pub struct Replica {
    pub cfg: Config,
    pub node: Option<RawNode<MemStorage>>,
    /// The storage of a crashed node (what it had made durable).
    pub disk: Option<MemStorage>,
    /// Messages addressed to this node, not yet delivered.
    pub inbox: VecDeque<Message>,
}

#[derive(Default)]
pub struct Cluster {
    pub replicas: Vec<Replica>,
    /// Cut links, both directions, as (smaller id, larger id).
    pub cut: BTreeSet<(u64, u64)>,
}

impl Cluster {
    pub fn ids(&self) -> Vec<u64> {
        (1..=self.replicas.len() as u64).collect()
    }

    pub fn replica(&mut self, id: u64) -> Result<&mut Replica, String> {
        let n = self.replicas.len();
        if id == 0 || id as usize > n {
            return Err(format!("no node {id} (there are {n})"));
        }
        Ok(&mut self.replicas[id as usize - 1])
    }

    pub fn node(&mut self, id: u64) -> Result<&mut RawNode<MemStorage>, String> {
        self.replica(id)?.node.as_mut().ok_or(format!("node {id} is crashed"))
    }

    pub fn add(&mut self, cfg: Config, store: MemStorage) -> Result<(), String> {
        let node = RawNode::new(cfg.clone(), store).map_err(|e| e.to_string())?;
        let inbox = VecDeque::new();
        self.replicas.push(Replica { cfg, node: Some(node), disk: None, inbox });
        Ok(())
    }

    fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        self.cut.contains(&(a.get().min(b.get()), a.get().max(b.get())))
    }

    /// Handles one Ready of `id` if it has one; returns whether it did.
    pub fn process_ready(&mut self, id: u64, out: &mut String) -> Result<bool, String> {
        let node = self.node(id)?;
        if !node.has_ready() {
            return Ok(false);
        }
        let rd = node.ready();
        writeln!(out, "> {id} handling Ready").unwrap();
        print_ready(&rd, out);
        let store = node.store_mut();
        if let Some(s) = &rd.snapshot {
            store.apply_snapshot(s.clone()).map_err(|e| e.to_string())?;
        }
        store.append(&rd.entries).map_err(|e| e.to_string())?;
        if let Some(hs) = rd.hard_state {
            store.set_hard_state(hs);
        }
        if let Some(cs) = &rd.conf_state {
            store.set_conf_state(cs.clone());
        }
        node.advance(&rd);
        for m in rd.messages.into_iter().chain(rd.persisted_messages) {
            self.post(m)?;
        }
        Ok(true)
    }

    /// Queues a message for its recipient. A message sent to a crashed node is lost (it
    /// must not reach the node after it restarts, as if it had waited in a socket).
    fn post(&mut self, m: Message) -> Result<(), String> {
        let r = self.replica(m.to.get())?;
        if r.node.is_some() {
            r.inbox.push_back(m);
        }
        Ok(())
    }

    /// Steps one message into its recipient, or drops it (cut link, crashed recipient).
    pub fn deliver(&mut self, m: Message, out: &mut String) -> Result<(), String> {
        let down = self.replica(m.to.get())?.node.is_none();
        if down || self.is_cut(m.from, m.to) {
            writeln!(out, "  dropped: {}", render::message(&m)).unwrap();
            return Ok(());
        }
        let line = render::message(&m);
        if let Err(e) = self.node(m.to.get())?.step(m) {
            writeln!(out, "  {line}: error: {e}").unwrap();
        }
        Ok(())
    }

    /// Delivers everything in the inboxes of `ids`; returns whether anything was there.
    pub fn deliver_all(&mut self, ids: &[u64], out: &mut String) -> Result<bool, String> {
        let mut any = false;
        for &id in ids {
            let msgs: Vec<Message> = self.replica(id)?.inbox.drain(..).collect();
            for m in msgs {
                any = true;
                self.deliver(m, out)?;
            }
        }
        Ok(any)
    }

    /// Processes Readies and delivers messages among `ids` until nothing moves.
    pub fn stabilize(&mut self, ids: &[u64], out: &mut String) -> Result<(), String> {
        for _ in 0..STABILIZE_ROUNDS_MAX {
            let mut moved = false;
            for &id in ids {
                if self.replica(id)?.node.is_some() {
                    moved |= self.process_ready(id, out)?;
                }
            }
            moved |= self.deliver_all(ids, out)?;
            if !moved {
                return Ok(());
            }
        }
        Err(format!("stabilize: still busy after {STABILIZE_ROUNDS_MAX} rounds"))
    }
}

fn print_ready(rd: &Ready, out: &mut String) {
    if let Some(ss) = rd.soft_state {
        writeln!(out, "  soft: {} leader={}", render::role(ss.role), ss.leader_id).unwrap();
    }
    if let Some(hs) = rd.hard_state {
        let HardState { term, voted_for, commit_index } = hs;
        writeln!(out, "  hard: term={term} vote={voted_for} commit={commit_index}").unwrap();
    }
    if let Some(s) = &rd.snapshot {
        let md = &s.metadata;
        let c = render::conf(&md.conf_state);
        writeln!(out, "  snapshot: {}/{} {c}", md.term, md.index).unwrap();
    }
    for e in &rd.entries {
        writeln!(out, "  append: {}", render::entry(e)).unwrap();
    }
    for e in &rd.committed_entries {
        writeln!(out, "  apply: {}", render::entry(e)).unwrap();
    }
    if let Some(cs) = &rd.conf_state {
        writeln!(out, "  conf: {}", render::conf(cs)).unwrap();
    }
    for r in &rd.read_states {
        writeln!(out, "  read: ctx={} index={}", render::text(&r.context), r.index).unwrap();
    }
    for m in &rd.messages {
        writeln!(out, "  send: {}", render::message(m)).unwrap();
    }
    for m in &rd.persisted_messages {
        writeln!(out, "  send after persist: {}", render::message(m)).unwrap();
    }
}
