#!/usr/bin/env python3
"""Differential fuzzing: random command sequences, byte for byte, against redis-server and
shardkv.

Usage: redis_fuzz.py REDIS_PORT SHARDKV_PORT [--standalone-port PORT] [--seed N]
         [--sequences N] [--commands N]

Where .ci/redis_diff.py replays cases written by hand, this draws them: each sequence is
`--commands` commands drawn from the string, keyspace and connection commands shardkv
serves, with arguments drawn to hit the edges (integer bounds, overflowing increments,
invalid expire times, options combined in any order and number, valid or not, a key in
another slot), sent on one fresh connection to each server after both are emptied. The key
space is small, so that commands meet each other's keys. Half the sequences are sent
pipelined (all at once, then every reply read), some as inline commands with every word
quoted, and a quarter speak RESP3; a SCAN is a whole iteration, always sent as multibulk
on its own. Some sequences are instead a few commands as one byte stream, damaged, whose
every reply up to the server's close must match. The seed is printed: the same seed, with
the same `--commands` and with or without `--standalone-port` as before, draws the same
sequences. The run stops at the first sequence that differs, which it prints with every
reply before the difference, and exits 1; it stops drawing after `RUN_TIME_MAX_S`.

With `--standalone-port`, every other sequence is compared with a standalone redis-server
instead of the one-node Redis Cluster: there MGET, DEL, UNLINK, EXISTS and TOUCH take keys
of several slots, which shardkv's plain connections split by group and merge, and the
commands that differ by nature in a cluster (SELECT, CLUSTER, COPY's DB) are left out.

Replies compare byte for byte, as in redis_diff.py, but for these:
- positive TTL, PTTL, EXPIRETIME and PEXPIRETIME replies may differ by the time from the
  start of Redis's run of the sequence to the end of shardkv's, plus `TIME_SLACK_S`;
- RANDOMKEY must answer nil on both or a known key on both;
- DUMP payloads that differ must hold the same value (LZF may compress one value in two
  ways: Redis's liblzf keeps a margin of room, and extends matches to the input's end);
- a HELLO that succeeds on both must give the same field names and protocol (the server's
  own fields differ);
- a SET with a past EXAT or PXAT leaves Redis a key past its time that nothing has removed
  yet, and DBSIZE, CLUSTER COUNTKEYSINSLOT and GETKEYSINSLOT count it, where shardkv does
  not. In a sequence that has one, Redis's counts may be the larger and shardkv's keys
  must be among Redis's; otherwise they compare exactly. GETKEYSINSLOT asked for fewer
  keys than there are compares by number: Redis does not say which it gives;
- INCRBYFLOAT increments are binary fractions, so that no result depends on the width of
  the C `long double` Redis computes in (80 bits on x86-64; shardkv computes in `f64`)
  while it stays below 2^53. A result past that whose digits differ must be the same
  `f64`, and the rest of its sequence is not compared.
A sequence whose first difference is a shardkv error that a leader election explains
(`TRANSIENT`) runs once more before it counts.

A share of the sequences against the one-node Redis Cluster (`CLUSTER_AWARE_SHARE`) speak
as a cluster client does: they go to the node CLUSTER SLOTS names as the master of their
keys' slot, after `CLIENT REDIRECTS ON` (shardkv's own, so its reply is not compared; sent
again after each RESET, which ends it), and take their keys from that one slot but for
MGET, DEL, UNLINK, EXISTS and TOUCH, which may add a key of another slot: `-CROSSSLOT` on
both.
There each command is routed as Redis Cluster routes it: arity, authentication, then the
slot, then the arguments. A `-MOVED` (a leader moved meanwhile) runs the sequence once more.
"""

import argparse
import os
import random
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from redis_diff import (  # noqa: E402
    COMMANDS, Conn, Ignored, ScanAll, Unordered, encode, flush, parse, send)

SEQUENCES_DEFAULT = 600
COMMANDS_PER_SEQUENCE_DEFAULT = 40
# Time replies of the two servers may differ by the time from the start of Redis's run of a
# sequence to the end of shardkv's, plus this much (rounding).
TIME_SLACK_S = 2
# This share of the sequences is sent at once (pipelined), the rest one command at a time.
PIPELINED_SHARE = 0.5
# This share of the sequences is sent as inline commands, every word quoted.
INLINE_SHARE = 0.15
# A sequence whose first difference is one of these shardkv errors (a group electing a
# leader) runs again, up to this many times in all.
SEQUENCE_ATTEMPTS = 2
TRANSIENT = (b"-TRYAGAIN", b"-CLUSTERDOWN", b"-ERR outcome unknown")
# This share of the sequences is instead a short damaged byte stream (`mutated_stream`).
DAMAGED_SHARE = 0.15
# Sequences against the one-node Redis Cluster that speak as a cluster client (see above).
CLUSTER_AWARE_SHARE = 0.3
# How long a damaged stream's answer may take to end in the server's close.
STREAM_TIMEOUT_S = 5.0
# This share of the sequences starts with HELLO 3 (its reply, whose server fields differ
# by nature, is not compared), and so speaks RESP3.
RESP3_SHARE = 0.25
# The run stops drawing new sequences after this long, passed or not.
RUN_TIME_MAX_S = 240

KEYS = ["{d}a", "{d}b", "{d}c", "{d}n"]
# Keys of other slots, and of other groups in the layouts shardkv ships (slots 15363, 7233
# and 0, the empty key; the keys above are in slot 11298).
OTHER_SLOT_KEYS = ["{e}z", "{g}y", ""]
INTEGERS = ["0", "1", "-1", "7", "-42", "100", "9223372036854775807",
            "-9223372036854775808", "9223372036854775808", "-9223372036854775809"]
FLOATS = ["0.5", "-0.25", "1.5", "3", "-2", "1e2", "0.125", "abc", "inf", "-inf", "nan", " 1",
          "1 ", ""]
STRINGS = ["", "x", "hello", "hello world", "12abc", "-", "v" * 100, "\x00\xff"]
# Every key drawn, as replies carry them.
KNOWN_KEYS = {k.encode("latin-1") for k in KEYS + OTHER_SLOT_KEYS}
# The values of damaged streams (`mutated_stream`): printable, and none a command's name,
# so that damage which makes a value a command of its own never runs one whose reply
# differs by nature (HELLO's server fields).
PRINTABLE_VALUES = [v for v in INTEGERS + FLOATS + STRINGS
                    if v.isprintable() and (v.split() or [""])[0].lower() not in COMMANDS]
# Relative expire times are whole thousands of seconds up to this, far enough that no key
# expires during a run; no two in a sequence are the same, as which of two equal ones ends
# later (EXPIRE's GT and LT) depends on how much time passed between them.
RELATIVE_SECONDS_MAX = 100_000_000
# Draws of a relative time before an invalid one is taken instead (all are taken).
RELATIVE_DRAWS_MAX = 100
# Invalid expire times, or ones that overflow in milliseconds; but HUGE_MS is a valid
# relative time in milliseconds (its deadline fits in 63 bits).
HUGE_MS = "4611686018427387904"
BAD_TIMES = ["0", "-1", "abc", "1.5", "9223372036854775807", "-9223372036854775808", HUGE_MS]
# Absolute times: the year 2100, and the past (the key goes at once).
UNIX_SECONDS = ["4102444800", "1000", "0", "-5"]
PAST_OR_FUTURE_MS = ["4102444800000", "1000000"]
PAST_TIMES = {"1000", "1000000"}
# The relative times drawn in the current sequence.
drawn_seconds = set()
# Whether the current sequence is compared with the standalone Redis (see `split_keys`).
against_standalone = False
# Whether the sequence being drawn is cluster-aware (`CLUSTER_AWARE_SHARE`).
cluster_aware = False
# Commands a standalone Redis answers otherwise by nature (SELECT of another database, the
# CLUSTER commands), left out of the sequences compared with it.
CLUSTER_ONLY = {"select", "cluster"}
PATTERNS = ["*", "{d}*", "{d}?", "{d}[ab]", "{d}[^a]*", "x*", "*\\", "{d}\\a", "[", ""]
RANGE_INDICES = ["0", "1", "-1", "-2", "3", "100", "-100", "9223372036854775807",
                 "-9223372036854775808", "x"]
OFFSETS = ["0", "1", "3", "10", "-1", "536870912", "abc"]
# Bit offsets: within the first bytes, so that the bit commands meet each other's bits, or
# invalid (negative, not a number, past Redis's 512 MiB and shardkv's bound alike).
BIT_OFFSETS = ["0", "1", "6", "7", "8", "15", "23", "40", "-1", "x", "4294967296"]
BIT_UNITS = ["BYTE", "BIT", "bit", "WORD"]


def key(r):
    """A key; now and then one of another slot (`-CROSSSLOT` beside the others), more often
    against the standalone Redis (keys of other groups); never in a cluster-aware sequence,
    where a key of another slot alone would be `-MOVED` elsewhere."""
    if not cluster_aware and r.random() < (0.3 if against_standalone else 0.04):
        return r.choice(OTHER_SLOT_KEYS)
    return r.choice(KEYS)


def split_keys(r, low, high):
    """Keys for MGET, DEL, UNLINK, EXISTS and TOUCH. Over several slots, plain connections have
    them split by group and merged (src/resp/mod.rs), as a standalone Redis serves them,
    where Redis Cluster answers `-CROSSSLOT`: keys of one slot against the cluster
    reference, of any against the standalone one. A cluster-aware sequence may add one of
    another slot after them, for `-CROSSSLOT` on both."""
    pick = key if against_standalone else lambda r: r.choice(KEYS)
    keys = [pick(r) for _ in range(r.randint(low, high))]
    if cluster_aware and r.random() < 0.3:
        keys.append(r.choice(OTHER_SLOT_KEYS))
    return keys


def atomic_key(r):
    """A key for MSET, MSETNX, RENAME, RENAMENX, BITOP, COPY or LCS, which need one slot in
    shardkv whatever the mode (`-CROSSSLOT` as Redis Cluster): any key against the cluster
    reference, one of the same slot against the standalone one."""
    return r.choice(KEYS) if against_standalone else key(r)


def value(r):
    roll = r.random()
    if roll < 0.45:
        return r.choice(INTEGERS)
    if roll < 0.6:
        return r.choice(FLOATS)
    return r.choice(STRINGS)


def relative(r, per_second):
    """A relative time not drawn before in this sequence (in units of 1/`per_second` s),
    or now and then an invalid one."""
    if r.random() < 0.25:
        bad = r.choice(BAD_TIMES)
        if bad != HUGE_MS or per_second != 1000:
            return bad
        # Valid in milliseconds: drawn once a sequence, as the other valid times are.
        if HUGE_MS not in drawn_seconds:
            drawn_seconds.add(HUGE_MS)
            return bad
    for _ in range(RELATIVE_DRAWS_MAX):
        seconds = r.randrange(1, RELATIVE_SECONDS_MAX // 1000) * 1000
        if seconds not in drawn_seconds:
            drawn_seconds.add(seconds)
            return str(seconds * per_second)
    return r.choice(BAD_TIMES)


def absolute(r, unix_times):
    return r.choice(unix_times + BAD_TIMES[:3])


def timed(r, form):
    """The value of expiry option `form` (EX, PX, EXAT, PXAT)."""
    return {
        "EX": lambda: relative(r, 1),
        "PX": lambda: relative(r, 1000),
        "EXAT": lambda: absolute(r, UNIX_SECONDS),
        "PXAT": lambda: absolute(r, PAST_OR_FUTURE_MS),
    }[form]()


def expiry_option(r):
    """One of SET's or GETEX's expiry options, with a value."""
    form = r.choice(["EX", "PX", "EXAT", "PXAT"])
    return [form, timed(r, form)]


def case_words(r, words):
    """The words, each in upper or lower case (Redis reads options in any case)."""
    return [w.lower() if r.random() < 0.3 else w for w in words]


def draw_set(r):
    options = []
    if r.random() < 0.6:
        options += expiry_option(r)
        if r.random() < 0.1:
            options += expiry_option(r)
    if r.random() < 0.15:
        options.append("KEEPTTL")
    if r.random() < 0.35:
        options.append(r.choice(["NX", "XX"]))
    if r.random() < 0.25:
        options.append("GET")
    if r.random() < 0.03:
        options.append(r.choice(["BOGUS", "EX"]))
    return ["SET", key(r), value(r)] + case_words(r, options)


def draw_expire(r):
    form, name = r.choice([("EX", "EXPIRE"), ("PX", "PEXPIRE"), ("EXAT", "EXPIREAT"),
                           ("PXAT", "PEXPIREAT")])
    when = timed(r, form)
    flags = [r.choice(["NX", "XX", "GT", "LT"]) for _ in range(r.choice([0, 0, 1, 1, 2]))]
    if r.random() < 0.03:
        flags.append("BOGUS")
    return [name, key(r), when] + case_words(r, flags)


def draw_getex(r):
    roll = r.random()
    if roll < 0.25:
        options = []
    elif roll < 0.4:
        options = ["PERSIST"]
    elif roll < 0.9:
        options = expiry_option(r)
    else:
        options = r.choice([["PERSIST"], expiry_option(r)]) + r.choice(
            [["PERSIST"], expiry_option(r), ["BOGUS"], ["KEEPTTL"]])
    return ["GETEX", key(r)] + case_words(r, options)


def draw_incrbyfloat(r):
    increment = r.choice(["0.5", "-0.25", "1.5", "3", "-2", "1e2", "0.125", "-1e2", "abc",
                          "inf", "nan", ""])
    return ["INCRBYFLOAT", key(r), increment]


def draw_pairs(r):
    out = []
    for _ in range(r.randint(1, 3)):
        out += [atomic_key(r), value(r)]
    if r.random() < 0.05:
        out.pop()
    return out


def draw_scan(r):
    """A whole SCAN iteration, with any of its options."""
    options = []
    if r.random() < 0.5:
        options += ["MATCH", r.choice(PATTERNS)]
    if r.random() < 0.5:
        options += ["COUNT", r.choice(["1", "2", "10", "1000", "0", "-1", "x"])]
    if r.random() < 0.3:
        options += ["TYPE", r.choice(["string", "STRING", "list", "hash"])]
    return ScanAll(["SCAN"] + case_words(r, options))


def draw_connection(r):
    """A command on the connection's own state: its name, protocol, authentication."""
    return r.choice([
        lambda: ["CLIENT", "SETNAME", r.choice(["n1", "", "a b", "x\n", "\xe9", "-"])],
        lambda: ["CLIENT", "GETNAME"],
        # CLIENT KILL that kills nobody: its errors and its count of none.
        lambda: ["CLIENT", "KILL"] + r.choice([["ID", "x"], ["ID", "0"], ["TYPE", "bogus"],
                                                ["1.2.3.4:5"], ["LADDR", "1.2.3.4:5"],
                                                ["ADDR", "1.2.3.4:5", "SKIPME", "maybe"],
                                                ["USER", "nobody"], ["MAXAGE", "5"]]),
        lambda: ["CLIENT", r.choice(["HELP", "INFO", "ID"]), "x"],
        lambda: ["HELLO"] + r.choice([["2"], ["3"], ["4"], ["x"], ["2", "SETNAME", "h1"],
                                      ["3", "AUTH", "default", "p"], ["2", "FOO"], []]),
        lambda: ["RESET"],
        lambda: ["AUTH"] + r.choice([["p"], ["default", "p"], ["nobody", "p"], ["a", "b", "c"]]),
    ])()


def draw_bit_range(r):
    """BITCOUNT's or BITPOS's words after the key (or the bit): none, a start, a range, a
    range and a unit, or a word more."""
    count = r.choice([0, 0, 1, 2, 2, 3, 3, 4])
    words = [r.choice(RANGE_INDICES) for _ in range(min(count, 2))]
    if count >= 3:
        words.append(r.choice(BIT_UNITS))
    if count >= 4:
        words.append(r.choice(RANGE_INDICES))
    return words


# BITFIELD's types (valid at the edges, and invalid) and values (around the edges of the
# widths drawn).
FIELD_TYPES = ["i1", "u1", "i3", "u4", "i8", "u8", "i16", "u63", "i64", "u64", "i65", "I8",
               "u0", "x"]
FIELD_NUMBERS = ["0", "1", "-1", "7", "-8", "100", "127", "128", "-129", "255", "256", "-300",
                 "9223372036854775807", "-9223372036854775808", "x"]


def draw_bitfield(r):
    name = r.choice(["BITFIELD", "BITFIELD", "BITFIELD_RO"])
    words = []
    for _ in range(r.randint(0, 4)):
        roll = r.random()
        field = [r.choice(FIELD_TYPES), r.choice(["0", "3", "8", "#1", "#2", "13", "-1", "#x"])]
        if roll < 0.4 or name == "BITFIELD_RO" and roll < 0.9:
            words += ["GET"] + field
        elif roll < 0.8:
            words += [r.choice(["SET", "INCRBY", "incrby"])] + field + [r.choice(FIELD_NUMBERS)]
        else:
            words += ["OVERFLOW", r.choice(["WRAP", "SAT", "FAIL", "fail", "BAD"])]
    if r.random() < 0.05:
        words = words[:-1] if words else ["GET"]
    return [name, key(r)] + words


# DUMP payloads redis-server 7.0 gives ("hello", 123, 300, 70000, "a" * 94 compressed),
# one with a bad checksum, and words that are none (as words are sent: latin-1).
PAYLOADS = [bytes.fromhex(h).decode("latin-1") for h in [
    "000568656c6c6f0a006372df766534200a", "00c07b0a0048e253e1007a67b9",
    "00c12c010a00954261f265825c10", "00c2701101000a0001a408fe953095a5",
    "00c309405e016161e051000161610a00f0621c6b6a904cdb",
    "000568656c6c6f0a006372df766534200b"]] + ["", "xyz"]


def draw_restore(r):
    ttl = r.choice(["0", "0", "100000", "-1", "x", timed(r, "PX")])
    options = []
    for _ in range(r.randint(0, 2)):
        options += r.choice([["REPLACE"], ["replace"], ["IDLETIME", r.choice(["5", "-1"])],
                             ["FREQ", r.choice(["3", "256"])], ["BAD"]])
    return [r.choice(["RESTORE", "RESTORE", "RESTORE-ASKING"]), key(r), ttl,
            r.choice(PAYLOADS)] + options


def draw_bitop(r):
    op = r.choice(["AND", "OR", "XOR", "NOT", "and", "NAND"])
    sources = r.randint(1, 3) if op != "NOT" or r.random() < 0.2 else 1
    return ["BITOP", op, atomic_key(r)] + [atomic_key(r) for _ in range(sources)]


def draw_copy(r):
    options = []
    for _ in range(r.randint(0, 2)):
        roll = r.random()
        if roll < 0.5:
            options.append(r.choice(["REPLACE", "replace"]))
        elif roll < 0.8:
            dbs = ["0"] if against_standalone else ["0", "1", "16", "x"]
            options += ["DB", r.choice(dbs)]
        else:
            options.append(r.choice(["BAD", "DB"]))
    return ["COPY", atomic_key(r), atomic_key(r)] + options


def draw_lcs(r):
    options = []
    for _ in range(r.randint(0, 3)):
        word = r.choice(["LEN", "IDX", "WITHMATCHLEN", "MINMATCHLEN", "idx", "BAD"])
        options.append(word)
        if word == "MINMATCHLEN" and r.random() < 0.9:
            options.append(r.choice(["0", "1", "2", "-1", "x"]))
    return ["LCS", atomic_key(r), atomic_key(r)] + options


def draw_wrong_arity(r):
    """A command with a word too few or too many, or an unknown one."""
    name, words = r.choice([("GET", 2), ("SET", 3), ("STRLEN", 2), ("GETRANGE", 4),
                            ("SETRANGE", 4), ("INCRBY", 3), ("RENAME", 3), ("TTL", 2),
                            ("GETDEL", 2), ("APPEND", 3), ("SETEX", 4), ("NOSUCH", 2)])
    count = words + r.choice([-1, 1, 2]) if name != "NOSUCH" else words
    return [name] + [key(r) for _ in range(max(count - 1, 0))]


DRAWS = [
    (14, draw_set),
    (8, lambda r: ["GET", key(r)]),
    (2, lambda r: ["SETNX", key(r), value(r)]),
    (2, lambda r: ["SETEX", key(r), timed(r, "EX"), value(r)]),
    (2, lambda r: ["PSETEX", key(r), timed(r, "PX"), value(r)]),
    (2, lambda r: ["GETSET", key(r), value(r)]),
    (2, lambda r: ["GETDEL", key(r)]),
    (4, draw_getex),
    (3, lambda r: ["MGET"] + split_keys(r, 1, 4)),
    (3, lambda r: ["MSET"] + draw_pairs(r)),
    (2, lambda r: ["MSETNX"] + draw_pairs(r)),
    (3, lambda r: ["APPEND", key(r), r.choice(STRINGS + INTEGERS[:3])]),
    (2, lambda r: ["STRLEN", key(r)]),
    (3, lambda r: ["GETRANGE", key(r), r.choice(RANGE_INDICES), r.choice(RANGE_INDICES)]),
    (3, lambda r: ["SETRANGE", key(r), r.choice(OFFSETS), r.choice(STRINGS[:5])]),
    (1, lambda r: ["SUBSTR", key(r), r.choice(RANGE_INDICES), r.choice(RANGE_INDICES)]),
    (3, lambda r: ["SETBIT", key(r), r.choice(BIT_OFFSETS), r.choice(["0", "1", "1", "2", "x"])]),
    (2, lambda r: ["GETBIT", key(r), r.choice(BIT_OFFSETS)]),
    (2, lambda r: ["BITCOUNT", key(r)] + draw_bit_range(r)),
    (2, lambda r: ["BITPOS", key(r), r.choice(["0", "1", "1", "2", "x"])] + draw_bit_range(r)),
    (2, draw_bitop),
    (3, draw_bitfield),
    (2, lambda r: ["DUMP", key(r)]),
    (2, draw_restore),
    (2, draw_copy),
    (2, draw_lcs),
    (4, lambda r: [r.choice(["INCR", "DECR"]), key(r)]),
    (4, lambda r: [r.choice(["INCRBY", "DECRBY"]), key(r), r.choice(INTEGERS + ["x", "1.5"])]),
    (4, draw_incrbyfloat),
    (3, lambda r: [r.choice(["DEL", "UNLINK"])] + split_keys(r, 1, 3)),
    (3, lambda r: ["EXISTS"] + split_keys(r, 1, 4)),
    (1, lambda r: ["TOUCH"] + split_keys(r, 1, 3)),
    (2, lambda r: ["TYPE", key(r)]),
    (3, lambda r: [r.choice(["RENAME", "RENAMENX"]), atomic_key(r), atomic_key(r)]),
    (6, draw_expire),
    (4, lambda r: [r.choice(["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"]), key(r)]),
    (2, lambda r: ["PERSIST", key(r)]),
    (2, lambda r: Unordered(["KEYS", r.choice(PATTERNS)])),
    (1, lambda r: ["DBSIZE"]),
    (1, lambda r: [r.choice(["FLUSHALL", "FLUSHDB"])] + r.choice([[], ["ASYNC"], ["SYNC"]])),
    (1, lambda r: ["RANDOMKEY"]),
    (1, lambda r: ["ECHO", value(r)]),
    (1, lambda r: ["PING"] + ([value(r)] if r.random() < 0.5 else [])),
    (2, draw_scan),
    (2, draw_connection),
    (1, lambda r: ["SELECT", r.choice(["0", "1", "-1", "x"])]),
    (1, lambda r: ["CLUSTER", "KEYSLOT", key(r)]),
    (1, lambda r: ["CLUSTER", "COUNTKEYSINSLOT", r.choice(["11298", "0", "16384", "-1", "x"])]),
    (1, lambda r: ["CLUSTER", "GETKEYSINSLOT", "11298", r.choice(["0", "2", "10", "-1"])]),
    (1, draw_wrong_arity),
]
WEIGHT_TOTAL = sum(w for w, _ in DRAWS)


def draw_command(r):
    while True:
        pick = r.uniform(0, WEIGHT_TOTAL)
        for weight, draw in DRAWS:
            pick -= weight
            if pick <= 0:
                break
        cmd = draw(r)
        if not (against_standalone and cmd[0].lower() in CLUSTER_ONLY):
            break
    # The command's own name in any case, as Redis reads it.
    cmd[0] = cmd[0].lower() if r.random() < 0.2 else cmd[0]
    return cmd


# INCRBYFLOAT results from this size on may differ in their last digits (above).
FLOAT_EXACT_MAX = 2.0 ** 53
UNITS_PER_SECOND = {"ttl": 1, "pttl": 1000, "expiretime": 1, "pexpiretime": 1000}
TIMED = set(UNITS_PER_SECOND)


def keys_of(reply):
    """The keys of an array reply, or None if it is not an array of known keys, each once."""
    value = parse(reply)[0] if reply[:1] == b"*" else None
    if not isinstance(value, list) or len(set(value)) != len(value):
        return None
    return set(value) if set(value) <= KNOWN_KEYS else None


def agree(cmd, want, got, gap_s, lingering):
    """Whether shardkv's reply `got` to `cmd` agrees with Redis's `want`. `gap_s`: the time
    from the start of Redis's run to the end of shardkv's; `lingering`: whether Redis may
    hold keys past their time."""
    name = cmd[0].lower()
    if isinstance(cmd, Ignored):
        return True
    if isinstance(cmd, Unordered):
        if want[:1] == got[:1] == b"*":
            return sorted(parse(want)[0]) == sorted(parse(got)[0])
        return want == got
    if name in TIMED and want[:1] == b":" and got[:1] == b":":
        a, b = int(want[1:-2]), int(got[1:-2])
        if a >= 0 and b >= 0:
            return abs(a - b) <= (gap_s + TIME_SLACK_S) * UNITS_PER_SECOND[name]
        return a == b
    subcommand = cmd[1].lower() if name == "cluster" and len(cmd) > 1 else ""
    if subcommand == "getkeysinslot" and want[:1] == got[:1] == b"*":
        a, b = keys_of(want), keys_of(got)
        if a is None or b is None:
            return want == got
        # Which keys Redis gives when asked for fewer than it has, it does not say.
        every = int(cmd[3]) > len(a)
        if lingering:
            return b <= a if every else len(b) <= len(a)
        return a == b if every else len(a) == len(b)
    if lingering and (name == "dbsize" or subcommand == "countkeysinslot") \
            and want[:1] == b":" and got[:1] == b":":
        return int(want[1:-2]) >= int(got[1:-2])
    if name == "hello" and want[:1] == got[:1] and want[:1] in (b"*", b"%"):
        # The server's own fields differ by nature: the field names and the protocol must
        # not.
        a, b = parse(want)[0], parse(got)[0]
        return a[::2] == b[::2] and dict(zip(a[::2], a[1::2])).get(b"proto") == \
            dict(zip(b[::2], b[1::2])).get(b"proto")
    if name == "dump" and want[:1] == got[:1] == b"$" and want != got:
        # LZF may compress differently (liblzf's margins; its matches near the end): the
        # payloads must hold the same value.
        a, b = parse(want)[0], parse(got)[0]
        return isinstance(a, bytes) and isinstance(b, bytes) and \
            dumped_value(a) is not None and dumped_value(a) == dumped_value(b)
    if name == "randomkey" and want[:1] in (b"$", b"_") and got[:1] in (b"$", b"_"):
        # Nil on both, or a known key on both (which one, at random).
        nil = (b"$-1\r\n", b"_\r\n")
        return (want in nil) == (got in nil) and (got in nil or parse(got)[0] in KNOWN_KEYS)
    return want == got


def dumped_value(payload):
    """The string value a DUMP payload of Redis 7.0 holds (the footer's version and
    checksum are not checked here: shardkv's RESTORE tests check them), or None."""
    body = payload[:-10]
    if len(payload) < 10 or body[:1] != b"\x00":
        return None
    at = 1

    def length():
        nonlocal at
        first = body[at]
        at += 1
        if first >> 6 == 0:
            return first & 0x3f
        if first >> 6 == 1:
            at += 1
            return (first & 0x3f) << 8 | body[at - 1]
        size = 4 if first == 0x80 else 8
        at += size
        return int.from_bytes(body[at - size:at], "big")

    first = body[at]
    if first >> 6 != 3:
        n = length()
        return body[at:at + n]
    at += 1
    kind = first & 0x3f
    if kind < 3:
        size = 1 << kind
        return str(int.from_bytes(body[at:at + size], "little", signed=True)).encode()
    compressed_len, out_len = length(), length()
    data, out, i = body[at:at + compressed_len], bytearray(), 0
    while i < len(data):
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            out += data[i:i + ctrl + 1]
            i += ctrl + 1
            continue
        run = ctrl >> 5
        if run == 7:
            run += data[i]
            i += 1
        ref = len(out) - ((ctrl & 0x1f) << 8) - data[i] - 1
        i += 1
        for _ in range(run + 2):
            out.append(out[ref])
            ref += 1
    return bytes(out) if len(out) == out_len else None


def floats_part(cmd, want, got):
    """Whether an INCRBYFLOAT's replies differ only in digits past `FLOAT_EXACT_MAX`, where
    Redis's `long double` and shardkv's `f64` part (the sequence is then compared no
    further)."""
    if cmd[0].lower() != "incrbyfloat" or want[:1] != b"$" or got[:1] != b"$" or want == got:
        return False
    a, b = float(parse(want)[0]), float(parse(got)[0])
    return abs(a) >= FLOAT_EXACT_MAX and a == b


def report(n, seed, how, sequence, want, got, at, what):
    """Prints sequence `n` up to command `at` (all of it if None), with both replies."""
    print(f"sequence {n} of seed {seed} ({how}) {what}" +
          (f" at command {at}:" if at is not None else ":"))
    for j, cmd in enumerate(sequence if at is None else sequence[:at + 1]):
        kind = type(cmd).__name__ if type(cmd) is not list else ""
        print(f"{'>>' if j == at else '  '} {kind}{encode_for_print(cmd)!r}")
        if want is not None and j < at:
            print(f"     redis:   {want[j]!r}")
            if got[j] != want[j]:
                print(f"     shardkv: {got[j]!r}")
    if at is not None:
        print(f"  redis:   {want[at]!r}\n  shardkv: {got[at]!r}")
    sys.stdout.flush()


def encode_for_print(cmd):
    return [w if isinstance(w, str) else w.decode("latin-1") for w in cmd]


def inline(cmd):
    r"""`cmd` as an inline command: every word double-quoted, with the escapes Redis's
    sdssplitargs reads (\\, \", \n, \t, \xHH)."""
    def quoted(word):
        out = []
        for ch in word:
            if ch in "\\\"":
                out.append("\\" + ch)
            elif ch == "\n":
                out.append("\\n")
            elif ch == "\t":
                out.append("\\t")
            elif " " < ch < "\x7f":
                out.append(ch)
            else:
                out.append("\\x%02x" % ord(ch))
        return '"' + "".join(out) + '"'
    return (" ".join(quoted(w) for w in cmd) + "\r\n").encode("latin-1")


def master_port(port, slot_key):
    """The RESP port of the node CLUSTER SLOTS (asked on `port`) names as the master of
    `slot_key`'s slot."""
    conn = Conn(port)
    slot, _ = parse(conn.run(["CLUSTER", "KEYSLOT", slot_key]))
    ranges, _ = parse(conn.run(["CLUSTER", "SLOTS"]))
    conn.close()
    for first, last, master, *_ in ranges:
        if first <= slot <= last:
            return master[1]
    raise ValueError(f"CLUSTER SLOTS on port {port} names no master of slot {slot}")


def with_redirects(sequence):
    """`sequence` as a cluster-aware connection sends it: CLIENT REDIRECTS ON first and
    after each RESET (neither reply compared; Redis has no such subcommand)."""
    on = Ignored(["CLIENT", "REDIRECTS", "ON"])
    out = [on]
    for cmd in sequence:
        out.append(cmd)
        if not isinstance(cmd, ScanAll) and [w.lower() for w in cmd] == ["reset"]:
            out.append(on)
    return out


def run_sequence(port, sequence, pipelined, inlined):
    """The raw replies to `sequence`, sent one by one or all at once (up to each full SCAN
    iteration, which runs on its own), as multibulk or inline commands."""
    flush(port)
    conn = Conn(port)
    replies = []
    batch = []

    def send_batch():
        if inlined:
            requests = [inline(cmd) for cmd in batch]
        else:
            requests = [encode([w.encode("latin-1") for w in cmd]) for cmd in batch]
        if pipelined:
            conn.sock.sendall(b"".join(requests))
            replies.extend(conn.reply() for _ in batch)
        else:
            for request in requests:
                conn.sock.sendall(request)
                replies.append(conn.reply())
        batch.clear()

    for cmd in sequence:
        if isinstance(cmd, ScanAll):
            send_batch()
            keys = send(conn, cmd)
            # The keys of the whole iteration, as one comparable reply.
            replies.append(keys if isinstance(keys, bytes) else repr(sorted(set(keys))).encode())
        else:
            batch.append(cmd)
    send_batch()
    conn.close()
    return replies


def mutated_stream(r):
    """A few commands as one byte stream, then damaged: bytes changed, dropped or doubled,
    or cut short (Redis's protocol errors, and what each server served before them). Values
    are printable: Redis reads an inline command as a C string, so a NUL byte in a line
    that damage made inline hides its end and Redis waits for more; and it echoes an
    unknown command's name in raw bytes, which shardkv's error text (UTF-8) cannot carry
    (`PRINTABLE_VALUES`)."""
    commands = [r.choice([
        lambda: ["SET", r.choice(KEYS), r.choice(PRINTABLE_VALUES)],
        lambda: ["GET", r.choice(KEYS)],
        lambda: ["PING"],
        lambda: ["ECHO", r.choice(PRINTABLE_VALUES)],
        lambda: ["MGET"] + split_keys(r, 1, 3),
    ])() for _ in range(r.randint(2, 6))]
    if not against_standalone:
        # Damage may move an MGET's key to another slot, where plain connections split.
        commands = [cmd for cmd in commands if cmd[0] != "MGET"] or [["PING"]]
    stream = bytearray()
    for cmd in commands:
        stream += inline(cmd) if r.random() < 0.2 else encode(
            [w.encode("latin-1") for w in cmd])
    for _ in range(r.randint(1, 2)):
        at = r.randrange(len(stream))
        action = r.random()
        if action < 0.4:
            stream[at] = ord(r.choice("*$:+-\r\n0123456789\" x"))
        elif action < 0.6:
            del stream[at]
        elif action < 0.8:
            stream.insert(at, stream[at])
        else:
            del stream[at:]
            break
    return bytes(stream)


def run_stream(port, stream):
    """Everything `port` answers to `stream` sent at once on a fresh connection whose
    sending side is then shut, up to the server's close."""
    flush(port)
    sock = socket.create_connection(("127.0.0.1", port), timeout=STREAM_TIMEOUT_S)
    sock.sendall(stream)
    sock.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        out += b"<no close>"
    except ConnectionResetError:
        pass  # a close with unread bytes left: a close all the same
    sock.close()
    return out


def main():
    global against_standalone, cluster_aware
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("redis_port", type=int, help="a one-node Redis Cluster")
    parser.add_argument("shardkv_port", type=int)
    parser.add_argument("--standalone-port", type=int,
                        help="a standalone redis-server: every other sequence is compared "
                             "with it, with MGET, DEL, UNLINK and EXISTS over several slots")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--sequences", type=int, default=SEQUENCES_DEFAULT)
    parser.add_argument("--commands", type=int, default=COMMANDS_PER_SEQUENCE_DEFAULT,
                        help="commands per sequence")
    args = parser.parse_args()
    redis_port, shardkv_port, seed = args.redis_port, args.shardkv_port, args.seed
    sequences, per_sequence = args.sequences, args.commands
    print(f"seed {seed}: {sequences} sequences of {per_sequence} commands", flush=True)
    r = random.Random(seed)
    started = time.monotonic()
    ran = streams = aware = replies = 0
    for n in range(sequences):
        if time.monotonic() - started > RUN_TIME_MAX_S:
            print(f"stopped drawing after {RUN_TIME_MAX_S} s", flush=True)
            break
        drawn_seconds.clear()
        against_standalone = args.standalone_port is not None and n % 2 == 1
        cluster_aware = not against_standalone and r.random() < CLUSTER_AWARE_SHARE
        reference = args.standalone_port if against_standalone else redis_port
        if r.random() < DAMAGED_SHARE:
            stream = mutated_stream(r)
            for attempt in range(SEQUENCE_ATTEMPTS):
                try:
                    want, got = run_stream(reference, stream), run_stream(shardkv_port, stream)
                except OSError as error:
                    want, got = b"", f"failed: {error!r}".encode()
                if want == got:
                    break
                if attempt + 1 < SEQUENCE_ATTEMPTS and any(t in got for t in TRANSIENT):
                    print(f"damaged stream {n}: a leader election; running it again", flush=True)
                    continue
                print(f"damaged stream {n} of seed {seed} differs:\n  sent:    {stream!r}")
                print(f"  redis:   {want!r}\n  shardkv: {got!r}", flush=True)
                sys.exit(1)
            streams += 1
            continue
        sequence = [draw_command(r) for _ in range(per_sequence)]
        if r.random() < RESP3_SHARE:
            sequence[0] = Ignored(["HELLO", "3"])
        if cluster_aware:
            sequence = with_redirects(sequence)
        pipelined, inlined = r.random() < PIPELINED_SHARE, r.random() < INLINE_SHARE
        how = ("pipelined" if pipelined else "one by one") + (", inline" if inlined else "") \
            + (", against the standalone Redis" if against_standalone else "") \
            + (", cluster-aware" if cluster_aware else "")
        # A SET with a past EXAT or PXAT leaves Redis a key past its time (see above).
        lingering = any(cmd[0].lower() == "set" and any(
            w.lower() in ("exat", "pxat") and v in PAST_TIMES for w, v in zip(cmd, cmd[1:]))
            for cmd in sequence)
        for attempt in range(SEQUENCE_ATTEMPTS):
            try:
                t0 = time.monotonic()
                want = run_sequence(reference, sequence, pipelined, inlined)
                port = master_port(shardkv_port, KEYS[0]) if cluster_aware else shardkv_port
                got = run_sequence(port, sequence, pipelined, inlined)
                # A time reply may be off by up to the time from the start of Redis's
                # run to the end of shardkv's.
                gap_s = time.monotonic() - t0
            except (OSError, ValueError) as error:
                report(n, seed, how, sequence, None, None, None, f"failed: {error!r}")
                sys.exit(1)
            differs = None
            compared = 0
            for i, (cmd, a, b) in enumerate(zip(sequence, want, got)):
                if floats_part(cmd, a, b):
                    break
                if not agree(cmd, a, b, gap_s, lingering):
                    differs = i
                    break
                compared += not isinstance(cmd, Ignored)
            if differs is None:
                break
            # A leader elected meanwhile: the sequence is run again, once.
            transient = TRANSIENT + ((b"-MOVED",) if cluster_aware else ())
            if attempt + 1 < SEQUENCE_ATTEMPTS and got[differs].startswith(transient):
                print(f"sequence {n}: {got[differs]!r}; running it again", flush=True)
                continue
            report(n, seed, how, sequence, want, got, differs, "differs")
            sys.exit(1)
        ran += 1
        aware += cluster_aware
        replies += compared
    print(f"all {replies} replies of {ran} sequences ({aware} cluster-aware), and "
          f"the replies to {streams} damaged streams, agree with redis-server")


if __name__ == "__main__":
    main()
