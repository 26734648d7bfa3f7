#!/usr/bin/env bash
# What keyspace notifications cost a write, beside what they cost redis-server, in one run.
#
# redis-server runs with `appendonly yes` and `appendfsync always`, shardkv as a local
# 3-node cluster, its leaders moved to node 1 by a warm-up (`warm_up`), the SETs through
# node 1. Each runs the same `redis-benchmark -t set` with notifications off, then with
# `notify-keyspace-events KEA` (set by CONFIG SET; on every node of shardkv, each of which
# raises the events of the groups it holds a replica of) and one subscriber of
# `__key*__:*` on redis-server and on each shardkv node. Prints SET/s and the CPU time per
# SET (every thread; the three nodes summed) off and on, and the share of SET/s that
# notifications keep, for both. Fails if shardkv's nodes published fewer messages than the
# SETs raise (a SET raises `set`, 2 messages with K and E, on each node) or handed fewer to
# their subscribers (`shardkv_pubsub_keyspace_total`, `shardkv_pubsub_delivered_total`). Each
# figure is the median of ROUNDS runs (default 3), the runs interleaved (redis off, redis
# on, shardkv off, shardkv on, ...).
#
# usage: [ROUNDS=n] bench/keyspace_compare.sh [SETs per run (100000)] [clients (50)]
# Needs redis-server, redis-benchmark and redis-cli (Debian: redis-server, redis-tools) and
# Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

requests="${1:-100000}"
clients="${2:-50}"
rounds="${ROUNDS:-3}"
require_counts "$requests" "$clients" "$rounds"
require_tools redis-server redis-benchmark redis-cli python3
redis_port=6392
# Node n of the shardkv cluster answers RESP on base + n - 1, metrics on metrics_base + n - 1.
base=7081
metrics_base=9181
# Subscribers stop by themselves after this, whatever happens to the script.
subscriber_seconds=3600
start_bench

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" \
  --auto-aof-rewrite-percentage 0 --appendonly yes --appendfsync always --daemonize no \
  >"$work/redis.log" 2>&1 &
pids+=($!)
./target/release/shardkv local --data-dir "$work/shardkv" --base-resp-port "$base" \
  --base-peer-port $((base + 100)) --base-metrics-port "$metrics_base" \
  >"$work/shardkv.log" 2>&1 &
pids+=($!)
wait_for_port "$redis_port" "$work/redis.log"
nodes=("$base" $((base + 1)) $((base + 2)))
for port in "${nodes[@]}"; do wait_for_port "$port" "$work/shardkv.log"; done
warm_up "$base"
echo "groups led per node after the warm-up: $(leaders_per_node $((base - 1)))"
redis_procs="${pids[0]}"
shardkv_procs="$(node_pids "$work/shardkv.log" | tr '\n' ' ')"

for port in "$redis_port" "${nodes[@]}"; do
  timeout "$subscriber_seconds" redis-cli -p "$port" psubscribe '__key*__:*' \
    >/dev/null 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do
  all=1
  for port in "$redis_port" "${nodes[@]}"; do
    [ "$(timeout 5 redis-cli -p "$port" pubsub numpat)" = 1 ] || all=0
  done
  [ "$all" = 1 ] && break
  sleep 0.1
done
[ "$all" = 1 ] || { echo "the subscribers did not all subscribe" >&2; exit 1; }

# "published delivered": keyspace messages shardkv's nodes published and messages they
# handed to subscribers so far, summed.
counts() {
  metric_totals "shardkv_pubsub_keyspace_total shardkv_pubsub_delivered_total" \
    "$metrics_base" $((metrics_base + 1)) $((metrics_base + 2)) | column_sums
}

notify() { # flags ports...
  local flags="$1" port; shift
  for port in "$@"; do
    [ "$(redis-cli -p "$port" CONFIG SET notify-keyspace-events "$flags")" = OK ] ||
      { echo "CONFIG SET notify-keyspace-events on port $port failed" >&2; exit 1; }
  done
}

# Prints "SETs/s CPU-µs/SET" ("-" for a figure redis-benchmark did not give).
run() { # port "pids"
  benchmark_cpu "$requests" "$2" -p "$1" -t set -c "$clients" -r 100000
}

# Waits (up to 10 s) until shardkv's nodes published and handed out as many messages as
# asked since the start: followers apply a run's last SETs a moment after node 1 answered
# them, and switching the flags off before would leave their events out.
settle() { # messages
  for _ in $(seq 1 100); do
    read -r published delivered <<<"$(counts)"
    [ $((published - published_before)) -ge "$1" ] &&
      [ $((delivered - delivered_before)) -ge "$1" ] && return 0
    sleep 0.1
  done
}

declare -A rps cpu
read -r published_before delivered_before <<<"$(counts)"
# Every SET raises `set` on each node: 2 messages (K and E), each for one subscriber.
expected=0
for _ in $(seq 1 "$rounds"); do
  for server in redis shardkv; do
    if [ "$server" = redis ]; then ports=("$redis_port") procs="$redis_procs"
    else ports=("${nodes[@]}") procs="$shardkv_procs"; fi
    for mode in off on; do
      [ "$mode" = on ] && notify KEA "${ports[@]}"
      read -r r c <<<"$(run "${ports[0]}" "$procs")"
      if [ "$mode" = on ] && [ "$server" = shardkv ]; then
        expected=$((expected + requests * 2 * 3))
        settle "$expected"
      fi
      [ "$mode" = on ] && notify "" "${ports[@]}"
      rps[$server,$mode]+="$r " cpu[$server,$mode]+="$c "
    done
  done
done
read -r published delivered <<<"$(counts)"
published=$((published - published_before)) delivered=$((delivered - delivered_before))

of() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median_of_lines; }
echo "SET -c $clients, $requests per run, median of $rounds runs; notifications KEA, one"
echo "subscriber of __key*__:* on redis-server and on each shardkv node"
printf '%-8s %12s %12s %7s %16s %16s\n' "" "off (/s)" "on (/s)" "kept" "CPU/SET off (µs)" \
  "CPU/SET on (µs)"
for server in redis shardkv; do
  off="$(of "${rps[$server,off]}")" on="$(of "${rps[$server,on]}")"
  kept="$(awk -v a="$off" -v b="$on" \
    'BEGIN { if (a + 0 > 0) printf "%.2f", b / a; else print "-" }')"
  printf '%-8s %12s %12s %7s %16s %16s\n' "$server" "$off" "$on" "$kept" \
    "$(of "${cpu[$server,off]}")" "$(of "${cpu[$server,on]}")"
done
echo "(kept = SET/s with notifications on / off; shardkv's CPU is its three nodes')"
echo "shardkv's keyspace messages: $published published and $delivered handed to subscribers, \
of $expected"
[ "$published" -ge "$expected" ] && [ "$delivered" -ge "$expected" ] ||
  { echo "shardkv published or delivered fewer keyspace messages than its SETs raise" >&2
    exit 1; }
