# shellcheck shell=bash
# Shared helpers of the local stack scripts (up, down, test). Sourced, never run.
#
# Owns: installing missing Debian packages, starting Redis and MariaDB on loopback when nothing
# answers on their ports (reusing running ones otherwise), and the `matomo` database user.
# Everything it starts writes its logs and pid files under deploy/local/run/, and leaves a
# `*.started-by-up` marker so `down` stops only what these scripts started.
#
# Settings (environment, all optional):
#   REDIS_PORT (6379)  MYSQL_PORT (3306)  MARIADB_DATADIR (/var/lib/mysql)
#   MARIADB_SOCKET (/run/mysqld/mysqld.sock)  DB_USER / DB_PASSWORD (matomo / matomo)
#   WAIT_SECS (60): how long to wait for a service before giving up.
#   LOCAL_RUN_DIR (deploy/local/run): where logs, pid files and generated files go.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RUN_DIR="${LOCAL_RUN_DIR:-$ROOT/deploy/local/run}"
REDIS_PORT="${REDIS_PORT:-6379}"
MYSQL_PORT="${MYSQL_PORT:-3306}"
MARIADB_DATADIR="${MARIADB_DATADIR:-/var/lib/mysql}"
MARIADB_SOCKET="${MARIADB_SOCKET:-/run/mysqld/mysqld.sock}"
DB_USER="${DB_USER:-matomo}"
DB_PASSWORD="${DB_PASSWORD:-matomo}"
WAIT_SECS="${WAIT_SECS:-60}"

mkdir -p "$RUN_DIR"

log() { printf '\033[1m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() {
    printf '\033[31merror:\033[0m %s\n' "$*" >&2
    exit 1
}

# Prints the last lines of a log file, indented, to stderr.
tail_log() {
    [[ -f "$1" ]] && sed 's/^/    /' <(tail -n "${2:-15}" "$1") >&2
    return 0
}

# True when a TCP connection to 127.0.0.1:$1 succeeds.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# True when a Redis server answers on the port (+PONG, or an auth error, which is Redis too).
redis_answers() {
    local reply
    reply="$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1; printf 'PING\r\n' >&3; head -c 7 <&3" 2>/dev/null || true)"
    [[ "$reply" == "+PONG"* || "$reply" == "-NOAUTH"* ]]
}

# True when something speaking the MySQL protocol answers on the port (it sends a greeting).
mysql_answers() {
    local bytes
    bytes="$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1; head -c 5 <&3 | wc -c" 2>/dev/null || echo 0)"
    [[ "${bytes:-0}" -ge 5 ]]
}

# Waits until "$@" succeeds, up to WAIT_SECS.
wait_until() {
    local what="$1"
    shift
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    log "$what is ready"
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

mysql_client() { command -v mariadb || command -v mysql; }

# The client connected as the tier's user over TCP.
db() { "$(mysql_client)" -h127.0.0.1 -P"$MYSQL_PORT" -u"$DB_USER" -p"$DB_PASSWORD" "$@"; }

# Installs the Debian packages whose programs are missing (apt-get update once, only if needed).
# Extra arguments `program:package` add programs to check (the test suite's tools).
ensure_packages() {
    local packages=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || packages+=("${pair#*:}")
    done
    # The servers' programs are needed even when Redis/MariaDB already answer: the
    # fault-injection suite (benches/tests/faults.rs) starts private instances it can kill.
    command -v redis-server >/dev/null || packages+=(redis-server)
    command -v redis-cli >/dev/null || packages+=(redis-tools)
    if ! command -v mariadb-install-db >/dev/null || { ! command -v mariadbd >/dev/null && ! command -v mysqld >/dev/null; }; then
        packages+=(mariadb-server)
    fi
    # HAProxy in front of two ingest nodes, for the fault-injection suite and deploy/haproxy.
    command -v haproxy >/dev/null || packages+=(haproxy)
    mysql_client >/dev/null || packages+=(mariadb-client)
    command -v curl >/dev/null || packages+=(curl)
    command -v python3 >/dev/null || packages+=(python3)
    command -v timeout >/dev/null || packages+=(coreutils)
    # Build tools for the crates with C parts (ring/aws-lc, pcre2).
    command -v cc >/dev/null || packages+=(build-essential)
    command -v cmake >/dev/null || packages+=(cmake)
    command -v pkg-config >/dev/null || packages+=(pkg-config)
    ((${#packages[@]} == 0)) && return 0

    [[ $EUID -eq 0 ]] || die "missing packages (${packages[*]}); run as root or install them first"
    log "installing Debian packages: ${packages[*]}"
    # Keep the packages' init scripts from starting services: these scripts start them on
    # loopback themselves, and stop only what they started.
    local policy=/usr/sbin/policy-rc.d added_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=1
    fi
    local status=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
    } >"$RUN_DIR/apt.log" 2>&1 || status=$?
    ((added_policy)) && rm -f "$policy"
    if ((status != 0)); then
        tail_log "$RUN_DIR/apt.log" 30
        die "apt-get failed (full log: $RUN_DIR/apt.log)"
    fi
}

start_redis() {
    if redis_answers "$REDIS_PORT"; then
        log "Redis already answers on 127.0.0.1:$REDIS_PORT: reusing it"
        return 0
    fi
    port_open "$REDIS_PORT" && die "127.0.0.1:$REDIS_PORT is taken by something that is not Redis"
    log "starting Redis on 127.0.0.1:$REDIS_PORT (log: $RUN_DIR/redis.log)"
    mkdir -p "$RUN_DIR/redis"
    # list-compress-depth 64: Redis compresses a queue's list nodes (LZF) only beyond 64 nodes
    # from either end, so a queue the workers keep up with (up to two batches of 500 entries)
    # is never compressed (so never decompressed), while a backlog is (docs/operations.md).
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --dir "$RUN_DIR/redis" --pidfile "$RUN_DIR/redis.pid" --logfile "$RUN_DIR/redis.log" \
        --save '' --appendonly yes --auto-aof-rewrite-min-size 1gb --list-compress-depth 64 \
        --unixsocket "$RUN_DIR/redis.sock" --unixsocketperm 700 ||
        die "redis-server did not start (log: $RUN_DIR/redis.log)"
    touch "$RUN_DIR/redis.started-by-up"
    wait_until "Redis" redis_answers "$REDIS_PORT" || {
        tail_log "$RUN_DIR/redis.log"
        die "Redis did not answer on 127.0.0.1:$REDIS_PORT within ${WAIT_SECS}s"
    }
}

start_mariadb() {
    if mysql_answers "$MYSQL_PORT"; then
        log "MariaDB/MySQL already answers on 127.0.0.1:$MYSQL_PORT: reusing it"
        return 0
    fi
    port_open "$MYSQL_PORT" && die "127.0.0.1:$MYSQL_PORT is taken by something that is not MySQL"
    [[ $EUID -eq 0 ]] || die "MariaDB is not running on 127.0.0.1:$MYSQL_PORT and starting it needs root"
    local mdir="$RUN_DIR/mariadb"
    mkdir -p "$mdir" "$(dirname "$MARIADB_SOCKET")"
    chown mysql:mysql "$mdir" "$(dirname "$MARIADB_SOCKET")"
    if [[ ! -d "$MARIADB_DATADIR/mysql" ]]; then
        log "initialising the MariaDB data folder $MARIADB_DATADIR"
        mkdir -p "$MARIADB_DATADIR" && chown mysql:mysql "$MARIADB_DATADIR"
        "$(command -v mariadb-install-db || command -v mysql_install_db)" --user=mysql \
            --datadir="$MARIADB_DATADIR" --auth-root-authentication-method=socket --skip-test-db \
            >"$mdir/install-db.log" 2>&1 || {
            tail_log "$mdir/install-db.log"
            die "mariadb-install-db failed (log: $mdir/install-db.log)"
        }
    fi
    log "starting MariaDB on 127.0.0.1:$MYSQL_PORT (log: $mdir/mariadb.log)"
    touch "$mdir/mariadb.log" && chown mysql:mysql "$mdir/mariadb.log"
    nohup mysqld_safe --user=mysql --bind-address=127.0.0.1 --port="$MYSQL_PORT" \
        --datadir="$MARIADB_DATADIR" --socket="$MARIADB_SOCKET" \
        --pid-file="$mdir/mariadbd.pid" --log-error="$mdir/mariadb.log" --skip-syslog \
        >"$mdir/mysqld_safe.log" 2>&1 &
    echo $! >"$mdir/mysqld_safe.pid"
    touch "$RUN_DIR/mariadb.started-by-up"
    wait_until "MariaDB" mysql_answers "$MYSQL_PORT" || {
        tail_log "$mdir/mariadb.log"
        die "MariaDB did not answer on 127.0.0.1:$MYSQL_PORT within ${WAIT_SECS}s"
    }
}

# Creates (or repairs) the database user the tier and the tests use: it must log in over TCP
# and be able to create databases (tests create and drop mt_test_* databases).
ensure_db_user() {
    local probe="mt_test_probe_$$"
    if db -e "CREATE DATABASE IF NOT EXISTS \`$probe\`; DROP DATABASE \`$probe\`" >/dev/null 2>&1; then
        log "database user $DB_USER can log in and create databases"
        return 0
    fi
    log "creating database user $DB_USER (via the root unix socket $MARIADB_SOCKET)"
    local sql=""
    for host in 127.0.0.1 localhost; do
        sql+="CREATE USER IF NOT EXISTS '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASSWORD';"
        sql+="ALTER USER '$DB_USER'@'$host' IDENTIFIED BY '$DB_PASSWORD';"
        sql+="GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'$host';"
    done
    "$(mysql_client)" --protocol=socket --socket="$MARIADB_SOCKET" -uroot -e "$sql" 2>"$RUN_DIR/db-user.log" || {
        tail_log "$RUN_DIR/db-user.log"
        die "cannot create database user $DB_USER as root over $MARIADB_SOCKET; create it by hand (see docs/operations.md)"
    }
    db -e "SELECT 1" >/dev/null 2>&1 || die "database user $DB_USER still cannot log in over TCP"
}

# Everything the tests and the tier need below the tier itself.
ensure_services() {
    ensure_packages
    start_redis
    start_mariadb
    ensure_db_user
}
