#!/usr/bin/env bash
# Benchmarks against the local stack (scripts/stack.sh): brings it up (release build), builds the load
# generator in release, and runs it against the stack's API; pgbench measures PostgreSQL's single-row INSERT
# rate on the same database as the ceiling. Everything runs on this machine, so its size is printed first.
#
#   scripts/bench.sh [submit]           submissions/s and latency at 64 clients (the default mode)
#   scripts/bench.sh read               GET /api/v1/executions/{id} (waiting reason and queue position computed on
#                                       read) of random queued executions, BENCH_QUEUED (100000) queued
#                                       (BENCH_READS 5000, BENCH_READ_CONCURRENCY 8; dispatcher stopped)
#   scripts/bench.sh dispatch           dispatcher overhead, noop runner: 1 then 3 dispatchers on a full queue
#   scripts/bench.sh dispatch-latency   queue-to-dispatch p50/p99 at 1,000 executions/s offered (noop runner)
#   scripts/bench.sh dispatcher-memory  peak memory (VmHWM) of the release dispatcher with 100,000 queued
#   scripts/bench.sh executor           executor start to first event (release executor, one-node workflow)
#   scripts/bench.sh e2e                API + dispatcher (process runner) + executor: executions/s, queue-to-start
#   scripts/bench.sh pipeline           all five pipeline modes in turn
#   scripts/bench.sh bullmq             flow-like beside BullMQ on the same Redis: drain of BENCH_EXECUTIONS queued
#                                       no-op jobs (one dispatcher; BullMQ's default and removeOnComplete modes)
#                                       and add-to-start latency at BENCH_RATE/s, BENCH_ROUNDS interleaved rounds
#                                       (3), with Redis commands and Redis CPU per job for both; BullMQ
#                                       (BENCH_BULLMQ_VERSION, 6.7.6) and its Redis client ioredis
#                                       (BENCH_IOREDIS_VERSION, 6.1.0) are installed from npm into target/bullmq-bench;
#                                       PostgreSQL runs at default durability in a pool of its own (BENCH_PG_DURABLE=0:
#                                       the test pool, fsync off); BENCH_REDIS_AOF=1 gives that pool's Redis an
#                                       append-only file fsynced every second (the chart's setting)
#   scripts/bench.sh kube-dispatch      dispatchers on the Kubernetes runner (1 then 3) against the simulator with
#                                       5 ms API latency and no pods, beside a plain kube-rs create loop at the same
#                                       concurrency; then queue-to-Job-created at 200 executions/s
#
# The pipeline modes do not use the stack: the load generator starts the test service pool (PostgreSQL, Redis,
# s3s-fs; see tools/services) and takes a fresh database, key prefix and buckets per run, so nothing queued
# elsewhere interferes. Each prints its figures and ends with one JSON line. Knobs: BENCH_EXECUTIONS (dispatch,
# 50000), BENCH_MEMORY_EXECUTIONS (100000), BENCH_RATE (1000), BENCH_SECONDS (10), BENCH_RUNS (executor, 50),
# BENCH_E2E_EXECUTIONS (500), BENCH_E2E_LIMIT (32), BENCH_KUBE_JOBS (kube-dispatch, 5000), BENCH_KUBE_RATE (200).
#
# Knobs (environment): BENCH_REQUESTS (20000), BENCH_CONCURRENCY (64), BENCH_WARMUP (1000),
# BENCH_TENANT (bench), STACK_SKIP_BUILD=1 (use the release binaries already built).
#
# The dispatcher is stopped for the run: it would otherwise start one executor process per submitted
# execution on the same cores and measure the executor instead of the API. The stack is left up; the
# submitted executions stay queued. `STACK_SKIP_BUILD=1 scripts/stack.sh up` restarts the dispatcher (which
# then runs them), `scripts/stack.sh down` stops everything, `scripts/stack.sh clean` also deletes the data.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$REPO/.state"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}/release"
MODE="${1:-submit}"

log() { echo "bench: $*" >&2; }

case "$MODE" in
    submit | read | dispatch | dispatch-latency | dispatcher-memory | executor | e2e | pipeline | kube-dispatch | bullmq) ;;
    *)
        echo "usage: scripts/bench.sh [submit|read|dispatch|dispatch-latency|dispatcher-memory|executor|e2e|pipeline|kube-dispatch|bullmq]" >&2
        exit 2
        ;;
esac

machine() {
    local cpu mem pg
    cpu="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
    mem="$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    pg="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    echo "machine: $(nproc) cores (${cpu:-unknown cpu}), $mem memory, $(uname -sr)"
    echo "services: $("$pg/postgres" --version 2>/dev/null || echo 'postgres ?'), $(redis-server --version | cut -d' ' -f1-3)"
}

# Stops the dispatcher of the stack through its pid file, as scripts/stack.sh down would.
stop_dispatcher() {
    local pidfile="$STATE/dispatcher.pid" pid
    [[ -f $pidfile ]] || return 0
    pid="$(head -n 1 "$pidfile")"
    if [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q flow-like-dispatcher; then
        log "stopping the dispatcher (pid $pid) for the run"
        kill -TERM "$pid"
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
}

machine

# One pipeline mode; the load generator finds the release dispatcher and executor beside itself.
pipeline_mode() {
    local loadgen="$TARGET/flow-like-loadgen"
    log "running: flow-like-loadgen $1 (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    case "$1" in
        dispatch)
            "$loadgen" dispatch --executions "${BENCH_EXECUTIONS:-50000}" --dispatchers 1
            "$loadgen" dispatch --executions "${BENCH_EXECUTIONS:-50000}" --dispatchers 3
            ;;
        dispatch-latency) "$loadgen" dispatch-latency --rate "${BENCH_RATE:-1000}" --seconds "${BENCH_SECONDS:-10}" ;;
        dispatcher-memory) "$loadgen" dispatcher-memory --executions "${BENCH_MEMORY_EXECUTIONS:-100000}" ;;
        executor) "$loadgen" executor --runs "${BENCH_RUNS:-50}" ;;
        kube-dispatch)
            "$loadgen" kube-dispatch --jobs "${BENCH_KUBE_JOBS:-5000}" --rate "${BENCH_KUBE_RATE:-200}"
            ;;
        e2e)
            "$loadgen" e2e --executions "${BENCH_E2E_EXECUTIONS:-500}" --global-limit "${BENCH_E2E_LIMIT:-32}"
            ;;
    esac
}

# flow-like and BullMQ side by side on the test pool's Redis (the one the load generator's pipeline modes use).
bullmq_mode() {
    local loadgen="$TARGET/flow-like-loadgen" scratch="$REPO/target/bullmq-bench"
    local version="${BENCH_BULLMQ_VERSION:-6.7.6}" ioredis="${BENCH_IOREDIS_VERSION:-6.1.0}"
    local rounds="${BENCH_ROUNDS:-3}" jobs="${BENCH_EXECUTIONS:-50000}"
    local out="$REPO/target/bullmq-bench/results.jsonl" redis_url round
    command -v node >/dev/null || { log "node (18 or later) is needed for the BullMQ side"; exit 1; }
    if [[ ! -f $scratch/node_modules/ioredis/package.json ]] \
        || [[ "$(node -p "require('$scratch/node_modules/bullmq/package.json').version")" != "$version" ]]; then
        # ioredis is a peer dependency of BullMQ 6 (it also runs on node-redis); the benchmark uses ioredis.
        log "installing bullmq@$version and ioredis@$ioredis into $scratch"
        mkdir -p "$scratch"
        npm install --prefix "$scratch" --no-audit --no-fund --silent "bullmq@$version" "ioredis@$ioredis" >&2
    fi
    cp "$REPO/tools/bullmq-bench/bench.mjs" "$scratch/bench.mjs"
    if [[ ${BENCH_PG_DURABLE:-1} == 1 ]]; then
        # PostgreSQL at its default durability (fsync, synchronous_commit, full_page_writes on), in a service
        # pool of its own (the test pool runs without durability); stopped again at the end.
        export FLOWLIKE_TEST_STATE="$REPO/target/bench-services-durable" FLOWLIKE_TEST_PG_DURABLE=1
        if [[ ${BENCH_REDIS_AOF:-0} == 1 ]]; then
            # Redis as the chart runs it: appendonly yes, appendfsync everysec.
            export FLOWLIKE_TEST_STATE="$REPO/target/bench-services-durable-aof" FLOWLIKE_TEST_REDIS_AOF=1
        fi
        trap '"$TARGET/flow-like-test-services" stop >/dev/null 2>&1 || true' EXIT
    fi
    local env_out database_url
    env_out="$("$TARGET/flow-like-test-services" env)"
    redis_url="$(sed -n "s/^export REDIS_URL='\(.*\)'$/\1/p" <<<"$env_out")"
    database_url="$(sed -n "s/^export DATABASE_URL='\(.*\)'$/\1/p" <<<"$env_out")"
    [[ -n $redis_url ]] || { log "could not start the test pool's Redis"; exit 1; }
    log "PostgreSQL: fsync $(psql -Atc 'SHOW fsync' "$database_url"), synchronous_commit $(psql -Atc 'SHOW synchronous_commit' "$database_url")"
    log "Redis for both sides: $redis_url ($(redis-cli -u "$redis_url" INFO server | tr -d '\r' | sed -n 's/^redis_version://p'), appendonly $(redis-cli -u "$redis_url" CONFIG GET appendonly | tail -n 1))"
    : >"$out"
    for round in $(seq 1 "$rounds"); do
        log "round $round/$rounds: flow-like drain, BullMQ drain (default, removeOnComplete)"
        "$loadgen" dispatch --executions "$jobs" --dispatchers 1 | tail -n 1 | sed 's/^/{"side":"flow-like","round":'"$round"',"report":/; s/$/}/' >>"$out"
        node "$scratch/bench.mjs" drain --redis "$redis_url" --jobs "$jobs" >>"$out"
        node "$scratch/bench.mjs" drain --redis "$redis_url" --jobs "$jobs" --remove-on-complete >>"$out"
        log "round $round/$rounds: add-to-start latency at ${BENCH_RATE:-1000}/s"
        "$loadgen" dispatch-latency --rate "${BENCH_RATE:-1000}" --seconds "${BENCH_SECONDS:-10}" | tail -n 1 \
            | sed 's/^/{"side":"flow-like","round":'"$round"',"report":/; s/$/}/' >>"$out"
        node "$scratch/bench.mjs" latency --redis "$redis_url" --rate "${BENCH_RATE:-1000}" \
            --seconds "${BENCH_SECONDS:-10}" >>"$out"
    done
    python3 "$REPO/tools/bullmq-bench/summary.py" "$out"
}

if [[ $MODE != submit && $MODE != read ]]; then
    if [[ -z ${STACK_SKIP_BUILD:-} ]]; then
        log "building the dispatcher, the executor and the load generator (release)"
        (cd "$REPO" && cargo build --release -p flow-like-dispatcher -p flow-like-executor \
            && cargo build --release -p flow-like-loadgen --bin flow-like-loadgen \
            && cargo build --release -p flow-like-test-services --bin flow-like-test-services)
    fi
    if [[ $MODE == bullmq ]]; then
        bullmq_mode
    elif [[ $MODE == pipeline ]]; then
        for mode in dispatch dispatch-latency dispatcher-memory executor e2e; do pipeline_mode "$mode"; done
    else
        pipeline_mode "$MODE"
    fi
    exit 0
fi

"$REPO/scripts/stack.sh" up
set -a
# shellcheck disable=SC1091
. "$STATE/env"
set +a
stop_dispatcher

if [[ -z ${STACK_SKIP_BUILD:-} ]]; then
    log "building the load generator (release)"
    (cd "$REPO" && cargo build --release -p flow-like-loadgen --bin flow-like-loadgen)
fi

if [[ $MODE == read ]]; then
    log "running: flow-like-loadgen read against http://$API_LISTEN"
    "$TARGET/flow-like-loadgen" read \
        --api-url "http://$API_LISTEN" \
        --admin-token "$FLOWLIKE_ADMIN_TOKEN" \
        --tenant "${BENCH_TENANT:-bench-read}" \
        --queue "${BENCH_QUEUED:-100000}" \
        --reads "${BENCH_READS:-5000}" \
        --concurrency "${BENCH_READ_CONCURRENCY:-8}"
    log "the stack is still up (dispatcher stopped): 'scripts/stack.sh down' stops it"
    exit 0
fi

log "running: flow-like-loadgen submit against http://$API_LISTEN"
"$TARGET/flow-like-loadgen" submit \
    --api-url "http://$API_LISTEN" \
    --admin-token "$FLOWLIKE_ADMIN_TOKEN" \
    --tenant "${BENCH_TENANT:-bench}" \
    --requests "${BENCH_REQUESTS:-20000}" \
    --concurrency "${BENCH_CONCURRENCY:-64}" \
    --warmup "${BENCH_WARMUP:-1000}" \
    --pgbench-url "$DATABASE_URL"

log "the stack is still up (dispatcher stopped): 'scripts/stack.sh down' stops it," \
    "'STACK_SKIP_BUILD=1 scripts/stack.sh up' restarts the dispatcher"
