#!/usr/bin/env bash
# Latency at a fixed open-model rate, matomo-ingest against the bare axum server answering the
# same GIF: the servers and Redis pinned to CPU 0, the load generator to CPU 1, runs alternating, each
# server's queues emptied after each of its runs (lib.sh). Latency is matomo-loadgen's, from
# each hit's intended send time, leaving out the first WARMUP_S seconds (connections opening).
# Needs what run.sh needs plus `cargo build --release -p matomo-loadgen`.
# GENERATOR: `pace` (the default: `matomo-loadgen pace`, pre-built hits over 64 kept-alive
# connections from one thread; it adds about 1 ms or less to the bare server's p99 at half the
# peak, so read the node's p99 against the bare server's of the same invocation) or `run`
# (`matomo-loadgen run`, the harness' realistic client, whose own cost on one core set the tail
# above ~20,000 hits/s; the figures of sessions up to 17).
# Usage: ingest/benches/load/latency.sh [RATE|half] [DURATION_S] [ROUNDS]
#   RATE "half" (default): half the ingest's peak in the same layout, measured first with
#   `wrk -t1 -c32` on CPU 1 (the first mode's server).
# BARE_WORK_US=W also runs a calibrated bare server (`bare_work`): the bare server burning about
# W µs of CPU per request (examples/bare_gif.rs), a server that does nothing but is as costly
# as another; W=0 is a second copy of the bare server. Choose W so that its peak matches the
# ingest's in the same invocation (with `half` the script prints both peaks; in session 22,
# W=6 gave 80,915 and 81,908, W=8 68,705 and 65,688, the ingest 65,057–80,971, drifting over
# the session). With `half` it runs at half of its own peak, so the two are compared at the same
# share of their capacity: what the machine does to the tail of any server of that capacity.
# Env: MODES (default "auto"), BASELINE_BIN and REDIS_HOST as in run.sh; WARMUP_S (default 2); CONNECTIONS
# (`pace`'s kept-alive connections, default 64); SLOW_LOG_DIR (with `pace`: each run writes
# its hits answered more than 2 ms after their due time to SLOW_LOG_DIR/<run>.txt, `pace
# --slow-log`, to see when in the run the tail happened; the folder is created); REDIS_CPU
# (0, the default: with the servers; 1: with the generator, see below); REDIS_BG_CPU (0 or 1,
# default REDIS_CPU: where Redis' background threads and rewrite children run, see below); DRAIN=1 keeps
# each ingest's queues short during its runs, as workers keeping up do: every 0.1 s each queue
# is trimmed to its last 500 entries (the LTRIM half of a worker's work, sent by one redis-cli
# on the generator's CPU). Without it the queues grow for the whole run and Redis' append-only
# file rewrites copy that backlog on the servers' core.
# REDIS_RT=1 runs Redis' threads at real-time priority (SCHED_FIFO 1, restored on exit): when it
# wakes it runs at once instead of waiting for the server's time slice — the node's own tail,
# without the scheduler's share (it still pays Redis' CPU time and stalls). Meant with
# `appendonly no`: a rewrite child forked meanwhile inherits the priority, pre-empts the servers
# and keeps it if still running at exit. With DRAIN=1 the drain also runs during the bare
# server's runs (on the first ingest's queues, empty then), so both servers' generator shares
# its CPU with the same drain.
# Prints each run's line from the generator (hits accepted, failed, dropped, late sends, p50 / p99 /
# max, and with `pace` how many late hits waited for a free connection, the median and 99th
# percentile from each hit's send rather than its due time, and its own CPU share), then the
# median p50 and p99 (from the due time) per server, the generator, the
# Redis persistence in force, how many append-only-file rewrites Redis did during the runs
# (each forks and writes the dataset on these same two cores) and Redis' own latency events of
# 2 ms or more during the runs (its latency monitor: fork, aof-write, command…).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/release"
rate="${1:-half}"; duration="${2:-10}"; rounds="${3:-3}"; warmup="${WARMUP_S:-2}"
generator="${GENERATOR:-pace}"
[[ -z "${SLOW_LOG_DIR:-}" ]] || mkdir -p "$SLOW_LOG_DIR"
[[ "$generator" == pace || "$generator" == run ]] || { echo "GENERATOR must be pace or run" >&2; exit 2; }
default_modes=auto
server_cpus=0
source "$here/lib.sh"
start_servers
# Redis is part of the server side: it runs on CPU 0 with the servers for the length of the
# script (its rewrite children too), so the generator's CPU stays its own. REDIS_CPU=1 puts it
# on the generator's CPU instead: the node's core is then its own, as in production where Redis
# runs on other cores or machines (the generator and Redis share CPU 1, for both servers).
# REDIS_BG_CPU=1 (below) moves only Redis' persistence work there.
redis_pid=$(redis-cli info server | tr -d '\r' | awk -F: '$1=="process_id" {print $2}')
redis_cpus=$(taskset -p -c "$redis_pid" | awk '{print $NF}')
redis_cpu="${REDIS_CPU:-0}"
[[ "$redis_cpu" == 0 || "$redis_cpu" == 1 ]] || { echo "REDIS_CPU must be 0 or 1" >&2; exit 2; }
# REDIS_BG_CPU: where Redis' persistence work runs — its background threads (`bio_*`: the
# append-only file's fsync, closing replaced files, lazy frees) and the rewrite children it
# forks — what Redis' own `bio_cpulist` and `aof_rewrite_cpulist` do, applied here to the
# running Redis. By default with its main thread (REDIS_CPU).
redis_bg_cpu="${REDIS_BG_CPU:-$redis_cpu}"
[[ "$redis_bg_cpu" == 0 || "$redis_bg_cpu" == 1 ]] || { echo "REDIS_BG_CPU must be 0 or 1" >&2; exit 2; }
bg_watcher=""
monitor=$(redis-cli config get latency-monitor-threshold | tail -1)
# Installed before Redis is touched, and not stopped by a failing step: Redis always gets its
# CPUs and priority back, and the servers and the test database are always cleaned up.
trap '[[ -z "$bg_watcher" ]] || kill "$bg_watcher" 2>/dev/null || true
  taskset -a -p -c "$redis_cpus" "$redis_pid" >/dev/null || true
  [[ "${REDIS_RT:-0}" != 1 ]] || chrt -a -o -p 0 "$redis_pid" || true
  redis-cli config set latency-monitor-threshold "$monitor" >/dev/null || true; cleanup' EXIT
taskset -a -p -c "$redis_cpu" "$redis_pid" >/dev/null
[[ "${REDIS_RT:-0}" != 1 ]] || chrt -a -f -p 1 "$redis_pid"
if [[ "$redis_bg_cpu" != "$redis_cpu" ]]; then
  for task in /proc/"$redis_pid"/task/*; do
    [[ "$(<"$task/comm")" == bio_* ]] && taskset -p -c "$redis_bg_cpu" "${task##*/}" >/dev/null
  done
  # A forked child starts on its parent's CPU: moved within ~10 ms of appearing, by a loop of
  # shell built-ins (no process started per round, which would disturb the generator's CPU).
  [[ -r "/proc/$redis_pid/task/$redis_pid/children" ]] ||
    echo "warning: this kernel has no /proc/<pid>/task/<tid>/children: Redis' rewrite children stay on CPU $redis_cpu" >&2
  (
    exec {fd}<> <(:)
    while read -r -t 0.01 -u "$fd" || true; do
      read -r -a children < "/proc/$redis_pid/task/$redis_pid/children" || exit 0
      for child in "${children[@]}"; do
        [[ "$child" == "${moved:-}" ]] || { taskset -a -p -c "$redis_bg_cpu" "$child" >/dev/null 2>&1; moved=$child; }
      done
    done
  ) &
  bg_watcher=$!
fi

if [[ "$rate" == half ]]; then
  peak=$(taskset -c 1 wrk -t1 -c32 -d6s -s "$here/hit.lua" "http://127.0.0.1:${port[${servers[0]}]}" |
    awk '/Requests\/sec/ {printf "%d", $2}')
  measure_and_empty "${servers[0]}"
  rate=$((peak / 2))
  echo "peak of ingest_${servers[0]} with the servers on CPU 0, Redis on CPU $redis_cpu and wrk on CPU 1: $peak requests/s; rate $rate/s" >&2
  if [[ -n "${BARE_WORK_US:-}" ]]; then
    peak_work=$(taskset -c 1 wrk -t1 -c32 -d6s -s "$here/hit.lua" http://127.0.0.1:18089 |
      awk '/Requests\/sec/ {printf "%d", $2}')
    rate_work=$((peak_work / 2))
    echo "peak of bare_work ($BARE_WORK_US µs of CPU per request) in the same layout: $peak_work requests/s; rate $rate_work/s" >&2
  fi
fi
rate_work="${rate_work:-$rate}"

run() { # name port [server to drain] [rate] → "p50 p99", or nothing for a run without latency figures
  local out rc=0 line drainer="" rate="${4:-$rate}"
  if [[ -n "${3:-}" && "${DRAIN:-0}" == 1 ]]; then
    drain "$3" 1 & drainer=$!
  fi
  if [[ "$generator" == pace ]]; then
    out=$(taskset -c 1 "$target/matomo-loadgen" pace --target "http://127.0.0.1:$2/matomo.php" \
      --rate "$rate" --duration "$duration" --warmup-secs "$warmup" --sites 1 \
      --connections "${CONNECTIONS:-64}" ${SLOW_LOG_DIR:+--slow-log "$SLOW_LOG_DIR/$1.txt"} 2>&1) || rc=$?
  else
    out=$(taskset -c 1 "$target/matomo-loadgen" run --target "http://127.0.0.1:$2/matomo.php" \
      --rate "$rate" --duration "$duration" --warmup-secs "$warmup" --sites 1 --quiet \
      --no-mysql --no-redis 2>&1) || rc=$?
  fi
  stop_drain "$drainer"
  line=$(grep '^accepted' <<<"$out" || true)
  # Exit code 1 (hits failed or dropped) still gives a line, which says how many; anything else
  # means the generator did not run, and the script stops with what it said.
  if (( rc > 1 )) || [[ -z "$line" ]]; then
    echo "$1: matomo-loadgen $generator failed (exit $rc):" >&2
    echo "$out" >&2
    return 1
  fi
  echo "$1 ${line#accepted }" >&2
  sed -nE 's/.* p50 ([0-9.]+) ms p99 ([0-9.]+) ms.*/\1 \2/p' <<<"$line"
}
median() { sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

declare -A p50s p99s
redis-cli config set latency-monitor-threshold 2 >/dev/null
redis-cli latency reset >/dev/null
rewrites_before=$(aof_rewrites)
for r in $(seq "$rounds"); do
  # The assignment fails, and the script with it, when the generator did.
  figures=$(run "bare_$r" 18090 "${servers[0]}")
  read -r p50 p99 <<<"$figures"
  p50s[bare]+="$p50 "; p99s[bare]+="$p99 "
  if [[ -n "${BARE_WORK_US:-}" ]]; then
    figures=$(run "bare_work_$r" 18089 "${servers[0]}" "$rate_work")
    read -r p50 p99 <<<"$figures"
    p50s[bare_work]+="$p50 "; p99s[bare_work]+="$p99 "
  fi
  for server in "${servers[@]}"; do
    figures=$(run "ingest_${server}_$r" "${port[$server]}" "$server")
    read -r p50 p99 <<<"$figures"
    p50s[$server]+="$p50 "; p99s[$server]+="$p99 "
    measure_and_empty "$server"
  done
done
rewrites=$(($(aof_rewrites) - rewrites_before))
# event name, then its count of samples kept (≤ 160) and worst latency in ms.
events=$(redis-cli --csv latency latest | tr -d '"' |
  awk -F, 'NF > 1 {printf "%s%s (latest %s ms, worst %s ms)", sep, $1, $3, $4; sep="; "}')

for server in bare ${BARE_WORK_US:+bare_work} "${servers[@]}"; do
  # Runs without latency figures (no hit accepted) are left out of the medians.
  counted=$(tr ' ' '\n' <<<"${p99s[$server]}" | grep -c . || true)
  at=$rate; [[ "$server" != bare_work ]] || at=$rate_work
  echo "$server at $at/s: median p50 $(tr ' ' '\n' <<<"${p50s[$server]}" | grep . | median) ms," \
    "median p99 $(tr ' ' '\n' <<<"${p99s[$server]}" | grep . | median) ms over $counted of $rounds runs"
done
echo "Generator: matomo-loadgen $generator"
echo "Redis: appendonly $(redis-cli config get appendonly | tail -1)," \
  "appendfsync $(redis-cli config get appendfsync | tail -1)," \
  "list-compress-depth $(redis-cli config get list-compress-depth | tail -1); $rewrites AOF rewrites during the runs;" \
  "queues $([[ "${DRAIN:-0}" == 1 ]] && echo "kept short (DRAIN=1)" || echo "left to grow during each run");" \
  "Redis at $([[ "${REDIS_RT:-0}" == 1 ]] && echo "real-time priority (REDIS_RT=1)" || echo "normal priority"),"\
  "its main thread on CPU $redis_cpu, its background threads and rewrite children on CPU $redis_bg_cpu"
echo "Redis latency events ≥ 2 ms during the runs: ${events:-none}"
