#!/usr/bin/env bash
# PUBLISH beside redis-server in one run, with the same redis-benchmark arguments and the
# same number of subscribers listening.
#
# redis-server has every subscriber on its one process. shardkv runs as a local 3-node
# cluster: the publishers go through node 1 and the subscribers listen on nodes 2 and 3
# (alternately), so every message crosses the node-level transport to both, as a message
# published on one node of a cluster reaches the subscribers of the others. Prints
# PUBLISH/s of both and the ratio shardkv / redis, each server's CPU time per PUBLISH
# (every thread; the three nodes summed), and how many messages shardkv handed to its
# subscribers against how many it should have (`shardkv_pubsub_delivered_total` of nodes 2
# and 3), and fails if they missed any: delivery is at most once, as in Redis, and a relay
# the transport could not queue is dropped and counted (`shardkv_transport_dropped_total`).
# Each figure is the median of ROUNDS runs (default 3), the runs interleaved (redis,
# shardkv, redis, ...).
#
# usage: [ROUNDS=n] bench/pubsub_compare.sh [publishes (100000)] [publishers (50)]
#   [subscribers (4)] [message bytes (64)]
# Needs redis-server, redis-benchmark and redis-cli (Debian: redis-server, redis-tools) and
# Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

requests="${1:-100000}"
clients="${2:-50}"
subscribers="${3:-4}"
size="${4:-64}"
rounds="${ROUNDS:-3}"
require_counts "$requests" "$clients" "$subscribers" "$size" "$rounds"
require_tools redis-server redis-benchmark redis-cli python3
redis_port=6391
# Node n of the shardkv cluster answers RESP on base + n - 1, metrics on metrics_base + n - 1.
base=7061
metrics_base=9161
# Subscribers stop by themselves after this, whatever happens to the script.
subscriber_seconds=3600
start_bench

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly no \
  --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
./target/release/shardkv local --data-dir "$work/shardkv" --base-resp-port "$base" \
  --base-peer-port $((base + 100)) --base-metrics-port "$metrics_base" \
  >"$work/shardkv.log" 2>&1 &
pids+=($!)
wait_for_port "$redis_port" "$work/redis.log"
for node in 1 2 3; do wait_for_port $((base + node - 1)) "$work/shardkv.log"; done
redis_procs="${pids[0]}"
shardkv_procs="$(node_pids "$work/shardkv.log" | tr '\n' ' ')"

for i in $(seq 1 "$subscribers"); do
  timeout "$subscriber_seconds" redis-cli -p "$redis_port" subscribe bench >/dev/null 2>&1 &
  pids+=($!)
  timeout "$subscriber_seconds" redis-cli -p $((base + 1 + i % 2)) subscribe bench \
    >/dev/null 2>&1 &
  pids+=($!)
done
# Subscribers of `bench` on the servers at the given ports, summed.
subscribed() { # ports...
  local port total=0 n
  for port in "$@"; do
    n="$(timeout 5 redis-cli -p "$port" pubsub numsub bench | sed -n 2p)"
    total=$((total + ${n:-0}))
  done
  echo "$total"
}
for _ in $(seq 1 100); do
  [ "$(subscribed "$redis_port")" -eq "$subscribers" ] &&
    [ "$(subscribed $((base + 1)) $((base + 2)))" -eq "$subscribers" ] && break
  sleep 0.1
done
[ "$(subscribed "$redis_port")" -eq "$subscribers" ] &&
  [ "$(subscribed $((base + 1)) $((base + 2)))" -eq "$subscribers" ] ||
  { echo "the subscribers did not all subscribe" >&2; exit 1; }

# Messages nodes 2 and 3 handed to their subscribers so far.
delivered() {
  metric_totals shardkv_pubsub_delivered_total $((metrics_base + 1)) $((metrics_base + 2)) \
    | column_sums
}

message="$(head -c "$size" /dev/zero | tr '\0' x)"
# Prints "publishes/s CPU-µs/publish" ("-" for a figure redis-benchmark did not give).
run() { # port "pids"
  benchmark_cpu "$requests" "$2" -p "$1" -c "$clients" publish bench "$message"
}

redis_rps=() redis_cpu=() shardkv_rps=() shardkv_cpu=()
expected=0
got_before="$(delivered)"
for _ in $(seq 1 "$rounds"); do
  read -r rps cpu <<<"$(run "$redis_port" "$redis_procs")"
  redis_rps+=("$rps") redis_cpu+=("$cpu")
  read -r rps cpu <<<"$(run "$base" "$shardkv_procs")"
  shardkv_rps+=("$rps") shardkv_cpu+=("$cpu")
  expected=$((expected + requests * subscribers))
done
# Relayed messages may still be on their way for a moment.
for _ in $(seq 1 50); do
  [ $(($(delivered) - got_before)) -ge "$expected" ] && break
  sleep 0.1
done
handed=$(($(delivered) - got_before))

r="$(printf '%s\n' "${redis_rps[@]}" | median_of_lines)"
s="$(printf '%s\n' "${shardkv_rps[@]}" | median_of_lines)"
rc="$(printf '%s\n' "${redis_cpu[@]}" | median_of_lines)"
sc="$(printf '%s\n' "${shardkv_cpu[@]}" | median_of_lines)"
ratio="$(awk -v r="$r" -v s="$s" 'BEGIN { if (r + 0 > 0) printf "%.2f", s / r; else print "-" }')"
echo "PUBLISH of $size bytes, -c $clients, $subscribers subscribers, median of $rounds runs"
printf '%-10s %14s %14s %8s\n' "" "redis (/s)" "shardkv (/s)" "ratio"
printf '%-10s %14s %14s %8s\n' "PUBLISH" "$r" "$s" "$ratio"
echo "CPU per PUBLISH (µs): redis $rc, shardkv (three nodes) $sc"
echo "messages handed to shardkv's subscribers: $handed of $expected"
[ "$handed" -ge "$expected" ] || { echo "shardkv's subscribers missed messages" >&2; exit 1; }
