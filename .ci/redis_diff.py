#!/usr/bin/env python3
"""Differential check: the same commands, byte for byte, against redis-server and shardkv.

Usage: redis_diff.py REDIS_PORT SHARDKV_PORT

The reference is a one-node Redis Cluster (`cluster-enabled yes`, every slot assigned), so
that cluster-mode replies (SELECT, READONLY) are what shardkv is held to. Each case is a list
of commands sent in order on one fresh connection to each server after both are emptied
(FLUSHALL); the raw RESP replies must be identical. Every key carries the hash tag {d}, so
that Redis Cluster rules allow every multi-key command. A command may be wrapped:
- `Unordered(cmd)`: an array whose order Redis leaves unspecified (KEYS) is compared sorted;
- `Ignored(cmd)`: sent, its reply not compared (HELLO 3 switches the protocol; the server
  fields of its reply differ by nature);
- `Info(name)`: COMMAND INFO name, compared on name, arity, flags, key positions and ACL
  categories (shardkv does not list tips, key specs or subcommands);
- `Raw(bytes)`: sent as is (malformed input); the replies up to the close must match;
- `Other(cmd)`: sent on a second connection of the case (another client's write, which a
  WATCH of the first must notice, or a PUBLISH its subscription must deliver);
- `OtherUnordered(cmd)`: both of the above (PUBSUB CHANNELS);
- `Several(n, cmd)`: a command that answers `n` replies (SUBSCRIBE of `n` channels),
  compared together;
- `Pushed()`: nothing sent; the next reply the connection reads (a Pub/Sub message).
Replies that differ by nature (INFO, TIME, CLIENT ID, HELLO's server fields, CONFIG GET but
of notify-keyspace-events, a SCAN cursor) are not compared; the Rust tests check their shape. Nor are these, on purpose:
CLIENT SETINFO (shardkv speaks Redis 7.2, the reference may be 7.0); SCAN with a negative
cursor (shardkv refuses it, Redis wraps it); INCRBYFLOAT of hexadecimal floats (`0x10`,
which Redis's strtold reads; shardkv refuses it as not a valid float). INCRBYFLOAT cases
avoid results whose digits depend on the width of the C `long double` Redis computes in
(80 bits on x86-64, 64 on some platforms): shardkv computes in `f64`. Exits 1 listing
every difference.
"""

import socket
import sys
import time

TIMEOUT_S = 10.0
# A differing reply is shown up to this many characters.
SHOWN_CHARS_MAX = 400
# A full SCAN iteration gives up after this many calls.
SCAN_ROUNDS_MAX = 1000
# FLUSHALL before each case is retried this many times, 0.2 s apart.
FLUSH_ATTEMPTS_MAX = 50


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def reply(self):
        """One whole reply, raw."""
        line = self._line()
        kind, rest = line[:1], line[1:-2]
        if kind in b"$=!":
            n = int(rest)
            return line if n < 0 else line + self._exact(n + 2)
        if kind in b"*~>%|":
            n = int(rest)
            if n < 0:
                return line
            if kind in b"%|":
                n *= 2
            return line + b"".join(self.reply() for _ in range(n))
        return line

    def run(self, args):
        self.sock.sendall(encode(args))
        return self.reply()

    def close(self):
        self.sock.close()


class Unordered(list):
    pass


class Ignored(list):
    pass


class Info(str):
    pass


class Raw(bytes):
    pass


class Other(list):
    pass


class OtherUnordered(Other, Unordered):
    """`Other` and `Unordered` both (PUBSUB CHANNELS: Redis lists them in hash order)."""


class Several(list):
    def __init__(self, n, cmd):
        super().__init__(cmd)
        self.n = n


class Pushed(list):
    pass


class ScanAll(list):
    """SCAN cursor ... repeated until the cursor is 0: compared as the sorted set of keys."""


def parse(raw, pos=0):
    """(value, next position) of the reply at `pos` of `raw`, arrays as lists."""
    end = raw.index(b"\r\n", pos)
    kind, rest, pos = raw[pos:pos + 1], raw[pos + 1:end], end + 2
    if kind in b"$=!":
        n = int(rest)
        return (None, pos) if n < 0 else (raw[pos:pos + n], pos + n + 2)
    if kind in b"*~>%|":
        n = int(rest)
        if n < 0:
            return None, pos
        if kind in b"%|":
            n *= 2
        out = []
        for _ in range(n):
            v, pos = parse(raw, pos)
            out.append(v)
        return out, pos
    if kind == b":":
        return int(rest), pos
    return kind + rest, pos


def comparable(cmd, raw):
    """What is compared of the reply `raw` to `cmd`."""
    if isinstance(cmd, Unordered):
        value, _ = parse(raw)
        return sorted(value) if isinstance(value, list) else value
    if isinstance(cmd, Info):
        value, _ = parse(raw)
        return value[0][:7] if isinstance(value, list) and value[0] is not None else value
    if isinstance(cmd, Ignored):
        return None
    if isinstance(cmd, ScanAll):
        return raw if isinstance(raw, bytes) else sorted(set(raw))
    return raw


def send(conn, cmd, other=None):
    if isinstance(cmd, Other):
        return other.run(cmd)
    if isinstance(cmd, Raw):
        conn.sock.sendall(cmd)
        out = b""
        try:
            while True:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            out += b"<no close>"
        return conn.buf + out
    if isinstance(cmd, Info):
        return conn.run(["COMMAND", "INFO", str(cmd)])
    if isinstance(cmd, Several):
        first = conn.run(cmd)
        return first + b"".join(conn.reply() for _ in range(cmd.n - 1))
    if isinstance(cmd, Pushed):
        return conn.reply()
    if isinstance(cmd, ScanAll):
        keys, cursor = [], b"0"
        for _ in range(SCAN_ROUNDS_MAX):
            raw = conn.run([cmd[0], cursor] + cmd[1:])
            value, _ = parse(raw)
            if not isinstance(value, list):
                return raw
            cursor, batch = value
            keys.extend(batch)
            if cursor == b"0":
                return keys
        return b"<scan did not end>"
    return conn.run(cmd)


COMMANDS = """ping echo hello auth select quit reset client command info dbsize time config
readonly readwrite cluster get set setnx setex psetex getset getdel getex mget mset msetnx
append strlen getrange setrange incr decr incrby decrby incrbyfloat del unlink exists type
rename renamenx expire pexpire expireat pexpireat ttl pttl expiretime pexpiretime persist keys
scan randomkey flushall flushdb substr lcs getbit setbit bitcount bitpos bitop touch
copy bitfield bitfield_ro dump restore restore-asking slowlog wait memory subscribe
unsubscribe psubscribe punsubscribe ssubscribe sunsubscribe publish spublish pubsub
monitor""".split()

V = "v" * 40
CASES = [
    # Strings and SET options.
    [["SET", "{d}a", "1"], ["GET", "{d}a"], ["GET", "{d}missing"]],
    [["SET", "{d}a", "1", "NX"], ["SET", "{d}a", "2", "NX"], ["SET", "{d}a", "3", "XX"],
     ["SET", "{d}b", "3", "XX"], ["GET", "{d}a"]],
    [["SET", "{d}a", "1", "GET"], ["SET", "{d}a", "2", "GET"], ["SET", "{d}a", "3", "NX", "GET"]],
    [["SET", "{d}a", "1", "EX", "0"], ["SET", "{d}a", "1", "EX", "-1"],
     ["SET", "{d}a", "1", "PX", "abc"], ["SET", "{d}a", "1", "EX", "10", "PX", "10"],
     ["SET", "{d}a", "1", "NX", "XX"], ["SET", "{d}a", "1", "KEEPTTL", "EX", "5"],
     ["SET", "{d}a", "1", "BOGUS"], ["SET", "{d}a"], ["SET", "{d}a", "1", "EX"]],
    [["SET", "{d}a", "1", "EX", "100"], ["TTL", "{d}a"], ["SET", "{d}a", "2", "KEEPTTL"],
     ["TTL", "{d}a"], ["SET", "{d}a", "3"], ["TTL", "{d}a"], ["PTTL", "{d}missing"]],
    [["SET", "{d}a", "1", "EXAT", "99999999999"], ["EXPIRETIME", "{d}a"],
     ["SET", "{d}b", "1", "PXAT", "99999999999000"], ["PEXPIRETIME", "{d}b"],
     ["EXPIRETIME", "{d}missing"], ["SET", "{d}c", "1"], ["EXPIRETIME", "{d}c"]],
    [["SETNX", "{d}a", "1"], ["SETNX", "{d}a", "2"], ["GET", "{d}a"], ["SETNX", "{d}a"]],
    [["SETEX", "{d}a", "100", "x"], ["TTL", "{d}a"], ["SETEX", "{d}a", "0", "x"],
     ["SETEX", "{d}a", "abc", "x"], ["PSETEX", "{d}b", "100000", "y"], ["GET", "{d}b"],
     ["PSETEX", "{d}b", "-5", "y"]],
    [["GETSET", "{d}a", "1"], ["GETSET", "{d}a", "2"], ["GETDEL", "{d}a"], ["GETDEL", "{d}a"]],
    # HELP of the container commands with a word too many (their help texts differ).
    [["CLIENT", "HELP", "x"], ["COMMAND", "HELP", "x"], ["CLUSTER", "HELP", "x"],
     ["CONFIG", "HELP", "x"], ["SLOWLOG", "HELP", "x"]],
    # MEMORY USAGE's words, and a missing key (a key's size differs by nature).
    [["MEMORY", "USAGE", "{d}none"], ["MEMORY", "USAGE", "{d}none", "SAMPLES", "x"],
     ["MEMORY", "USAGE", "{d}none", "SAMPLES", "-1"], ["MEMORY", "USAGE", "{d}none", "x"],
     ["MEMORY", "USAGE", "{d}none", "SAMPLES"], ["MEMORY", "FOO"], ["MEMORY", "USAGE"],
     ["MEMORY", "usage", "{d}none", "samples", "5", "SAMPLES", "0"],
     ["SET", "{d}a", "1", "PX", "1"], ["MEMORY", "USAGE", "{d}a", "SAMPLES", "x"],
     ["MEMORY", "HELP", "x"]],
    # WAIT's numbers (its count differs by nature: the reference has no replica).
    [["WAIT", "x", "0"], ["WAIT", "0", "x"], ["WAIT", "0", "1.5"], ["WAIT", "0", "-1"],
     ["WAIT", "99999999999999999999", "0"], ["WAIT", "-1", "-1"], ["WAIT", "x", "-1"]],
    # SLOWLOG's words (what it holds depends on each server's timing: not compared).
    [["SLOWLOG", "RESET"], ["SLOWLOG", "GET", "-2"], ["SLOWLOG", "GET", "x"],
     ["SLOWLOG", "GET", "1", "2"], ["SLOWLOG", "FOO"], ["SLOWLOG", "LEN", "x"],
     ["SLOWLOG", "RESET", "x"], ["SLOWLOG"], ["CONFIG", "GET", "slowlog-max-len"],
     ["CONFIG", "GET", "slowlog-log-slower-than"]],
    # Repeated expiry options (the last counts), GETEX's nil before its time is read, and
    # MSET routed before its arguments are counted: found by .ci/redis_fuzz.py.
    [["SET", "{d}a", "1", "EX", "abc", "EX", "100"], ["TTL", "{d}a"],
     ["SET", "{d}a", "1", "PX", "5", "EX", "100"], ["GETEX", "{d}a", "EX", "0", "EX", "200"],
     ["TTL", "{d}a"], ["GETEX", "{d}a", "PERSIST", "PERSIST"], ["TTL", "{d}a"],
     ["GETEX", "{d}missing", "EX", "0"], ["GETEX", "{d}missing", "PXAT", "x"],
     ["GETEX", "{d}a", "EX", "0"], ["MSET", "{d}a", "1", "{e}b"], ["MSETNX", "{d}a", "1", "{d}b"]],
    [["SET", "{d}a", "1", "EX", "100"], ["GETEX", "{d}a", "PERSIST"], ["TTL", "{d}a"],
     ["GETEX", "{d}a", "EX", "50"], ["TTL", "{d}a"], ["GETEX", "{d}a", "PX", "0"],
     ["GETEX", "{d}a", "EX", "10", "PERSIST"], ["GETEX", "{d}missing"], ["GETEX", "{d}a", "FOO"]],
    [["MSET", "{d}a", "1", "{d}b", "2"], ["MGET", "{d}a", "{d}b", "{d}c"],
     ["MSET", "{d}a"], ["MSET", "{d}a", "1", "{d}b"], ["MSETNX", "{d}b", "3", "{d}c", "4"],
     ["MSETNX", "{d}c", "3", "{d}e", "4"], ["MGET", "{d}c", "{d}e"]],
    [["APPEND", "{d}a", "hello"], ["APPEND", "{d}a", " world"], ["GET", "{d}a"],
     ["STRLEN", "{d}a"], ["STRLEN", "{d}missing"]],
    [["SET", "{d}a", "Hello World"], ["GETRANGE", "{d}a", "0", "4"],
     ["GETRANGE", "{d}a", "-5", "-1"],
     ["GETRANGE", "{d}a", "5", "2"], ["GETRANGE", "{d}a", "0", "100"],
     ["GETRANGE", "{d}missing", "0", "1"],
     ["GETRANGE", "{d}a", "x", "1"], ["GETRANGE", "{d}a", "-100", "-50"]],
    [["SETRANGE", "{d}a", "6", "Redis"], ["GET", "{d}a"], ["SET", "{d}b", "Hello World"],
     ["SETRANGE", "{d}b", "6", "Redis"], ["GET", "{d}b"], ["SETRANGE", "{d}b", "-1", "x"],
     ["SETRANGE", "{d}c", "0", ""], ["EXISTS", "{d}c"], ["SETRANGE", "{d}b", "536870912", "x"]],
    # Counters.
    [["INCR", "{d}n"], ["INCRBY", "{d}n", "10"], ["DECR", "{d}n"], ["DECRBY", "{d}n", "3"],
     ["INCRBY", "{d}n", "abc"], ["SET", "{d}s", "abc"], ["INCR", "{d}s"],
     ["SET", "{d}m", "9223372036854775807"], ["INCR", "{d}m"],
     ["DECRBY", "{d}n", "-9223372036854775808"],
     ["SET", "{d}sp", " 1"], ["INCR", "{d}sp"], ["INCRBY", "{d}n", "1.5"]],
    [["INCRBYFLOAT", "{d}f", "10.5"], ["INCRBYFLOAT", "{d}f", "0.1"], ["INCRBYFLOAT", "{d}f", "-5"],
     ["INCRBYFLOAT", "{d}e", "5.0e3"], ["INCRBYFLOAT", "{d}f", "abc"], ["SET", "{d}g", "x1"],
     ["INCRBYFLOAT", "{d}g", "1"], ["INCRBYFLOAT", "{d}f", "inf"], ["SET", "{d}h", "3"],
     ["INCRBYFLOAT", "{d}h", "1.5"], ["GET", "{d}h"], ["INCRBYFLOAT", "{d}h", " 1"],
     ["INCRBYFLOAT", "{d}h", "1 "], ["INCRBYFLOAT", "{d}h", "nan"]],
    # Hexadecimal floats, stored and given (strtold): found by .ci/redis_fuzz.py.
    [["SET", "{d}x", "0x125"], ["INCRBYFLOAT", "{d}x", "-2"], ["INCRBYFLOAT", "{d}x", "0x1.8p1"],
     ["INCRBYFLOAT", "{d}x", "0x"], ["INCRBYFLOAT", "{d}x", "0x1p"],
     ["INCRBYFLOAT", "{d}x", "+0x.8"]],
    # Keys.
    [["MSET", "{d}a", "1", "{d}b", "2"], ["DEL", "{d}a", "{d}b", "{d}c"], ["EXISTS", "{d}a"],
     ["SET", "{d}a", "1"], ["EXISTS", "{d}a", "{d}a", "{d}b"], ["UNLINK", "{d}a"], ["DEL"]],
    [["SET", "{d}a", "1"], ["TYPE", "{d}a"], ["TYPE", "{d}missing"]],
    [["SET", "{d}a", "1"], ["RENAME", "{d}a", "{d}b"], ["GET", "{d}b"], ["RENAME", "{d}a", "{d}c"],
     ["SET", "{d}c", "2"], ["RENAMENX", "{d}b", "{d}c"], ["RENAMENX", "{d}b", "{d}e"],
     ["RENAME", "{d}e", "{d}e"], ["GET", "{d}e"], ["RENAMENX", "{d}e", "{d}e"]],
    [["SET", "{d}a", "1"], ["EXPIRE", "{d}a", "100"], ["TTL", "{d}a"],
     ["EXPIRE", "{d}a", "50", "NX"],
     ["EXPIRE", "{d}a", "50", "XX"], ["TTL", "{d}a"], ["EXPIRE", "{d}a", "10", "GT"],
     ["EXPIRE", "{d}a", "200", "GT"], ["EXPIRE", "{d}a", "300", "LT"],
     ["EXPIRE", "{d}a", "10", "LT"],
     ["TTL", "{d}a"], ["EXPIRE", "{d}a", "10", "NX", "XX"], ["EXPIRE", "{d}a", "10", "GT", "LT"],
     ["EXPIRE", "{d}a", "10", "FOO"], ["EXPIRE", "{d}missing", "10"], ["EXPIRE", "{d}a", "abc"]],
    [["SET", "{d}a", "1"], ["EXPIRE", "{d}a", "10", "XX"], ["EXPIRE", "{d}a", "10", "GT"],
     ["EXPIRE", "{d}a", "10", "LT"], ["TTL", "{d}a"], ["PERSIST", "{d}a"], ["PERSIST", "{d}a"],
     ["TTL", "{d}a"], ["PEXPIRE", "{d}a", "100000"], ["PTTL", "{d}missing"],
     ["EXPIREAT", "{d}a", "99999999999"], ["PEXPIREAT", "{d}a", "99999999999000"],
     ["EXPIRETIME", "{d}a"], ["EXPIRE", "{d}a", "-1"], ["EXISTS", "{d}a"]],
    [["SET", "{d}a", "1"], ["EXPIRE", "{d}a", "9223372036854775807"],
     ["PEXPIRE", "{d}a", "9223372036854775807"], ["EXPIREAT", "{d}a", "9223372036854775807"]],
    [["MSET", "{d}k1", "1", "{d}k2", "2", "{d}other", "3"], Unordered(["KEYS", "{d}k[12]"]),
     Unordered(["KEYS", "*"]), ["KEYS", "nomatch*"]],
    [["SET", "{d}a", "1"], ["DBSIZE"], ["FLUSHALL"], ["DBSIZE"], ["FLUSHDB"], ["FLUSHALL", "ASYNC"],
     ["FLUSHALL", "SYNC"], ["FLUSHALL", "BAD"]],
    [["RANDOMKEY"], ["SET", "{d}a", "1"], ["RANDOMKEY"]],
    [["SCAN", "0", "COUNT", "0"], ["SCAN", "abc"], ["SCAN", "0", "MATCH"],
     ["SCAN", "0", "FOO", "1"],
     ["SCAN", "0", "TYPE", "string", "COUNT", "abc"]],
    # Connection.
    [["PING"], ["PING", "hi"], ["PING", "a", "b"], ["ECHO", "x"], ["ECHO"], ["SELECT", "0"],
     ["SELECT", "1"], ["SELECT", "abc"]],
    [["HELLO", "4"], ["HELLO", "abc"], ["HELLO", "2", "AUTH", "default"]],
    [["AUTH", "x"], ["AUTH", "default", "x"], ["AUTH"]],
    [["CLIENT", "SETNAME", "app"], ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "a b"],
     ["CLIENT", "SETNAME"], ["CLIENT", "NOSUCH"], ["CLIENT", "KILL", "1.2.3.4:5"]],
    [Info("get"), Info("mset"), ["COMMAND", "INFO", "nosuch"], ["COMMAND", "COUNT", "x"],
     ["COMMAND", "LIST", "x"], ["COMMAND", "NOSUCH"], ["COMMAND", "LIST", "FILTERBY"],
     ["COMMAND", "LIST", "FILTERBY", "MODULE", "x"], ["COMMAND", "LIST", "FILTERBY", "ACLCAT", "x"],
     ["COMMAND", "LIST", "FILTERBY", "PATTERN", "nosuch*"],
     ["COMMAND", "LIST", "FILTERBY", "FOO", "x"],
     Unordered(["COMMAND", "LIST", "FILTERBY", "PATTERN", "getr*"]),
     Unordered(["COMMAND", "LIST", "FILTERBY", "PATTERN", "GETR*"])],
    # Subcommand arity.
    [["CLIENT", "ID", "x"], ["CLIENT", "GETNAME", "x"], ["CLIENT", "SETNAME"],
     ["CLIENT", "SETNAME", "a", "b"], ["CLIENT", "INFO", "x"], ["CLIENT", "KILL"],
     ["CLIENT", "LIST", "TYPE"], ["CLIENT", "LIST", "FOO", "x"], ["CLIENT", "KILL", "ID", "abc"],
     ["CLIENT", "KILL", "ID", "99999"], ["CLIENT", "KILL", "FOO", "x"],
     ["CLIENT", "KILL", "ID", "0"],
     ["CLIENT", "KILL", "TYPE", "foo"], ["CLIENT", "KILL", "TYPE", "master"],
     ["CLIENT", "KILL", "USER", "nosuch"], ["CLIENT", "KILL", "SKIPME", "maybe"],
     ["CLIENT", "LIST", "TYPE", "foo"], ["CLIENT", "LIST", "TYPE", "pubsub"],
     ["CLIENT", "LIST", "ID", "abc"], ["CLIENT", "LIST", "ID", "99999"], ["CLIENT", "LIST", "ID"]],
    [["CLUSTER", "INFO", "x"], ["CLUSTER", "MYID", "x"], ["CLUSTER", "KEYSLOT"],
     ["CLUSTER", "KEYSLOT", "foo"], ["CLUSTER", "KEYSLOT", "{user1}.following"],
     ["CLUSTER", "KEYSLOT", "a", "b"], ["CLUSTER", "COUNTKEYSINSLOT"],
     ["CLUSTER", "COUNTKEYSINSLOT", "abc"], ["CLUSTER", "COUNTKEYSINSLOT", "16384"],
     ["CLUSTER", "COUNTKEYSINSLOT", "-1"], ["CLUSTER", "GETKEYSINSLOT", "1"],
     ["CLUSTER", "GETKEYSINSLOT", "1", "abc"], ["CLUSTER", "GETKEYSINSLOT", "1", "-1"],
     ["CLUSTER", "GETKEYSINSLOT", "16384", "1"], ["CLUSTER", "SLOTS", "x"],
     ["CLUSTER", "SHARDS", "x"], ["CLUSTER", "NODES", "x"], ["CLUSTER", "NOSUCH"]],
    [["SET", "{d}a", "1"], ["CLUSTER", "COUNTKEYSINSLOT", "11311"],
     ["CLUSTER", "GETKEYSINSLOT", "11311", "10"], ["CLUSTER", "GETKEYSINSLOT", "11311", "0"]],
    [["CONFIG", "GET"], ["CONFIG", "NOSUCH"], ["CONFIG", "GET", "nosuch*"],
     ["CONFIG", "RESETSTAT"], ["CONFIG", "RESETSTAT", "x"], ["INFO", "nosuch"]],
    [["INFO", "a", "b", "c"], ["TIME", "x"], ["DBSIZE", "x"], ["RANDOMKEY", "x"], ["READONLY", "x"],
     ["FLUSHALL", "SYNC", "x"], ["SCAN"], ["KEYS"], ["KEYS", "a", "b"], ["QUIT", "x"]],
    [["RESET"], ["READONLY"], ["READWRITE"]],
    # Transactions: queued answers, EXEC's array, and the errors around them.
    [["EXEC"], ["DISCARD"], ["MULTI", "x"], ["MULTI"], ["MULTI"], ["SET", "{d}a", "1"],
     ["INCR", "{d}a"], ["EXPIRE", "{d}a", "100", "NX"], ["PING"], ["SET", "{d}b", "1", "EX", "x"],
     ["INCR", "{d}c"], ["EXEC"], ["MULTI"], ["GET", "{d}a"], ["TTL", "{d}a"], ["GET", "{d}b"],
     ["EXISTS", "{d}a", "{d}b"], ["MGET", "{d}a", "{d}c"], ["EXEC"], ["MULTI"], ["NOPE"],
     ["SET", "{d}a", "2"], ["EXEC"], ["MULTI"], ["SET", "{d}a"], ["EXEC"], ["GET", "{d}a"],
     ["MULTI"], ["SET", "{d}a", "3"], ["EXEC", "x"], ["EXEC"], ["MULTI"], ["SET", "{d}a", "4"],
     ["DISCARD"], ["GET", "{d}a"], ["MULTI"], ["EXEC"], ["MULTI"], ["DISCARD", "x"],
     ["SET", "{d}a", "5"], ["DISCARD"], ["GET", "{d}a"], ["MULTI"], ["RESET"], ["EXEC"],
     Info("multi"), Info("exec"), Info("discard")],
    [["MULTI"], ["SET", "{d}a", "1"], ["GET", "{d}a"], ["INCR", "{d}a"], ["GETSET", "{d}a", "9"],
     ["MGET", "{d}a", "{d}b"], ["SET", "{d}b", "2", "GET"], ["GETDEL", "{d}a"],
     ["EXISTS", "{d}a", "{d}b"], ["APPEND", "{d}b", "x"], ["GETRANGE", "{d}b", "0", "-1"],
     ["INCR", "{d}b"], ["EXEC"], ["GET", "{d}a"], ["GET", "{d}b"]],
    # WATCH: EXEC runs while the watched keys are as they were, and answers a null array,
    # having applied nothing, once another client or this one changed one of them.
    [["WATCH"], ["UNWATCH", "x"], ["SET", "{d}a", "1"], ["WATCH", "{d}a", "{d}b"], ["MULTI"],
     ["INCR", "{d}a"], ["EXEC"], ["WATCH", "{d}a"], Other(["SET", "{d}a", "7"]), ["MULTI"],
     ["INCR", "{d}a"], ["SET", "{d}c", "1"], ["EXEC"], ["GET", "{d}a"], ["GET", "{d}c"],
     ["WATCH", "{d}b"], Other(["SET", "{d}b", "1"]), ["MULTI"], ["GET", "{d}b"], ["EXEC"],
     ["WATCH", "{d}a"], ["INCR", "{d}a"], ["MULTI"], ["EXEC"], ["WATCH", "{d}a"],
     Other(["DEL", "{d}a"]), ["UNWATCH"], ["MULTI"], ["SET", "{d}a", "2"], ["EXEC"],
     ["WATCH", "{d}a"], ["MULTI"], ["WATCH", "{d}b"], ["UNWATCH"], ["GET", "{d}a"], ["EXEC"],
     ["WATCH", "{d}a"], Other(["EXPIRE", "{d}a", "100"]), ["MULTI"], ["DISCARD"], ["MULTI"],
     ["PING"], ["EXEC"], ["WATCH", "{d}a"], Other(["PERSIST", "{d}a"]), ["MULTI"],
     ["PING"], ["EXEC"], ["WATCH", "{d}a"], ["MULTI"], ["WATCH"], ["EXEC"],
     ["WATCH", "{d}a", "{d}a"], Other(["SET", "{d}a", "9"]), ["WATCH", "{d}a"], ["MULTI"],
     ["PING"], ["EXEC"], ["WATCH", "{d}b", "{d}b", "{d}c"], ["MULTI"], ["EXEC"],
     Info("watch"), Info("unwatch")],
    # Errors: unknown commands, arity, wrong types of arguments.
    [["NOPE"], ["NOPE", "x", "y"], ["GET"], ["GET", "a", "b"], ["MGET"], ["INCR"], ["TTL"],
     ["EXISTS"], ["GETRANGE", "{d}a", "1"], ["CLUSTER"], ["CLIENT"], ["COMMAND", "NOSUCH"]],
    [["MSET", "{d}a1", "1", "{d}a2", "2", "{d}b1", "3", "{d}c", "4"], ScanAll(["SCAN"]),
     ScanAll(["SCAN", "MATCH", "{d}a*"]), ScanAll(["SCAN", "COUNT", "1"]),
     ScanAll(["SCAN", "MATCH", "*1", "COUNT", "2"]), ScanAll(["SCAN", "TYPE", "string"]),
     ScanAll(["SCAN", "TYPE", "list"]), ScanAll(["SCAN", "MATCH", "nomatch*"]),
     Unordered(["KEYS", "{d}?1"]), Unordered(["KEYS", "{d}[ab]*"]), Unordered(["KEYS", "{d}[^a]*"]),
     Unordered(["KEYS", "\\{d\\}c"]), ["KEYS", "{d}[a-"], ["SCAN", "0", "COUNT", "-1"],
     ["SCAN", "99999999999999999999"]],
    # Edge values.
    [["SET", "{d}a", "x"], ["GETRANGE", "{d}a", "0", "9223372036854775807"],
     ["GETRANGE", "{d}a", "-9223372036854775808", "0"], ["SETRANGE", "{d}a", "abc", "x"],
     ["SETRANGE", "{d}a", "0", ""], ["SETRANGE", "{d}a", "536870911", ""],
     ["SET", "{d}b", "1", "EX", "9223372036854775807"],
     ["SET", "{d}b", "1", "PX", "9223372036854775807"],
     ["SET", "{d}b", "1", "EXAT", "0"], ["SET", "{d}b", "1", "PXAT", "-1"],
     ["SET", "{d}b", "1", "ex", "100", "nx"], ["TTL", "{d}b"], ["SET", "{d}c", "1", "pxat", "1"],
     ["EXISTS", "{d}c"], ["GETEX", "{d}b", "EXAT", "1"], ["EXISTS", "{d}b"],
     ["SET", "{d}e", "\x00\xff\r\n"], ["GET", "{d}e"], ["STRLEN", "{d}e"], ["ECHO", ""],
     ["APPEND", "{d}e", ""], ["MSETNX", "{d}f", "1", "{d}f", "2"], ["GET", "{d}f"],
     ["DEL", "{d}f", "{d}f"], ["EXISTS", "{d}a", "{d}a"], ["RENAME", "{d}nosuch", "{d}nosuch"]],
    [["SET", "{d}a", "1"], ["PEXPIRE", "{d}a", "0"], ["EXISTS", "{d}a"], ["SET", "{d}a", "1"],
     ["EXPIREAT", "{d}a", "1"], ["EXISTS", "{d}a"], ["SET", "{d}a", "1"],
     ["EXPIRE", "{d}a", "100", "nx"],
     ["EXPIRE", "{d}a", "50", "gt", "xx"], ["PEXPIREAT", "{d}a", "-1"], ["TYPE", "{d}a"],
     ["SET", "{d}b", "1", "EX", "100"], ["PERSIST", "{d}b", "{d}b"], ["TTL", "{d}b", "x"]],
    [["INCRBY", "{d}n", "9223372036854775807"], ["INCR", "{d}n"],
     ["DECRBY", "{d}m", "9223372036854775807"],
     ["DECR", "{d}m"], ["DECR", "{d}m"], ["DECR", "{d}m"],
     ["INCRBY", "{d}n", "99999999999999999999"],
     ["SET", "{d}z", "007"], ["INCR", "{d}z"], ["SET", "{d}z", "-0"], ["INCR", "{d}z"],
     ["SET", "{d}z", "+1"], ["INCR", "{d}z"], ["SET", "{d}z", ""], ["INCR", "{d}z"],
     ["INCRBYFLOAT", "{d}q", "1e2"], ["INCRBYFLOAT", "{d}q", ".5"],
     ["INCRBYFLOAT", "{d}q", "-100.5"],
     ["INCRBYFLOAT", "{d}q", "1e"], ["INCRBYFLOAT", "{d}q", ""]],
    [["CLUSTER", "KEYSLOT", "{}"], ["CLUSTER", "KEYSLOT", "{}a"], ["CLUSTER", "KEYSLOT", "{{a}}"],
     ["CLUSTER", "KEYSLOT", "a{b}c{d}"], ["CLUSTER", "KEYSLOT", "{a"], ["CLUSTER", "KEYSLOT", ""]],
    [["CLIENT", "SETNAME", ""], ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "x"], ["RESET"],
     ["CLIENT", "GETNAME"], ["ECHO", "a", "b"], ["PING", ""]],
    [Raw(b"SET {d}a 'x y'\r\nGET {d}a\r\nECHO \"a\\x41\"\r\n  PING  \r\n\r\nQUIT\r\n")],
    [Raw(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\nQUIT\r\n")],
    # RESP3.
    [Ignored(["HELLO", "3"]), ["SET", "{d}a", "1"], ["GET", "{d}a"], ["GET", "{d}missing"],
     ["MGET", "{d}a", "{d}missing"], ["TTL", "{d}a"], ["INCRBYFLOAT", "{d}f", "1.5"],
     ["EXISTS", "{d}a"], ["NOPE"], ["SET", "{d}a", "1", "BOGUS"], Info("get"), ["PING"],
     ["PING", "x"], ["ECHO", "x"], ["CLIENT", "GETNAME"],
     ["SET", "{d}f", "2.5"], ["INCRBYFLOAT", "{d}f", "1"], ["TTL", "{d}missing"],
     ["KEYS", "{d}a"], ["COMMAND", "INFO", "nosuch"], Ignored(["HELLO", "2", "SETNAME", "n"]),
     ["CLIENT", "GETNAME"], ["GET", "{d}missing"]],
    # Bits: SETBIT grows with zeros (even to clear a bit) and keeps the TTL; offsets and
    # bits out of range; GETBIT past the end.
    [["SETBIT", "{d}a", "7", "1"], ["GET", "{d}a"], ["SETBIT", "{d}a", "7", "0"],
     ["SETBIT", "{d}b", "100", "0"], ["STRLEN", "{d}b"], ["GETBIT", "{d}a", "7"],
     ["SETBIT", "{d}a", "0", "1"], ["GETBIT", "{d}a", "0"], ["GETBIT", "{d}a", "1000"],
     ["GETBIT", "{d}missing", "3"], ["SETBIT", "{d}a", "-1", "1"], ["SETBIT", "{d}a", "x", "1"],
     ["SETBIT", "{d}a", "1", "2"], ["SETBIT", "{d}a", "1", "-1"], ["SETBIT", "{d}a", "1", "x"],
     ["GETBIT", "{d}a", "-1"], ["GETBIT", "{d}a", "4294967296"],
     ["SETBIT", "{d}a", "4294967296", "1"], ["SET", "{d}t", "x", "EX", "100"],
     ["SETBIT", "{d}t", "3", "1"], ["TTL", "{d}t"], ["GET", "{d}t"]],
    [["SET", "{d}a", "foobar"], ["BITCOUNT", "{d}a"], ["BITCOUNT", "{d}a", "0", "0"],
     ["BITCOUNT", "{d}a", "1", "1"], ["BITCOUNT", "{d}a", "1", "1", "BYTE"],
     ["BITCOUNT", "{d}a", "5", "30", "BIT"], ["BITCOUNT", "{d}a", "-1", "-1"],
     ["BITCOUNT", "{d}a", "-3", "-5"], ["BITCOUNT", "{d}a", "-100", "-200"],
     ["BITCOUNT", "{d}a", "-100", "100"], ["BITCOUNT", "{d}a", "3", "1"],
     ["BITCOUNT", "{d}a", "-1", "-5", "WORD"], ["BITCOUNT", "{d}a", "-1", "-5", "WORD", "x"],
     ["BITCOUNT", "{d}a", "-7", "-2", "bit"], ["BITCOUNT", "{d}a", "0", "1000", "BIT"],
     ["BITCOUNT", "{d}a", "1"], ["BITCOUNT", "{d}a", "1", "2", "WORD"],
     ["BITCOUNT", "{d}a", "x", "2"], ["BITCOUNT", "{d}a", "1", "2", "BIT", "x"],
     ["BITCOUNT", "{d}missing"], ["BITCOUNT", "{d}missing", "1", "x"],
     ["BITCOUNT", "{d}missing", "1", "2", "BAD"], ["SET", "{d}e", ""], ["BITCOUNT", "{d}e"],
     ["BITCOUNT", "{d}e", "0", "-1", "BIT"]],
    [["SET", "{d}a", b"\xff\xf0\x00"], ["SET", "{d}z", b"\x00\x00\x00"],
     ["SET", "{d}o", b"\xff\xff"], ["BITPOS", "{d}a", "0"], ["BITPOS", "{d}a", "1"],
     ["BITPOS", "{d}z", "1"], ["BITPOS", "{d}z", "0"], ["BITPOS", "{d}o", "0"],
     ["BITPOS", "{d}o", "0", "0"], ["BITPOS", "{d}o", "0", "0", "-1"],
     ["BITPOS", "{d}o", "0", "0", "-1", "BIT"], ["BITPOS", "{d}o", "0", "3", "BIT"],
     ["BITPOS", "{d}a", "1", "2"], ["BITPOS", "{d}a", "0", "1", "-1", "BIT"],
     ["BITPOS", "{d}a", "1", "7", "15", "BIT"], ["BITPOS", "{d}a", "0", "7", "15", "BIT"],
     ["BITPOS", "{d}a", "0", "2", "1"], ["BITPOS", "{d}a", "1", "-100", "-200"],
     ["BITPOS", "{d}a", "1", "5", "2", "BIT"], ["BITPOS", "{d}a", "2"],
     ["BITPOS", "{d}a", "x"], ["BITPOS", "{d}missing", "1"], ["BITPOS", "{d}missing", "0"],
     ["BITPOS", "{d}missing", "1", "x", "y", "z", "w"], ["BITPOS", "{d}a", "1", "x"],
     ["BITPOS", "{d}a", "1", "0", "x"], ["BITPOS", "{d}a", "1", "0", "x", "BAD"],
     ["BITPOS", "{d}a", "1", "0", "1", "BAD"], ["BITPOS", "{d}a", "1", "0", "1", "BIT", "x"],
     ["SET", "{d}e", ""], ["BITPOS", "{d}e", "0"], ["BITPOS", "{d}e", "1"]],
    [["SET", "{d}a", "foobar"], ["SET", "{d}b", "abcdef"], ["SET", "{d}c", "xyz"],
     ["BITOP", "AND", "{d}r", "{d}a", "{d}b"], ["GET", "{d}r"],
     ["BITOP", "or", "{d}r", "{d}a", "{d}c"], ["GET", "{d}r"],
     ["BITOP", "XOR", "{d}r", "{d}a", "{d}b", "{d}c"], ["GET", "{d}r"],
     ["BITOP", "NOT", "{d}r", "{d}c"], ["GET", "{d}r"],
     ["BITOP", "AND", "{d}r", "{d}a", "{d}missing"], ["GET", "{d}r"],
     ["SET", "{d}r", "x", "EX", "100"], ["BITOP", "OR", "{d}r", "{d}a"], ["TTL", "{d}r"],
     ["BITOP", "OR", "{d}r", "{d}missing"], ["EXISTS", "{d}r"],
     ["BITOP", "NOT", "{d}r", "{d}a", "{d}b"], ["BITOP", "NAND", "{d}r", "{d}a"],
     ["BITOP", "AND", "{d}r", "{e}a"], ["BITOP", "NOT", "{d}r", "{d}r"]],
    # BITFIELD: wrapping, saturating and failing fields of every width; the string grows
    # even when every write fails; errors before anything runs.
    [["BITFIELD", "{d}a", "SET", "i8", "0", "100", "GET", "i8", "0", "INCRBY", "i8", "0", "100",
      "OVERFLOW", "SAT", "INCRBY", "i8", "0", "100", "INCRBY", "i8", "0", "-300",
      "OVERFLOW", "FAIL", "INCRBY", "i8", "0", "-1", "GET", "u8", "0"],
     ["BITFIELD", "{d}a", "SET", "u8", "#1", "-1", "GET", "u8", "8", "GET", "u4", "4",
      "GET", "i64", "0", "GET", "u63", "1", "GET", "i5", "#3", "GET", "u1", "100000"],
     ["BITFIELD", "{d}b", "SET", "i64", "0", "-9223372036854775808", "INCRBY", "i64", "0", "-1",
      "OVERFLOW", "SAT", "INCRBY", "i64", "0", "-9223372036854775808", "INCRBY", "i64", "0",
      "9223372036854775807", "INCRBY", "i64", "0", "9223372036854775807",
      "OVERFLOW", "fail", "INCRBY", "i64", "0", "1", "SET", "i64", "0", "5"],
     ["BITFIELD", "{d}c", "OVERFLOW", "SAT", "SET", "u8", "3", "-5", "SET", "u8", "3", "300",
      "OVERFLOW", "WRAP", "SET", "u3", "13", "12", "INCRBY", "u63", "20", "-1",
      "OVERFLOW", "SAT", "INCRBY", "u63", "20", "-2", "INCRBY", "u63", "20",
      "9223372036854775807", "SET", "i3", "0", "-5", "SET", "i3", "0", "4"],
     ["GET", "{d}c"], ["GET", "{d}b"],
     ["BITFIELD", "{d}n", "OVERFLOW", "FAIL", "SET", "u8", "0", "300"], ["GET", "{d}n"],
     ["BITFIELD", "{d}m", "GET", "u8", "0"], ["EXISTS", "{d}m"], ["BITFIELD", "{d}a"],
     ["BITFIELD_RO", "{d}a", "GET", "u8", "0", "GET", "i4", "#1"],
     ["BITFIELD_RO", "{d}a", "SET", "u8", "0", "1"], ["BITFIELD", "{d}a", "GET", "U8", "0"],
     ["BITFIELD", "{d}a", "GET", "u64", "0"], ["BITFIELD", "{d}a", "GET", "i65", "0"],
     ["BITFIELD", "{d}a", "GET", "i0", "0"], ["BITFIELD", "{d}a", "GET", "u08", "0"],
     ["BITFIELD", "{d}a", "OVERFLOW", "BAD"], ["BITFIELD", "{d}a", "OVERFLOW"],
     ["BITFIELD", "{d}a", "GET", "u8"], ["BITFIELD", "{d}a", "SET", "u8", "0"],
     ["BITFIELD", "{d}a", "INCRBY", "i8", "0", "x"], ["BITFIELD", "{d}a", "SET", "u8", "#x", "1"],
     ["BITFIELD", "{d}a", "GET", "u8", "-1"], ["BITFIELD", "{d}a", "GET", "u8", "#-1"],
     ["BITFIELD", "{d}a", "GET", "u8", "4294967296"], ["BITFIELD", "{d}a", "GET", "u8", "0", "BAD"],
     ["BITFIELD_RO", "{d}a", "GET", "u8", "0", "SET", "u8", "0", "1", "BAD"],
     ["BITFIELD", "{d}a", "SET", "u8", "0", "1", "GET", "u9x", "0"], ["GET", "{d}a"],
     ["SET", "{d}t", "x", "EX", "100"], ["BITFIELD", "{d}t", "SET", "u8", "16", "65"],
     ["TTL", "{d}t"], ["GET", "{d}t"]],
    # DUMP and RESTORE: Redis's payloads (integers, lengths, LZF) both ways; BUSYKEY before
    # the time and the payload are read; deadlines relative, absolute and past.
    [["SET", "{d}a", "hello"], ["DUMP", "{d}a"], ["SET", "{d}a", "123"], ["DUMP", "{d}a"],
     ["SET", "{d}a", "-70000"], ["DUMP", "{d}a"], ["SET", "{d}a", "4294967296"],
     ["DUMP", "{d}a"], ["SET", "{d}a", "a" * 94], ["DUMP", "{d}a"], ["SET", "{d}a", "x" * 64],
     ["DUMP", "{d}a"], ["SET", "{d}a", "ab" * 200], ["DUMP", "{d}a"], ["SET", "{d}a", V],
     ["DUMP", "{d}a"], ["SET", "{d}a", ""], ["DUMP", "{d}a"], ["DUMP", "{d}missing"],
     ["SETBIT", "{d}b", "100", "1"], ["DUMP", "{d}b"],
     ["RESTORE", "{d}r", "0", bytes.fromhex("000568656c6c6f0a006372df766534200a")],
     ["GET", "{d}r"], ["TTL", "{d}r"],
     ["RESTORE", "{d}r", "0", bytes.fromhex("00c07b0a0048e253e1007a67b9")],
     ["RESTORE", "{d}r", "5000", bytes.fromhex("00c07b0a0048e253e1007a67b9"), "REPLACE"],
     ["GET", "{d}r"], ["TTL", "{d}r"],
     ["RESTORE", "{d}s", "4102444800000",
      bytes.fromhex("00c309405e016161e051000161610a00f0621c6b6a904cdb"), "ABSTTL"],
     ["GET", "{d}s"], ["EXPIRETIME", "{d}s"],
     ["RESTORE", "{d}s", "1000", bytes.fromhex("00c07b0a0048e253e1007a67b9"), "ABSTTL",
      "REPLACE"], ["EXISTS", "{d}s"],
     ["RESTORE", "{d}s", "1000", bytes.fromhex("00c07b0a0048e253e1007a67b9"), "ABSTTL"],
     ["EXISTS", "{d}s"],
     ["RESTORE", "{d}s", "9223372036854775807", bytes.fromhex("00c07b0a0048e253e1007a67b9")],
     ["EXISTS", "{d}s"],
     ["RESTORE", "{d}s", "9223372036854775807", bytes.fromhex("00c07b0a0048e253e1007a67b9"),
      "ABSTTL"], ["EXISTS", "{d}s"],
     ["RESTORE", "{d}t", "0", bytes.fromhex("00c2701101000a0001a408fe953095a5"), "IDLETIME",
      "10", "REPLACE"], ["GET", "{d}t"],
     ["RESTORE", "{d}t", "0", bytes.fromhex("00c12c010a00954261f265825c10"), "FREQ", "100",
      "REPLACE"], ["GET", "{d}t"],
     ["RESTORE", "{d}r", "abc", "xyz"], ["RESTORE", "{d}u", "abc", "xyz"],
     ["RESTORE", "{d}u", "-1", "xyz"], ["RESTORE", "{d}u", "0", "xyz"],
     ["RESTORE", "{d}r", "0", "xyz", "REPLACE"], ["RESTORE", "{d}u", "0", ""],
     ["RESTORE", "{d}u", "0", bytes.fromhex("000568656c6c6f0a006372df766534200b")],
     ["RESTORE", "{d}u", "0", bytes.fromhex("000568656c6c6f0b00d1cb1f3f1c8a39a5")],
     ["RESTORE", "{d}u", "0", "xyz", "IDLETIME", "5", "FREQ", "3"],
     ["RESTORE", "{d}u", "0", "xyz", "FREQ", "300"],
     ["RESTORE", "{d}u", "0", "xyz", "IDLETIME", "-1"], ["RESTORE", "{d}u", "0", "xyz", "BAD"],
     ["RESTORE", "{d}u", "0", "xyz", "IDLETIME"], ["RESTORE", "{d}u", "0", "xyz", "FREQ", "x"],
     ["RESTORE-ASKING", "{d}v", "0", bytes.fromhex("000568656c6c6f0a006372df766534200a")],
     ["GET", "{d}v"]],
    [["SET", "{d}a", "1", "EX", "100"], ["COPY", "{d}a", "{d}b"], ["GET", "{d}b"],
     ["TTL", "{d}b"], ["COPY", "{d}a", "{d}b"], ["SET", "{d}a", "2"],
     ["COPY", "{d}a", "{d}b", "REPLACE"], ["GET", "{d}b"], ["TTL", "{d}b"],
     ["COPY", "{d}missing", "{d}b"], ["COPY", "{d}a", "{d}a"], ["COPY", "{d}a", "{d}b", "BAD"],
     ["COPY", "{d}a", "{d}b", "DB"], ["COPY", "{d}a", "{d}b", "DB", "0", "REPLACE"],
     ["COPY", "{d}a", "{d}b", "DB", "1"], ["COPY", "{d}a", "{d}a", "DB", "1"],
     ["COPY", "{d}a", "{d}b", "DB", "16"], ["COPY", "{d}a", "{d}b", "DB", "x"],
     ["COPY", "{d}a", "{d}b", "DB", "99999999999"], ["COPY", "{d}a", "{d}b", "REPLACE", "x"],
     ["COPY", "{d}a", "{e}b"], ["TOUCH", "{d}a", "{d}b", "{d}missing", "{d}a"],
     ["SUBSTR", "{d}a", "0", "-1"], ["SUBSTR", "{d}a", "0"]],
    [["SET", "{d}a", "ohmytext"], ["SET", "{d}b", "mynewtext"], ["LCS", "{d}a", "{d}b"],
     ["LCS", "{d}a", "{d}b", "LEN"], ["LCS", "{d}a", "{d}b", "IDX"],
     ["LCS", "{d}a", "{d}b", "IDX", "MINMATCHLEN", "4"],
     ["LCS", "{d}a", "{d}b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"],
     ["LCS", "{d}a", "{d}b", "idx", "withmatchlen", "minmatchlen", "-3"],
     ["LCS", "{d}a", "{d}b", "LEN", "IDX"], ["LCS", "{d}a", "{d}b", "MINMATCHLEN"],
     ["LCS", "{d}a", "{d}b", "MINMATCHLEN", "x"], ["LCS", "{d}a", "{d}b", "BAD"],
     ["LCS", "{d}a", "{d}missing"], ["LCS", "{d}missing", "{d}missing", "IDX"],
     ["LCS", "{d}a", "{d}a", "IDX", "WITHMATCHLEN"], ["LCS", "{d}a", "{e}b"],
     ["LCS", "{d}a", "{d}b", "LEN", "WITHMATCHLEN"]],
    [Ignored(["HELLO", "3"]), ["SET", "{d}a", "ohmytext"], ["SET", "{d}b", "mynewtext"],
     ["LCS", "{d}a", "{d}b", "IDX", "WITHMATCHLEN"], ["MULTI"], ["SETBIT", "{d}c", "3", "1"],
     ["BITFIELD", "{d}c", "GET", "u4", "0"], ["BITCOUNT", "{d}c"], ["EXEC"]],
    # Malformed input: the protocol error, then the close.
    [Raw(b"*abc\r\n")],
    [Raw(b"*1\r\n$abc\r\n")],
    [Raw(b"*2\r\n$3\r\nGET\r\n:1\r\n")],
    [Raw(b"SET {d}a \"unbalanced\r\n")],
    [Raw(b"*1\r\n$-5\r\n")],
    [Raw(b"*3000000000\r\n")],
    # Pub/Sub: confirmations, messages published by another client, the RESP2 subscribed
    # context, RESP3 pushes, shard channels, PUBSUB's counts and errors.
    [Several(2, ["SUBSCRIBE", "a", "b"]), Several(1, ["SUBSCRIBE", "a"]),
     Other(["PUBLISH", "a", "hi"]), Pushed(), Other(["PUBLISH", "nobody", "x"]),
     Other(["PUBSUB", "NUMSUB", "a", "b", "c"]), OtherUnordered(["PUBSUB", "CHANNELS"]),
     Other(["PUBSUB", "CHANNELS", "[a]"]), ["PING"], ["PING", "x"], ["GET", "{d}a"],
     ["SET", "{d}a", "1"], ["PUBSUB", "NUMPAT"], Several(2, ["UNSUBSCRIBE", "a", "b"]),
     ["UNSUBSCRIBE"], ["GET", "{d}a"], ["PING"]],
    [Several(2, ["PSUBSCRIBE", "a*", "b?"]), Other(["PUBLISH", "abc", "m"]), Pushed(),
     Other(["PUBLISH", "bc", ""]), Pushed(), Other(["PUBSUB", "NUMPAT"]),
     Several(1, ["SUBSCRIBE", "abc"]), Other(["PUBLISH", "abc", "twice"]), Pushed(), Pushed(),
     Several(1, ["PUNSUBSCRIBE", "a*"]), Several(1, ["PUNSUBSCRIBE", "zz"]),
     Several(1, ["UNSUBSCRIBE", "abc"]), ["PUNSUBSCRIBE", "b?"], ["PUNSUBSCRIBE"],
     ["UNSUBSCRIBE", "abc"]],
    [Ignored(["HELLO", "3"]), ["SUBSCRIBE", "a"], Other(["PUBLISH", "a", "m"]), Pushed(),
     ["GET", "{d}a"], ["PING"], ["SUNSUBSCRIBE"], ["UNSUBSCRIBE", "a"], ["PUNSUBSCRIBE"]],
    [Ignored(["HELLO", "3"]), ["SUBSCRIBE", "a"], Several(2, ["PUBLISH", "a", "self"]),
     ["UNSUBSCRIBE", "a"], ["PUBLISH", "a", "none"], ["SUBSCRIBE", "b"],
     Other(["PUBLISH", "b", "other"]), Several(2, ["UNSUBSCRIBE", "b"])],
    [Several(2, ["SSUBSCRIBE", "{d}s", "{d}t"]), Other(["SPUBLISH", "{d}s", "m"]), Pushed(),
     Other(["PUBLISH", "{d}s", "not a shard message"]), Other(["SPUBLISH", "{d}u", "m"]),
     OtherUnordered(["PUBSUB", "SHARDCHANNELS"]),
     OtherUnordered(["PUBSUB", "SHARDCHANNELS", "*t"]),
     Other(["PUBSUB", "SHARDNUMSUB", "{d}s", "{d}u"]), OtherUnordered(["PUBSUB", "CHANNELS"]),
     ["SSUBSCRIBE", "{d}s", "x"], ["SUNSUBSCRIBE", "{d}s"], ["SUNSUBSCRIBE", "{d}t"],
     ["SUNSUBSCRIBE"]],
    [["PUBSUB", "NUMPAT", "x"], ["PUBSUB", "CHANNELS", "a", "b"], ["PUBSUB", "foo"],
     ["PUBSUB", "HELP", "x"], ["PUBSUB", "SHARDCHANNELS", "a", "b"], ["PUBSUB", "NUMSUB"],
     ["PUBLISH", "a", "b"], ["SPUBLISH", "{d}a", "b"], ["UNSUBSCRIBE"], ["PUNSUBSCRIBE", "x"],
     ["SUNSUBSCRIBE", "{d}a"]],
    [["SET", "{d}big", V], ["GET", "{d}big"], ["STRLEN", "{d}big"], ["SET", "{d}empty", ""],
     ["GET", "{d}empty"], ["STRLEN", "{d}empty"]],
    # Keyspace notifications: CONFIG SET's checks, and CONFIG GET's form of the flags.
    [["CONFIG", "SET", "notify-keyspace-events", "KEq"],
     ["CONFIG", "SET", "notify-keyspace-events"],
     ["CONFIG", "SET", "notify-keyspace-events", "KEA", "notify-keyspace-events", "E"],
     ["CONFIG", "SET", "notify-keyspace-events", "K", "notify-keyspace-events"],
     ["CONFIG", "SET", "notify-keyspace-events", "Ex$gn"],
     ["CONFIG", "GET", "notify-keyspace-events"],
     ["CONFIG", "SET", "NOTIFY-KEYSPACE-EVENTS", "KEAmn"],
     ["CONFIG", "GET", "notify-keyspace-events"],
     ["CONFIG", "SET", "notify-keyspace-events", ""], ["CONFIG", "GET", "notify-keyspace-events"]],
]


def keyspace_case(flags, channels, writes):
    """A subscriber to every keyspace event, `flags` set, and `writes` (command, events)
    from another client, each followed by reading its events' messages (`channels` per
    event: 2 with both K and E); then a marker write's events, with every class asked for,
    read next (so that an event too many fails the case: it would come before them, as
    events keep their order), and the flags switched off."""
    case = [Several(1, ["PSUBSCRIBE", "__key*__:*"]),
            Other(["CONFIG", "SET", "notify-keyspace-events", flags])]
    for cmd, events in writes:
        case.append(Other(cmd))
        case.extend(Pushed() for _ in range(events * channels))
    case += [Other(["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
             Other(["SET", "{d}end", "marker"]), Pushed(), Pushed(),
             Other(["CONFIG", "SET", "notify-keyspace-events", ""])]
    return case


# The events of each write, as Redis 7 raises them (`new` only with the `n` class).
CASES += [
    keyspace_case("KEA", 2, [
        (["SET", "{d}a", "1"], 1), (["SET", "{d}a", "2", "EX", "100"], 2),
        (["SET", "{d}a", "3", "NX"], 0), (["SET", "{d}a", "3", "KEEPTTL"], 1),
        (["GETSET", "{d}a", "4"], 1), (["APPEND", "{d}a", "x"], 1),
        (["SETRANGE", "{d}a", "0", "y"], 1), (["SETRANGE", "{d}a", "0", ""], 0),
        (["SETRANGE", "{d}none", "0", ""], 0), (["INCR", "{d}n"], 1),
        (["DECRBY", "{d}n", "5"], 1), (["INCRBYFLOAT", "{d}n", "1.5"], 1),
        (["EXPIRE", "{d}n", "100"], 1), (["EXPIRE", "{d}n", "200", "NX"], 0),
        (["EXPIRE", "{d}n", "200", "GT"], 1), (["PERSIST", "{d}n"], 1),
        (["PERSIST", "{d}n"], 0), (["GETEX", "{d}n", "EX", "50"], 1),
        (["GETEX", "{d}n", "PERSIST"], 1), (["GETEX", "{d}n"], 0), (["GETDEL", "{d}n"], 1),
        (["GETDEL", "{d}n"], 0), (["RENAME", "{d}a", "{d}b"], 2),
        (["RENAMENX", "{d}b", "{d}b"], 0), (["COPY", "{d}b", "{d}c"], 1),
        (["COPY", "{d}b", "{d}c"], 0), (["COPY", "{d}b", "{d}c", "REPLACE"], 1),
        (["MSET", "{d}p", "1", "{d}q", "2"], 2), (["MSETNX", "{d}p", "1", "{d}r", "1"], 0),
        (["MSETNX", "{d}r", "1"], 1), (["SETBIT", "{d}s", "1", "1"], 1),
        (["SETBIT", "{d}s", "1", "1"], 0), (["BITOP", "AND", "{d}t", "{d}s"], 1),
        (["BITOP", "AND", "{d}t", "{d}none"], 1), (["BITOP", "AND", "{d}t", "{d}none"], 0),
        (["BITFIELD", "{d}h", "SET", "u8", "0", "255"], 1),
        (["DEL", "{d}p", "{d}q", "{d}none"], 2), (["UNLINK", "{d}r"], 1),
        (["EXPIRE", "{d}c", "0"], 1), (["SETEX", "{d}e", "10", "v"], 2),
        (["PSETEX", "{d}e", "10000", "v"], 2), (["SETNX", "{d}e", "v"], 0),
        (["SETNX", "{d}f", "v"], 1), (["GETEX", "{d}f", "PXAT", "1"], 1),
        (["MULTI"], 0), (["SET", "{d}x", "1"], 0), (["INCR", "{d}x"], 0), (["EXEC"], 2),
        (["SET", "{d}a", "1", "GET"], 1), (["GET", "{d}a"], 0)]),
    keyspace_case("E$gn", 1, [
        (["SET", "{d}a", "1"], 2), (["SET", "{d}a", "2"], 1), (["RENAME", "{d}a", "{d}b"], 3),
        (["COPY", "{d}b", "{d}c"], 2), (["APPEND", "{d}z", "x"], 2), (["INCR", "{d}i"], 2),
        (["MSET", "{d}z", "1", "{d}y", "2"], 3), (["SETBIT", "{d}s", "0", "0"], 2),
        (["BITOP", "OR", "{d}o", "{d}z"], 2), (["EXPIRE", "{d}o", "0"], 1),
        (["CONFIG", "GET", "notify-keyspace-events"], 0)]),
    # Classes not asked for raise nothing: the next message is the one published.
    keyspace_case("Kx", 1, [(["SET", "{d}a", "1"], 0), (["DEL", "{d}a"], 0),
                            (["PUBLISH", "__keyevent@0__:x", "m"], 1)]),
]


def flush(port):
    """FLUSHALL until it answers +OK (a group may be electing a leader for a moment)."""
    for _ in range(FLUSH_ATTEMPTS_MAX):
        admin = Conn(port)
        reply = admin.run(["FLUSHALL"])
        admin.close()
        if reply == b"+OK\r\n":
            return
        time.sleep(0.2)
    sys.exit(f"FLUSHALL on port {port} kept answering {reply!r}")


def arity_case(port):
    """Every command with one argument too few and one too many, as Redis counts them."""
    c = Conn(port)
    arities = {}
    for name in COMMANDS:
        info, _ = parse(c.run(["COMMAND", "INFO", name]))
        arities[name] = info[0][1]
    c.close()
    case = []
    for name, arity in sorted(arities.items()):
        if name == "quit":
            continue
        if abs(arity) >= 2:
            case.append([name.upper()] + ["{d}x"] * (abs(arity) - 2))
        if arity > 0:
            case.append([name.upper()] + ["{d}x"] * arity)
    return case


def main():
    redis_port, shardkv_port = int(sys.argv[1]), int(sys.argv[2])
    CASES.append([Info(name) for name in COMMANDS])
    CASES.append(arity_case(redis_port))
    failures = 0
    for n, case in enumerate(CASES):
        replies = []
        for port in (redis_port, shardkv_port):
            flush(port)
            c, other = Conn(port), Conn(port)
            replies.append([send(c, cmd, other) for cmd in case])
            c.close()
            other.close()
        for cmd, want, got in zip(case, replies[0], replies[1]):
            want, got = comparable(cmd, want), comparable(cmd, got)
            if want != got:
                failures += 1
                shown = cmd if isinstance(cmd, (bytes, str)) else " ".join(cmd)
                print(f"case {n}: {shown!r}")
                print(f"  redis:   {repr(want)[:SHOWN_CHARS_MAX]}")
                print(f"  shardkv: {repr(got)[:SHOWN_CHARS_MAX]}")
    total = sum(len(c) for c in CASES)
    if failures:
        print(f"{failures} of {total} replies differ from redis-server")
        sys.exit(1)
    print(f"all {total} replies match redis-server byte for byte")


if __name__ == "__main__":
    main()
