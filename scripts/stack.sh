#!/usr/bin/env bash
# The local flow-like stack for development, without Docker or a cluster: PostgreSQL, Redis (append-only file,
# fsync every second) and an S3 server (s3s-fs) on free ports, plus the API and one dispatcher (process runner:
# each execution attempt is a local flow-like-executor process). Everything lives in .state/ (gitignored); data
# survives `down`/`up`, `clean` removes it. PostgreSQL, Redis and s3s-fs are started by the same Rust launchers as
# the test service pool (`flow-like-test-services stack-up`, tools/services/src/stack.rs); this script picks their
# ports and keys once, starts the API and the dispatcher, and stops everything.
#
#   scripts/stack.sh up       install deps, build (release), start everything, wait for the API's and the
#                             dispatcher's /readyz
#   scripts/stack.sh down     stop everything (data kept)
#   scripts/stack.sh status   what runs where
#   scripts/stack.sh clean    down, then delete .state/
#
# Settings for clients and tools: `set -a; . .state/env; set +a` (DATABASE_URL, REDIS_URL, S3_*, API_LISTEN,
# FLOWLIKE_ADMIN_TOKEN, ...). Logs: .state/logs/. Knobs: STACK_SKIP_BUILD=1 (use the binaries already built),
# STACK_READY_TIMEOUT (seconds to wait for each /readyz, default 60).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$REPO/.state"
ENV_FILE="$STATE/env"
LOGS="$STATE/logs"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}/release"
READY_TIMEOUT="${STACK_READY_TIMEOUT:-60}"

log() { echo "stack: $*" >&2; }
die() { log "$*"; exit 1; }

is_root() { [[ $EUID -eq 0 ]]; }

# PostgreSQL tools refuse root: run them as the postgres user then.
as_postgres() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
    local dir
    if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [[ -x $dir/initdb ]] || die "PostgreSQL server binaries not found: run scripts/install-deps.sh"
    echo "$dir"
}

# The cluster lives in .state/ unless the postgres user cannot reach it (a repo under a private home directory).
pg_dir() {
    if is_root && ! runuser -u postgres -- test -x "$STATE"; then
        echo "/var/tmp/flow-like-stack-$(echo -n "$REPO" | md5sum | cut -c1-12)/postgres"
    else
        echo "$STATE/postgres"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sets PICKED_PORT to a port nothing listens on and that was not picked before (no subshell: the list persists).
# Ports come from below the kernel's ephemeral range (ip_local_port_range): a port in that range can be taken at
# any moment as the local end of an outgoing connection, and a server then fails to bind it.
taken_ports=" "
pick_port() {
    local low=32768
    [[ -r /proc/sys/net/ipv4/ip_local_port_range ]] && read -r low _ </proc/sys/net/ipv4/ip_local_port_range
    ((low > 16000)) || low=32768
    while :; do
        PICKED_PORT=$((15000 + RANDOM % (low - 15000)))
        [[ $taken_ports == *" $PICKED_PORT "* ]] && continue
        port_in_use "$PICKED_PORT" && continue
        taken_ports+="$PICKED_PORT "
        return
    done
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# HTTP status code of GET http://127.0.0.1:$1$2, or 000 when nothing answers.
http_status() {
    if command -v curl >/dev/null; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1$2" || true
        return
    fi
    local line
    # A subshell: a failed /dev/tcp redirection must not end the script.
    line="$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 &&
        read -r -t 2 status_line <&3 && echo "$status_line") 2>/dev/null || true)"
    set -- $line
    echo "${2:-000}"
}

# pid from a pid file, if that process is still the expected program.
live_pid() { # pidfile program
    local pid
    [[ -f $1 ]] || return 1
    pid="$(head -n 1 "$1")"
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
    echo "$pid"
}

stop_pid() { # name pidfile program grace-seconds
    local pid deadline
    if pid="$(live_pid "$2" "$3")"; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + $4))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$1 did not stop in $4 s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $1"
    fi
    rm -f "$2"
}

# Chooses ports and secrets once; later `up`s reuse them so URLs and stored data stay valid.
write_env() {
    [[ -f $ENV_FILE ]] && return
    local pg redis s3 api api_metrics metrics
    pick_port; pg=$PICKED_PORT
    pick_port; redis=$PICKED_PORT
    pick_port; s3=$PICKED_PORT
    pick_port; api=$PICKED_PORT
    pick_port; api_metrics=$PICKED_PORT
    pick_port; metrics=$PICKED_PORT
    umask 077
    cat >"$ENV_FILE" <<EOF
# flow-like local stack settings (scripts/stack.sh). Load with: set -a; . .state/env; set +a
STACK_PG_PORT=$pg
STACK_REDIS_PORT=$redis
STACK_S3_PORT=$s3
STACK_API_PORT=$api
STACK_METRICS_PORT=$metrics
DATABASE_URL=postgres://postgres@127.0.0.1:$pg/flowlike
REDIS_URL=redis://127.0.0.1:$redis
REDIS_PREFIX=flowlike
S3_ENDPOINT=http://127.0.0.1:$s3
S3_REGION=us-east-1
S3_ACCESS_KEY_ID=flowlike-$(random_hex 4)
S3_SECRET_ACCESS_KEY=$(random_hex 20)
S3_META_BUCKET=flowlike-meta
S3_CONTENT_BUCKET=flowlike-content
S3_FORCE_PATH_STYLE=true
API_LISTEN=127.0.0.1:$api
API_METRICS_LISTEN=127.0.0.1:$api_metrics
FLOWLIKE_ADMIN_TOKEN=$(random_hex 24)
DISPATCHER_RUNNER=process
DISPATCHER_METRICS_LISTEN=127.0.0.1:$metrics
DISPATCHER_EXECUTOR_PATH=$TARGET/flow-like-executor
RUST_LOG=info
LOG_FORMAT=text
EOF
    umask 022
    log "wrote $ENV_FILE"
}

load_env() {
    [[ -f $ENV_FILE ]] || die "no $ENV_FILE: run scripts/stack.sh up"
    set -a
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    set +a
    # A state directory written before the API had its own metrics listener gets one.
    if [[ -z ${API_METRICS_LISTEN:-} ]]; then
        pick_port
        export API_METRICS_LISTEN=127.0.0.1:$PICKED_PORT
        echo "API_METRICS_LISTEN=$API_METRICS_LISTEN" >>"$ENV_FILE"
    fi
}

# PostgreSQL (default durability), Redis (append-only file, fsync every second) and s3s-fs with the stack's buckets,
# each unless it runs already; the database and buckets are created when missing. The launcher reads the S3 keys
# from S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY (exported by load_env); the servers outlive it.
start_servers() {
    local launcher="$TARGET/flow-like-test-services"
    [[ -x $launcher ]] || die "$launcher not built: run without STACK_SKIP_BUILD"
    "$launcher" stack-up --state "$STATE" --logs "$LOGS" \
        --postgres-dir "$(pg_dir)" --postgres-port "$STACK_PG_PORT" --database flowlike \
        --redis-port "$STACK_REDIS_PORT" \
        --s3-port "$STACK_S3_PORT" --s3-bucket "$S3_META_BUCKET" --s3-bucket "$S3_CONTENT_BUCKET" \
        || die "the stack's servers did not start"
}

start_binary() { # name pidfile command...
    local name=$1 pidfile=$2
    shift 2
    live_pid "$pidfile" "$name" >/dev/null && return
    [[ -x $1 ]] || die "$1 not built: run without STACK_SKIP_BUILD"
    echo "--- $(date -u +%FT%TZ) stack.sh starts $name" >>"$LOGS/$name.log"
    # NO_COLOR: plain text in the log files (tracing-subscriber colours by default).
    NO_COLOR=1 setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$pidfile"
    log "started $name (log: $LOGS/$name.log)"
}

# Waits until GET /readyz of a started binary answers 200; shows its log and fails if it exits or stays unready.
wait_ready() { # name pidfile port url
    local name=$1 pidfile=$2 port=$3 url=$4 deadline=$((SECONDS + READY_TIMEOUT)) code
    while :; do
        code="$(http_status "$port" /readyz)"
        [[ $code == 200 ]] && break
        if ! live_pid "$pidfile" "$name" >/dev/null; then
            log "$name exited; last lines of $LOGS/$name.log:"
            tail -n 30 "$LOGS/$name.log" >&2 || true
            die "$name did not start"
        fi
        if ((SECONDS >= deadline)); then
            log "GET $url/readyz did not return 200 within $READY_TIMEOUT s (last: $code);" \
                "last lines of $LOGS/$name.log:"
            tail -n 30 "$LOGS/$name.log" >&2 || true
            die "$name is not ready (it is still running: scripts/stack.sh down stops everything)"
        fi
        sleep 0.2
    done
    log "$name ready on $url"
}

cmd_up() {
    "$REPO/scripts/install-deps.sh"
    if [[ -z ${STACK_SKIP_BUILD:-} ]]; then
        log "building release binaries"
        (cd "$REPO" && cargo build --release -p flow-like-api -p flow-like-dispatcher -p flow-like-executor -p flow-like-cli \
            -p flow-like-test-services)
    fi
    mkdir -p "$STATE" "$LOGS"
    write_env
    load_env
    start_servers
    start_binary flow-like-api "$STATE/api.pid" "$TARGET/flow-like-api" serve
    # The API applies the migrations at start: the dispatcher starts once it is ready, on the current schema.
    wait_ready flow-like-api "$STATE/api.pid" "$STACK_API_PORT" "http://$API_LISTEN"
    start_binary flow-like-dispatcher "$STATE/dispatcher.pid" "$TARGET/flow-like-dispatcher" run
    wait_ready flow-like-dispatcher "$STATE/dispatcher.pid" "$STACK_METRICS_PORT" "http://$DISPATCHER_METRICS_LISTEN"
    log "stack is up (admin token in $ENV_FILE): set -a; . $ENV_FILE; set +a"
}

cmd_down() {
    [[ -d $STATE ]] || { log "nothing to stop"; return; }
    # The dispatcher gets its drain time (DISPATCHER_DRAIN_TIMEOUT_SECS defaults to 25).
    stop_pid flow-like-dispatcher "$STATE/dispatcher.pid" flow-like-dispatcher 35
    stop_pid flow-like-api "$STATE/api.pid" flow-like-api 30
    stop_pid s3s-fs "$STATE/s3/s3s-fs.pid" s3s-fs 5
    stop_pid redis "$STATE/redis/redis.pid" redis-server 15
    local dir
    dir="$(pg_dir)"
    if [[ -f $dir/data/postmaster.pid ]]; then
        as_postgres "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null && log "stopped PostgreSQL"
    fi
}

cmd_status() {
    [[ -f $ENV_FILE ]] || { echo "stack: not set up (scripts/stack.sh up)"; return; }
    load_env
    local pid dir
    report() { # name pid-or-empty address
        if [[ -n $2 ]]; then printf '%-22s running  pid %-8s %s\n' "$1" "$2" "$3"
        else printf '%-22s stopped\n' "$1"; fi
    }
    dir="$(pg_dir)"
    pid="$(live_pid "$dir/data/postmaster.pid" postgres || true)"
    report postgresql "$pid" "$DATABASE_URL"
    report redis "$(live_pid "$STATE/redis/redis.pid" redis-server || true)" "$REDIS_URL"
    report s3s-fs "$(live_pid "$STATE/s3/s3s-fs.pid" s3s-fs || true)" "$S3_ENDPOINT"
    pid="$(live_pid "$STATE/api.pid" flow-like-api || true)"
    report flow-like-api "$pid" "http://$API_LISTEN (readyz: $(http_status "$STACK_API_PORT" /readyz))"
    pid="$(live_pid "$STATE/dispatcher.pid" flow-like-dispatcher || true)"
    report flow-like-dispatcher "$pid" \
        "http://$DISPATCHER_METRICS_LISTEN (readyz: $(http_status "$STACK_METRICS_PORT" /readyz))"
}

cmd_clean() {
    cmd_down
    local dir
    dir="$(pg_dir)"
    [[ $dir == "$STATE/postgres" ]] || rm -rf "$(dirname "$dir")"
    rm -rf "$STATE"
    log "removed $STATE"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    *)
        echo "usage: scripts/stack.sh up|down|status|clean" >&2
        exit 2
        ;;
esac
