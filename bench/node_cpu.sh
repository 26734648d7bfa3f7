#!/usr/bin/env bash
# Where a request's CPU time goes, per node: a local 3-node cluster (fresh, on ports of its
# own), a warm-up of SETs through node 1 long enough for the leaders to follow that traffic
# there (src/node/workload.rs), then one redis-benchmark run through node 1. Prints the
# requests per second and, for each node, the CPU time it spent per request (every thread,
# from /proc/<pid>/task/*/schedstat) and its context switches per request.
#
# With PERF_NODE=n (1..3) and `perf` installed, that node is also sampled during the run
# (perf record, DWARF call graphs) and the samples are split by what they were doing, in
# µs per request: the parts of a request's path a change is likely to move. A sample counts
# in every part its stack passes through, so the parts overlap (indented ones are within
# the one above).
#
# usage: [LEASE=1] [PERF_NODE=n] bench/node_cpu.sh [set|get] [requests (200000)] [clients (50)]
#   [pipeline (1)]
# Needs redis-benchmark and redis-cli (Debian: redis-tools); perf only with PERF_NODE.
set -euo pipefail
cd "$(dirname "$0")/.."

test="${1:-set}"
requests="${2:-200000}"
clients="${3:-50}"
pipeline="${4:-1}"
case "$test" in set | get) ;; *) echo "test must be set or get" >&2; exit 2 ;; esac
perf_node="${PERF_NODE:-}"
if [ -n "$perf_node" ]; then
  case "$perf_node" in 1 | 2 | 3) ;; *) echo "PERF_NODE must be 1, 2 or 3" >&2; exit 2 ;; esac
  command -v perf >/dev/null || { echo "PERF_NODE needs perf (Debian: linux-perf)" >&2; exit 1; }
fi
for tool in redis-benchmark redis-cli python3 pgrep; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
cargo build --release --quiet

base_resp=7031
work="$(mktemp -d)"
cluster=""
cleanup() {
  [ -n "$cluster" ] && kill -TERM "$cluster" 2>/dev/null && wait "$cluster" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

lease=()
[ "${LEASE:-0}" = 1 ] && lease=(--lease-reads)
./target/release/shardkv local "${lease[@]}" --data-dir "$work/data" \
  --base-resp-port "$base_resp" --base-peer-port 7131 --base-metrics-port 9131 \
  >"$work/cluster.log" 2>&1 &
cluster=$!
for port in "$base_resp" $((base_resp + 1)) $((base_resp + 2)); do
  for _ in $(seq 1 150); do
    [ "$(timeout 2 redis-cli -p "$port" PING 2>/dev/null)" = PONG ] && break
    sleep 0.2
  done
  [ "$(timeout 2 redis-cli -p "$port" PING 2>/dev/null)" = PONG ] || {
    echo "port $port did not answer" >&2; tail -30 "$work/cluster.log" >&2; exit 1; }
done
# Two windows of timeouts.follow_workload_ms (5 s) and more: the leaders move to node 1.
timeout 14 redis-benchmark -p "$base_resp" -t set -n 10000000 -c 50 -r 100000 -q \
  >/dev/null 2>&1 || true

nodes="$(pgrep -P "$cluster" | tr '\n' ' ')"
[ "$(wc -w <<<"$nodes")" -eq 3 ] || { echo "expected 3 node processes, found: $nodes" >&2; exit 1; }
sample() { # "node cpu-ns context-switches" per node
  local i=0 pid
  for pid in $nodes; do
    i=$((i + 1))
    awk -v node="$i" 'FILENAME ~ /schedstat$/ { ns += $1; next }
      /ctxt_switches/ { cs += $2 } END { print node, ns, cs }' \
      /proc/"$pid"/task/*/schedstat /proc/"$pid"/task/*/status
  done
}

before="$(sample)"
perf_pid=""
if [ -n "$perf_node" ]; then
  victim="$(cut -d' ' -f"$perf_node" <<<"$nodes")"
  perf record -q -F 2000 --call-graph dwarf,16384 -p "$victim" -o "$work/perf.data" \
    >/dev/null 2>&1 &
  perf_pid=$!
fi
rps="$(timeout 600 redis-benchmark -p "$base_resp" -t "$test" -n "$requests" -c "$clients" \
  -P "$pipeline" -r 100000 --csv 2>/dev/null | awk -F'"' '$2 == "SET" || $2 == "GET" {print $4}')"
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
fi
after="$(sample)"
[ -n "$rps" ] || { echo "redis-benchmark gave no figure" >&2; exit 1; }

mode=ReadIndex
[ "${LEASE:-0}" = 1 ] && mode=lease
echo "$test -P $pipeline -c $clients, reads by $mode: $rps requests/s"
join <(echo "$before") <(echo "$after") | awk -v n="$requests" '
  { cpu = ($4 - $2) / 1000 / n; cs = ($5 - $3) / n; total += cpu
    printf "  node %d: %6.2f µs CPU and %.3f context switches per request\n", $1, cpu, cs }
  END { printf "  all:    %6.2f µs CPU per request\n", total }'

[ -n "$perf_node" ] || exit 0
echo "node $perf_node by part, µs per request (overlapping; see the header):"
perf script -i "$work/perf.data" 2>/dev/null | python3 -c '
import sys
requests, hz = int(sys.argv[1]), 2000
parts = [
    ("RESP connections", "resp::server::serve"),
    ("  reply writes", "Conn<B>::flush"),
    ("  request reads", "AsyncRead>::poll_read"),
    ("  read door", "read_at_door"),
    ("  node read rounds", "ReadRounds::"),
    ("replica Readies", "handle_ready"),
    ("  apply", "apply_request"),
    ("  applied-state overlay", "Undurable::push"),
    ("replica persist answers", "Handler<shardkv::shard::ready::Persisted>"),
    ("replica messages", "Handler<shardkv::shard::actor::Inbound>"),
    ("group-commit writer", "run_writer"),
    ("  fsync", "do_fsync"),
    ("  write-ahead log records", "Wal::append"),
    ("  redb transactions", "WriteTransaction::commit"),
    ("  log absorbed into redb", "absorb_into"),
    ("peer frames out", "transport::peer::run"),
    ("peer frames in", "transport::inbound::serve"),
    ("waiting for events", "epoll_wait"),
    ("context switches", "finish_task_switch"),
]
counts = {n: 0 for n, _ in parts}
total, stack = 0, []
def flush():
    global total
    if stack:
        total += 1
        joined = "\n".join(stack)
        for name, pattern in parts:
            if pattern in joined:
                counts[name] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); stack = []
    elif line[0] in " \t":
        stack.append(line)
    else:
        stack = []
flush()
per = lambda n: n / hz * 1e6 / requests
print("  %-28s %6.2f" % ("all samples", per(total)))
for name, _ in parts:
    print("  %-28s %6.2f" % (name, per(counts[name])))
' "$requests"
