# Shared by the scripts of bench/ (sourced, not run): checking their arguments and tools,
# their start (a work directory, shardkv built) and stopping the servers they started, a
# warning about shardkv processes already running, waiting for a server, a local cluster's
# node processes, the warm-up that moves a cluster's leaders to the node it goes through,
# where the leaders are, the nodes' metrics, a redis-benchmark run with the CPU time the
# servers spent per request, and a median.

# The EXIT trap of a script that starts servers: stops the processes in its `pids` (TERM,
# then KILL a second later) and removes its `work` directory.
stop_started() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}

# The start of a script that starts servers: a fresh `work` directory and an empty `pids`,
# both cleaned up on exit (`stop_started`), then shardkv built and any other shardkv running
# here warned of. Call it after the script's own checks, from its top level.
start_bench() {
  work="$(mktemp -d)"
  pids=()
  trap stop_started EXIT
  cargo build --release --quiet
  warn_if_shardkv_runs
}

# Returns once `port` answers PING; else prints the end of `log` and exits.
wait_for_port() { # port log
  for _ in $(seq 1 150); do
    [ "$(timeout 2 redis-cli -p "$1" PING 2>/dev/null)" = PONG ] && return 0
    sleep 0.2
  done
  echo "port $1 did not answer" >&2; tail -30 "$2" >&2; exit 1
}

# Warns when shardkv processes are already running: the bench shares the machine's cores
# with them, and even an idle cluster wakes them (a run beside two idle local clusters gave
# SET at 20,400/s instead of 32,000).
warn_if_shardkv_runs() {
  local comm count=0
  for comm in /proc/[0-9]*/comm; do
    [ "$(cat "$comm" 2>/dev/null)" = shardkv ] && count=$((count + 1))
  done
  [ "$count" -eq 0 ] || echo "warning: $count shardkv processes already run here; \
the figures will be low" >&2
}

# The pids of a `shardkv local`'s three nodes, one per line, node 1 first, from the lines it
# printed into `log` as it started them; fails if one is missing.
node_pids() { # log
  local i pid
  for i in 1 2 3; do
    pid="$(awk -v n="node$i" '$1 == n && $2 == "pid" { print $3; exit }' "$1")"
    [ -n "$pid" ] || { echo "no pid for node$i in $1" >&2; return 1; }
    echo "$pid"
  done
}

# SETs through `port`, plain clients, for two windows of `timeouts.follow_workload_ms`
# (5 s) and more: the leaders then follow the requests to that node (src/node/workload.rs),
# as they would under an application that talks to one node.
warm_up() { # port
  timeout 14 redis-benchmark -p "$1" -t set -n 10000000 -c 50 -r 100000 -q \
    >/dev/null 2>&1 || true
}

# "node1=a node2=b ..." groups led per node of the cluster whose node n answers on base + n.
leaders_per_node() { # base port
  redis-cli -p "$(($1 + 1))" --json CLUSTER SHARDS 2>/dev/null | python3 -c '
import collections, json, sys
shards = json.load(sys.stdin)
led = collections.Counter(n["port"] for s in shards for n in s["nodes"] if n["role"] == "master")
print(" ".join(f"node{p - int(sys.argv[1])}={c}" for p, c in sorted(led.items())))' "$1"
}

# Exits 2 unless every argument is a whole number, at least 1 (a script's arguments).
require_counts() { # values...
  local value
  for value in "$@"; do
    [ "$value" -ge 1 ] 2>/dev/null ||
      { echo "'$value': every number must be whole, at least 1" >&2; exit 2; }
  done
}

# Exits 1 naming the first of the commands that this machine lacks.
require_tools() { # commands...
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
  done
}

# The totals so far of the metrics `names` (each summed over its labels) of each node whose
# metrics answer on the given ports: one line per port, the names' totals in their order.
metric_totals() { # "names" metrics ports...
  python3 - "$@" <<'PY'
import sys, urllib.request
names = sys.argv[1].split()
# Loopback, never through a proxy the environment names.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for port in sys.argv[2:]:
    url = f"http://127.0.0.1:{port}/metrics"
    text = opener.open(url, timeout=5).read().decode()
    sums = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            sums[name] += float(line.rsplit(" ", 1)[1])
    print(" ".join(f"{sums[n]:.0f}" for n in names))
PY
}

# The sums of the columns of the lines on standard input, as one line.
column_sums() {
  awk '{ for (i = 1; i <= NF; i++) s[i] += $i; if (NF > n) n = NF }
    END { for (i = 1; i <= n; i++) printf "%s%.0f", (i > 1 ? " " : ""), s[i]; print "" }'
}

# "fsyncs peer-frames-sent" so far of each node whose metrics answer on the given ports, one
# line per port: the counts behind a change in CPU per request.
node_counts() { # metrics ports...
  metric_totals "shardkv_storage_fsyncs_total shardkv_transport_frames_sent_total" "$@"
}

# Runs `redis-benchmark --csv` with `args` and prints "requests/s CPU-µs/request": the rate
# of its result, and the CPU time the processes `pids` spent per request meanwhile ("-" for
# a figure it did not give).
benchmark_cpu() { # requests "pids" args...
  local n="$1" procs="$2" got cpu=- before after; shift 2
  # shellcheck disable=SC2086 # the pids are words
  before="$(thread_stats $procs)"
  got="$(timeout 600 redis-benchmark -n "$n" --csv "$@" 2>/dev/null \
    | awk -F'"' '$4 ~ /^[0-9.]+$/ { print $4; exit }')" || true
  # shellcheck disable=SC2086
  after="$(thread_stats $procs)"
  [ -z "$got" ] || cpu="$(cpu_per_request "$n" "$before" "$after")"
  echo "${got:--} $cpu"
}

# µs of CPU per request between two `thread_stats` samples of the same processes, summed
# per thread: a thread started between them counts whole, one that ended not at all.
cpu_per_request() { # requests "before" "after"
  awk -v n="$1" 'NR == FNR { b[$1 " " $2] = $3; next } { d += $3 - b[$1 " " $2] }
    END { printf "%.3f", d / 1000 / n }' <(echo "$2") <(echo "$3")
}

# The median of the numbers on standard input, one a line ("-" if none; the upper of the
# two middle ones for an even count).
median_of_lines() {
  sort -g | awk '{ v[NR] = $1 } END { print (NR == 0) ? "-" : v[int((NR + 1) / 2)] }'
}

# "pid thread nanoseconds-on-a-CPU context-switches" so far, for every thread of each
# process; a thread that ends meanwhile is left out.
thread_stats() { # pids...
  local pid task ns cs key value _rest
  for pid in "$@"; do
    for task in /proc/"$pid"/task/*; do
      read -r ns _rest 2>/dev/null <"$task/schedstat" || continue
      cs=0
      while read -r key value _rest; do
        case "$key" in
          voluntary_ctxt_switches: | nonvoluntary_ctxt_switches:) cs=$((cs + value)) ;;
        esac
      done 2>/dev/null <"$task/status" || continue
      echo "$pid ${task##*/} $ns $cs"
    done
  done
}
