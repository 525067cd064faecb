#!/usr/bin/env bash
# Load comparison: matomo-ingest vs a bare axum server answering the same GIF, same machine,
# same wrk settings, run alternately. Needs Redis and MariaDB (deploy/local/up or CI services),
# wrk, and release builds:
#   cargo build --release -p matomo-ingest --bin matomo-ingest --example bare_gif
# Usage: ingest/benches/load/run.sh [DURATION_S] [CONNECTIONS] [ROUNDS]
# Env: MODES="default fast none" — the queue.compression modes to compare (one ingest each);
#      BASELINE_BIN=path — also run that matomo-ingest binary (e.g. a build of the previous
#      commit) in each mode, as "<mode>_base", so a change is measured side by side with it;
#      DRAIN=1 — keep each ingest's queues short during its runs, as running workers do (lib.sh's
#      `drain`); without it they grow for the whole run and Redis rewrites its append-only file
#      over the backlog on these same two cores, a cost drained production queues do not have;
#      REDIS_HOST=/path/redis.sock — the ingests reach Redis there (a Unix socket, as
#      `redis.host`) instead of 127.0.0.1:6379; it must be that same Redis' socket (redis-cli
#      here drains and measures 127.0.0.1:6379), as deploy/local's run/redis.sock is, and a
#      BASELINE_BIN older than session 21 cannot use it.
# Prints, per run, requests/s, latency, the server's CPU time per request and Redis' (its own
# and its reaped rewrite children's) and the machine's idle CPU; per mode, the ratios against
# the bare server (requests/s and CPU per request), Redis' CPU per hit and Redis bytes per
# queued hit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/release"
duration="${1:-10}"; conns="${2:-64}"; rounds="${3:-2}"
default_modes=default
source "$here/lib.sh"
start_servers

cpu_ticks() { # pid → user+system clock ticks so far, its reaped children's included
  awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"
}
machine_ticks() { # → "idle total": the machine's idle (and I/O wait) clock ticks, and all of them
  awk '$1=="cpu" {t=0; for (i=2; i<=9; i++) t+=$i; print $5 + $6, t}' /proc/stat
}
redis_pid=$(redis-cli info server | tr -d '\r' | awk -F: '$1=="process_id" {print $2}')
run() { # name port pid [server to drain] → "rps cpu_us_per_request redis_cpu_us_per_request"
  local before after redis_before redis_after rps p50 p99 reqs cpu_us redis_us drainer=""
  local idle_before total_before idle_after total_after idle
  if [[ -n "${4:-}" && "${DRAIN:-0}" == 1 ]]; then
    drain "$4" & drainer=$!
  fi
  before=$(cpu_ticks "$3"); redis_before=$(cpu_ticks "$redis_pid")
  read -r idle_before total_before < <(machine_ticks)
  wrk -t2 -c"$conns" -d"${duration}s" --latency -s "$here/hit.lua" "http://127.0.0.1:$2" > "$work/$1.txt"
  read -r idle_after total_after < <(machine_ticks)
  after=$(cpu_ticks "$3"); redis_after=$(cpu_ticks "$redis_pid")
  stop_drain "$drainer"
  # The share of the machine's CPU time nobody used during the run: well above the bare
  # server's, it suggests the server waits on something (Redis' answers) with CPU to spare,
  # so that more connections might raise its requests/s.
  idle=$(echo "scale=1; ($idle_after - $idle_before) * 100 / ($total_after - $total_before)" | bc)
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$1.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/$1.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/$1.txt")
  reqs=$(awk '/requests in/ {print $1}' "$work/$1.txt")
  cpu_us=$(echo "scale=1; ($after - $before) * 1000000 / $(getconf CLK_TCK) / $reqs" | bc)
  redis_us=$(echo "scale=1; ($redis_after - $redis_before) * 1000000 / $(getconf CLK_TCK) / $reqs" | bc)
  echo "$1 rps=$rps p50=$p50 p99=$p99 server_cpu_per_request=${cpu_us}us redis_cpu_per_request=${redis_us}us idle_cpu=${idle}%" >&2
  echo "$rps $cpu_us $redis_us"
}

declare -A rps_sum cpu_sum redis_sum
rps_sum[bare]=0; cpu_sum[bare]=0
for server in "${servers[@]}"; do rps_sum[$server]=0; cpu_sum[$server]=0; redis_sum[$server]=0; done
# A short unmeasured run against each server first: a fresh process pays for its first page
# faults, allocator arenas and connections, which would otherwise weigh on the first round.
wrk -t2 -c"$conns" -d2s -s "$here/hit.lua" http://127.0.0.1:18090 >/dev/null
for server in "${servers[@]}"; do
  wrk -t2 -c"$conns" -d2s -s "$here/hit.lua" "http://127.0.0.1:${port[$server]}" >/dev/null
  measure_and_empty "$server"; hits_of[$server]=0; bytes_of[$server]=0
done
rewrites_before=$(aof_rewrites)
for r in $(seq "$rounds"); do
  read -r rps cpu _ < <(run "bare_$r" 18090 "$bare_pid")
  rps_sum[bare]=$(echo "${rps_sum[bare]} + $rps" | bc); cpu_sum[bare]=$(echo "${cpu_sum[bare]} + $cpu" | bc)
  # Each round starts the ingest servers one further along the list: the run right after the
  # bare server's was seen to cost 1-2 us more per request whatever the build, and rotating
  # spreads that over all of them.
  n=${#servers[@]}
  for k in $(seq 0 $((n - 1))); do
    server=${servers[$(((k + r - 1) % n))]}
    read -r rps cpu redis < <(run "ingest_${server}_$r" "${port[$server]}" "${pid_of[$server]}" "$server")
    rps_sum[$server]=$(echo "${rps_sum[$server]} + $rps" | bc); cpu_sum[$server]=$(echo "${cpu_sum[$server]} + $cpu" | bc)
    redis_sum[$server]=$(echo "${redis_sum[$server]} + $redis" | bc)
    measure_and_empty "$server"
  done
done

for mode in "${servers[@]}"; do
  hits=${hits_of[$mode]} bytes=${bytes_of[$mode]}
  echo "compression=$mode: requests/s ratio ingest/bare = $(echo "scale=3; ${rps_sum[$mode]} / ${rps_sum[bare]}" | bc)," \
    "CPU per request ratio bare/ingest = $(echo "scale=3; ${cpu_sum[bare]} / ${cpu_sum[$mode]}" | bc)," \
    "mean server CPU per request $(echo "scale=1; ${cpu_sum[$mode]} / $rounds" | bc) us (bare $(echo "scale=1; ${cpu_sum[bare]} / $rounds" | bc) us)," \
    "Redis CPU per hit $(echo "scale=1; ${redis_sum[$mode]} / $rounds" | bc) us," \
    "queued hits $hits, Redis bytes per hit $(echo "$bytes / ($hits + ($hits == 0))" | bc)"
done
echo "Redis: appendonly $(redis-cli config get appendonly | tail -1);" \
  "$(($(aof_rewrites) - rewrites_before)) AOF rewrites during the measured runs;" \
  "queues $([[ "${DRAIN:-0}" == 1 ]] && echo "kept short (DRAIN=1)" || echo "left to grow during each run")"
