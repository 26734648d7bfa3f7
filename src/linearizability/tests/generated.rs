//! Histories generated from a real concurrent execution of the sequential models, so they
//! are linearizable by construction; mutated copies are judged against a brute-force
//! checker that tries every order consistent with real time.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::super::*;

/// Clients issuing ops at once; each issues its ops one after another.
const CLIENTS: usize = 3;

/// One op of a plan, drawn at random; [`execute`] turns a plan into a history.
#[derive(Clone, Debug)]
struct PlannedOp {
    client: usize,
    /// Which command; the model maps 0..4 to its inputs.
    kind: u8,
    key: u64,
    /// Time between the client's previous return and this call.
    gap_ticks: u64,
    duration_ticks: u64,
    /// Where in its window the op takes effect, in percent.
    point_percent: u64,
    fate: Fate,
    /// A free choice for the model (an increment, an expected value).
    pick: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Ok,
    /// Took effect, but the client never saw the reply.
    UnknownApplied,
    /// Never took effect, and the client never knew.
    UnknownLost,
    /// Rejected before it could take effect.
    Fail,
}

fn fate_from(draw: u64, unknown_percent: u64) -> Fate {
    match draw % 100 {
        d if d < unknown_percent / 2 => Fate::UnknownApplied,
        d if d < unknown_percent => Fate::UnknownLost,
        d if d < unknown_percent + 3 => Fate::Fail,
        _ => Fate::Ok,
    }
}

/// A model the generator can drive: it builds inputs from a plan and runs them.
trait Executable: Model {
    fn plan_input(&self, planned: &PlannedOp, fresh_value: u64) -> Self::Input;
    fn run(&self, state: &Self::State, input: &Self::Input) -> (Self::State, Self::Output);
}

impl Executable for KvModel {
    fn plan_input(&self, planned: &PlannedOp, fresh_value: u64) -> KvInput {
        let key = planned.key;
        match planned.kind {
            0 => KvInput::Put(key, fresh_value),
            1 => KvInput::Get(key),
            2 => KvInput::Incr(key, 1 + planned.pick % 3),
            // Expect a recent value (or a missing key) so that some swaps succeed.
            _ => {
                let back = planned.pick % 4;
                let expected = (back < fresh_value)
                    .then(|| fresh_value - back)
                    .filter(|_| back > 0);
                KvInput::Cas(key, expected, fresh_value)
            }
        }
    }

    fn run(&self, state: &Option<u64>, input: &KvInput) -> (Option<u64>, KvOutput) {
        KvModel::apply(*state, input)
    }
}

impl Executable for RegisterModel {
    fn plan_input(&self, planned: &PlannedOp, fresh_value: u64) -> RegisterInput {
        let key = Bytes::from(format!("k{}", planned.key));
        match planned.kind {
            0 | 3 => RegisterInput::Set(key, Bytes::from(fresh_value.to_string())),
            1 => RegisterInput::Get(key),
            _ => RegisterInput::Del(key),
        }
    }

    fn run(&self, state: &Option<Bytes>, input: &RegisterInput) -> (Option<Bytes>, RegisterOutput) {
        RegisterModel::apply(state, input)
    }
}

type History<M> = Vec<Operation<<M as Model>::Input, <M as Model>::Output>>;

/// Runs a plan: each client's ops follow each other in time; every op that takes effect
/// does so at one point inside its window (after its call, at any time, if the reply is
/// lost), and outputs come from applying the ops in the order of those points.
fn execute<M: Executable>(model: &M, plan: &[PlannedOp]) -> History<M> {
    let mut clock_ticks = [0u64; CLIENTS];
    let mut client_ids: [u64; CLIENTS] = std::array::from_fn(|c| c as u64);
    let mut next_client_id = CLIENTS as u64;
    let mut inputs = Vec::with_capacity(plan.len());
    // (point in hundredths of a tick, op index) for ops that take effect.
    let mut points = Vec::new();
    for (index, planned) in plan.iter().enumerate() {
        let client = planned.client % CLIENTS;
        let call = clock_ticks[client] + planned.gap_ticks;
        let ret = call + planned.duration_ticks;
        clock_ticks[client] = ret + 1;
        let window_ticks = match planned.fate {
            Fate::UnknownApplied => planned.duration_ticks + 10,
            _ => planned.duration_ticks,
        };
        if matches!(planned.fate, Fate::Ok | Fate::UnknownApplied) {
            points.push((call * 100 + planned.point_percent * window_ticks, index));
        }
        let input = model.plan_input(planned, index as u64 + 1);
        inputs.push((client_ids[client], input, call, ret));
        if matches!(planned.fate, Fate::UnknownApplied | Fate::UnknownLost) {
            // Jepsen's rule: a client with an op in doubt retires; a fresh one replaces it.
            client_ids[client] = next_client_id;
            next_client_id += 1;
        }
    }
    points.sort_unstable();
    let mut outputs: Vec<Option<M::Output>> = plan.iter().map(|_| None).collect();
    let mut states: BTreeMap<M::Key, M::State> = BTreeMap::new();
    for (_, index) in points {
        let input = &inputs[index].1;
        let state = states
            .entry(model.key(input))
            .or_insert_with(|| model.init());
        let (next, output) = model.run(state, input);
        *state = next;
        outputs[index] = Some(output);
    }
    let records = inputs.into_iter().zip(outputs).zip(plan);
    records
        .map(|(((client_id, input, call, ret), output), planned)| {
            let outcome = match (planned.fate, output) {
                (Fate::Ok, Some(output)) => Outcome::Ok { ret, output },
                (Fate::Fail, _) => Outcome::Fail,
                _ => Outcome::Unknown,
            };
            Operation {
                client_id,
                input,
                call,
                outcome,
            }
        })
        .collect()
}

/// The reference: tries every order of the ops consistent with real time, each unknown op
/// placed anywhere after its call or left out, on all keys at once (no partitioning).
fn brute_force_linearizable<M: Model>(model: &M, history: &History<M>) -> bool {
    let ops: Vec<_> = history
        .iter()
        .filter(|op| !matches!(op.outcome, Outcome::Fail))
        .collect();
    let mut placed = vec![false; ops.len()];
    place_rest(model, &ops, &mut placed, &BTreeMap::new())
}

fn place_rest<M: Model>(
    model: &M,
    ops: &[&Operation<M::Input, M::Output>],
    placed: &mut [bool],
    states: &BTreeMap<M::Key, M::State>,
) -> bool {
    let pending_ret = |i: usize| match ops[i].outcome {
        Outcome::Ok { ret, .. } if !placed[i] => Some(ret),
        _ => None,
    };
    if (0..ops.len()).all(|i| pending_ret(i).is_none()) {
        return true;
    }
    let earliest_pending_ret = (0..ops.len()).filter_map(pending_ret).min();
    for i in 0..ops.len() {
        // An op may go next only if no pending op returned before it was called.
        if placed[i] || earliest_pending_ret.is_some_and(|ret| ret < ops[i].call) {
            continue;
        }
        let key = model.key(&ops[i].input);
        let state = states.get(&key).cloned().unwrap_or_else(|| model.init());
        let next = match &ops[i].outcome {
            Outcome::Ok { output, .. } => model.step(&state, &ops[i].input, output),
            _ => Some(model.step_unobserved(&state, &ops[i].input)),
        };
        let Some(next) = next else { continue };
        let mut next_states = states.clone();
        next_states.insert(key, next);
        placed[i] = true;
        let found = place_rest(model, ops, placed, &next_states);
        placed[i] = false;
        if found {
            return true;
        }
    }
    false
}

/// Changes the reply of one completed op (if the chosen op has one that can change).
fn mutate_kv(history: &mut History<KvModel>, op_pick: usize, value_pick: u64) {
    let op_index = op_pick % history.len().max(1);
    let Some(op) = history.get_mut(op_index) else {
        return;
    };
    let Outcome::Ok { output, .. } = &mut op.outcome else {
        return;
    };
    *output = match *output {
        KvOutput::Put => KvOutput::Put,
        KvOutput::Get(Some(_)) if value_pick.is_multiple_of(3) => KvOutput::Get(None),
        KvOutput::Get(_) => KvOutput::Get(Some(1 + value_pick % 8)),
        KvOutput::Incr(sum) if value_pick.is_multiple_of(2) => KvOutput::Incr(sum + 1),
        KvOutput::Incr(sum) => KvOutput::Incr(sum.wrapping_sub(1)),
        KvOutput::Cas(swapped) => KvOutput::Cas(!swapped),
    };
}

fn planned_op(keys: u64, unknown_percent: u64) -> impl Strategy<Value = PlannedOp> {
    (
        0..CLIENTS,
        0..4u8,
        0..keys,
        0..3u64,
        0..6u64,
        0..=100u64,
        0..100u64,
        0..16u64,
    )
        .prop_map(
            move |(client, kind, key, gap_ticks, duration_ticks, point_percent, fate, pick)| {
                PlannedOp {
                    client,
                    kind,
                    key,
                    gap_ticks,
                    duration_ticks,
                    point_percent,
                    fate: fate_from(fate, unknown_percent),
                    pick,
                }
            },
        )
}

/// Plans of at most 8 ops by 3 clients on 1 or 2 keys, about 20 % with unknown outcomes.
fn small_plan() -> impl Strategy<Value = Vec<PlannedOp>> {
    (1..=2u64).prop_flat_map(|keys| prop::collection::vec(planned_op(keys, 20), 0..=8))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn executed_kv_histories_are_linearizable(plan in small_plan()) {
        let history = execute(&KvModel, &plan);
        prop_assert_eq!(check(&KvModel, &history, STEPS_PER_KEY_MAX_DEFAULT), CheckResult::Ok);
    }

    #[test]
    fn executed_register_histories_are_linearizable(plan in small_plan()) {
        let history = execute(&RegisterModel, &plan);
        let result = check(&RegisterModel, &history, STEPS_PER_KEY_MAX_DEFAULT);
        prop_assert_eq!(result, CheckResult::Ok);
    }

    #[test]
    fn mutated_kv_histories_agree_with_brute_force(
        plan in small_plan(),
        op_pick in 0..8usize,
        value_pick in 0..64u64,
    ) {
        let mut history = execute(&KvModel, &plan);
        mutate_kv(&mut history, op_pick, value_pick);
        let verdict = check(&KvModel, &history, STEPS_PER_KEY_MAX_DEFAULT);
        let inconclusive = matches!(verdict, CheckResult::Inconclusive { .. });
        prop_assert!(!inconclusive, "{:?}", verdict);
        let brute_force = brute_force_linearizable(&KvModel, &history);
        prop_assert_eq!(verdict == CheckResult::Ok, brute_force, "{:?}", verdict);
    }
}

/// A deterministic generator (SplitMix64, Steele et al. 2014) for plans too large for
/// proptest to shrink usefully.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn random_plan(
    rng: &mut SplitMix64,
    ops: usize,
    keys: u64,
    unknown_percent: u64,
) -> Vec<PlannedOp> {
    (0..ops)
        .map(|_| PlannedOp {
            client: rng.below(CLIENTS as u64) as usize,
            kind: rng.below(4) as u8,
            key: rng.below(keys),
            gap_ticks: rng.below(3),
            duration_ticks: rng.below(12),
            point_percent: rng.below(101),
            fate: fate_from(rng.below(100), unknown_percent),
            pick: rng.below(16),
        })
        .collect()
}

/// Cost check: a 3-client history of 1,000 ops on 10 keys, about 4 % with unknown outcome.
/// Each history takes about 0.5–1 ms to check in release on the build machine.
#[test]
fn thousand_ops_on_ten_keys_check_quickly() {
    let mut rng = SplitMix64 { state: 1 };
    for _ in 0..4 {
        let history = execute(&KvModel, &random_plan(&mut rng, 1_000, 10, 4));
        assert_eq!(
            check(&KvModel, &history, STEPS_PER_KEY_MAX_DEFAULT),
            CheckResult::Ok
        );
    }
}

/// The same on one key: no partitioning to help, only the memo.
#[test]
fn thousand_ops_on_one_key_check_quickly() {
    let mut rng = SplitMix64 { state: 2 };
    let history = execute(&KvModel, &random_plan(&mut rng, 1_000, 1, 4));
    assert_eq!(
        check(&KvModel, &history, STEPS_PER_KEY_MAX_DEFAULT),
        CheckResult::Ok
    );
}

/// The cross-check must not be vacuous: mutations must make some histories illegal, and
/// the checker must find exactly those.
#[test]
fn mutations_make_some_histories_illegal() {
    let mut rng = SplitMix64 { state: 3 };
    let mut illegal_histories = 0;
    for _ in 0..300 {
        let (ops, keys) = (1 + rng.below(8) as usize, 1 + rng.below(2));
        let plan = random_plan(&mut rng, ops, keys, 20);
        let mut history = execute(&KvModel, &plan);
        mutate_kv(&mut history, rng.below(8) as usize, rng.below(64));
        let verdict = check(&KvModel, &history, STEPS_PER_KEY_MAX_DEFAULT);
        assert_eq!(
            verdict == CheckResult::Ok,
            brute_force_linearizable(&KvModel, &history)
        );
        illegal_histories += usize::from(verdict != CheckResult::Ok);
    }
    assert!(
        illegal_histories >= 30,
        "only {illegal_histories} of 300 mutated histories illegal"
    );
}
