#!/usr/bin/env bash
# Active expiry: shardkv beside redis-server in one run, with the same loads.
#
# 1. Drain: `keys` keys (default 200,000) SET with `PX ttl_ms` (5,000) by redis-benchmark
#    (50 clients, -P 16), then DBSIZE polled every 100 ms until it is back where it was
#    before the load. Prints, for each server, how long after the last key was due its
#    DBSIZE got back (neither reads an expired key; this is how long they stay stored), and
#    the CPU time the server spent from the load's end to then: deleting them.
# 2. Quiet walk: each server's CPU time over `idle_s` seconds (20) with no request, empty,
#    then again holding the same number of keys with `EX 3600`: what looking for expired
#    keys costs when none expire (shardkv walks its records; Redis samples its table of keys
#    with a TTL). An idle shardkv cluster has its own cost (heartbeats, ticks).
#
# redis-server runs without persistence, shardkv as a local 3-node cluster (its three nodes'
# CPU summed). CPU time is utime + stime from /proc/<pid>/stat.
#
# usage: bench/expiry.sh [keys (default 200000)] [ttl_ms (default 5000)] [idle_s (default 20)]
# Needs redis-server, redis-benchmark and redis-cli (Debian: redis-server, redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

keys="${1:-200000}"
ttl_ms="${2:-5000}"
idle_s="${3:-20}"
redis_port=6391
require_tools redis-server redis-benchmark redis-cli
start_bench

# CPU seconds the given processes have spent so far.
cpu_s() { # pids...
  local ticks=0 pid
  for pid in "$@"; do ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# Starts a fresh redis-server or shardkv cluster; sets `port` and `procs` (its pids).
start() { # redis|shardkv name
  if [ "$1" = redis ]; then
    mkdir -p "$work/$2"
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/$2" --save "" \
      --appendonly no --daemonize no >"$work/$2.log" 2>&1 &
    pids+=($!)
    wait_for_port "$redis_port" "$work/$2.log"
    port="$redis_port"; procs="$!"
  else
    ./target/release/shardkv local --data-dir "$work/$2" >"$work/$2.log" 2>&1 &
    pids+=($!)
    for p in 7001 7002 7003; do wait_for_port "$p" "$work/$2.log"; done
    port=7001; procs="$(node_pids "$work/$2.log" | tr '\n' ' ')"
  fi
}

stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  pids=()
}

load() { # port extra...
  local port="$1"; shift
  redis-benchmark -p "$port" -n "$keys" -r 1000000000 -c 50 -P 16 -q \
    set "bench:__rand_int__" v "$@" >/dev/null 2>&1
}

drain() { # redis|shardkv
  local base start loaded due stored=0 done_at
  start "$1" "drain-$1"
  base="$(redis-cli -p "$port" DBSIZE)"
  load "$port" px "$ttl_ms"
  loaded="$(now_s)"
  # shellcheck disable=SC2086
  start="$(cpu_s $procs)"
  due="$(awk -v t="$loaded" -v ms="$ttl_ms" 'BEGIN { printf "%.3f", t + ms / 1000 }')"
  for _ in $(seq 1200); do # two minutes at most
    stored="$(redis-cli -p "$port" DBSIZE)"
    [ "$stored" -le "$base" ] && break
    sleep 0.1
  done
  done_at="$(now_s)"
  [ "$stored" -le "$base" ] || { echo "$1: $stored keys stored after two minutes" >&2; exit 1; }
  printf '%-8s %s keys, TTL %s ms: DBSIZE back %s s after the last key was due; ' \
    "$1" "$keys" "$ttl_ms" "$(elapsed "$due" "$done_at")"
  # shellcheck disable=SC2086
  printf '%s CPU s in the %s s from the load'"'"'s end\n' \
    "$(elapsed "$start" "$(cpu_s $procs)")" "$(elapsed "$loaded" "$done_at")"
  stop_all
}

# CPU seconds `procs` spend over `idle_s` with no request.
idle_cpu() {
  local before
  # shellcheck disable=SC2086
  before="$(cpu_s $procs)"
  sleep "$idle_s"
  # shellcheck disable=SC2086
  elapsed "$before" "$(cpu_s $procs)"
}

quiet() { # redis|shardkv
  local empty
  start "$1" "quiet-$1"
  sleep 2
  empty="$(idle_cpu)"
  load "$port" ex 3600
  sleep 2
  printf '%-8s idle %s s: %s CPU s empty, %s CPU s holding %s keys with an hour left\n' \
    "$1" "$idle_s" "$empty" "$(idle_cpu)" "$(redis-cli -p "$port" DBSIZE)"
  stop_all
}

for server in redis shardkv; do drain "$server"; done
for server in redis shardkv; do quiet "$server"; done
