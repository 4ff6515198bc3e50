#!/usr/bin/env bash
# otpd benchmarks: the same-run ceiling, check, send, delivery drain and scale series on
# SQLite, SMPP submit_sm throughput on one bind, the idle footprint and the timing test, all
# on loopback and bounded in time.
#
#   bench/run.sh           full run (~10-15 min on 2 cores): writes the tables into
#                          bench/RESULTS.md between the "results" markers
#   bench/run.sh --smoke   tiny sizes (~1-2 min): prints the tables, touches no tracked file
#
# Environment: CARGO_TARGET_DIR (build cache), BENCH_PROFILE (cargo profile, default
# release), BENCH_KEEP=1 (keep the work directory), and the sizes below (BENCH_DURATION,
# BENCH_CONNECTIONS, BENCH_CHECK_POOL, BENCH_SCALE, BENCH_DRAIN, BENCH_TIMING_SAMPLES,
# BENCH_SMPP_MESSAGES, BENCH_SMPP_WINDOWS).
#
# Every server and load process here is started by this script and stopped by its pid.
# Stores: "sqlite" (one node) and "postgres+redis" (BENCH_NODES nodes, default 3, sharing
# a fresh database on BENCH_POSTGRES_URL's server and logical database BENCH_REDIS_DB of
# the Redis at BENCH_REDIS_URL; the load is spread over the nodes). BENCH_STORES picks;
# postgres+redis is left out, with a message, when either server does not answer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=full
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --smoke) MODE=smoke ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: bench/run.sh [--smoke] [--out FILE]" >&2; exit 2 ;;
    esac
    shift
done

if [[ $MODE == smoke ]]; then
    DURATION=${BENCH_DURATION:-2}
    CONNECTIONS=${BENCH_CONNECTIONS:-16}
    CHECK_POOL=${BENCH_CHECK_POOL:-20000}
    SCALE=${BENCH_SCALE:-"1000 10000"}
    DRAIN=${BENCH_DRAIN:-500}
    TIMING_SAMPLES=${BENCH_TIMING_SAMPLES:-10000}
    TIMING_HTTP_SAMPLES=${BENCH_TIMING_HTTP_SAMPLES:-10000}
    SMPP_MESSAGES=${BENCH_SMPP_MESSAGES:-2000}
    SMPP_WINDOWS=${BENCH_SMPP_WINDOWS:-"1,50"}
else
    DURATION=${BENCH_DURATION:-10}
    CONNECTIONS=${BENCH_CONNECTIONS:-32}
    CHECK_POOL=${BENCH_CHECK_POOL:-200000}
    SCALE=${BENCH_SCALE:-"1000 100000 1000000"}
    DRAIN=${BENCH_DRAIN:-20000}
    TIMING_SAMPLES=${BENCH_TIMING_SAMPLES:-100000}
    TIMING_HTTP_SAMPLES=${BENCH_TIMING_HTTP_SAMPLES:-20000}
    SMPP_MESSAGES=${BENCH_SMPP_MESSAGES:-20000}
    SMPP_WINDOWS=${BENCH_SMPP_WINDOWS:-"1,10,50,100,200"}
fi
# Verifications the HTTP timing test spreads its wrong checks over (never approved).
TIMING_POOL=500
# Stores measured, and the shared servers of "postgres+redis".
STORES=${BENCH_STORES:-"sqlite postgres+redis"}
NODES=${BENCH_NODES:-3}
PG_URL=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_BASE=${BENCH_REDIS_URL:-redis://127.0.0.1:6379}
REDIS_DB=${BENCH_REDIS_DB:-9}
# Live verifications of the many-node scale series (seeding goes through Redis and the
# journal into PostgreSQL, far slower than SQLite's batched seeding).
SHARED_SCALE=${BENCH_SHARED_SCALE:-$(if [[ $MODE == smoke ]]; then echo "1000"; else echo "1000 100000"; fi)}
if [[ " $STORES " == *" postgres+redis "* ]] && ! { psql "$PG_URL" -qAtc 'SELECT 1' > /dev/null 2>&1 \
        && [[ $(redis-cli -u "$REDIS_BASE/$REDIS_DB" PING 2> /dev/null) == PONG ]]; }; then
    echo "== postgres+redis: skipped (PostgreSQL at $PG_URL or Redis at $REDIS_BASE does not answer)"
    STORES=${STORES/postgres+redis/}
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/otpd-target}"
PROFILE=${BENCH_PROFILE:-release}
echo "== bench ($MODE): building ($PROFILE)"
cargo build --profile "$PROFILE" --locked -p otpd -p otpd-bench
case "$PROFILE" in dev|test) BIN=$CARGO_TARGET_DIR/debug ;; *) BIN=$CARGO_TARGET_DIR/$PROFILE ;; esac

WORK=$(mktemp -d /tmp/otpd-bench.XXXXXX)
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
PIDS=()
PG_DBS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for db in "${PG_DBS[@]}"; do psql "$PG_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" > /dev/null 2>&1 || true; done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# fact LABEL VALUE UNIT: one more line for the report.
fact() {
    printf '{"kind":"fact","label":"%s","value":%s,"unit":"%s"}\n' "$1" "$2" "$3" >> "$RESULTS"
}

# wait_url FILE NAME: the URL printed by a server's "NAME listening on URL" line.
wait_url() {
    local file=$1 name=$2 i
    for i in $(seq 1 300); do
        if grep -q "$name listening on " "$file" 2>/dev/null; then
            grep -m1 "$name listening on " "$file" | sed 's/.*listening on \([^ ]*\).*/\1/'
            return 0
        fi
        sleep 0.1
    done
    echo "$name did not start; its output:" >&2
    cat "$file" >&2
    return 1
}

# stop PID[,PID…]: SIGTERM processes this script started, and reap them.
stop() {
    local pid
    for pid in ${1//,/ }; do kill "$pid" 2>/dev/null || true; done
    for pid in ${1//,/ }; do wait "$pid" 2>/dev/null || true; done
}

start_ceiling() {
    "$BIN/ceiling" > "$WORK/ceiling.out" 2>&1 &
    CEILING_PID=$!
    PIDS+=("$CEILING_PID")
    CEILING_URL=$(wait_url "$WORK/ceiling.out" ceiling)
}

start_sink() {
    "$BIN/sink" > "$WORK/sink.out" 2>&1 &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    SINK_URL=$(wait_url "$WORK/sink.out" sink)
}

# new_db NAME: a fresh installation directory (database, secret, config) pointing at the
# sink; for postgres+redis also a fresh PostgreSQL database and an emptied Redis database.
new_db() {
    DB_DIR=$WORK/$1
    mkdir -p "$DB_DIR"
    if [[ $STORE == postgres+redis ]]; then
        local db="otpd_bench_${1//-/_}_$$"
        psql "$PG_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" > /dev/null
        psql "$PG_URL" -qAtc "CREATE DATABASE $db" > /dev/null
        PG_DBS+=("$db")
        DB_URL="${PG_URL%/*}/$db"
        REDIS_URL="$REDIS_BASE/$REDIS_DB"
        redis-cli -u "$REDIS_URL" FLUSHDB > /dev/null
    fi
    cat > "$DB_DIR/otpd.toml" <<EOF
[[providers]]
name = "sink"
kind = "http"
url = "${SINK_URL:-http://127.0.0.1:9}/messages"
channels = ["sms", "voice", "whatsapp", "email"]
timeout_ms = 5000
EOF
}

# otpd_env: the environment of every otpd command on $DB_DIR for store $STORE.
otpd_env() {
    local env=(OTPD_CONFIG="$DB_DIR/otpd.toml" OTPD_SECRET_FILE="$DB_DIR/otpd.secret"
        OTPD_MASTER_KEY="$MASTER_KEY" OTPD_LISTEN=127.0.0.1:0 NO_COLOR=1)
    case "$STORE" in
        sqlite) env+=(OTPD_DATABASE_URL="sqlite://$DB_DIR/otpd.db") ;;
        postgres+redis) env+=(OTPD_DATABASE_URL="$DB_URL" OTPD_REDIS_URL="$REDIS_URL") ;;
        *) echo "unknown store $STORE" >&2; return 1 ;;
    esac
    printf '%s\n' "${env[@]}"
}

# start_otpd: otpd on $DB_DIR with a verify key in $KEY (default logging, as shipped): one
# node on sqlite, $NODES on postgres+redis. OTPD_URL and OTPD_PID list the nodes (commas),
# as otpd-load takes them.
start_otpd() {
    mapfile -t ENV < <(otpd_env)
    KEY=$(env "${ENV[@]}" "$BIN/otpd" keys create --name bench --role verify 2> "$DB_DIR/keys.err" | sed -n 's/^key: *//p') \
        || { cat "$DB_DIR/keys.err" >&2; return 1; }
    local n=1 i urls=() pids=()
    [[ $STORE == sqlite ]] || n=$NODES
    for i in $(seq 1 "$n"); do
        env "${ENV[@]}" "$BIN/otpd" serve > "$DB_DIR/otpd-$i.out" 2>&1 &
        pids+=($!)
        PIDS+=($!)
        urls+=("$(wait_url "$DB_DIR/otpd-$i.out" otpd)")
    done
    OTPD_URL=$(IFS=,; echo "${urls[*]}")
    OTPD_PID=$(IFS=,; echo "${pids[*]}")
}

seed() { # seed COUNT POOLFILE [--deliver]
    local count=$1 pool=$2 store=(--db "$DB_DIR/otpd.db")
    shift 2
    [[ $STORE == sqlite ]] || store=(--database-url "$DB_URL" --redis-url "$REDIS_URL")
    "$BIN/seed" "${store[@]}" --secret-file "$DB_DIR/otpd.secret" \
        --count "$count" --pool "$pool" "$@" 2>&1 | tail -n 1
}

# redis_calls all|scripts: commands Redis has run so far (INFO commandstats, INFO itself
# excluded). The check path is made of scripts (a read script, then a compare-and-set
# script), so its round trips are its EVALSHA/EVAL calls ("scripts"); the commands a script
# runs are counted by Redis under their own names, so "all" includes them.
redis_calls() {
    local which=$1
    redis-cli -u "$REDIS_URL" INFO commandstats | tr -d '\r' \
        | awk -F'[:=,]' -v which="$which" '
            /^cmdstat_/ && $1 != "cmdstat_info" {
                if (which == "all" || $1 ~ /^cmdstat_(evalsha|eval)$/) s += $3
            }
            END { print s + 0 }'
}

# redis_used_memory: the Redis server's used_memory, bytes.
redis_used_memory() {
    redis-cli -u "$REDIS_URL" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p'
}

# requests_of LABEL: the requests the run labelled LABEL made.
requests_of() {
    jq -r --arg l "$1" 'select(.kind == "load" and .label == $l) | .requests' "$RESULTS" | tail -n 1
}

load() { # load LABEL WORKLOAD URL [more otpd-load run args]
    local label=$1 workload=$2 url=$3
    shift 3
    "$BIN/otpd-load" run --label "$label" --workload "$workload" --url "$url" \
        --connections "$CONNECTIONS" --duration "$DURATION" --json-out "$RESULTS" "$@"
}

throughput_of() { # the req/s of the run labelled $1
    jq -r --arg l "$1" 'select(.kind == "load" and .label == $l) | .throughput' "$RESULTS" | tail -n 1
}

MASTER_KEY="otpd_live_bench_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
STARTED=$(date +%s)
{
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); mode: $MODE; commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "- machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(free -g | awk '/^Mem:/ {print $2}') GiB; $(uname -sr)"
    echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- toolchain: $(rustc --version); profile: $PROFILE"
    echo "- sizes: $DURATION s per run, $CONNECTIONS connections, check pool $CHECK_POOL, scale $SCALE, drain $DRAIN, timing $TIMING_SAMPLES samples per class in process, $TIMING_HTTP_SAMPLES through HTTP"
} > "$WORK/machine.md"

timing_ok=1
for STORE in $STORES; do
    # --- check: a seeded pool split in two (maximum load, then half of it) ------------------
    echo "== [$STORE] seeding $CHECK_POOL verifications for the check workload"
    new_db check
    seed "$CHECK_POOL" "$WORK/pool.all"
    seed "$TIMING_POOL" "$WORK/pool.timing" --offset "$CHECK_POOL"
    half=$((CHECK_POOL / 2))
    head -n "$half" "$WORK/pool.all" > "$WORK/pool.max"
    tail -n +"$((half + 1))" "$WORK/pool.all" > "$WORK/pool.half"

    if [[ $STORE == sqlite ]]; then
        echo "== ceiling (bare axum + serde on the same bodies)"
        start_ceiling
        load ceiling-check check "$CEILING_URL" --target ceiling --wrap --pool "$WORK/pool.max" --pid "$CEILING_PID"
        load ceiling-send send "$CEILING_URL" --target ceiling --pid "$CEILING_PID"
        stop "$CEILING_PID"
    fi

    echo "== [$STORE] check: 1 right in 5, distinct verifications"
    start_otpd
    if [[ $STORE != sqlite ]]; then
        top0=$(redis_calls scripts)
        all0=$(redis_calls all)
    fi
    load check check "$OTPD_URL" --store "$STORE" --key "$KEY" --pool "$WORK/pool.max" --pid "$OTPD_PID"
    if [[ $STORE != sqlite ]]; then
        checks=$(requests_of check)
        fact redis_round_trips_per_check "$(echo "$top0 $(redis_calls scripts) $checks" | awk '{printf "%.2f", ($2 - $1) / $3}')" \
            "Redis round trips per check: EVALSHA/EVAL calls (INFO commandstats over the check run, $NODES nodes; the spoolers' stream commands not counted)"
        fact redis_commands_per_check "$(echo "$all0 $(redis_calls all) $checks" | awk '{printf "%.2f", ($2 - $1) / $3}')" \
            "Redis commands per check, counting those the scripts run"
    fi
    rate=$(throughput_of check | awk '{printf "%.0f", $1 / 2}')
    load check-half check "$OTPD_URL" --store "$STORE" --key "$KEY" --pool "$WORK/pool.half" --pid "$OTPD_PID" --rate "$rate"
    if [[ $STORE == sqlite ]]; then
        echo "== [$STORE] timing through HTTP: wrong codes sharing 0 vs 5 leading digits"
        "$BIN/timing" --samples "$TIMING_HTTP_SAMPLES" --attempts 2 --json-out "$RESULTS" \
            --url "$OTPD_URL" --key "$KEY" --pool "$WORK/pool.timing" || timing_ok=0
    fi
    stop "$OTPD_PID"

    # --- send: a fresh database, messages to the local sink --------------------------------
    echo "== [$STORE] send: fresh numbers, accepted into the outbox"
    start_sink
    new_db send
    start_otpd
    sleep 2
    [[ $STORE != sqlite ]] || fact idle_rss_mb "$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$OTPD_PID/status")" "MB (fresh otpd, empty database, 2 s after start)"
    load send send "$OTPD_URL" --store "$STORE" --key "$KEY" --pid "$OTPD_PID"
    rate=$(throughput_of send | awk '{printf "%.0f", $1 / 2}')
    load send-half send "$OTPD_URL" --store "$STORE" --key "$KEY" --pid "$OTPD_PID" --rate "$rate" --number-offset 2000000
    sleep 2
    [[ $STORE != sqlite ]] || fact idle_rss_after_load_mb "$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$OTPD_PID/status")" "MB (same otpd, 2 s after the send runs)"
    stop "$OTPD_PID"
    stop "$SINK_PID"

    # --- delivery drain: N queued jobs, then otpd starts and the worker drains them ---------
    echo "== [$STORE] delivery drain of $DRAIN queued messages to the local sink"
    start_sink
    new_db drain
    seed "$DRAIN" "$WORK/pool.drain" --deliver
    start_otpd
    "$BIN/otpd-load" drain --label drain --store "$STORE" --sink "$SINK_URL" --expect "$DRAIN" \
        --pid "$OTPD_PID" --json-out "$RESULTS"
    stop "$OTPD_PID"
    stop "$SINK_PID"

    # --- scale: wrong-code checks spread over N live verifications --------------------------
    scale=$SCALE
    [[ $STORE == sqlite ]] || scale=$SHARED_SCALE
    for n in $scale; do
        echo "== [$STORE] scale: $n live verifications"
        new_db "scale-$n"
        [[ $STORE == sqlite ]] || mem0=$(redis_used_memory)
        t0=$(date +%s.%N)
        seed "$n" "$WORK/pool.scale"
        t1=$(date +%s.%N)
        if [[ $STORE == sqlite ]]; then
            fact "seed_rate_$n" "$(echo "$n $t0 $t1" | awk '{printf "%.0f", $1 / ($3 - $2)}')" "verifications/s (SqliteStore::start_many, batches of 2000)"
            bytes=$(find "$DB_DIR" -name 'otpd.db*' -printf '%s\n' | awk '{ s += $1 } END { print s }')
            fact "bytes_per_verification_$n" "$(echo "$bytes $n" | awk '{printf "%.0f", $1 / $2}')" "bytes of SQLite files per live verification ($n live)"
        else
            fact "redis_bytes_per_verification_$n" "$(echo "$mem0 $(redis_used_memory) $n" | awk '{printf "%.0f", ($2 - $1) / $3}')" \
                "bytes of Redis used_memory per live verification ($n live; seeded through RedisHot::start)"
        fi
        start_otpd
        load "scale-$n" check-wrong "$OTPD_URL" --store "$STORE" --key "$KEY" --pool "$WORK/pool.scale" --pid "$OTPD_PID" --live "$n"
        stop "$OTPD_PID"
        rm -rf "$DB_DIR"
    done
done

# --- SMPP: submit_sm throughput on one bind to the local npm smpp server (issue 9, target 8) --
if [[ -d crates/otpd/tests/peers/smpp/node_modules/smpp ]] && command -v node > /dev/null; then
    echo "== smpp: submit_sm throughput on one bind, by send window"
    "$BIN/smpp-submit" --messages "$SMPP_MESSAGES" --windows "$SMPP_WINDOWS" --json-out "$RESULTS"
else
    echo "== smpp: skipped (no node, or no npm ci in crates/otpd/tests/peers/smpp)"
fi

echo "== timing in process: wrong codes sharing 0 vs 5 leading digits"
"$BIN/timing" --samples "$TIMING_SAMPLES" --attempts 2 --json-out "$RESULTS" || timing_ok=0

echo "- load average after: $(cut -d' ' -f1-3 /proc/loadavg); wall time $(( $(date +%s) - STARTED )) s" >> "$WORK/machine.md"
{
    cat "$WORK/machine.md"
    echo
    "$BIN/otpd-load" report --in "$RESULTS"
} > "$WORK/report.md"

if [[ $MODE == full ]]; then
    cp "$RESULTS" bench/results.jsonl
    awk -v report="$WORK/report.md" '
        /<!-- results:start -->/ { print; while ((getline line < report) > 0) print line; skip = 1; next }
        /<!-- results:end -->/ { skip = 0 }
        !skip { print }
    ' bench/RESULTS.md > "$WORK/RESULTS.md"
    cp "$WORK/RESULTS.md" bench/RESULTS.md
    echo "== bench/RESULTS.md updated (raw lines in bench/results.jsonl)"
fi
[[ -n $OUT ]] && cp "$WORK/report.md" "$OUT"
cat "$WORK/report.md"
if [[ $timing_ok != 1 ]]; then
    echo "bench: the timing test found a difference" >&2
    exit 1
fi
echo "bench ($MODE) done in $(( $(date +%s) - STARTED )) s"
