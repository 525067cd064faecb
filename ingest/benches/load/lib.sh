# Shared by run.sh and latency.sh (sourced, not run): a throwaway database and Redis key prefix,
# one matomo-ingest per entry of `servers` (per mode of $MODES, else $default_modes: "<mode>"
# runs this build with queue.compression = <mode>, and with $BASELINE_BIN set "<mode>_base"
# runs that binary; with $REDIS_HOST set they reach Redis there), and the bare axum server on
# port 18090 (with $BARE_WORK_US a second one on 18089, burning that many µs of CPU per
# request; 0: a second copy of the bare server), all stopped and removed on exit. Set
# `server_cpus` (a taskset CPU list) to pin the servers. Needs Redis and MariaDB
# (deploy/local/up) and the release builds named in run.sh.
read -r -a modes <<<"${MODES:-$default_modes}"
servers=()
for mode in "${modes[@]}"; do
  servers+=("$mode")
  [[ -n "${BASELINE_BIN:-}" ]] && servers+=("${mode}_base")
done
mysql_args=(-h 127.0.0.1 -P 3306 -u matomo -pmatomo)
db="mt_test_load_$RANDOM$RANDOM"
prefix="loadtest_$RANDOM"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Gone before the script ends, so a script started next finds the ports free.
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  redis-cli --scan --pattern "${prefix}*" | xargs -r redis-cli del >/dev/null || true
  mysql "${mysql_args[@]}" -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

pinned() { # command… → becomes it (so `pinned … &` gives its pid), on $server_cpus when set
  if [[ -n "${server_cpus:-}" ]]; then exec taskset -c "$server_cpus" "$@"; else exec "$@"; fi
}

start_servers() {
  mysql "${mysql_args[@]}" -e "CREATE DATABASE \`$db\`" 2>/dev/null
  sed 's/{{prefix}}/matomo_/g' "$root/deploy/schema/matomo.sql" | mysql "${mysql_args[@]}" "$db" 2>/dev/null
  mysql "${mysql_args[@]}" "$db" 2>/dev/null -e "INSERT INTO matomo_site (idsite, name, main_url, ts_created, \
    sitesearch_keyword_parameters, sitesearch_category_parameters, timezone, currency, excluded_ips, \
    excluded_parameters, excluded_user_agents, excluded_referrers, \`group\`, \`type\`) VALUES \
    (1, 'Load', 'http://example.com', NOW(), '', '', 'UTC', 'USD', '', '', '', '', '', 'website')"
  declare -gA port pid_of
  local n=0 server mode bin
  for server in "${servers[@]}"; do
    mode="${server%_base}"
    bin="$target/matomo-ingest"
    [[ "$server" == *_base ]] && bin="$BASELINE_BIN"
    port[$server]=$((18081 + n)); n=$((n + 1))
    cat > "$work/ingest-$server.toml" <<TOML
[database]
dbname = "$db"
[queue]
key_prefix = "${prefix}_${server}:"
num_queue_workers = 16
compression = "$mode"
[matomo]
salt = "load-test-salt"
${REDIS_HOST:+[redis]
host = \"$REDIS_HOST\"}
[ingest]
listen = "127.0.0.1:${port[$server]}"
[log]
level = "warn"
TOML
    pinned "$bin" --config "$work/ingest-$server.toml" & pid_of[$server]=$!
    pids+=("${pid_of[$server]}")
  done
  pinned "$target/examples/bare_gif" 127.0.0.1:18090 >/dev/null & bare_pid=$!
  pids+=("$bare_pid")
  if [[ -n "${BARE_WORK_US:-}" ]]; then
    pinned "$target/examples/bare_gif" 127.0.0.1:18089 "$BARE_WORK_US" >/dev/null & bare_work_pid=$!
    pids+=("$bare_work_pid")
  fi
  for server in "${servers[@]}"; do
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:${port[$server]}/readyz" >/dev/null && break; sleep 0.2; done
  done
  curl -sf http://127.0.0.1:18090/ >/dev/null
  # The calibrated bare server measures its own speed (~20 ms) before it listens.
  if [[ -n "${BARE_WORK_US:-}" ]]; then
    for _ in $(seq 50); do curl -sf http://127.0.0.1:18089/ >/dev/null && break; sleep 0.2; done
    curl -sf http://127.0.0.1:18089/ >/dev/null ||
      { echo "the bare server with BARE_WORK_US=$BARE_WORK_US did not start" >&2; exit 1; }
  fi
}

# After each run of a server: add what the run queued (hits_of, bytes_of: Redis memory) and
# empty its queues (with DRAIN=1, what the drain left: the bytes per hit stay meaningful, the
# count does not). Without DRAIN nothing drains them during a run, and a queue left to grow to millions of entries
# makes Redis rewrite its append-only file over an ever larger dataset, a cost a drained
# production queue does not have; emptied, every run meets the same Redis.
declare -A hits_of bytes_of
queue_keys() { # server → its 16 queue keys, one per line (QueuedTracking's names)
  local q
  for q in $(seq 0 15); do
    if [[ $q -gt 0 ]]; then echo "${prefix}_$1:trackingQueueV1_$q"; else echo "${prefix}_$1:trackingQueueV1"; fi
  done
}
measure_and_empty() { # server
  local key
  for key in $(queue_keys "$1"); do
    hits_of[$1]=$((${hits_of[$1]:-0} + $(redis-cli llen "$key")))
    bytes_of[$1]=$((${bytes_of[$1]:-0} + $(redis-cli memory usage "$key" samples 0 | tr -d '\r' | sed 's/^$/0/')))
    redis-cli unlink "$key" >/dev/null
  done
}

# Keeps a server's queues short while it runs, as workers keeping up do: every 0.1 s each queue
# is trimmed to its last 500 entries (the LTRIM half of a worker's work) by one redis-cli; the
# whole drain runs on CPU $2 when given. Runs until `stop_drain`:
# `drain S & d=$!; …; stop_drain "$d"`.
drain() { # server [cpu]
  local key keys fd
  # On the given CPU (the generator's), and no process started per round: a
  # drain forking `sleep` and `seq` ten times a second delayed the generator enough to raise
  # even the bare server's p99 from ~0.5 to ~5 ms. One LTRIM per queue, each its own command
  # as each worker trims its own queue (one script trimming all 16 blocked Redis ~1.6 ms).
  [[ -n "${2:-}" ]] && taskset -p -c "$2" "$BASHPID" >/dev/null
  mapfile -t keys < <(queue_keys "$1")
  # `read -t` on a pipe nobody writes to: a sleep that starts no process.
  exec {fd}<> <(:)
  # Also ends when the work directory is gone (the script exited while draining).
  while [[ -d "$work" && ! -e "$work/drain.stop" ]]; do
    for key in "${keys[@]}"; do printf 'LTRIM %s -500 -1\n' "$key"; done
    read -r -t 0.1 -u "$fd" || true
  done | redis-cli >/dev/null
}
stop_drain() { # pid of a `drain` (or empty): it sees the stop file within 0.1 s and ends
  [[ -n "$1" ]] || return 0
  touch "$work/drain.stop"
  wait "$1" 2>/dev/null || true
  rm -f "$work/drain.stop"
}

# How many append-only-file rewrites Redis has done: each forks and writes the whole dataset on
# the same two cores, so the scripts report how many fell into the measured runs.
aof_rewrites() { redis-cli info persistence | tr -d '\r' | awk -F: '$1=="aof_rewrites" {print $2}'; }
