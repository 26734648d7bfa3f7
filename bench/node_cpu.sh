#!/usr/bin/env bash
# Where a request's CPU time goes, per node: a local 3-node cluster (fresh, on ports of its
# own), a warm-up of SETs through node 1 long enough for the leaders to follow that traffic
# there (src/node/workload.rs), then one redis-benchmark run through node 1. Prints where
# the leaders are, the requests per second and, for each node, the CPU time it spent per
# request (every thread's, from /proc/<pid>/task/*/schedstat), its context switches, fsyncs
# and peer frames sent per request.
#
# With PERF_NODE=n (1..3) and `perf` installed, that node is also sampled during the run
# (perf record, one sample per 0.5 ms of CPU, DWARF call graphs) and the samples are split
# by the part of the request path their stack passes through, in µs per request. A part
# counts a sample if its stack names any of the part's functions; an indented part only
# within the part above it. The parts overlap (a context switch counts in the part it
# interrupts as well) and do not add up to the node's whole; stacks deeper than perf's
# 16 KB copy lose their outer frames. Kernel frames (fsync, context switches) need root or
# kernel.perf_event_paranoid at most 1.
#
# usage: [LEASE=1] [PERF_NODE=n] bench/node_cpu.sh [set|get] [requests (200000)]
#   [clients (50)] [pipeline (1)]
# Needs redis-benchmark and redis-cli (Debian: redis-tools), Python 3, and perf with
# PERF_NODE.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

test="${1:-set}"
requests="${2:-200000}"
clients="${3:-50}"
pipeline="${4:-1}"
case "$test" in set | get) ;; *) echo "test must be set or get" >&2; exit 2 ;; esac
require_counts "$requests" "$clients" "$pipeline"
perf_node="${PERF_NODE:-}"
if [ -n "$perf_node" ]; then
  case "$perf_node" in 1 | 2 | 3) ;; *) echo "PERF_NODE must be 1, 2 or 3" >&2; exit 2 ;; esac
  require_tools perf
fi
require_tools redis-benchmark redis-cli python3
cargo build --release --quiet
warn_if_shardkv_runs

base_resp=7031
base_metrics=9131
# perf samples every `perf_period_ns` of a thread's CPU time (task-clock).
perf_period_ns=500000
work="$(mktemp -d)"
cluster="" perf_pid=""
cleanup() {
  [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null
  [ -n "$cluster" ] && kill -TERM "$cluster" 2>/dev/null && wait "$cluster" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

lease=()
[ "${LEASE:-0}" = 1 ] && lease=(--lease-reads)
./target/release/shardkv local "${lease[@]}" --data-dir "$work/data" \
  --base-resp-port "$base_resp" --base-peer-port 7131 --base-metrics-port "$base_metrics" \
  >"$work/cluster.log" 2>&1 &
cluster=$!
for port in "$base_resp" $((base_resp + 1)) $((base_resp + 2)); do
  wait_for_port "$port" "$work/cluster.log"
done
warm_up "$base_resp"
echo "groups led per node after the warm-up: $(leaders_per_node $((base_resp - 1)))"
sleep 2 # the warm-up's last applies and log absorptions

found="$(node_pids "$work/cluster.log")"
read -ra nodes <<<"$(tr '\n' ' ' <<<"$found")"

metrics_ports=("$base_metrics" $((base_metrics + 1)) $((base_metrics + 2)))
# A failed scrape leaves the counts out, not the rest of the figures.
counts_before="$(node_counts "${metrics_ports[@]}")" || counts_before=""
before="$(thread_stats "${nodes[@]}")"
if [ -n "$perf_node" ]; then
  perf record -e task-clock -c "$perf_period_ns" --call-graph dwarf,16384 \
    -p "${nodes[$((perf_node - 1))]}" -o "$work/perf.data" >"$work/perf.log" 2>&1 &
  perf_pid=$!
  sleep 0.5
  kill -0 "$perf_pid" 2>/dev/null || { echo "perf record failed:" >&2; cat "$work/perf.log" >&2
    perf_pid=""; exit 1; }
fi
rps="$(timeout 600 redis-benchmark -p "$base_resp" -t "$test" -n "$requests" -c "$clients" \
  -P "$pipeline" -r 100000 --csv 2>/dev/null \
  | awk -F'"' '$2 == "SET" || $2 == "GET" {print $4}')" || true
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  perf_pid=""
fi
after="$(thread_stats "${nodes[@]}")"
counts_after="$(node_counts "${metrics_ports[@]}")" || counts_after=""
[ -n "$rps" ] || { echo "redis-benchmark gave no figure" >&2; exit 1; }

mode=ReadIndex
[ "${LEASE:-0}" = 1 ] && mode=lease
echo "$test -P $pipeline -c $clients, reads by $mode: $rps requests/s"
# Per thread, the difference between the samples (a thread started meanwhile counts whole,
# one that ended meanwhile not at all).
awk -v n="$requests" -v pids="${nodes[*]}" 'BEGIN { split(pids, p); for (i in p) node[p[i]] = i }
  NR == FNR { ns[$1 " " $2] = $3; cs[$1 " " $2] = $4; next }
  { k = $1 " " $2; cpu[node[$1]] += $3 - ns[k]; sw[node[$1]] += $4 - cs[k] }
  END { for (i = 1; i <= 3; i++) {
          total += cpu[i] / 1000 / n
          printf "  node %d: %6.2f µs CPU and %.3f context switches per request\n", i,
            cpu[i] / 1000 / n, sw[i] / n }
        printf "  all:    %6.2f µs CPU per request\n", total }' \
  <(echo "$before") <(echo "$after")
if [ -n "$counts_before" ] && [ -n "$counts_after" ]; then
  paste -d ' ' <(echo "$counts_before") <(echo "$counts_after") | awk -v n="$requests" '
    { printf "  node %d: %.3f fsyncs and %.3f peer frames sent per request\n", NR,
        ($3 - $1) / n, ($4 - $2) / n }'
else
  echo "  (no fsync and frame counts: a node's metrics did not answer)"
fi

[ -n "$perf_node" ] || exit 0
[ -s "$work/perf.data" ] || { echo "perf wrote no samples:" >&2; cat "$work/perf.log" >&2; exit 1; }
echo "node $perf_node by part, µs per request (overlapping; see the header):"
perf script -i "$work/perf.data" 2>/dev/null | python3 -c '
import sys
requests, period_us = int(sys.argv[1]), int(sys.argv[2]) / 1000
# (name, parent index or None, patterns: a sample counts if its stack names any)
parts = [
    ("RESP connections", None, ["resp::server::serve", "resp::connection::"]),
    ("  reply writes", 0, ["Conn<B>::flush"]),
    ("  request reads", 0, ["AsyncRead>::poll_read"]),
    ("  read door", 0, ["read_at_door"]),
    ("  node read rounds", 0, ["ReadRounds::"]),
    ("replica Readies", None, ["handle_ready"]),
    ("  apply", 5, ["apply_request"]),
    ("  applied-state overlay", 5, ["Undurable::push"]),
    ("replica persist answers", None, ["Handler<shardkv::shard::ready::Persisted>"]),
    ("replica messages", None, ["Handler<shardkv::shard::actor::Inbound>"]),
    ("group-commit writer", None, ["run_writer"]),
    ("  fsync", 10, ["do_fsync"]),
    ("  write-ahead log records", 10, ["Wal::append"]),
    ("  redb transactions", 10, ["WriteTransaction::commit"]),
    ("  log absorbed into redb", 10, ["absorb_into"]),
    ("peer frames out", None, ["transport::peer::run"]),
    ("peer frames in", None, ["transport::inbound::serve"]),
    ("waiting for events", None, ["epoll_wait"]),
    ("context switches", None, ["finish_task_switch"]),
]
counts = [0] * len(parts)
total, stack = 0, []
def flush():
    global total
    if not stack:
        return
    total += 1
    joined = "\n".join(stack)
    hit = [any(p in joined for p in patterns) for _, _, patterns in parts]
    for i, (_, parent, _) in enumerate(parts):
        if hit[i] and (parent is None or hit[parent]):
            counts[i] += 1
for line in sys.stdin:
    if not line.strip():
        flush()
        stack = []
    elif line[0] in " \t":
        stack.append(line)
    else:
        stack = []
flush()
if total == 0:
    sys.exit("perf recorded no samples of the node")
per = lambda n: n * period_us / requests
print("  %-28s %6.2f" % ("all samples", per(total)))
for (name, _, _), n in zip(parts, counts):
    print("  %-28s %6.2f" % (name, per(n)))
' "$requests" "$perf_period_ns"
