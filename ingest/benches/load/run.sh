#!/usr/bin/env bash
# Load comparison: matomo-ingest vs a bare axum server answering the same GIF, same machine,
# same wrk settings, run alternately. Needs Redis and MariaDB (deploy/local/up or CI services),
# wrk, and release builds:
#   cargo build --release -p matomo-ingest --bin matomo-ingest --example bare_gif
# Usage: ingest/benches/load/run.sh [DURATION_S] [CONNECTIONS] [ROUNDS]
# Prints requests/s and latency for each run, the ratio, and Redis bytes per queued hit.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}/release"
duration="${1:-10}"; conns="${2:-64}"; rounds="${3:-2}"
mysql_args=(-h 127.0.0.1 -P 3306 -u matomo -pmatomo)
db="mt_test_load_$RANDOM$RANDOM"
prefix="loadtest_$RANDOM:"
work="$(mktemp -d)"
cleanup() {
  [[ -n "${ingest_pid:-}" ]] && kill "$ingest_pid" 2>/dev/null || true
  [[ -n "${bare_pid:-}" ]] && kill "$bare_pid" 2>/dev/null || true
  redis-cli --scan --pattern "${prefix}*" | xargs -r redis-cli del >/dev/null || true
  mysql "${mysql_args[@]}" -e "DROP DATABASE IF EXISTS \`$db\`" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mysql "${mysql_args[@]}" -e "CREATE DATABASE \`$db\`" 2>/dev/null
sed 's/{{prefix}}/matomo_/g' "$root/deploy/schema/matomo.sql" | mysql "${mysql_args[@]}" "$db" 2>/dev/null
mysql "${mysql_args[@]}" "$db" 2>/dev/null -e "INSERT INTO matomo_site (idsite, name, main_url, ts_created, \
  sitesearch_keyword_parameters, sitesearch_category_parameters, timezone, currency, excluded_ips, \
  excluded_parameters, excluded_user_agents, excluded_referrers, \`group\`, \`type\`) VALUES \
  (1, 'Load', 'http://example.com', NOW(), '', '', 'UTC', 'USD', '', '', '', '', '', 'website')"
cat > "$work/ingest.toml" <<TOML
[database]
dbname = "$db"
[queue]
key_prefix = "$prefix"
num_queue_workers = 16
[matomo]
salt = "load-test-salt"
[ingest]
listen = "127.0.0.1:18081"
[log]
level = "warn"
TOML
"$target/matomo-ingest" --config "$work/ingest.toml" & ingest_pid=$!
echo "ingest pid $ingest_pid" >&2
"$target/examples/bare_gif" 127.0.0.1:18090 >/dev/null & bare_pid=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:18081/readyz >/dev/null && break; sleep 0.2; done
curl -sf http://127.0.0.1:18090/ >/dev/null

run() { # name port
  wrk -t2 -c"$conns" -d"${duration}s" --latency -s "$here/hit.lua" "http://127.0.0.1:$2" > "$work/$1.txt"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$1.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/$1.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/$1.txt")
  echo "$1 rps=$rps p50=$p50 p99=$p99" >&2
  echo "$rps"
}
mem_before=$(redis-cli info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
total_ingest=0; total_bare=0
for r in $(seq "$rounds"); do
  b=$(run "bare_$r" 18090); i=$(run "ingest_$r" 18081)
  total_bare=$(echo "$total_bare + $b" | bc); total_ingest=$(echo "$total_ingest + $i" | bc)
done
mem_after=$(redis-cli info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
hits=0
for q in $(seq 0 15); do
  key="${prefix}trackingQueueV1"; [[ $q -gt 0 ]] && key="${key}_$q"
  hits=$((hits + $(redis-cli llen "$key")))
done
echo "ratio ingest/bare = $(echo "scale=3; $total_ingest / $total_bare" | bc)"
echo "queued hits = $hits, redis bytes per hit = $(echo "($mem_after - $mem_before) / $hits" | bc)"
