#!/usr/bin/env bash
# API schema fuzzing: schemathesis (pinned, in a venv) against the real otpd binary's own
# /openapi.json, authenticated. Checks: no 5xx (not_a_server_error), and every response
# has a documented status, and matches the documented schema and content type for it
# (ST_CHECKS overrides the list, e.g. ST_CHECKS=all).
#
#   bench/schemathesis.sh [--max-examples N]
#
# Two passes over every operation, each on a fresh database:
#   1. the admin master key (OTPD_MASTER_KEY: it cannot be revoked by the DELETE /v1/keys
#      calls the run makes); its sends go to an http provider on a closed loopback port,
#      so nothing leaves the machine;
#   2. a test key (otpd_test_…, role verify): sends are recorded, never handed to a
#      provider, and the admin operations answer 403.
#
# Environment: OTPD_CI_CACHE (venv location, default /var/cache/otpd-ci), CARGO_TARGET_DIR,
# OTPD_BIN (an otpd binary; default: the debug build, built when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=25
while [[ $# -gt 0 ]]; do
    case "$1" in
        --max-examples) MAX_EXAMPLES=$2; shift ;;
        *) echo "usage: bench/schemathesis.sh [--max-examples N]" >&2; exit 2 ;;
    esac
    shift
done

VENV="${OTPD_CI_CACHE:-/var/cache/otpd-ci}/py-bench"
mkdir -p "$(dirname "$VENV")" 2>/dev/null || VENV=$(mktemp -d /tmp/otpd-py-bench.XXXXXX)/py-bench
if [[ ! -x $VENV/bin/st ]] || ! "$VENV/bin/pip" show schemathesis 2>/dev/null | grep -x "Version: $SCHEMATHESIS_VERSION" > /dev/null; then
    echo "== creating $VENV with schemathesis $SCHEMATHESIS_VERSION"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/otpd-target}"
OTPD_BIN=${OTPD_BIN:-$CARGO_TARGET_DIR/debug/otpd}
if [[ ! -x $OTPD_BIN ]]; then
    cargo build --locked -p otpd
fi

WORK=$(mktemp -d /tmp/otpd-schemathesis.XXXXXX)
OTPD_PID=""
cleanup() {
    if [[ -n $OTPD_PID ]]; then kill "$OTPD_PID" 2>/dev/null || true; wait "$OTPD_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# pass NAME KIND: a fresh otpd and one schemathesis run with the master key (KIND=master)
# or a verify test key (KIND=test).
pass() {
    local name=$1 kind=$2 dir=$WORK/$1
    local master=otpd_live_schemathesis_master_key
    mkdir -p "$dir"
    cat > "$dir/otpd.toml" <<'EOF'
[[providers]]
name = "nowhere"
kind = "http"
url = "http://127.0.0.1:9/messages"
timeout_ms = 200
EOF
    local env=(OTPD_CONFIG="$dir/otpd.toml" OTPD_DATABASE_URL="sqlite://$dir/otpd.db"
        OTPD_MASTER_KEY="$master" OTPD_LISTEN=127.0.0.1:0
        RUST_LOG=warn NO_COLOR=1)
    local key=$master
    if [[ $kind == test ]]; then
        key=$(env "${env[@]}" "$OTPD_BIN" keys create --name schemathesis --role verify --test 2>/dev/null | sed -n 's/^key: *//p')
    fi
    env "${env[@]}" "$OTPD_BIN" serve > "$dir/otpd.out" 2>&1 &
    OTPD_PID=$!
    local url="" i
    for i in $(seq 1 200); do
        url=$(sed -n 's/^otpd listening on \(http[^ ]*\).*/\1/p' "$dir/otpd.out" 2>/dev/null | head -n 1 || true)
        [[ -n $url ]] && break
        sleep 0.1
    done
    [[ -n $url ]] || { cat "$dir/otpd.out" >&2; return 1; }
    # The default service gets a passkeys relying party, so the passkey ceremonies are
    # started (201) and their answers checked against the schema, not only refused.
    curl -sf -o /dev/null -X PATCH "$url/v1/services/default" -H "Authorization: Bearer $master" \
        -H 'content-type: application/json' \
        -d '{"passkeys": {"rp_id": "localhost", "origins": ["http://localhost:8080"]}}'
    echo "== schemathesis pass '$name' ($kind key) against $url, $MAX_EXAMPLES examples per operation"
    local status=0
    # From the work directory: schemathesis keeps state in ./.schemathesis.
    # Phases: examples, coverage and fuzzing. The stateful phase ran no scenario here
    # (0 of its links covered: the document declares no OpenAPI links), and the links it
    # infers by itself join Twilio's differently named parameters of one resource
    # (`/v2/Services/{Sid}` and `/v2/Services/{ServiceSid}/…`, as Twilio's spec names
    # them), which schemathesis then reports as invalid link definitions.
    (cd "$dir" && "$VENV/bin/st" run "$url/openapi.json" \
        --url "$url" \
        --phases examples,coverage,fuzzing \
        --header "Authorization: Bearer $key" \
        --checks ${ST_CHECKS:-not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance} \
        --max-examples "$MAX_EXAMPLES" \
        --seed 42 \
        --request-timeout 10 \
        --no-color \
        --generation-database none \
        --report junit --report-dir "$dir/report") || status=$?
    if grep -q "panicked" "$dir/otpd.out"; then
        echo "otpd panicked during the '$name' pass:" >&2
        grep -A5 "panicked" "$dir/otpd.out" >&2
        status=1
    fi
    kill "$OTPD_PID" 2>/dev/null || true
    wait "$OTPD_PID" 2>/dev/null || true
    OTPD_PID=""
    return "$status"
}

failed=0
pass admin master || failed=1
pass test test || failed=1
if [[ $failed != 0 ]]; then
    echo "schemathesis: failures (see above)" >&2
    exit 1
fi
echo "schemathesis: no 5xx and no response outside the schema in either pass"
