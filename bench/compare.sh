#!/usr/bin/env bash
# Before/after in one run: two otpd binaries measured alternately (A B A B …) on the same
# workloads, seeded databases and settings, so a change's effect is not confused with the
# machine's noise. Prints one line per run and the medians.
#
#   bench/compare.sh OTPD_A OTPD_B [ROUNDS]      (default 3 rounds; 5 s per run)
#
# Needs the release bench tools (cargo build --release -p otpd-bench). Environment:
# CARGO_TARGET_DIR, BENCH_DURATION, BENCH_CONNECTIONS, BENCH_POOL.
set -euo pipefail
cd "$(dirname "$0")/.."

A=$1
B=$2
ROUNDS=${3:-3}
DURATION=${BENCH_DURATION:-5}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
POOL=${BENCH_POOL:-40000}
BIN=${CARGO_TARGET_DIR:-/var/cache/otpd-target}/release

WORK=$(mktemp -d /tmp/otpd-compare.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/sink" > "$WORK/sink.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/sink.out" && break; sleep 0.1; done
SINK_URL=$(sed -n 's/.*listening on \(.*\)/\1/p' "$WORK/sink.out")

# One seeded database per round, copied for each binary, so both check the same pool.
MASTER="otpd_live_compare_master_key_0001"
run() { # run LABEL BINARY DIR WORKLOAD [args]
    local label=$1 bin=$2 dir=$3 workload=$4
    shift 4
    local env=(OTPD_CONFIG="$dir/otpd.toml" OTPD_SECRET_FILE="$dir/otpd.secret"
        OTPD_DATABASE_URL="sqlite://$dir/otpd.db" OTPD_MASTER_KEY="$MASTER" OTPD_LISTEN=127.0.0.1:0 NO_COLOR=1)
    local key
    key=$(env "${env[@]}" "$bin" keys create --name cmp --role verify 2>/dev/null | sed -n 's/^key: *//p')
    env "${env[@]}" "$bin" serve > "$dir/otpd.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    local url=""
    for _ in $(seq 1 100); do
        url=$(sed -n 's/^otpd listening on \(http[^ ]*\).*/\1/p' "$dir/otpd.out" 2>/dev/null | head -n 1 || true)
        [[ -n $url ]] && break
        sleep 0.1
    done
    "$BIN/otpd-load" run --label "$label" --workload "$workload" --url "$url" --key "$key" \
        --connections "$CONNECTIONS" --duration "$DURATION" --pid "$pid" --json-out "$WORK/results.jsonl" "$@"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

for round in $(seq 1 "$ROUNDS"); do
    mkdir -p "$WORK/seed"
    rm -f "$WORK/seed/"*
    printf '[[providers]]\nname = "sink"\nkind = "http"\nurl = "%s/messages"\n' "$SINK_URL" > "$WORK/seed/otpd.toml"
    "$BIN/seed" --db "$WORK/seed/otpd.db" --secret-file "$WORK/seed/otpd.secret" --count "$POOL" --pool "$WORK/pool" > /dev/null 2>&1
    for side in A B; do
        bin=$A
        [[ $side == B ]] && bin=$B
        for w in check send; do
            dir=$WORK/$side-$w
            rm -rf "$dir"
            cp -r "$WORK/seed" "$dir"
            if [[ $w == check ]]; then
                run "$side-check" "$bin" "$dir" check --pool "$WORK/pool"
            else
                run "$side-send" "$bin" "$dir" send --number-offset $((round * 500000))
            fi
        done
    done
done

echo
echo "medians over $ROUNDS rounds (req/s, p50 ms, p99 ms):"
for label in A-check B-check A-send B-send; do
    jq -s --arg l "$label" '[.[] | select(.label == $l)] | [(map(.throughput) | sort | .[length / 2 | floor]), (map(.p50_ms) | sort | .[length / 2 | floor]), (map(.p99_ms) | sort | .[length / 2 | floor])] | @tsv' -r "$WORK/results.jsonl" \
        | awk -v l="$label" '{ printf "%-8s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms\n", l, $1, $2, $3 }'
done
