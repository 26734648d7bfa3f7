"""redis-py against a live local shardkv cluster: the plain client (RESP2 and RESP3) and the
cluster client, each checked for what it reads back."""
import time

import redis
from redis.cluster import RedisCluster


def check(got, want, what):
    if got != want:
        raise SystemExit(f"{what}: expected {want!r}, got {got!r}")


def plain(protocol):
    r = redis.Redis(port=7002, protocol=protocol, socket_timeout=10)
    check(r.ping(), True, "PING")
    check(r.set(f"py:{protocol}:k", "v"), True, "SET")
    check(r.get(f"py:{protocol}:k"), b"v", "GET")
    check(r.incrby(f"py:{protocol}:n", 5), 5, "INCRBY")
    check(r.set(f"py:{protocol}:t", "x", ex=100), True, "SET EX")
    ttl = r.ttl(f"py:{protocol}:t")
    if not 0 < ttl <= 100:
        raise SystemExit(f"TTL out of range: {ttl}")
    check(r.delete(f"py:{protocol}:k", f"py:{protocol}:n"), 2, "DEL")
    check(r.exists(f"py:{protocol}:k"), 0, "EXISTS")
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"py:{protocol}:p:{i}", i)
    check(all(pipe.execute()), True, "pipelined SET")
    check(r.get(f"py:{protocol}:p:99"), b"99", "GET after pipeline")
    # redis-py's default pipeline is a transaction: MULTI, the commands, EXEC.
    tx = r.pipeline()
    tx.incr(f"{{py{protocol}}}:hits").expire(f"{{py{protocol}}}:hits", 60)
    check(tx.execute(), [1, True], "MULTI/EXEC of writes")
    tx = r.pipeline()
    tx.get(f"{{py{protocol}}}:hits").ttl(f"{{py{protocol}}}:hits")
    check(tx.execute(), [b"1", 60], "MULTI/EXEC of reads")
    tx = r.pipeline()
    hits = f"{{py{protocol}}}:hits"
    tx.incr(hits).get(hits).getset(hits, 0)
    check(tx.execute(), [2, b"2", b"2"], "MULTI/EXEC of reads among writes")
    # Optimistic locking as redis-py does it: WATCH, read, MULTI/EXEC; a write by another
    # client between them makes EXEC answer nil (WatchError), and `transaction` retries.
    balance, other = f"{{py{protocol}}}:balance", redis.Redis(port=7003, protocol=protocol)
    r.set(balance, 10)
    with r.pipeline() as tx:
        tx.watch(balance)
        current = int(tx.get(balance))
        other.incrby(balance, 5)
        tx.multi()
        tx.set(balance, current - 3)
        try:
            tx.execute()
            raise SystemExit("EXEC after a watched key changed must fail")
        except redis.WatchError:
            pass
    check(r.get(balance), b"15", "a watched transaction applied nothing")
    tries = []

    def spend(pipe):
        current = int(pipe.get(balance))
        if not tries:
            other.incrby(balance, 1)
        tries.append(current)
        pipe.multi()
        pipe.set(balance, current - 3)

    r.transaction(spend, balance)
    check((tries, r.get(balance)), ([15, 16], b"13"), "redis-py's transaction retried once")
    other.close()
    # Bits, fields and sequences, as redis-py builds and parses them.
    bits, seq = f"{{py{protocol}}}:bits", f"{{py{protocol}}}:seq"
    r.delete(bits, seq, f"{seq}:3")
    check(r.setbit(bits, 7, 1), 0, "SETBIT")
    check((r.getbit(bits, 7), r.bitcount(bits), r.bitpos(bits, 1)), (1, 1, 7), "bit reads")
    field = r.bitfield(bits).set("u8", 8, 250).incrby("u8", 8, 10, overflow="SAT")
    check(field.get("i4", "#1").execute(), [0, 255, 1], "BITFIELD")
    check(r.bitfield_ro(bits, "u8", 8), [255], "BITFIELD_RO")
    check(r.bitop("NOT", seq, bits), 2, "BITOP")
    check(r.get(seq), b"\xfe\x00", "BITOP's result")
    r.set(seq, "ohmytext")
    r.set(f"{seq}:2", "mynewtext")
    check(r.lcs(seq, f"{seq}:2"), b"mytext", "LCS")
    ranges = r.lcs(seq, f"{seq}:2", idx=True, minmatchlen=4, withmatchlen=True)
    want = [b"matches", [[[4, 7], [5, 8], 4]], b"len", 6]
    if protocol == 3:
        want = {b"matches": [[[4, 7], [5, 8], 4]], b"len": 6}
    check(ranges, want, "LCS IDX")
    check((r.copy(seq, f"{seq}:3"), r.touch(seq, f"{seq}:3", f"{seq}:4")), (True, 2), "COPY")
    r.set(seq, "x" * 500)
    payload = r.dump(seq)
    check(r.restore(f"{seq}:3", 60000, payload, replace=True), b"OK", "RESTORE")
    check((r.get(f"{seq}:3"), 0 < r.pttl(f"{seq}:3") <= 60000), (b"x" * 500, True), "RESTORE's")
    # WAIT: both other replicas of the group hold this connection's writes.
    check(r.wait(2, 5000), 2, "WAIT")
    try:
        r.execute_command("GET")
        raise SystemExit("GET without a key must fail")
    except redis.ResponseError as e:
        check(str(e), "wrong number of arguments for 'get' command", "arity error")
    # INFO as redis-py parses it: this client's commands are among the node's counts.
    info = r.info("all")
    check(info["cmdstat_get"]["calls"] >= 2, True, "INFO cmdstat_get calls")
    check(info["cmdstat_get"]["rejected_calls"] >= 1, True, "INFO cmdstat_get rejected_calls")
    check(info["errorstat_ERR"]["count"] >= 1, True, "INFO errorstat_ERR")
    check(info["total_commands_processed"] >= 100, True, "INFO total_commands_processed")
    check(info["used_memory"] > 0 and info["loading"] == 0, True, "INFO memory and persistence")
    # The key set with EX 100 above is among the keys with a deadline, each with time left.
    db0 = info["db0"]
    check(db0["keys"] >= 100 and db0["expires"] >= 1, True, f"INFO keyspace {db0}")
    check(db0["avg_ttl"] > 0, True, f"INFO keyspace avg_ttl {db0}")


def cluster():
    rc = RedisCluster(host="127.0.0.1", port=7001, socket_timeout=10)
    for i in range(200):
        rc.set(f"pyc:{i}", i)
    for i in range(0, 200, 7):
        check(rc.get(f"pyc:{i}"), str(i).encode(), f"cluster GET pyc:{i}")
    check(len(rc.get_primaries()) >= 1, True, "cluster primaries")
    check(rc.mget_nonatomic([f"pyc:{i}" for i in range(5)]), [b"0", b"1", b"2", b"3", b"4"], "MGET")


def message(pubsub, what):
    """The next message of `pubsub` (confirmations skipped), within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if got is not None:
            return got
    raise SystemExit(f"{what}: no message within 10 s")


def pubsub(protocol):
    """Pub/Sub across nodes: subscribers on nodes 2 and 3, messages published on node 1."""
    listeners = [redis.Redis(port=7002, protocol=protocol), redis.Redis(port=7003,
                                                                         protocol=protocol)]
    channel, pattern = listeners[0].pubsub(), listeners[1].pubsub()
    channel.subscribe("py:news")
    pattern.psubscribe("py:*")
    publisher = redis.Redis(port=7001, protocol=protocol)
    deadline = time.monotonic() + 10
    while channel.get_message(timeout=0.1) is None and time.monotonic() < deadline:
        pass  # the subscribe confirmation
    while pattern.get_message(timeout=0.1) is None and time.monotonic() < deadline:
        pass
    check(publisher.publish("py:news", "hello"), 0, "PUBLISH's receivers on node 1")
    got = message(channel, "SUBSCRIBE on node 2")
    check((got["type"], got["channel"], got["data"]), ("message", b"py:news", b"hello"),
          "message")
    got = message(pattern, "PSUBSCRIBE on node 3")
    check((got["type"], got["pattern"], got["data"]), ("pmessage", b"py:*", b"hello"),
          "pmessage")
    check(listeners[0].pubsub_numsub("py:news"), [(b"py:news", 1)], "PUBSUB NUMSUB")
    check(listeners[1].pubsub_numpat(), 1, "PUBSUB NUMPAT")
    channel.close()
    pattern.close()


def cluster_pubsub():
    """A cluster-aware client's shard channel: SSUBSCRIBE and SPUBLISH routed by slot."""
    rc = RedisCluster(host="127.0.0.1", port=7001, socket_timeout=10)
    p = rc.pubsub()
    p.ssubscribe("py:shard")
    deadline = time.monotonic() + 10
    while p.get_sharded_message(timeout=0.1) is None and time.monotonic() < deadline:
        pass  # the confirmation
    rc.spublish("py:shard", "sharded")
    deadline = time.monotonic() + 10
    got = None
    while got is None and time.monotonic() < deadline:
        got = p.get_sharded_message(ignore_subscribe_messages=True, timeout=1)
    check(got and (got["type"], got["data"]), ("smessage", b"sharded"), "SSUBSCRIBE")
    p.close()


def keyspace_events():
    """Keyspace notifications as redis-py's users turn them on: config_set on node 2, a
    pattern subscriber there, a write through node 1 (every node applies every group's
    writes in the local cluster, so node 2 raises its events)."""
    node2 = redis.Redis(port=7002)
    check(node2.config_set("notify-keyspace-events", "KEA"), True, "CONFIG SET")
    check(node2.config_get("notify-keyspace-events"), {"notify-keyspace-events": "AKE"},
          "CONFIG GET")
    p = node2.pubsub()
    p.psubscribe("__keyspace@0__:py:ks:*")
    deadline = time.monotonic() + 10
    while p.get_message(timeout=0.1) is None and time.monotonic() < deadline:
        pass  # the confirmation
    writer = redis.Redis(port=7001)
    writer.set("py:ks:1", "v", ex=100)
    writer.delete("py:ks:1")
    got = [message(p, "keyspace event")["data"] for _ in range(3)]
    check(got, [b"set", b"expire", b"del"], "keyspace events of SET EX and DEL")
    node2.config_set("notify-keyspace-events", "")
    p.close()


plain(2)
plain(3)
cluster()
pubsub(2)
pubsub(3)
cluster_pubsub()
keyspace_events()
print("redis-py: ok")
