#!/usr/bin/env bash
# shardkv beside redis-server in one run, with the same redis-benchmark arguments.
#
# redis-server runs with `appendonly yes` and `appendfsync always` (every write fsynced
# before the reply, one fsync per event-loop round), shardkv as a local 3-node cluster
# (every write committed on a majority of three, each fsyncing). Prints requests per
# second of both and the ratio shardkv / redis for SET and GET, with -P 1 and -P 16. The
# plain rows go through node 1, after a warm-up that lets the leaders follow that traffic
# there (src/node/workload.rs); the cluster-aware column uses a cluster that keeps them
# where the layout places them.
#
# redis-benchmark --cluster runs threads, which notice the last answer on a 250 ms timer: its
# elapsed time comes out as a multiple of 250 ms, up to about 300 ms more than the work took
# (20,000, 30,000 and 40,000 GETs at 100k/s all report 0.5 s). Its runs therefore take as
# many requests as the cluster served in `cluster_run_seconds` (5 s; at least the requests
# asked for) at its best rate so far in the row, first measured by an unrecorded run
# reported as at least 1 s long: the rounding then costs the figure at most about 8%
# (first round) or 6% (later ones).
#
# A second peer, redis-repl, is what Redis itself does with three copies on the same
# machine: a redis-server primary with two replicas, all three with `appendfsync always`,
# the benchmark against the primary. Redis replicates asynchronously: the primary answers
# once its own fsync is done, before any replica has the write, so this peer does less
# than a majority of three fsyncing before the reply. shardkv's ratio to it (`x repl`)
# says how near it comes to Redis's own work for three copies on these cores.
#
# Each figure is the median of ROUNDS runs (default 3), the runs of one row interleaved
# (redis, shardkv, redis, ...), so that a slow moment of a shared machine lands on both.
# A second table gives the CPU time each server spent per request over the same runs
# (every thread of redis-server, or of the three shardkv nodes summed, from
# /proc/<pid>/task/*/schedstat): a measure of work done that moves much less than
# requests per second when the machine is shared, and the one to compare changes by.
#
# usage: [ROUNDS=n] bench/redis_compare.sh [requests (default 100000)] [clients (default 50)]
# Needs redis-server and redis-benchmark 7 or later (Debian 12: redis-server, redis-tools)
# and Python 3.11 or later (tomllib).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

requests="${1:-100000}"
clients="${2:-50}"
rounds="${ROUNDS:-3}"
require_counts "$requests" "$clients" "$rounds"
redis_port=6390
# The replicated peer: primary on repl_port, replicas on the two ports after it.
repl_port=6391
require_tools redis-server redis-benchmark redis-cli python3
python3 -c 'import tomllib' 2>/dev/null || { echo "Python 3.11 or later is required" >&2; exit 1; }
# (The help is read whole first: `grep -q` leaving early would fail the pipe under pipefail.)
cli_help="$(redis-cli --help 2>&1 || true)"
grep -q -- '--json' <<<"$cli_help" || { echo "redis-cli 7 or later is required" >&2; exit 1; }
start_bench

mkdir -p "$work/redis"
# No automatic AOF rewrite: it runs in a child process, which the CPU table does not count.
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save "" \
  --auto-aof-rewrite-percentage 0 --appendonly yes --appendfsync always --daemonize no \
  >"$work/redis.log" 2>&1 &
pids+=($!)
for port in "$repl_port" $((repl_port + 1)) $((repl_port + 2)); do
  mkdir -p "$work/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$work/redis-$port" --save "" \
    --auto-aof-rewrite-percentage 0 --appendonly yes --appendfsync always --daemonize no \
    >"$work/redis-$port.log" 2>&1 &
  pids+=($!)
done
./target/release/shardkv local --data-dir "$work/shardkv" >"$work/shardkv.log" 2>&1 &
pids+=($!)
# The same cluster with lease reads (`[reads] mode = "lease"`), for the GET rows.
./target/release/shardkv local --lease-reads --data-dir "$work/shardkv-lease" \
  --base-resp-port 7011 --base-peer-port 7111 --base-metrics-port 9111 \
  >"$work/shardkv-lease.log" 2>&1 &
pids+=($!)
# The same cluster with leaders kept where the layout places them (no following of the
# workload), for the cluster-aware rows: redis-benchmark --cluster refuses a cluster whose
# leaders all sit on one node, as the plain rows' traffic would make them.
./target/release/shardkv local --follow-workload-ms 0 --data-dir "$work/shardkv-still" \
  --base-resp-port 7021 --base-peer-port 7121 --base-metrics-port 9121 \
  >"$work/shardkv-still.log" 2>&1 &
pids+=($!)

wait_for_port "$redis_port" "$work/redis.log"
for port in "$repl_port" $((repl_port + 1)) $((repl_port + 2)); do
  wait_for_port "$port" "$work/redis-$port.log"
done
for port in $((repl_port + 1)) $((repl_port + 2)); do
  redis-cli -p "$port" REPLICAOF 127.0.0.1 "$repl_port" >/dev/null
done
repl_online() { # both replicas in sync with the primary
  for _ in $(seq 1 150); do
    [ "$(redis-cli -p "$repl_port" INFO replication | grep -c 'state=online')" = 2 ] && return 0
    sleep 0.2
  done
  echo "the Redis replicas did not come online" >&2
  exit 1
}
repl_online
for port in 7001 7002 7003; do wait_for_port "$port" "$work/shardkv.log"; done
for port in 7011 7012 7013; do wait_for_port "$port" "$work/shardkv-lease.log"; done
for port in 7021 7022 7023; do wait_for_port "$port" "$work/shardkv-still.log"; done
# Wait for the layout's leader placement: each group led (health "online") by the node its
# layout lists first, as a new cluster settles (the default layout, shards/local-3x8.toml).
leaders_placed() { # base port (node n answers on base + n)
  for _ in $(seq 1 150); do
    redis-cli -p "$(($1 + 1))" --json CLUSTER SHARDS 2>/dev/null | python3 -c '
import json, sys, tomllib
base = int(sys.argv[1])
with open("shards/local-3x8.toml", "rb") as f:
    want = {g["slots"][0]: base + g["replicas"][0] for g in tomllib.load(f)["group"]}
shards = json.load(sys.stdin)
masters = {s["slots"][0]: [n for n in s["nodes"] if n["role"] == "master"] for s in shards}
ok = len(masters) == len(want) and all(
    m and m[0]["health"] == "online" and m[0]["port"] == want.get(first)
    for first, m in masters.items())
sys.exit(0 if ok else 1)' "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "note: leaders of the cluster on port $(($1 + 1)) are not where the layout places them" >&2
}
leaders_placed 7000; leaders_placed 7010; leaders_placed 7020
# Warm up the plain rows' clusters through node 1 (`warm_up`): their leaders move there.
for base in 7000 7010; do
  warm_up "$((base + 1))"
  echo "leaders of the cluster on port $((base + 1)) after the warm-up: $(leaders_per_node "$base")"
done

# The server processes whose CPU time a row counts.
redis_procs="${pids[0]}"
repl_procs="${pids[1]} ${pids[2]} ${pids[3]}"
shardkv_procs="$(node_pids "$work/shardkv.log" | tr '\n' ' ')"
lease_procs="$(node_pids "$work/shardkv-lease.log" | tr '\n' ' ')"
still_procs="$(node_pids "$work/shardkv-still.log" | tr '\n' ' ')"

# Prints "requests/s CPU-µs/request" ("-" for a figure redis-benchmark did not give).
run() { # requests port test pipeline "pids" extra...
  local n="$1" port="$2" test="$3" pipe="$4" procs="$5"; shift 5
  benchmark_cpu "$n" "$procs" -p "$port" -t "$test" -c "$clients" -P "$pipe" -r 100000 "$@"
}

cluster_run_seconds=5
cluster_requests() { # the cluster's best requests/s so far in the row ("-": none)
  awk -v r="$1" -v n="$requests" -v s="$cluster_run_seconds" \
    'BEGIN { c = (r == "-" || r == "") ? 0 : int(r * s); print (c > n) ? c : n }'
}

faster() { # requests/s a, b ("-": none): the higher
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || a == "") print b; else if (b == "-" || \
    b == "") print a; else print (a + 0 > b + 0) ? a : b }'
}

calibrate() { # test pipeline: the cluster's requests/s in an unrecorded run of at least 1 s
  local n="$requests" x _y
  for _ in 1 2 3 4 5 6; do
    read -r x _y <<<"$(run "$n" 7021 "$1" "$2" "$still_procs" --cluster)"
    [ "$x" != - ] || break
    awk -v n="$n" -v r="$x" 'BEGIN { exit !(n / r >= 1) }' && break
    n=$((n * 4))
  done
  echo "$x"
}

median() { # values... ("-" if any is "-")
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } $1 == "-" { missing = 1 }
    END { if (missing) { print "-"; exit }
          print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { # numerator denominator default
  awk -v s="$1" -v r="$2" -v d="$3" \
    'BEGIN { if (r > 0 && s != "-") printf "%.2f", s / r; else print d }'
}

header() { # name of the ratio to redis-server
  printf '%-8s %-4s %13s %13s %13s %13s %13s %7s %7s %7s\n' test P redis-always redis-repl \
    shardkv shardkv-cluster shardkv-lease "$1" lease "x repl"
}
header ratio
cpu_rows=()
for pipe in 1 16; do
  for test in set get; do
    rs=() ps=() ss=() cs=() ls=() rc=() pc=() sc=() cc=() lc=()
    best="$(calibrate "$test" "$pipe")"
    for _ in $(seq 1 "$rounds"); do
      read -r x y <<<"$(run "$requests" "$redis_port" "$test" "$pipe" "$redis_procs")"
      rs+=("$x") rc+=("$y")
      read -r x y <<<"$(run "$requests" "$repl_port" "$test" "$pipe" "$repl_procs")"
      ps+=("$x") pc+=("$y")
      read -r x y <<<"$(run "$requests" 7001 "$test" "$pipe" "$shardkv_procs")"
      ss+=("$x") sc+=("$y")
      read -r x y <<<"$(run "$(cluster_requests "$best")" 7021 "$test" "$pipe" \
        "$still_procs" --cluster)"
      cs+=("$x") cc+=("$y") best="$(faster "$best" "$x")"
      if [ "$test" = get ]; then
        read -r x y <<<"$(run "$requests" 7011 "$test" "$pipe" "$lease_procs")"
        ls+=("$x") lc+=("$y")
      fi
    done
    r="$(median "${rs[@]}")" p="$(median "${ps[@]}")" s="$(median "${ss[@]}")"
    c="$(median "${cs[@]}")" l=- lu=-
    [ "$test" = get ] && l="$(median "${ls[@]}")" lu="$(median "${lc[@]}")"
    printf '%-8s %-4s %13s %13s %13s %13s %13s %7s %7s %7s\n' "$test" "$pipe" "$r" "$p" "$s" \
      "$c" "$l" "$(ratio "$s" "$r" n/a)" "$(ratio "$l" "$r" -)" "$(ratio "$s" "$p" n/a)"
    ru="$(median "${rc[@]}")" pu="$(median "${pc[@]}")" su="$(median "${sc[@]}")"
    cpu_rows+=("$(printf '%-8s %-4s %13s %13s %13s %13s %13s %7s %7s %7s' "$test" "$pipe" \
      "$ru" "$pu" "$su" "$(median "${cc[@]}")" "$lu" "$(ratio "$su" "$ru" n/a)" \
      "$(ratio "$lu" "$ru" -)" "$(ratio "$su" "$pu" n/a)")")
  done
done
echo "(ratio = shardkv through one node, as plain clients use it / redis-server;"
echo " x repl = the same / redis-repl, a primary and two replicas all fsyncing every write,"
echo " replicated asynchronously: the primary answers before the replicas have the write;"
echo " lease = the same with lease reads, [reads] mode = \"lease\";"
echo " shardkv-cluster = redis-benchmark --cluster on a third cluster whose leaders stay as"
echo " the layout places them, --follow-workload-ms 0: redis-benchmark refuses a cluster whose"
echo " leaders all followed the plain rows' traffic to one node; its runs last about"
echo " ${cluster_run_seconds} s, as its elapsed time comes out as a multiple of 250 ms)"
echo
echo "CPU time per request, µs (redis-server's threads; the three shardkv nodes' summed):"
header "x redis"
printf '%s\n' "${cpu_rows[@]}"
echo "(x redis, lease and x repl = shardkv's CPU per request / the peer's: how many times the"
echo " work; redis-repl's is its three processes' summed)"
