//! Simulated clients (Jepsen style). Each client has one op in flight against one group:
//! writes are proposed on the node it believes leads (refused: try the hinted or another
//! node; no answer within `retry_ticks`: propose again with the SAME (client_id, seq)),
//! reads go through ReadIndex and are answered by the node that asked once it applied the
//! read's index (a read the world forwards to a leader counts that leader as asked). After
//! `give_up_ticks` the op ends `Unknown` (or `Fail` if no node ever accepted it) and the
//! client retires; a new client id takes its place.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use shardkv::linearizability::{KvInput, KvOutput};
use shardkv::raft::NodeId;

use super::history::{History, OpRef};
use super::rng::SimRng;
use super::state_machine::{Command, KvStateMachine, Reply, WriteOp};

/// The shape of the client load of one seed.
#[derive(Clone, Copy, Debug)]
pub struct ClientParams {
    pub clients_per_group: usize,
    pub keys_per_group: u64,
    pub think_ticks_max: u64,
    pub read_pct: u64,
    pub retry_ticks: u64,
    pub give_up_ticks: u64,
}

/// What a client asks for.
#[derive(Clone, Copy, Debug)]
pub enum Request {
    Write(WriteOp),
    Read { key: u64 },
}

struct InFlight {
    seq: u64,
    request: Request,
    op: OpRef,
    target: NodeId,
    asked: BTreeSet<NodeId>,
    next_try_tick: u64,
    give_up_tick: u64,
}

struct Client {
    id: u64,
    group: usize,
    seq: u64,
    next_issue_tick: u64,
    inflight: Option<InFlight>,
    /// Issues no new op (a retired client, or a liveness probe that completed).
    stopped: bool,
}

/// One attempt the world must make on a node's replica.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub client: usize,
    pub group: usize,
    pub node: NodeId,
    /// `Some(command)` for a write (propose it), `None` for a read (ReadIndex with `context`).
    pub command: Option<Bytes>,
    pub context: Bytes,
}

/// All clients and the history they produce.
pub struct Workload {
    params: ClientParams,
    nodes: u64,
    clients: Vec<Client>,
    by_id: BTreeMap<u64, usize>,
    next_client_id: u64,
    next_value: u64,
    pub history: History,
    /// New ops are issued only while true (the fault phase).
    pub issuing: bool,
}

/// The ReadIndex context that names a client's read.
pub fn read_context(client_id: u64, seq: u64) -> Bytes {
    let mut v = client_id.to_le_bytes().to_vec();
    v.extend_from_slice(&seq.to_le_bytes());
    Bytes::from(v)
}

fn parse_context(ctx: &[u8]) -> Option<(u64, u64)> {
    let a = u64::from_le_bytes(ctx.get(..8)?.try_into().ok()?);
    let b = u64::from_le_bytes(ctx.get(8..16)?.try_into().ok()?);
    Some((a, b))
}

impl Workload {
    pub fn new(params: ClientParams, nodes: u64, groups: usize) -> Workload {
        let mut w = Workload {
            params,
            nodes,
            clients: Vec::new(),
            by_id: BTreeMap::new(),
            next_client_id: 1,
            next_value: 1,
            history: History::new(groups),
            issuing: true,
        };
        for g in 0..groups {
            for _ in 0..params.clients_per_group {
                w.add_client(g, 0);
            }
        }
        w
    }

    fn add_client(&mut self, group: usize, start_tick: u64) -> usize {
        let id = self.next_client_id;
        self.next_client_id += 1;
        let c = Client {
            id,
            group,
            seq: 0,
            next_issue_tick: start_tick,
            inflight: None,
            stopped: false,
        };
        self.clients.push(c);
        self.by_id.insert(id, self.clients.len() - 1);
        self.clients.len() - 1
    }

    /// Liveness phase: no new ops except one probe write per group; ops in flight retry
    /// until they complete (no more giving up).
    pub fn start_liveness(&mut self, groups: usize, tick: u64) {
        self.issuing = false;
        for c in &mut self.clients {
            if let Some(f) = &mut c.inflight {
                f.give_up_tick = u64::MAX;
            }
            c.stopped = true;
        }
        for g in 0..groups {
            let i = self.add_client(g, tick);
            self.clients[i].stopped = true;
            let value = self.fresh_value();
            let key = g as u64 * 1000;
            let req = Request::Write(WriteOp::Put { key, value });
            self.start_op(i, req, tick, tick * super::world::UNITS_PER_TICK, u64::MAX, 1);
        }
    }

    /// True when no op is in flight.
    pub fn all_done(&self) -> bool {
        self.clients.iter().all(|c| c.inflight.is_none())
    }

    /// Ops still in flight, for a liveness failure message.
    pub fn describe_inflight(&self) -> String {
        let mut s = String::new();
        for c in self.clients.iter().filter(|c| c.inflight.is_some()) {
            let f = c.inflight.as_ref().expect("filtered");
            s += &format!(
                " [client {} group {} seq {} {:?} asked {:?}]",
                c.id,
                c.group + 1,
                f.seq,
                f.request,
                f.asked
            );
        }
        s
    }

    fn fresh_value(&mut self) -> u64 {
        self.next_value += 1;
        self.next_value
    }

    fn draw_request(&mut self, rng: &mut SimRng, group: usize) -> Request {
        let key = group as u64 * 1000 + rng.below(self.params.keys_per_group);
        if rng.percent(self.params.read_pct) {
            return Request::Read { key };
        }
        let op = match rng.below(10) {
            0..=4 => WriteOp::Put { key, value: self.fresh_value() },
            5..=7 => WriteOp::Incr { key, by: rng.range(1, 3) },
            _ => {
                let expected =
                    if rng.percent(30) { None } else { Some(self.next_value - rng.below(3)) };
                WriteOp::Cas { key, expected, new: self.fresh_value() }
            }
        };
        Request::Write(op)
    }

    fn start_op(
        &mut self,
        i: usize,
        request: Request,
        tick: u64,
        now_units: u64,
        give_up: u64,
        target: u64,
    ) {
        let c = &mut self.clients[i];
        c.seq += 1;
        let input = match request {
            Request::Write(op) => op.input(),
            Request::Read { key } => KvInput::Get(key),
        };
        let op = self.history.invoke(c.group, c.id, input, now_units);
        c.inflight = Some(InFlight {
            seq: c.seq,
            request,
            op,
            target: NodeId(target),
            asked: BTreeSet::new(),
            next_try_tick: tick,
            give_up_tick: give_up,
        });
    }

    /// Issues new ops, gives up on old ones, and returns the attempts due this tick.
    pub fn attempts(&mut self, rng: &mut SimRng, tick: u64, now_units: u64) -> Vec<Attempt> {
        let mut out = Vec::new();
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            if c.inflight.is_none() {
                let think = self.params.think_ticks_max;
                let idle = self.issuing && !c.stopped && tick >= c.next_issue_tick;
                if idle && rng.below(think + 1) == 0 {
                    let request = self.draw_request(rng, self.clients[i].group);
                    let give_up = tick + self.params.give_up_ticks;
                    let target = rng.range(1, self.nodes);
                    self.start_op(i, request, tick, now_units, give_up, target);
                } else {
                    continue;
                }
            }
            let c = &mut self.clients[i];
            let f = c.inflight.as_mut().expect("in flight");
            if tick >= f.give_up_tick {
                self.give_up(i, tick);
                continue;
            }
            if tick < f.next_try_tick {
                continue;
            }
            if f.asked.contains(&f.target) && rng.percent(50) {
                // No answer from a node that accepted: it may be cut off, or no longer a
                // member. Try elsewhere (same seq).
                f.target = NodeId(rng.range(1, self.nodes));
            }
            f.next_try_tick = tick + self.params.retry_ticks;
            let command = match f.request {
                Request::Write(op) => Some(Command { client_id: c.id, seq: f.seq, op }.encode()),
                Request::Read { .. } => None,
            };
            let context = read_context(c.id, f.seq);
            out.push(Attempt { client: i, group: c.group, node: f.target, command, context });
        }
        out
    }

    fn give_up(&mut self, i: usize, tick: u64) {
        let f = self.clients[i].inflight.take().expect("in flight");
        if f.asked.is_empty() {
            self.history.fail(f.op);
            self.clients[i].next_issue_tick = tick;
            return;
        }
        // Jepsen's process rule: a client whose op is unknown retires; a new one replaces it.
        self.clients[i].stopped = true;
        let group = self.clients[i].group;
        self.add_client(group, tick);
    }

    /// Whether `a` is still its client's op in flight (a forwarded read may arrive after its
    /// client moved on).
    pub fn still_in_flight(&self, a: &Attempt) -> bool {
        let Some((id, seq)) = parse_context(&a.context) else { return false };
        let c = &self.clients[a.client];
        c.id == id && c.inflight.as_ref().is_some_and(|f| f.seq == seq)
    }

    /// The world's report on an attempt: accepted by `node`, or refused with a leader hint.
    pub fn attempt_result(&mut self, rng: &mut SimRng, a: &Attempt, accepted: bool, hint: NodeId) {
        let nodes = self.nodes;
        let Some(f) = self.clients[a.client].inflight.as_mut() else { return };
        if accepted {
            f.asked.insert(a.node);
            return;
        }
        f.target =
            if hint != NodeId::NONE && hint != a.node { hint } else { NodeId(rng.range(1, nodes)) };
        f.next_try_tick = 0; // try the next node at the next tick
    }

    /// A replica applied `cmd`: answers its client if the client asked that node.
    pub fn on_write_applied(&mut self, node: NodeId, cmd: &Command, reply: Reply, now_units: u64) {
        let Some(&i) = self.by_id.get(&cmd.client_id) else { return };
        let c = &mut self.clients[i];
        let matches =
            c.inflight.as_ref().is_some_and(|f| f.seq == cmd.seq && f.asked.contains(&node));
        if matches {
            let f = c.inflight.take().expect("matched");
            self.history.complete(f.op, now_units, reply.output());
            self.clients[i].next_issue_tick = now_units / super::world::UNITS_PER_TICK;
        }
    }

    /// A replica served the read named by `context` from `sm` (applied past its index).
    pub fn on_read_served(
        &mut self,
        node: NodeId,
        context: &[u8],
        sm: &KvStateMachine,
        now_units: u64,
    ) {
        let Some((client_id, seq)) = parse_context(context) else { return };
        let Some(&i) = self.by_id.get(&client_id) else { return };
        let c = &mut self.clients[i];
        let Some(f) = c.inflight.as_ref() else { return };
        let Request::Read { key } = f.request else { return };
        if f.seq != seq || !f.asked.contains(&node) {
            return;
        }
        let f = c.inflight.take().expect("matched");
        let value = sm.data.get(&key).copied();
        self.history.complete(f.op, now_units, KvOutput::Get(value));
        self.clients[i].next_issue_tick = now_units / super::world::UNITS_PER_TICK;
    }
}
