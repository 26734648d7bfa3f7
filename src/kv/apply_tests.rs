//! Per-command tests of `apply` and `read` over `MemKv`: the edge cases Redis documents.

use bytes::Bytes;

use super::command::{ExpireCondition, GetExTtl, KvCommand, Request, SetCondition};
use super::mem::MemKv;
use super::read::{self, ReadCommand, TtlForm};
use super::{apply, KvError, KvMutation, Overlay, Reply};

const NOW_MS: u64 = 1_000_000;

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(b(text))
}

/// A group's state with a client whose seqs count up.
struct Fixture {
    kv: MemKv,
    overlay: Overlay,
    seq: u64,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { kv: MemKv::new(), overlay: Overlay::new(), seq: 0 }
    }

    fn at(&mut self, now_ms: u64, command: KvCommand) -> Reply {
        self.seq += 1;
        let req = Request { client_id: 7, seq: self.seq, now_ms, command };
        self.send(&req)
    }

    fn send(&mut self, req: &Request) -> Reply {
        let reply = apply(&self.kv, &mut self.overlay, req);
        self.kv.apply_mutations(&self.overlay.drain());
        reply
    }

    fn run(&mut self, command: KvCommand) -> Reply {
        self.at(NOW_MS, command)
    }

    fn get(&self, key: &str) -> Reply {
        read::get(&self.kv, NOW_MS, key.as_bytes())
    }

    fn pttl(&self, key: &str) -> Reply {
        read::ttl(&self.kv, NOW_MS, key.as_bytes(), TtlForm::Millis)
    }
}

fn set(key: &str, value: &str) -> KvCommand {
    set_with(key, value, None, false, SetCondition::Always, false)
}

fn set_with(
    key: &str,
    value: &str,
    expire_at_ms: Option<u64>,
    keep_ttl: bool,
    condition: SetCondition,
    get: bool,
) -> KvCommand {
    KvCommand::Set { key: b(key), value: b(value), expire_at_ms, keep_ttl, condition, get }
}

fn expire(key: &str, deadline_ms: u64, condition: ExpireCondition) -> KvCommand {
    KvCommand::Expire { key: b(key), deadline_ms, condition }
}

fn incrby(key: &str, delta: i64) -> KvCommand {
    KvCommand::IncrBy { key: b(key), delta }
}

fn incrbyfloat(key: &str, delta: f64) -> KvCommand {
    KvCommand::IncrByFloat { key: b(key), delta }
}

#[test]
fn set_nx_xx_and_get_option() {
    let mut f = Fixture::new();
    let nx = |v| set_with("k", v, None, false, SetCondition::IfAbsent, false);
    let xx = |v| set_with("k", v, None, false, SetCondition::IfPresent, false);
    assert_eq!(f.run(xx("a")), Reply::Nil);
    assert_eq!(f.get("k"), Reply::Nil);
    assert_eq!(f.run(nx("a")), Reply::Ok);
    assert_eq!(f.run(nx("b")), Reply::Nil);
    assert_eq!(f.run(xx("c")), Reply::Ok);
    assert_eq!(f.get("k"), bulk("c"));
    let nx_get = set_with("k", "d", None, false, SetCondition::IfAbsent, true);
    assert_eq!(f.run(nx_get), bulk("c"));
    assert_eq!(f.get("k"), bulk("c"));
    let get = set_with("k", "e", None, false, SetCondition::Always, true);
    assert_eq!(f.run(get), bulk("c"));
    let get_new = set_with("n", "e", None, false, SetCondition::Always, true);
    assert_eq!(f.run(get_new), Reply::Nil);
    assert_eq!(f.run(KvCommand::GetSet { key: b("k"), value: b("f") }), bulk("e"));
    assert_eq!(f.get("k"), bulk("f"));
}

#[test]
fn set_clears_ttl_unless_keepttl() {
    let mut f = Fixture::new();
    f.run(set_with("k", "a", Some(NOW_MS + 5000), false, SetCondition::Always, false));
    assert_eq!(f.pttl("k"), Reply::Int(5000));
    f.run(set_with("k", "b", None, true, SetCondition::Always, false));
    assert_eq!(f.pttl("k"), Reply::Int(5000));
    f.run(set("k", "c"));
    assert_eq!(f.pttl("k"), Reply::Int(-1));
    let both = set_with("k", "d", Some(NOW_MS + 1), true, SetCondition::Always, false);
    assert_eq!(f.run(both), Reply::Error(KvError::Syntax));
    let zero = set_with("k", "d", Some(0), false, SetCondition::Always, false);
    let error = KvError::InvalidExpireTime("set".to_string());
    assert_eq!(f.run(zero), Reply::Error(error.clone()));
    assert_eq!(error.to_string(), "ERR invalid expire time in 'set' command");
}

#[test]
fn set_with_passed_deadline_leaves_key_absent() {
    let mut f = Fixture::new();
    f.run(set("k", "a"));
    let past = set_with("k", "b", Some(NOW_MS), false, SetCondition::Always, true);
    assert_eq!(f.run(past), bulk("a"));
    assert_eq!(f.get("k"), Reply::Nil);
    assert!(f.kv.is_empty());
}

#[test]
fn key_expires_at_exactly_its_deadline() {
    let mut f = Fixture::new();
    f.run(set_with("k", "a", Some(NOW_MS + 10), false, SetCondition::Always, false));
    assert_eq!(read::get(&f.kv, NOW_MS + 9, b"k"), bulk("a"));
    assert_eq!(read::get(&f.kv, NOW_MS + 10, b"k"), Reply::Nil);
    assert_eq!(read::exists(&f.kv, NOW_MS + 10, &[b("k")]), Reply::Int(0));
    // A write at the deadline sees no key: NX succeeds, and INCR starts from zero
    // although the expired value was not a number.
    let nx = set_with("k", "b", Some(NOW_MS + 20), false, SetCondition::IfAbsent, false);
    assert_eq!(f.at(NOW_MS + 10, nx), Reply::Ok);
    assert_eq!(read::get(&f.kv, NOW_MS + 10, b"k"), bulk("b"));
    assert_eq!(f.at(NOW_MS + 20, incrby("k", 1)), Reply::Int(1));
}

#[test]
fn expired_key_counts_as_absent_for_incr() {
    let mut f = Fixture::new();
    f.run(set_with("k", "41", Some(NOW_MS + 10), false, SetCondition::Always, false));
    assert_eq!(f.at(NOW_MS + 10, incrby("k", 1)), Reply::Int(1));
    assert_eq!(read::ttl(&f.kv, NOW_MS, b"k", TtlForm::Millis), Reply::Int(-1));
}

#[test]
fn incrby_rejects_non_integers_and_overflow() {
    let mut f = Fixture::new();
    assert_eq!(f.run(incrby("n", 5)), Reply::Int(5));
    assert_eq!(f.run(incrby("n", -7)), Reply::Int(-2));
    f.run(set("n", "9223372036854775806"));
    assert_eq!(f.run(incrby("n", 1)), Reply::Int(i64::MAX));
    assert_eq!(f.run(incrby("n", 1)), Reply::Error(KvError::Overflow));
    f.run(set("m", "-9223372036854775808"));
    assert_eq!(f.run(incrby("m", -1)), Reply::Error(KvError::Overflow));
    for bad in ["x", " 1", "1.5", "01", ""] {
        f.run(set("s", bad));
        assert_eq!(f.run(incrby("s", 1)), Reply::Error(KvError::NotInteger));
    }
    assert_eq!(KvError::Overflow.to_string(), "ERR increment or decrement would overflow");
}

#[test]
fn incrby_keeps_the_ttl() {
    let mut f = Fixture::new();
    f.run(set_with("n", "1", Some(NOW_MS + 500), false, SetCondition::Always, false));
    f.run(incrby("n", 1));
    assert_eq!(f.pttl("n"), Reply::Int(500));
}

#[test]
fn incrbyfloat_formats_like_redis() {
    let mut f = Fixture::new();
    f.run(set("f", "10.50"));
    assert_eq!(f.run(incrbyfloat("f", 0.1)), bulk("10.6"));
    assert_eq!(f.run(incrbyfloat("f", -5.0)), bulk("5.6"));
    f.run(set("g", "5.0e3"));
    assert_eq!(f.run(incrbyfloat("g", 2.0e2)), bulk("5200"));
    assert_eq!(f.get("g"), bulk("5200"));
    assert_eq!(f.run(incrbyfloat("new", 3.0)), bulk("3"));
    f.run(set("bad", "abc"));
    assert_eq!(f.run(incrbyfloat("bad", 1.0)), Reply::Error(KvError::NotFloat));
    f.run(set("big", "1.7e308"));
    assert_eq!(f.run(incrbyfloat("big", 1.7e308)), Reply::Error(KvError::NanOrInfinity));
    assert_eq!(f.run(incrbyfloat("f", f64::INFINITY)), Reply::Error(KvError::NanOrInfinity));
}

#[test]
fn append_and_setrange_bounds() {
    let mut f = Fixture::new();
    assert_eq!(f.run(KvCommand::Append { key: b("a"), value: b("Hello") }), Reply::Int(5));
    assert_eq!(f.run(KvCommand::Append { key: b("a"), value: b(" World") }), Reply::Int(11));
    let setrange = |key: &str, offset, value: &str| KvCommand::SetRange {
        key: b(key),
        offset,
        value: b(value),
    };
    assert_eq!(f.run(setrange("a", 6, "Redis")), Reply::Int(11));
    assert_eq!(f.get("a"), bulk("Hello Redis"));
    assert_eq!(f.run(setrange("z", 3, "x")), Reply::Int(4));
    assert_eq!(f.get("z"), Reply::Bulk(Bytes::from_static(b"\0\0\0x")));
    assert_eq!(f.run(setrange("none", 5, "")), Reply::Int(0));
    assert_eq!(f.get("none"), Reply::Nil);
    assert_eq!(f.run(setrange("a", 100, "")), Reply::Int(11));
    let max = super::apply::STRING_BYTES_MAX;
    let too_far = f.run(setrange("a", max, "x"));
    assert_eq!(too_far, Reply::Error(KvError::StringTooLong));
    assert_eq!(
        KvError::StringTooLong.to_string(),
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    assert_eq!(f.run(setrange("a", u64::MAX, "x")), Reply::Error(KvError::StringTooLong));
}

#[test]
fn getdel_and_getex() {
    let mut f = Fixture::new();
    f.run(set("k", "v"));
    assert_eq!(f.run(KvCommand::GetDel { key: b("k") }), bulk("v"));
    assert_eq!(f.run(KvCommand::GetDel { key: b("k") }), Reply::Nil);
    f.run(set("k", "v"));
    let at = |deadline_ms| KvCommand::GetEx { key: b("k"), ttl: GetExTtl::At { deadline_ms } };
    assert_eq!(f.run(at(NOW_MS + 100)), bulk("v"));
    assert_eq!(f.pttl("k"), Reply::Int(100));
    assert_eq!(f.run(KvCommand::GetEx { key: b("k"), ttl: GetExTtl::Persist }), bulk("v"));
    assert_eq!(f.pttl("k"), Reply::Int(-1));
    assert_eq!(f.run(at(NOW_MS - 1)), bulk("v"));
    assert_eq!(f.get("k"), Reply::Nil);
    let invalid = KvError::InvalidExpireTime("getex".to_string());
    assert_eq!(f.run(at(0)), Reply::Error(invalid));
}

#[test]
fn expire_conditions_nx_xx_gt_lt() {
    let mut f = Fixture::new();
    f.run(set("k", "v"));
    let later = NOW_MS + 2000;
    let sooner = NOW_MS + 1000;
    assert_eq!(f.run(expire("k", later, ExpireCondition::Xx)), Reply::Int(0));
    assert_eq!(f.run(expire("k", later, ExpireCondition::Gt)), Reply::Int(0));
    assert_eq!(f.run(expire("k", later, ExpireCondition::XxLt)), Reply::Int(0));
    assert_eq!(f.run(expire("k", later, ExpireCondition::Lt)), Reply::Int(1));
    assert_eq!(f.run(expire("k", later, ExpireCondition::Nx)), Reply::Int(0));
    assert_eq!(f.run(expire("k", sooner, ExpireCondition::Gt)), Reply::Int(0));
    assert_eq!(f.run(expire("k", later, ExpireCondition::Gt)), Reply::Int(0));
    assert_eq!(f.run(expire("k", later + 1, ExpireCondition::Gt)), Reply::Int(1));
    assert_eq!(f.run(expire("k", later + 1, ExpireCondition::Lt)), Reply::Int(0));
    assert_eq!(f.run(expire("k", sooner, ExpireCondition::XxLt)), Reply::Int(1));
    assert_eq!(f.pttl("k"), Reply::Int(1000));
    assert_eq!(f.run(expire("k", later, ExpireCondition::Xx)), Reply::Int(1));
    assert_eq!(f.run(expire("missing", later, ExpireCondition::Always)), Reply::Int(0));
    assert_eq!(f.run(KvCommand::Persist { key: b("k") }), Reply::Int(1));
    assert_eq!(f.run(KvCommand::Persist { key: b("k") }), Reply::Int(0));
}

#[test]
fn expire_in_the_past_deletes_after_conditions() {
    let mut f = Fixture::new();
    f.run(set("k", "v"));
    assert_eq!(f.run(expire("k", 1, ExpireCondition::Gt)), Reply::Int(0));
    assert_eq!(f.get("k"), bulk("v"));
    assert_eq!(f.run(expire("k", NOW_MS, ExpireCondition::Always)), Reply::Int(1));
    assert_eq!(f.get("k"), Reply::Nil);
    assert!(f.kv.is_empty());
}

#[test]
fn ttl_family_rounds_like_redis() {
    let mut f = Fixture::new();
    f.run(set_with("k", "v", Some(NOW_MS + 1499), false, SetCondition::Always, false));
    let ttl = |form| read::ttl(&f.kv, NOW_MS, b"k", form);
    assert_eq!(ttl(TtlForm::Seconds), Reply::Int(1));
    assert_eq!(ttl(TtlForm::Millis), Reply::Int(1499));
    assert_eq!(ttl(TtlForm::DeadlineMillis), Reply::Int((NOW_MS + 1499) as i64));
    assert_eq!(ttl(TtlForm::DeadlineSeconds), Reply::Int(1001));
    assert_eq!(read::ttl(&f.kv, NOW_MS, b"none", TtlForm::Seconds), Reply::Int(-2));
}

#[test]
fn del_rename_and_mset() {
    let mut f = Fixture::new();
    f.run(KvCommand::MSet { pairs: vec![(b("{t}a"), b("1")), (b("{t}b"), b("2"))] });
    let del = KvCommand::Del { keys: vec![b("{t}a"), b("{t}a"), b("nope")] };
    assert_eq!(f.run(del), Reply::Int(1));
    let msetnx = |k: &str| KvCommand::MSetNx { pairs: vec![(b(k), b("x")), (b("{t}b"), b("y"))] };
    assert_eq!(f.run(msetnx("{t}c")), Reply::Int(0));
    assert_eq!(f.get("{t}c"), Reply::Nil);
    f.run(expire("{t}b", NOW_MS + 300, ExpireCondition::Always));
    let rename = |k: &str, n: &str| KvCommand::Rename { key: b(k), new_key: b(n) };
    let renamenx = |k: &str, n: &str| KvCommand::RenameNx { key: b(k), new_key: b(n) };
    assert_eq!(f.run(rename("{t}b", "{t}c")), Reply::Ok);
    assert_eq!(f.get("{t}c"), bulk("2"));
    assert_eq!(f.pttl("{t}c"), Reply::Int(300));
    assert_eq!(f.run(rename("{t}b", "{t}d")), Reply::Error(KvError::NoSuchKey));
    assert_eq!(f.run(rename("{t}c", "{t}c")), Reply::Ok);
    assert_eq!(f.run(rename("{t}c", "{u}c")), Reply::Error(KvError::CrossSlot));
    f.run(set("{t}e", "e"));
    assert_eq!(f.run(renamenx("{t}c", "{t}e")), Reply::Int(0));
    assert_eq!(f.run(renamenx("{t}c", "{t}f")), Reply::Int(1));
    assert_eq!(f.get("{t}f"), bulk("2"));
}

#[test]
fn wrongtype_for_string_commands_on_other_types() {
    use super::record::{Record, ValueType};
    let mut f = Fixture::new();
    let list = Record { value_type: ValueType::List, expire_at_ms: None, value: b("x") };
    let slot = super::key_slot(b"l");
    f.kv.apply_mutations(&[super::KvMutation::Put { slot, key: b("l"), record: list.encode() }]);
    assert_eq!(f.get("l"), Reply::Error(KvError::WrongType));
    assert_eq!(f.run(incrby("l", 1)), Reply::Error(KvError::WrongType));
    let get = set_with("l", "v", None, false, SetCondition::Always, true);
    assert_eq!(f.run(get), Reply::Error(KvError::WrongType));
    assert_eq!(read::value_type(&f.kv, NOW_MS, b"l"), Reply::Status("list".to_string()));
    assert_eq!(read::mget(&f.kv, NOW_MS, &[b("l")]), Reply::Array(vec![Reply::Nil]));
    assert_eq!(f.run(set("l", "v")), Reply::Ok);
    assert_eq!(read::value_type(&f.kv, NOW_MS, b"l"), Reply::Status("string".to_string()));
}

#[test]
fn getrange_follows_redis_index_rules() {
    let mut f = Fixture::new();
    f.run(set("s", "This is a string"));
    let range = |start, end| read::getrange(&f.kv, NOW_MS, b"s", start, end);
    assert_eq!(range(0, 3), bulk("This"));
    assert_eq!(range(-3, -1), bulk("ing"));
    assert_eq!(range(0, -1), bulk("This is a string"));
    assert_eq!(range(10, 100), bulk("string"));
    assert_eq!(range(-1, -5), bulk(""));
    assert_eq!(range(5, 2), bulk(""));
    assert_eq!(read::getrange(&f.kv, NOW_MS, b"none", 0, -1), bulk(""));
    assert_eq!(read::strlen(&f.kv, NOW_MS, b"s"), Reply::Int(16));
}

#[test]
fn flush_slots_removes_only_that_range_including_pending_writes() {
    let mut f = Fixture::new();
    f.run(set("foo", "1")); // slot 12182
    f.run(set("bar", "2")); // slot 5061
    let pending = Request { client_id: 9, seq: 1, now_ms: NOW_MS, command: set("baz", "3") };
    apply(&f.kv, &mut f.overlay, &pending); // slot 4813, not yet drained
    let flush = KvCommand::FlushSlots { slot_first: 0, slot_last: 6000 };
    assert_eq!(f.run(flush), Reply::Ok);
    assert_eq!(f.get("foo"), bulk("1"));
    assert_eq!(f.get("bar"), Reply::Nil);
    assert_eq!(f.get("baz"), Reply::Nil);
}

#[test]
fn delete_expired_only_deletes_the_same_passed_deadline() {
    let mut f = Fixture::new();
    f.run(set_with("k", "v", Some(NOW_MS + 10), false, SetCondition::Always, false));
    let internal = |now_ms, deadline_ms| Request {
        client_id: super::command::NO_CLIENT_ID,
        seq: 0,
        now_ms,
        command: KvCommand::DeleteExpired { key: b("k"), deadline_ms },
    };
    assert_eq!(f.send(&internal(NOW_MS + 5, NOW_MS + 10)), Reply::Int(0));
    assert_eq!(f.send(&internal(NOW_MS + 20, NOW_MS + 11)), Reply::Int(0));
    assert_eq!(f.kv.len(), 1);
    assert_eq!(f.send(&internal(NOW_MS + 20, NOW_MS + 10)), Reply::Int(1));
    assert!(f.kv.is_empty());
    assert_eq!(f.kv.session_count(), 1, "internal proposals create no session");
}

#[test]
fn retried_request_is_applied_once() {
    let mut f = Fixture::new();
    let first = Request { client_id: 3, seq: 1, now_ms: NOW_MS, command: incrby("c", 1) };
    let second = Request { seq: 2, ..first.clone() };
    assert_eq!(f.send(&first), Reply::Int(1));
    assert_eq!(f.send(&first), Reply::Int(1));
    assert_eq!(f.send(&second), Reply::Int(2));
    assert_eq!(f.send(&second), Reply::Int(2));
    assert_eq!(f.send(&first), Reply::Error(KvError::AlreadyApplied));
    assert_eq!(f.get("c"), bulk("2"));
    // Within one batch too: the retry sees the session written by the first copy.
    let third = Request { seq: 3, ..first.clone() };
    assert_eq!(apply(&f.kv, &mut f.overlay, &third), Reply::Int(3));
    assert_eq!(apply(&f.kv, &mut f.overlay, &third), Reply::Int(3));
    f.kv.apply_mutations(&f.overlay.drain());
    assert_eq!(f.get("c"), bulk("3"));
}

#[test]
fn sessions_are_bounded_and_evict_least_recently_used() {
    let mut kv = MemKv::new();
    let mut overlay = Overlay::with_sessions_max(3);
    let mut send = |kv: &mut MemKv, client_id, seq, now_ms| {
        let req = Request { client_id, seq, now_ms, command: incrby("c", 1) };
        let reply = apply(&*kv, &mut overlay, &req);
        kv.apply_mutations(&overlay.drain());
        reply
    };
    send(&mut kv, 1, 1, 10);
    send(&mut kv, 2, 1, 20);
    send(&mut kv, 3, 1, 30);
    send(&mut kv, 1, 2, 40); // client 1 is now the most recent
    send(&mut kv, 4, 1, 50); // evicts client 2
    assert_eq!(kv.session_count(), 3);
    assert!(super::KvRead::session(&kv, 2).is_none());
    assert!(super::KvRead::session(&kv, 1).is_some());
    // Client 1's retry is still deduplicated; client 2's is not (its session is gone).
    assert_eq!(send(&mut kv, 1, 2, 60), Reply::Int(4));
    assert_eq!(send(&mut kv, 2, 1, 70), Reply::Int(6));
    assert_eq!(kv.session_count(), 3);
    assert!(super::KvRead::session(&kv, 3).is_none());
}

#[test]
fn a_batch_applies_in_order_answers_each_and_is_applied_once() {
    let mut f = Fixture::new();
    let incr = |key: &str| KvCommand::IncrBy { key: b(key), delta: 1 };
    let commands = vec![set("n", "1"), incr("n"), incr("n"), set("s", "x"), incr("s")];
    f.seq += 1;
    let command = KvCommand::Batch { commands };
    let req = Request { client_id: 7, seq: f.seq, now_ms: NOW_MS, command };
    let expected = Reply::Array(vec![
        Reply::Ok,
        Reply::Int(2),
        Reply::Int(3),
        Reply::Ok,
        Reply::Error(KvError::NotInteger),
    ]);
    assert_eq!(f.send(&req), expected);
    assert_eq!(f.get("n"), bulk("3"));
    // A retry (same seq) gets the batch's answers again and changes nothing.
    assert_eq!(f.send(&req), expected);
    assert_eq!(f.get("n"), bulk("3"));
    // A batch holds key writes only: anything else in one is refused, the rest applies.
    let flush = KvCommand::FlushSlots { slot_first: 0, slot_last: 16383 };
    let nested = KvCommand::Batch { commands: vec![incr("n")] };
    let commands = vec![flush, nested, incr("n")];
    let reply = f.run(KvCommand::Batch { commands });
    let refused = Reply::Error(KvError::NotHere);
    assert_eq!(reply, Reply::Array(vec![refused.clone(), refused, Reply::Int(4)]));
    assert_eq!(f.get("s"), bulk("x"));
}

#[test]
fn a_read_batch_answers_each_key_read_and_refuses_range_reads() {
    use super::read::ReadCommand;
    let mut f = Fixture::new();
    f.run(set("a", "1"));
    let commands = vec![
        ReadCommand::Get { key: b("a") },
        ReadCommand::Get { key: b("b") },
        ReadCommand::Exists { keys: vec![b("a"), b("b"), b("a")] },
        ReadCommand::DbSize { slot_first: 0, slot_last: 16383 },
    ];
    let reply = read::execute(&f.kv, NOW_MS, &ReadCommand::Batch { commands });
    let expected = vec![bulk("1"), Reply::Nil, Reply::Int(2), Reply::Error(KvError::NotHere)];
    assert_eq!(reply, Reply::Array(expected));
}

#[test]
fn a_read_batch_past_its_reply_bound_answers_nothing() {
    use super::read::{ReadCommand, READ_BATCH_REPLY_BYTES_MAX};
    let mut f = Fixture::new();
    let big = "x".repeat(READ_BATCH_REPLY_BYTES_MAX as usize / 2 + 1);
    f.run(set("big", &big));
    let get = || ReadCommand::Get { key: b("big") };
    let one = read::execute(&f.kv, NOW_MS, &ReadCommand::Batch { commands: vec![get()] });
    assert_eq!(one, Reply::Array(vec![bulk(&big)]));
    let two = read::execute(&f.kv, NOW_MS, &ReadCommand::Batch { commands: vec![get(), get()] });
    let too_large = KvError::BatchReplyTooLarge(READ_BATCH_REPLY_BYTES_MAX);
    assert_eq!(two, Reply::Error(too_large));
}

#[test]
fn a_write_answering_a_value_stays_out_of_batches() {
    assert!(set("k", "v").batchable());
    let set_get = set_with("k", "v", None, false, SetCondition::Always, true);
    assert!(!set_get.batchable());
    assert!(!KvCommand::GetDel { key: b("k") }.batchable());
    assert!(!KvCommand::GetSet { key: b("k"), value: b("v") }.batchable());
    assert!(!KvCommand::Batch { commands: vec![] }.batchable());
    // RESTORE's entry is larger than its arguments; LCS's work is bounded per command.
    let (key, value) = (b("k"), b("v"));
    assert!(!KvCommand::Restore { key, value, deadline_ms: None, replace: false }.batchable());
    let answer = crate::kv::bits::LcsAnswer::Len;
    let lcs = ReadCommand::Lcs { keys: vec![b("{a}1"), b("{a}2")], answer, table_bytes_max: 1 };
    assert!(!lcs.batchable());
    assert!(ReadCommand::BitCount { key: b("k"), args: vec![] }.batchable());
}

/// INFO's keyspace count: keys (expired ones until deleted), those with a deadline still
/// ahead and their mean deadline, each group's answer merged into the cluster's; a record
/// whose header is damaged counts as a key without one.
#[test]
fn a_keyspace_count_holds_the_deadlines_and_merges_across_groups() {
    use super::read::{KeyCount, ReadCommand, Tally};
    let mut f = Fixture::new();
    f.run(set("a", "1"));
    let expiring = |key, value, deadline_ms| {
        set_with(key, value, Some(deadline_ms), false, SetCondition::Always, false)
    };
    f.run(expiring("b", "2", NOW_MS + 1_000));
    f.run(expiring("c", "3", NOW_MS + 2_000));
    f.run(set("d", "4"));
    f.run(expire("d", NOW_MS + 6_000, ExpireCondition::Always));
    f.run(KvCommand::Persist { key: b("a") });
    let keyspace = |slot_first, slot_last| ReadCommand::Keyspace { slot_first, slot_last };
    let mean = (3 * NOW_MS + 9_000) / 3;
    let int = |n: u64| Reply::Int(n as i64);
    let all = read::execute(&f.kv, NOW_MS, &keyspace(0, 16383));
    assert_eq!(all, Reply::Array(vec![int(4), int(3), int(mean)]));
    let later = read::execute(&f.kv, NOW_MS + 5_000, &keyspace(0, 16383));
    let want = vec![int(4), int(1), int(NOW_MS + 6_000)];
    assert_eq!(later, Reply::Array(want), "b and c expired: kept, without time left");
    let dbsize = ReadCommand::DbSize { slot_first: 0, slot_last: 16383 };
    assert_eq!(read::execute(&f.kv, NOW_MS, &dbsize), int(4));
    let keys_alone = KeyCount { keys: 4, ..KeyCount::default() };
    assert_eq!(super::KvRead::count_keys(&f.kv, 0..=16383, Tally::Keys), keys_alone);

    // The same keys counted as two groups, each over half the slots.
    let halves = [keyspace(0, 8191), keyspace(8192, 16383)];
    let parts = halves.iter().map(|c| read::execute(&f.kv, NOW_MS, c));
    let merged =
        parts.map(|r| KeyCount::from_keyspace_reply(&r)).fold(KeyCount::default(), KeyCount::merge);
    assert_eq!((merged.keys, merged.expires), (4, 3));
    let merged_mean = merged.mean_deadline_ms().unwrap();
    assert!(merged_mean.abs_diff(mean) <= 1, "{merged_mean} against {mean}");
    assert_eq!(KeyCount::default().mean_deadline_ms(), None);
    assert_eq!(KeyCount::from_keyspace_reply(&Reply::Nil), KeyCount::default());

    let mut damaged = KeyCount::default();
    damaged.add(b"\x01\x00\x01\x00", Tally::Deadlines { after_ms: 0 });
    assert_eq!((damaged.keys, damaged.expires), (1, 0));
    damaged.remove(b"\x01\x00\x01\x00", Tally::Deadlines { after_ms: 0 });
    assert_eq!(damaged, KeyCount::default());
}

/// MULTI/EXEC's request: in order on one state (a read sees the writes before it), each
/// reply in its place; all or nothing: past the reply bound none of it is applied; a
/// command a transaction may not hold is refused, the rest run.
#[test]
fn a_transaction_applies_in_order_and_all_or_nothing() {
    use super::apply::TRANSACTION_REPLY_BYTES_MAX;
    use super::read::ReadCommand;
    let mut f = Fixture::new();
    let get = |key: &str| KvCommand::Read(ReadCommand::Get { key: b(key) });
    let tx = |commands| KvCommand::Transaction { commands };
    let reply = f.run(tx(vec![set("a", "1"), get("a"), incrby("a", 2), get("a"), get("none")]));
    let want = vec![Reply::Ok, bulk("1"), Reply::Int(3), bulk("3"), Reply::Nil];
    assert_eq!(reply, Reply::Array(want));

    let half = "x".repeat(TRANSACTION_REPLY_BYTES_MAX as usize / 2 + 1);
    let big = vec![set("b", "1"), set("big", &half), get("big"), get("big")];
    let too_large = KvError::TransactionReplyTooLarge(TRANSACTION_REPLY_BYTES_MAX);
    assert_eq!(f.run(tx(big)), Reply::Error(too_large));
    assert_eq!(f.get("b"), Reply::Nil, "nothing of it applied");
    assert_eq!(f.get("big"), Reply::Nil);

    let nested = vec![
        set("c", "1"),
        KvCommand::Batch { commands: vec![set("d", "1")] },
        KvCommand::Read(ReadCommand::DbSize { slot_first: 0, slot_last: 16383 }),
        KvCommand::FlushSlots { slot_first: 0, slot_last: 16383 },
    ];
    let not_here = Reply::Error(KvError::NotHere);
    let want = vec![Reply::Ok, not_here.clone(), not_here.clone(), not_here];
    assert_eq!(f.run(tx(nested)), Reply::Array(want));
    assert_eq!((f.get("c"), f.get("d"), f.get("a")), (bulk("1"), Reply::Nil, bulk("3")));
}

/// A transaction refused for its replies' size puts back what the batch held for its keys
/// (earlier writes and deletes of the same batch, a flush), and keeps the batch's other
/// writes; a retried transaction (same seq) answers from the client's session, applied once.
#[test]
fn a_refused_transaction_leaves_the_batch_as_it_was_and_a_retry_applies_nothing() {
    use super::apply::TRANSACTION_REPLY_BYTES_MAX;
    use super::read::ReadCommand;
    let kv = MemKv::new();
    let mut overlay = Overlay::new();
    let request = |seq, command| Request { client_id: 9, seq, now_ms: NOW_MS, command };
    let get = |key: &str| KvCommand::Read(ReadCommand::Get { key: b(key) });
    let tx = |commands| KvCommand::Transaction { commands };
    for (seq, command) in [
        (1, set("a", "1")),
        (2, KvCommand::FlushSlots { slot_first: 0, slot_last: 0 }),
        (3, set("b", "2")),
        (4, KvCommand::Del { keys: vec![b("b")] }),
    ] {
        apply(&kv, &mut overlay, &request(seq, command));
    }
    let before = overlay.clone().drain();
    let half = "x".repeat(TRANSACTION_REPLY_BYTES_MAX as usize / 2 + 1);
    let big = vec![set("a", &half), get("a"), set("b", "3"), incrby("c", 1), set("a", "y")];
    let big = [big, vec![set("a", &half), get("a")]].concat();
    let too_large = KvError::TransactionReplyTooLarge(TRANSACTION_REPLY_BYTES_MAX);
    assert_eq!(apply(&kv, &mut overlay, &request(5, tx(big))), Reply::Error(too_large));
    let after: Vec<_> = overlay.clone().drain();
    let keys_of = |m: &[KvMutation]| {
        let keys = m.iter().filter(|m| !matches!(m, KvMutation::PutSession { .. }));
        keys.cloned().collect::<Vec<_>>()
    };
    assert_eq!(keys_of(&after), keys_of(&before), "the batch's keys as they were");

    let counted = vec![incrby("n", 5), get("n")];
    let first = apply(&kv, &mut overlay, &request(6, tx(counted.clone())));
    assert_eq!(first, Reply::Array(vec![Reply::Int(5), bulk("5")]));
    assert_eq!(apply(&kv, &mut overlay, &request(6, tx(counted))), first, "from the session");
    let n = read::get(&overlay.over(&kv), NOW_MS, b"n");
    assert_eq!(n, bulk("5"), "applied once");
}

/// A transaction's commands may read and write `TRANSACTION_WORK_BYTES_MAX` bytes of records:
/// past it none of them applies (COPYs multiplying one large value, APPENDs to it), under it
/// all do.
#[test]
fn a_transaction_past_the_work_bound_applies_nothing() {
    use super::apply::TRANSACTION_WORK_BYTES_MAX;
    let mut f = Fixture::new();
    let tx = |commands| KvCommand::Transaction { commands };
    let mib = 1024 * 1024;
    let big = "x".repeat(4 * mib);
    assert_eq!(f.run(set("{t}big", &big)), Reply::Ok);
    // Each COPY reads 4 MiB and writes 4 MiB (and a few bytes of record): 17 pass the
    // bound; 15 APPENDs stay under it.
    let copies = (TRANSACTION_WORK_BYTES_MAX as usize / (8 * mib)) + 1;
    let copy = |n: usize| KvCommand::Copy {
        source: b("{t}big"),
        dest: b(&format!("{{t}}copy{n}")),
        replace: false,
    };
    let commands = [vec![set("{t}a", "1")], (0..copies).map(copy).collect()].concat();
    let refused = KvError::TransactionWorkTooLarge(TRANSACTION_WORK_BYTES_MAX);
    assert_eq!(f.run(tx(commands)), Reply::Error(refused.clone()));
    assert_eq!((f.get("{t}a"), f.get("{t}copy0")), (Reply::Nil, Reply::Nil), "nothing applied");

    let append = || KvCommand::Append { key: b("{t}big"), value: b("y") };
    let under: Vec<_> = (0..copies - 2).map(|_| append()).collect();
    let want: Vec<_> = (1..copies - 1).map(|n| Reply::Int((4 * mib + n) as i64)).collect();
    assert_eq!(f.run(tx(under)), Reply::Array(want), "under the bound every command runs");
    let over: Vec<_> = (0..copies).map(|_| append()).collect();
    assert_eq!(f.run(tx(over)), Reply::Error(refused));
    let strlen = read::strlen(&f.kv, NOW_MS, b"{t}big");
    assert_eq!(strlen, Reply::Int((4 * mib + copies - 2) as i64), "the refused one undone");
}

/// WATCH: a transaction applies only if every watched key's digest is still the one watched
/// (its type, deadline and value; nil for no live value), else nothing of it, answering nil.
#[test]
fn a_transaction_with_a_changed_watched_key_applies_nothing() {
    use super::read::{digests, ReadCommand, WATCH_DIGEST_BYTES_MAX};
    let mut f = Fixture::new();
    let tx = |commands| KvCommand::Transaction { commands };
    let watched = |key: &str, kv: &MemKv, now_ms| {
        let digest = match digests(kv, now_ms, &[b(key)]) {
            Reply::Array(d) if d[0] == Reply::Nil => None,
            Reply::Array(d) => match d[0] {
                Reply::Int(d) => Some(d),
                ref other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        KvCommand::Watched { key: b(key), digest }
    };
    f.run(set("w", "1"));
    let seen = watched("w", &f.kv, NOW_MS);
    let absent = watched("none", &f.kv, NOW_MS);
    assert_eq!(absent, KvCommand::Watched { key: b("none"), digest: None });
    // Unchanged: applied, the watched members answer nothing.
    let reply = f.run(tx(vec![seen.clone(), absent.clone(), set("x", "1")]));
    assert_eq!(reply, ok_array());
    // Another value, another deadline, a key that came, a key that expired: nothing applies.
    let get = KvCommand::Read(ReadCommand::Get { key: b("w") });
    for change in [
        set("w", "2"),
        KvCommand::Expire {
            key: b("w"),
            deadline_ms: NOW_MS + 10,
            condition: ExpireCondition::Always,
        },
        set("none", "1"),
    ] {
        let mut g = Fixture::new();
        g.run(set("w", "1"));
        g.run(change.clone());
        let reply = g.run(tx(vec![seen.clone(), absent.clone(), set("x", "2"), get.clone()]));
        assert_eq!(reply, Reply::Nil, "after {change:?}");
        assert_eq!(g.get("x"), Reply::Nil, "nothing applied after {change:?}");
    }
    let mut g = Fixture::new();
    g.run(set_with("w", "1", Some(NOW_MS + 5), false, SetCondition::Always, false));
    let live = watched("w", &g.kv, NOW_MS);
    assert_eq!(g.at(NOW_MS + 4, tx(vec![live.clone(), set("x", "3")])), ok_array());
    assert_eq!(g.at(NOW_MS + 5, tx(vec![live, set("y", "3")])), Reply::Nil, "it expired");
    // Alone, outside a transaction, it is refused.
    assert_eq!(f.run(seen), Reply::Error(KvError::NotHere));
    assert_eq!(f.get("x"), bulk("1"));
    // Values past the digest bound: an error, nothing applied, whatever the digests.
    let half = "v".repeat(WATCH_DIGEST_BYTES_MAX as usize / 2 + 1);
    f.run(set("big1", &half));
    f.run(set("big2", &half));
    let too_large = Reply::Error(KvError::WatchTooLarge(WATCH_DIGEST_BYTES_MAX));
    assert_eq!(digests(&f.kv, NOW_MS, &[b("big1"), b("big2")]), too_large);
    let big = vec![watched("big1", &f.kv, NOW_MS), watched("none", &f.kv, NOW_MS)];
    let both = [big[0].clone(), KvCommand::Watched { key: b("big2"), digest: Some(1) }];
    assert_eq!(f.run(tx(vec![both[0].clone(), both[1].clone(), set("x", "4")])), too_large);
    // A change found before the bound is passed aborts, as any change does.
    assert_eq!(f.run(tx(vec![both[1].clone(), both[0].clone(), set("x", "4")])), Reply::Nil);
    assert_eq!(f.run(tx(vec![big[0].clone(), big[1].clone(), set("x", "5")])), ok_array());
    assert_eq!(f.get("x"), bulk("5"));
}

fn ok_array() -> Reply {
    Reply::Array(vec![Reply::Ok])
}

/// Applies `req` to `f` asking for every keyspace event; answers the reply and the events
/// raised, as "event key".
fn notified(f: &mut Fixture, req: &Request) -> (Reply, Vec<String>) {
    use super::apply::apply_notified;
    use super::notify::{KeyEvents, NotifyFlags};
    let mut events = KeyEvents::new(NotifyFlags::parse("KEAn").unwrap());
    let reply = apply_notified(&f.kv, &mut f.overlay, req, Some(&mut events));
    f.kv.apply_mutations(&f.overlay.drain());
    let shown = events.events().iter().map(|e| {
        format!("{} {}", e.event, String::from_utf8_lossy(&e.key))
    });
    (reply, shown.collect())
}

/// The keyspace events redis_diff cannot reach: the active expiry's `expired`, RESTORE's,
/// a retry's (none), and a transaction's undone past its bound (none).
#[test]
fn keyspace_events_of_expiry_restore_retries_and_undone_transactions() {
    let mut f = Fixture::new();
    let mut seq = 0;
    let mut req = |now_ms, command| {
        seq += 1;
        Request { client_id: 9, seq, now_ms, command }
    };
    let events = |list: &[&str]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    let first = req(NOW_MS, set_with("k", "v", Some(NOW_MS + 10), false, SetCondition::Always,
        false));
    assert_eq!(notified(&mut f, &first), (Reply::Ok, events(&["new k", "set k", "expire k"])));
    assert_eq!(notified(&mut f, &first), (Reply::Ok, vec![]), "a retry raises nothing");
    let expired = Request {
        client_id: super::command::NO_CLIENT_ID,
        seq: 0,
        now_ms: NOW_MS + 20,
        command: KvCommand::DeleteExpired { key: b("k"), deadline_ms: NOW_MS + 10 },
    };
    assert_eq!(notified(&mut f, &expired), (Reply::Int(1), events(&["expired k"])));

    let restore = |deadline_ms, replace| KvCommand::Restore {
        key: b("r"),
        value: b("v"),
        deadline_ms,
        replace,
    };
    let restored = notified(&mut f, &req(NOW_MS, restore(None, false)));
    assert_eq!(restored, (Reply::Ok, events(&["new r", "restore r"])));
    let replaced = notified(&mut f, &req(NOW_MS, restore(Some(NOW_MS - 1), true)));
    assert_eq!(replaced, (Reply::Ok, events(&["del r"])), "a passed deadline deletes it");
    let absent = notified(&mut f, &req(NOW_MS, restore(Some(NOW_MS - 1), false)));
    assert_eq!(absent, (Reply::Ok, vec![]));

    // A transaction whose replies pass their bound applies nothing, and raises nothing.
    use super::apply::TRANSACTION_REPLY_BYTES_MAX;
    let big = "x".repeat(TRANSACTION_REPLY_BYTES_MAX as usize + 1);
    assert_eq!(notified(&mut f, &req(NOW_MS, set("{t}big", &big))).0, Reply::Ok);
    let get = KvCommand::Read(ReadCommand::Get { key: b("{t}big") });
    let tx = KvCommand::Transaction { commands: vec![set("{t}a", "1"), get] };
    let refused = KvError::TransactionReplyTooLarge(TRANSACTION_REPLY_BYTES_MAX);
    assert_eq!(notified(&mut f, &req(NOW_MS, tx)), (Reply::Error(refused), vec![]));
    assert_eq!(f.get("{t}a"), Reply::Nil);
}

/// The reads events alone need (is the key new?) are not metered: a transaction of plain
/// SETs over 129 values of 1 MiB applies with `n` asked for, as without; metered, they
/// would pass `TRANSACTION_WORK_BYTES_MAX` and refuse it.
#[test]
fn reads_for_keyspace_events_are_not_in_a_transactions_work() {
    use super::apply::TRANSACTION_WORK_BYTES_MAX;
    let mib = 1024 * 1024;
    let keys = TRANSACTION_WORK_BYTES_MAX as usize / mib + 1;
    let key = |n: usize| format!("{{t}}{n}");
    let big = "x".repeat(mib);
    let mut f = Fixture::new();
    for n in 0..keys {
        assert_eq!(f.run(set(&key(n), &big)), Reply::Ok);
    }
    let tx = KvCommand::Transaction { commands: (0..keys).map(|n| set(&key(n), "1")).collect() };
    let req = Request { client_id: 5, seq: 1, now_ms: NOW_MS, command: tx };
    let (reply, events) = notified(&mut f, &req);
    assert_eq!(reply, Reply::Array(vec![Reply::Ok; keys]));
    assert_eq!(events.len(), keys, "one set each, no new: {:?}", &events[..3]);
}

/// Asking for events never changes what a command writes or answers, nor a transaction's
/// work count (replicas may ask differently: the flags are node-local).
#[test]
fn asking_for_keyspace_events_changes_no_write_and_no_reply() {
    let commands = vec![
        set("a", "1"),
        set_with("a", "2", Some(NOW_MS + 5), false, SetCondition::IfPresent, true),
        incrby("n", 3),
        KvCommand::Rename { key: b("a"), new_key: b("{a}b") },
        KvCommand::Copy { source: b("{a}b"), dest: b("a"), replace: true },
        KvCommand::MSet { pairs: vec![(b("{m}1"), b("x")), (b("{m}2"), b("y"))] },
        KvCommand::SetBit { key: b("s"), offset: 9, bit: true },
        KvCommand::Append { key: b("s"), value: b("z") },
        expire("n", NOW_MS - 1, ExpireCondition::Always),
        KvCommand::Del { keys: vec![b("a"), b("none")] },
        KvCommand::Transaction { commands: vec![set("{t}1", "1"), incrby("{t}1", 1)] },
    ];
    let (mut quiet, mut loud) = (Fixture::new(), Fixture::new());
    // Records past their deadline, not deleted yet, that the commands write over.
    for f in [&mut quiet, &mut loud] {
        for key in ["a", "n", "{m}2"] {
            let stale = set_with(key, "0", Some(NOW_MS - 50), false, SetCondition::Always, false);
            f.at(NOW_MS - 100, stale);
        }
    }
    for (seq, command) in commands.into_iter().enumerate() {
        let req = Request { client_id: 4, seq: seq as u64 + 1, now_ms: NOW_MS, command };
        let (reply, _) = notified(&mut loud, &req);
        assert_eq!(quiet.send(&req), reply, "{:?}", req.command);
        assert_eq!(quiet.kv, loud.kv, "{:?}", req.command);
    }
}

/// A write over a key whose deadline passed before the active expiry deleted it raises
/// `expired` first, as Redis's lazy expiry does, and the active expiry then raises none for
/// it; a write that does not touch such a key leaves `expired` to the active expiry.
#[test]
fn a_write_over_an_expired_record_raises_expired_once() {
    let mut f = Fixture::new();
    for key in ["k", "n", "{k}dst", "x", "d"] {
        f.run(set_with(key, "v", Some(NOW_MS + 10), false, SetCondition::Always, false));
    }
    f.run(set("{k}src", "s"));
    let later = NOW_MS + 20;
    let mut seq = 0;
    let mut at_later = |f: &mut Fixture, command| {
        seq += 1;
        notified(f, &Request { client_id: 11, seq, now_ms: later, command })
    };
    let events = |list: &[&str]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    assert_eq!(at_later(&mut f, set("k", "2")).1, events(&["expired k", "new k", "set k"]));
    assert_eq!(at_later(&mut f, incrby("n", 1)).1, events(&["expired n", "new n", "incrby n"]));
    let rename = KvCommand::Rename { key: b("{k}src"), new_key: b("{k}dst") };
    let want = ["expired {k}dst", "new {k}dst", "rename_from {k}src", "rename_to {k}dst"];
    assert_eq!(at_later(&mut f, rename).1, events(&want));
    // SET XX finds no live key and writes nothing; DEL deletes nothing: no event yet.
    let xx = set_with("x", "2", None, false, SetCondition::IfPresent, false);
    assert_eq!(at_later(&mut f, xx), (Reply::Nil, vec![]));
    assert_eq!(at_later(&mut f, KvCommand::Del { keys: vec![b("d")] }), (Reply::Int(0), vec![]));
    // The active expiry raises it for the keys still stored, and for none written over.
    let expire = |key: &str| Request {
        client_id: super::command::NO_CLIENT_ID,
        seq: 0,
        now_ms: later,
        command: KvCommand::DeleteExpired { key: b(key), deadline_ms: NOW_MS + 10 },
    };
    let still = |key| events(&[&format!("expired {key}")]);
    for (key, want) in [("k", vec![]), ("x", still("x")), ("d", still("d"))] {
        assert_eq!(notified(&mut f, &expire(key)).1, want, "{key}");
    }
}

/// Every write path over a key stored past its deadline raises what Redis 7.0 raises there:
/// `expired` where Redis looks the key up first (then `new` and the command's event), none
/// where it deletes without looking (RESTORE REPLACE; BITOP's empty result: `del`), and
/// MSETNX's check expires every key before the first is set.
#[test]
fn each_write_path_over_an_expired_record_raises_as_redis() {
    use super::bits::BitOpKind;
    let mut f = Fixture::new();
    let stale = ["e1", "e2", "{c}e3", "e4", "e5", "e6", "{b}e7", "{b}e8", "{m}e9", "{m}e10",
        "{m}e11", "{m}e12", "{m}e13"];
    for key in stale {
        f.run(set_with(key, "v", Some(NOW_MS + 10), false, SetCondition::Always, false));
    }
    f.run(set("{c}src", "s"));
    let later = NOW_MS + 20;
    let restore = |key: &str, deadline_ms, replace| KvCommand::Restore {
        key: b(key),
        value: b("r"),
        deadline_ms,
        replace,
    };
    let bitop = |dest: &str, source: &str| KvCommand::BitOp {
        op: BitOpKind::And,
        dest: b(dest),
        keys: vec![b(source)],
    };
    let pairs = |keys: &[&str]| keys.iter().map(|k| (b(k), b("1"))).collect::<Vec<_>>();
    let cases: Vec<(KvCommand, Vec<&str>)> = vec![
        (set_with("e1", "2", None, false, SetCondition::IfAbsent, false),
            vec!["expired e1", "new e1", "set e1"]),
        (KvCommand::Append { key: b("e2"), value: b("x") },
            vec!["expired e2", "new e2", "append e2"]),
        (KvCommand::Copy { source: b("{c}src"), dest: b("{c}e3"), replace: false },
            vec!["expired {c}e3", "new {c}e3", "copy_to {c}e3"]),
        (restore("e4", None, false), vec!["expired e4", "new e4", "restore e4"]),
        (restore("e5", None, true), vec!["new e5", "restore e5"]),
        (restore("e6", Some(NOW_MS), true), vec!["del e6"]),
        (bitop("{b}e7", "{b}none"), vec!["del {b}e7"]),
        (bitop("{b}e8", "{b}e8"), vec!["expired {b}e8"]),
        (KvCommand::MSetNx { pairs: pairs(&["{m}e9", "{m}e10"]) },
            vec!["expired {m}e9", "expired {m}e10", "new {m}e9", "set {m}e9", "new {m}e10",
                "set {m}e10"]),
        (KvCommand::MSet { pairs: pairs(&["{m}e11", "{m}e12"]) },
            vec!["expired {m}e11", "new {m}e11", "set {m}e11", "expired {m}e12", "new {m}e12",
                "set {m}e12"]),
        (KvCommand::MSetNx { pairs: pairs(&["{m}e13", "{m}e13"]) },
            vec!["expired {m}e13", "new {m}e13", "set {m}e13", "set {m}e13"]),
    ];
    for (seq, (command, want)) in cases.into_iter().enumerate() {
        let shown = format!("{command:?}");
        let req = Request { client_id: 12, seq: seq as u64 + 1, now_ms: later, command };
        assert_eq!(notified(&mut f, &req).1, want, "{shown}");
    }
}
