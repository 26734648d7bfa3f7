//! Hand-written histories for the linearizability checker; generated histories, the
//! brute-force cross-check and the cost test live in `generated`.

mod generated;

use bytes::Bytes;

use super::*;

type KvOp = Operation<KvInput, KvOutput>;

fn ok(client_id: u64, input: KvInput, call: u64, ret: u64, output: KvOutput) -> KvOp {
    Operation {
        client_id,
        input,
        call,
        outcome: Outcome::Ok { ret, output },
    }
}

fn unknown(client_id: u64, input: KvInput, call: u64) -> KvOp {
    Operation {
        client_id,
        input,
        call,
        outcome: Outcome::Unknown,
    }
}

fn failed(client_id: u64, input: KvInput, call: u64) -> KvOp {
    Operation {
        client_id,
        input,
        call,
        outcome: Outcome::Fail,
    }
}

fn check_kv(history: &[KvOp]) -> CheckResult<u64> {
    check(&KvModel, history, STEPS_PER_KEY_MAX_DEFAULT)
}

fn explanation_of(result: CheckResult<u64>) -> String {
    match result {
        CheckResult::Illegal { explanation, .. } => explanation,
        other => panic!("expected an illegal history, got {other:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(check_kv(&[]), CheckResult::Ok);
}

#[test]
fn sequential_history_is_linearizable() {
    let history = [
        ok(1, KvInput::Get(1), 0, 1, KvOutput::Get(None)),
        ok(1, KvInput::Put(1, 10), 2, 3, KvOutput::Put),
        ok(2, KvInput::Get(1), 4, 5, KvOutput::Get(Some(10))),
        ok(2, KvInput::Incr(1, 5), 6, 7, KvOutput::Incr(15)),
        ok(1, KvInput::Cas(1, Some(15), 20), 8, 9, KvOutput::Cas(true)),
        ok(
            1,
            KvInput::Cas(1, Some(15), 30),
            10,
            11,
            KvOutput::Cas(false),
        ),
        ok(2, KvInput::Incr(2, 3), 12, 13, KvOutput::Incr(3)),
        ok(2, KvInput::Cas(3, None, 7), 14, 15, KvOutput::Cas(true)),
        ok(1, KvInput::Get(1), 16, 17, KvOutput::Get(Some(20))),
    ];
    assert_eq!(check_kv(&history), CheckResult::Ok);
}

#[test]
fn stale_read_after_completed_write_is_illegal() {
    let history = [
        ok(1, KvInput::Put(1, 1), 0, 2, KvOutput::Put),
        ok(2, KvInput::Get(1), 3, 4, KvOutput::Get(None)),
    ];
    let result = check_kv(&history);
    assert!(
        matches!(result, CheckResult::Illegal { key: 1, .. }),
        "{result:?}"
    );
    let explanation = explanation_of(result);
    assert!(
        explanation.contains("longest linearizable prefix: 1 ops"),
        "{explanation}"
    );
    assert!(
        explanation.contains("1. client 1 [call 0, ret 2] put(1, 1) -> ok"),
        "{explanation}"
    );
    assert!(
        explanation.contains("state after the prefix: Some(1)"),
        "{explanation}"
    );
    assert!(
        explanation.contains("cannot place: client 2 [call 3, ret 4] get(1) -> None"),
        "{explanation}"
    );
}

#[test]
fn overlapping_ops_that_can_be_ordered_are_accepted() {
    // put 2 is called after put 1 but both overlap, so put 2 may take effect first; the
    // reads pin that order: 2 is seen, then 1.
    let history = [
        ok(1, KvInput::Put(1, 1), 0, 10, KvOutput::Put),
        ok(2, KvInput::Put(1, 2), 1, 5, KvOutput::Put),
        ok(3, KvInput::Get(1), 2, 6, KvOutput::Get(Some(2))),
        ok(3, KvInput::Get(1), 7, 11, KvOutput::Get(Some(1))),
        ok(2, KvInput::Get(1), 12, 13, KvOutput::Get(Some(1))),
    ];
    assert_eq!(check_kv(&history), CheckResult::Ok);
}

#[test]
fn ops_touching_at_one_instant_count_as_concurrent() {
    // The read is called at the tick the write returns: either order is allowed.
    let history = [
        ok(1, KvInput::Put(1, 1), 0, 5, KvOutput::Put),
        ok(2, KvInput::Get(1), 5, 6, KvOutput::Get(None)),
    ];
    assert_eq!(check_kv(&history), CheckResult::Ok);
}

#[test]
fn reads_cannot_flip_between_concurrent_writes() {
    // Once a read saw 2 (put 2 took effect after put 1), a later read cannot see 1.
    let history = [
        ok(1, KvInput::Put(1, 1), 0, 10, KvOutput::Put),
        ok(2, KvInput::Put(1, 2), 0, 10, KvOutput::Put),
        ok(3, KvInput::Get(1), 1, 2, KvOutput::Get(Some(1))),
        ok(3, KvInput::Get(1), 3, 4, KvOutput::Get(Some(2))),
        ok(3, KvInput::Get(1), 5, 6, KvOutput::Get(Some(1))),
    ];
    assert!(matches!(
        check_kv(&history),
        CheckResult::Illegal { key: 1, .. }
    ));
}

#[test]
fn unknown_write_may_take_effect_late_or_never() {
    let before = [
        ok(1, KvInput::Put(1, 1), 0, 1, KvOutput::Put),
        unknown(2, KvInput::Put(1, 2), 2),
    ];
    for seen in [1, 2] {
        let mut history = before.to_vec();
        history.push(ok(3, KvInput::Get(1), 10, 11, KvOutput::Get(Some(seen))));
        assert_eq!(check_kv(&history), CheckResult::Ok, "read of {seen}");
    }
    // Long after the call, the unknown write still may appear for the first time.
    let mut late = before.to_vec();
    late.push(ok(3, KvInput::Get(1), 10, 11, KvOutput::Get(Some(1))));
    late.push(ok(3, KvInput::Get(1), 1_000, 1_001, KvOutput::Get(Some(2))));
    assert_eq!(check_kv(&late), CheckResult::Ok);
}

#[test]
fn unknown_write_cannot_take_effect_before_its_call() {
    let history = [
        ok(1, KvInput::Get(1), 0, 1, KvOutput::Get(Some(2))),
        unknown(2, KvInput::Put(1, 2), 2),
    ];
    assert!(matches!(
        check_kv(&history),
        CheckResult::Illegal { key: 1, .. }
    ));
}

#[test]
fn unknown_write_takes_effect_at_most_once() {
    // Seen, then overwritten, then seen again: it would have to apply twice.
    let history = [
        unknown(1, KvInput::Put(1, 2), 0),
        ok(2, KvInput::Get(1), 1, 2, KvOutput::Get(Some(2))),
        ok(2, KvInput::Put(1, 3), 3, 4, KvOutput::Put),
        ok(2, KvInput::Get(1), 5, 6, KvOutput::Get(Some(2))),
    ];
    assert!(matches!(
        check_kv(&history),
        CheckResult::Illegal { key: 1, .. }
    ));
}

#[test]
fn history_of_only_unknown_ops_is_linearizable() {
    let history = [
        unknown(1, KvInput::Put(1, 2), 0),
        unknown(2, KvInput::Get(1), 0),
    ];
    assert_eq!(check_kv(&history), CheckResult::Ok);
}

#[test]
fn incr_applied_twice_is_illegal() {
    // One increment acknowledged with 1, yet a later read sees 2: it was applied twice
    // (a retried or proxied command without deduplication, RedisRaft issue #13's shape).
    let history = [
        ok(1, KvInput::Incr(1, 1), 0, 3, KvOutput::Incr(1)),
        ok(2, KvInput::Get(1), 4, 5, KvOutput::Get(Some(2))),
    ];
    let explanation = explanation_of(check_kv(&history));
    assert!(
        explanation.contains("cannot place: client 2"),
        "{explanation}"
    );
}

#[test]
fn two_increments_reporting_the_same_sum_are_illegal() {
    let history = [
        ok(1, KvInput::Incr(1, 1), 0, 3, KvOutput::Incr(1)),
        ok(2, KvInput::Incr(1, 1), 1, 4, KvOutput::Incr(1)),
    ];
    assert!(matches!(
        check_kv(&history),
        CheckResult::Illegal { key: 1, .. }
    ));
}

#[test]
fn failed_ops_are_ignored() {
    let history = [
        ok(1, KvInput::Put(1, 1), 0, 1, KvOutput::Put),
        failed(2, KvInput::Put(1, 2), 2),
        ok(3, KvInput::Get(1), 10, 11, KvOutput::Get(Some(1))),
    ];
    assert_eq!(check_kv(&history), CheckResult::Ok);
}

#[test]
fn keys_are_checked_independently_and_the_illegal_key_is_named() {
    // Each key alone is fine except key 2; values never cross keys.
    let history = [
        ok(1, KvInput::Put(1, 1), 0, 1, KvOutput::Put),
        ok(1, KvInput::Put(2, 2), 2, 3, KvOutput::Put),
        ok(2, KvInput::Get(1), 4, 5, KvOutput::Get(Some(1))),
        ok(2, KvInput::Get(2), 6, 7, KvOutput::Get(Some(1))),
    ];
    assert!(matches!(
        check_kv(&history),
        CheckResult::Illegal { key: 2, .. }
    ));
}

#[test]
fn exhausted_budget_is_inconclusive() {
    let history = [
        ok(1, KvInput::Put(1, 1), 0, 10, KvOutput::Put),
        ok(2, KvInput::Put(1, 2), 0, 10, KvOutput::Put),
        ok(3, KvInput::Get(1), 11, 12, KvOutput::Get(Some(1))),
    ];
    assert_eq!(
        check(&KvModel, &history, 2),
        CheckResult::Inconclusive { key: 1 }
    );
    assert_eq!(check(&KvModel, &history, 100), CheckResult::Ok);
}

#[test]
fn illegal_key_wins_over_inconclusive_key() {
    let history = [
        ok(1, KvInput::Put(1, 1), 0, 10, KvOutput::Put),
        ok(2, KvInput::Put(1, 2), 0, 10, KvOutput::Put),
        ok(3, KvInput::Get(1), 11, 12, KvOutput::Get(Some(1))),
        ok(3, KvInput::Get(2), 13, 14, KvOutput::Get(Some(5))),
    ];
    assert!(matches!(
        check(&KvModel, &history, 2),
        CheckResult::Illegal { key: 2, .. }
    ));
}

#[test]
#[should_panic(expected = "before its call")]
fn return_before_call_is_a_recorder_bug() {
    check_kv(&[ok(1, KvInput::Get(1), 5, 4, KvOutput::Get(None))]);
}

#[test]
#[should_panic(expected = "recorder bug")]
fn reply_of_the_wrong_kind_is_a_recorder_bug() {
    check_kv(&[ok(1, KvInput::Get(1), 0, 1, KvOutput::Put)]);
}

#[test]
fn long_illegal_prefix_is_elided_in_the_explanation() {
    let mut history: Vec<KvOp> = (0..100)
        .map(|i| ok(1, KvInput::Put(1, i), 2 * i, 2 * i + 1, KvOutput::Put))
        .collect();
    history.push(ok(2, KvInput::Get(1), 1_000, 1_001, KvOutput::Get(Some(3))));
    let explanation = explanation_of(check_kv(&history));
    assert!(
        explanation.contains("(68 earlier ops not shown)"),
        "{explanation}"
    );
    assert!(explanation.contains("100. client 1"), "{explanation}");
    assert!(!explanation.contains("  68. client"), "{explanation}");
}

fn register_op(
    client_id: u64,
    input: RegisterInput,
    call: u64,
    ret: u64,
    output: RegisterOutput,
) -> Operation<RegisterInput, RegisterOutput> {
    Operation {
        client_id,
        input,
        call,
        outcome: Outcome::Ok { ret, output },
    }
}

#[test]
fn register_set_get_del_history_is_linearizable() {
    let key = Bytes::from_static(b"user:1");
    let value = Bytes::from_static(b"alice");
    let history = [
        register_op(
            1,
            RegisterInput::Set(key.clone(), value.clone()),
            0,
            1,
            RegisterOutput::Set,
        ),
        register_op(
            2,
            RegisterInput::Get(key.clone()),
            2,
            3,
            RegisterOutput::Get(Some(value)),
        ),
        register_op(
            1,
            RegisterInput::Del(key.clone()),
            4,
            5,
            RegisterOutput::Del(1),
        ),
        register_op(
            2,
            RegisterInput::Del(key.clone()),
            6,
            7,
            RegisterOutput::Del(0),
        ),
        register_op(2, RegisterInput::Get(key), 8, 9, RegisterOutput::Get(None)),
    ];
    assert_eq!(
        check(&RegisterModel, &history, STEPS_PER_KEY_MAX_DEFAULT),
        CheckResult::Ok
    );
}

#[test]
fn register_del_of_a_present_key_must_count_it() {
    let key = Bytes::from_static(b"k");
    let history = [
        register_op(
            1,
            RegisterInput::Set(key.clone(), key.clone()),
            0,
            1,
            RegisterOutput::Set,
        ),
        register_op(
            2,
            RegisterInput::Del(key.clone()),
            2,
            3,
            RegisterOutput::Del(0),
        ),
    ];
    let result = check(&RegisterModel, &history, STEPS_PER_KEY_MAX_DEFAULT);
    let CheckResult::Illegal {
        key: illegal_key,
        explanation,
    } = result
    else {
        panic!("expected an illegal history, got {result:?}");
    };
    assert_eq!(illegal_key, key);
    assert!(
        explanation.contains(r#"DEL b"k" -> (integer) 0"#),
        "{explanation}"
    );
}
