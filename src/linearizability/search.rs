//! The Wing–Gong–Lowe search over one key's sub-history (no I/O).
//!
//! Wing & Gong 1993 ("Testing and verifying concurrent objects") walk a time-ordered list
//! of call and return events, tentatively linearizing calls and backtracking at a return
//! whose op is still pending. Lowe 2017 ("Testing for linearizability") adds the memo of
//! `(linearized set, state)` pairs that makes the search practical; Porcupine (Athalye
//! 2017) is the same design in Go. Here the list lives in index arrays, and lifting and
//! unlifting are the "dancing links" unlink/relink, undone in LIFO order by the stack.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, DefaultHasher};

use super::{Model, Operation, Outcome, EXPLANATION_PREFIX_OPS_MAX};

/// The result of searching one key.
pub(super) enum Verdict {
    Linearizable,
    Illegal(String),
    OutOfSteps,
}

/// Searches `ops` (one key, no failed ops) for a linearization within `steps_max` steps;
/// a step is one visit of an event (a model step or a backtrack).
pub(super) fn check_partition<M: Model>(
    model: &M,
    ops: &[&Operation<M::Input, M::Output>],
    steps_max: u64,
) -> Verdict {
    Search::new(model, ops).run(steps_max)
}

/// Marker for "no node" in the event list's links.
const NIL: usize = usize::MAX;
/// The sentinel head node of the event list.
const HEAD: usize = 0;

/// A doubly linked list of call and return events, sorted by time, calls first on ties.
/// Node 0 is the head sentinel; links are indices so unlinked nodes keep theirs and can be
/// relinked in O(1).
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The op (index into the partition) of each node.
    op: Vec<usize>,
    /// For a call node, its return node; `None` for an unknown outcome and for returns.
    return_node: Vec<Option<usize>>,
    is_call: Vec<bool>,
}

impl EventList {
    fn new<I, O>(ops: &[&Operation<I, O>]) -> Self {
        // (time, 0 = call / 1 = return, op): calls before returns at equal times, so ops
        // touching at one instant count as concurrent.
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (index, op) in ops.iter().enumerate() {
            match op.outcome {
                Outcome::Ok { ret, .. } => {
                    events.push((op.call, 0, index));
                    events.push((ret, 1, index));
                }
                Outcome::Unknown => events.push((op.call, 0, index)),
                Outcome::Fail => {}
            }
        }
        events.sort_unstable();
        let events = defer_unknown_calls(events, ops);
        let nodes = events.len() + 1;
        let mut list = EventList {
            next: (1..=nodes)
                .map(|n| if n == nodes { NIL } else { n })
                .collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
            op: vec![NIL; nodes],
            return_node: vec![None; nodes],
            is_call: vec![false; nodes],
        };
        let mut call_node_of_op = vec![NIL; ops.len()];
        for (position, &(_, kind, op)) in events.iter().enumerate() {
            let node = position + 1;
            list.op[node] = op;
            list.is_call[node] = kind == 0;
            if kind == 0 {
                call_node_of_op[op] = node;
            } else {
                list.return_node[call_node_of_op[op]] = Some(node);
            }
        }
        list
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// Removes a call and its return (if any): the op is linearized.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        if let Some(ret) = self.return_node[call] {
            self.unlink(ret);
        }
    }

    /// Undoes [`EventList::lift`]; valid because lifts are undone in LIFO order.
    fn unlift(&mut self, call: usize) {
        if let Some(ret) = self.return_node[call] {
            self.relink(ret);
        }
        self.relink(call);
    }
}

/// Moves each unknown-outcome call to just before the first return event after it.
///
/// The candidates at any point of the search are the calls before the first remaining
/// return, and this move keeps every call on the same side of every return, so the
/// candidate sets are unchanged. What changes is the order in which candidates are tried:
/// completed ops first, so the search explores "the unknown op has not happened yet"
/// before "it has". Unknown ops are always accepted by the model; tried first, they
/// multiply the configurations the search visits before it can refute a history.
fn defer_unknown_calls<I, O>(
    events: Vec<(u64, u8, usize)>,
    ops: &[&Operation<I, O>],
) -> Vec<(u64, u8, usize)> {
    let mut ordered = Vec::with_capacity(events.len());
    let mut deferred = Vec::new();
    for event in events {
        let (_, kind, op) = event;
        if kind == 0 && matches!(ops[op].outcome, Outcome::Unknown) {
            deferred.push(event);
            continue;
        }
        if kind == 1 {
            ordered.append(&mut deferred);
        }
        ordered.push(event);
    }
    ordered.append(&mut deferred);
    ordered
}

/// A set of op indices as a compact bitset; hashed into the memo.
#[derive(Clone, PartialEq, Eq, Hash)]
struct OpSet {
    words: Vec<u64>,
}

impl OpSet {
    fn with_capacity(ops: usize) -> Self {
        OpSet {
            words: vec![0; ops.div_ceil(64)],
        }
    }

    fn insert(&mut self, op: usize) {
        self.words[op / 64] |= 1 << (op % 64);
    }

    fn remove(&mut self, op: usize) {
        self.words[op / 64] &= !(1 << (op % 64));
    }

    fn is_subset_of(&self, other: &OpSet) -> bool {
        self.words
            .iter()
            .zip(&other.words)
            .all(|(mine, theirs)| mine & !theirs == 0)
    }
}

/// The deepest point the search reached: the basis of an "illegal" explanation.
struct Deepest<S> {
    /// Ops linearized, in order.
    prefix: Vec<usize>,
    /// The model state after `prefix`.
    state: S,
    /// The op whose return was reached while it could not be linearized.
    blocked_op: usize,
}

/// A fixed hasher: the memo is only queried, never iterated, but a fixed seed keeps even
/// its performance reproducible from run to run.
type MemoHasher = BuildHasherDefault<DefaultHasher>;

struct Search<'h, M: Model> {
    model: &'h M,
    ops: &'h [&'h Operation<M::Input, M::Output>],
    events: EventList,
    /// Completed ops linearized so far.
    completed_linearized: OpSet,
    /// Unknown-outcome ops linearized so far.
    unknown_linearized: OpSet,
    /// Lowe's memo of configurations entered, extended with subsumption for unknown ops:
    /// (completed set, state) → the antichain of unknown sets entered with it. Entering
    /// with a superset of one of those is pointless: the unknown ops already consumed can
    /// only remove options (each may still be placed later, or never), so whatever the
    /// new configuration can reach, the recorded one reaches too. Without this, every
    /// subset of pending unknown writes is a distinct configuration, and refuting a
    /// history with a few dozen of them on one key exhausts any budget.
    memo: HashMap<(OpSet, M::State), Vec<OpSet>, MemoHasher>,
    /// Linearized calls, each with the model state before it, for backtracking.
    stack: Vec<(usize, M::State)>,
    state: M::State,
    /// Completed ops not yet linearized; the search succeeds when this reaches zero,
    /// whatever unknown-outcome ops remain (they go last, unobserved, or never happen).
    completed_pending: usize,
    deepest: Option<Deepest<M::State>>,
}

impl<'h, M: Model> Search<'h, M> {
    fn new(model: &'h M, ops: &'h [&'h Operation<M::Input, M::Output>]) -> Self {
        let completed = ops
            .iter()
            .filter(|op| matches!(op.outcome, Outcome::Ok { .. }));
        Search {
            model,
            ops,
            events: EventList::new(ops),
            completed_linearized: OpSet::with_capacity(ops.len()),
            unknown_linearized: OpSet::with_capacity(ops.len()),
            memo: HashMap::default(),
            stack: Vec::new(),
            state: model.init(),
            completed_pending: completed.count(),
            deepest: None,
        }
    }

    fn run(mut self, steps_max: u64) -> Verdict {
        let mut node = self.events.first();
        let mut steps: u64 = 0;
        while self.completed_pending > 0 {
            if steps >= steps_max {
                return Verdict::OutOfSteps;
            }
            steps += 1;
            // A return is always reachable before the list ends while a completed op is
            // pending: the walk never passes the first return event.
            debug_assert_ne!(node, NIL, "event walk ran past the last return");
            if self.events.is_call[node] {
                node = if self.try_linearize(node) {
                    self.events.first()
                } else {
                    self.events.next[node]
                };
            } else {
                self.note_blocked(node);
                match self.backtrack() {
                    Some(call) => node = self.events.next[call],
                    None => return Verdict::Illegal(self.explain()),
                }
            }
        }
        Verdict::Linearizable
    }

    /// Tries to linearize the op of `call` next; true if it was (state and list updated).
    fn try_linearize(&mut self, call: usize) -> bool {
        let op_index = self.events.op[call];
        let op = self.ops[op_index];
        let next_state = match &op.outcome {
            Outcome::Ok { output, .. } => self.model.step(&self.state, &op.input, output),
            Outcome::Unknown => Some(self.model.step_unobserved(&self.state, &op.input)),
            Outcome::Fail => None,
        };
        let Some(next_state) = next_state else {
            return false;
        };
        self.linearized_of_kind(call).insert(op_index);
        if !self.enter(&next_state) {
            self.linearized_of_kind(call).remove(op_index);
            return false;
        }
        let state_before = std::mem::replace(&mut self.state, next_state);
        self.stack.push((call, state_before));
        self.events.lift(call);
        if self.events.return_node[call].is_some() {
            self.completed_pending -= 1;
        }
        true
    }

    /// The set that records the op of `call` once linearized.
    fn linearized_of_kind(&mut self, call: usize) -> &mut OpSet {
        if self.events.return_node[call].is_some() {
            &mut self.completed_linearized
        } else {
            &mut self.unknown_linearized
        }
    }

    /// Records the configuration (linearized sets, `state`) in the memo; false if it, or
    /// one that subsumes it, was entered before.
    fn enter(&mut self, state: &M::State) -> bool {
        let key = (self.completed_linearized.clone(), state.clone());
        let entered = self.memo.entry(key).or_default();
        if entered
            .iter()
            .any(|unknown| unknown.is_subset_of(&self.unknown_linearized))
        {
            return false;
        }
        // Keep an antichain: sets the new one subsumes can never prune anything it won't.
        entered.retain(|unknown| !self.unknown_linearized.is_subset_of(unknown));
        entered.push(self.unknown_linearized.clone());
        true
    }

    /// Undoes the last linearization; returns its call node, or `None` if none is left.
    fn backtrack(&mut self) -> Option<usize> {
        let (call, state_before) = self.stack.pop()?;
        self.state = state_before;
        let op_index = self.events.op[call];
        self.linearized_of_kind(call).remove(op_index);
        self.events.unlift(call);
        if self.events.return_node[call].is_some() {
            self.completed_pending += 1;
        }
        Some(call)
    }

    /// Remembers the deepest prefix at which an op's return blocked the search.
    fn note_blocked(&mut self, ret: usize) {
        let depth = self.stack.len();
        if self
            .deepest
            .as_ref()
            .is_some_and(|d| d.prefix.len() >= depth)
        {
            return;
        }
        self.deepest = Some(Deepest {
            prefix: self
                .stack
                .iter()
                .map(|&(call, _)| self.events.op[call])
                .collect(),
            state: self.state.clone(),
            blocked_op: self.events.op[ret],
        });
    }

    fn explain(&self) -> String {
        let Some(deepest) = &self.deepest else {
            unreachable!("an illegal verdict follows a blocked return");
        };
        let prefix_ops = deepest.prefix.len();
        let mut text = format!(
            "no linearization of {} ops; longest linearizable prefix: {prefix_ops} ops",
            self.ops.len()
        );
        let elided_ops = prefix_ops.saturating_sub(EXPLANATION_PREFIX_OPS_MAX);
        if elided_ops > 0 {
            let _ = write!(text, "\n  ({elided_ops} earlier ops not shown)");
        }
        for (position, &op) in deepest.prefix.iter().enumerate().skip(elided_ops) {
            let _ = write!(text, "\n  {:>4}. {}", position + 1, self.describe_op(op));
        }
        let _ = write!(text, "\nstate after the prefix: {:?}", deepest.state);
        let _ = write!(
            text,
            "\ncannot place: {}",
            self.describe_op(deepest.blocked_op)
        );
        text
    }

    fn describe_op(&self, op_index: usize) -> String {
        let op = self.ops[op_index];
        let (ret, output) = match &op.outcome {
            Outcome::Ok { ret, output } => (ret.to_string(), Some(output)),
            Outcome::Unknown | Outcome::Fail => ("?".to_string(), None),
        };
        let described = self.model.describe(&op.input, output);
        format!(
            "client {} [call {}, ret {ret}] {described}",
            op.client_id, op.call
        )
    }
}
