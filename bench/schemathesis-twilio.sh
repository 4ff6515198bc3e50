#!/usr/bin/env bash
# Twilio-contract fuzzing: schemathesis (pinned, the venv of bench/schemathesis.sh) against
# the real otpd binary, driven by Twilio's own OpenAPI description of Verify v2
# (bench/twilio/verify_v2.json, pinned; see bench/twilio/README.md), over the operations
# otpd serves on /v2, with HTTP Basic as the official SDKs send it. Checks: no 5xx, and
# every response with a status Twilio documents matches Twilio's schema and content type
# (otpd's documented extra statuses, e.g. 404 / 20404, are Twilio's error bodies).
#
#   bench/schemathesis-twilio.sh [--max-examples N]
#
# Environment: OTPD_CI_CACHE (venv location, default /var/cache/otpd-ci), CARGO_TARGET_DIR,
# OTPD_BIN (an otpd binary; default: the debug build, built when missing), ST (a
# schemathesis `st` to use instead of the venv's).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=25
while [[ $# -gt 0 ]]; do
    case "$1" in
        --max-examples) MAX_EXAMPLES=$2; shift ;;
        *) echo "usage: bench/schemathesis-twilio.sh [--max-examples N]" >&2; exit 2 ;;
    esac
    shift
done

# The operations of Twilio's spec that otpd serves (docs/twilio-migration.md).
SERVED='^(CreateService|ListService|FetchService|UpdateService|DeleteService|CreateVerification|FetchVerification|UpdateVerification|CreateVerificationCheck|ListVerificationAttempt|FetchVerificationAttempt|FetchVerificationAttemptsSummary|ListVerificationTemplate|CreateSafelist|FetchSafelist|DeleteSafelist|CreateRateLimit|ListRateLimit|FetchRateLimit|UpdateRateLimit|DeleteRateLimit|CreateBucket|ListBucket|FetchBucket|UpdateBucket|DeleteBucket|CreateMessagingConfiguration|ListMessagingConfiguration|FetchMessagingConfiguration|UpdateMessagingConfiguration|DeleteMessagingConfiguration|CreateEntity|ListEntity|FetchEntity|DeleteEntity|CreateNewFactor|ListFactor|FetchFactor|UpdateFactor|DeleteFactor|CreateChallenge|ListChallenge|FetchChallenge|UpdateChallenge|CreateWebhook|ListWebhook|FetchWebhook|UpdateWebhook|DeleteWebhook|CreateNewFactorPasskey|UpdatePasskeysFactor|CreateChallengePasskeys|UpdateChallengePasskeys)$'

ST=${ST:-}
if [[ -z $ST ]]; then
    VENV="${OTPD_CI_CACHE:-/var/cache/otpd-ci}/py-bench"
    mkdir -p "$(dirname "$VENV")" 2>/dev/null || VENV=$(mktemp -d /tmp/otpd-py-bench.XXXXXX)/py-bench
    if [[ ! -x $VENV/bin/st ]] || ! "$VENV/bin/pip" show schemathesis 2>/dev/null | grep -x "Version: $SCHEMATHESIS_VERSION" > /dev/null; then
        echo "== creating $VENV with schemathesis $SCHEMATHESIS_VERSION"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    fi
    ST=$VENV/bin/st
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/otpd-target}"
OTPD_BIN=${OTPD_BIN:-$CARGO_TARGET_DIR/debug/otpd}
if [[ ! -x $OTPD_BIN ]]; then
    cargo build --locked -p otpd
fi

SPEC=$PWD/bench/twilio/verify_v2.json
WORK=$(mktemp -d /tmp/otpd-schemathesis-twilio.XXXXXX)
OTPD_PID=""
cleanup() {
    if [[ -n $OTPD_PID ]]; then kill "$OTPD_PID" 2>/dev/null || true; wait "$OTPD_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

master=otpd_live_schemathesis_twilio_master_key
cat > "$WORK/otpd.toml" <<'TOML'
[[providers]]
name = "nowhere"
kind = "http"
url = "http://127.0.0.1:9/messages"
timeout_ms = 200
TOML
env OTPD_CONFIG="$WORK/otpd.toml" OTPD_DATABASE_URL="sqlite://$WORK/otpd.db" \
    OTPD_MASTER_KEY="$master" OTPD_LISTEN=127.0.0.1:0 RUST_LOG=warn NO_COLOR=1 \
    "$OTPD_BIN" serve > "$WORK/otpd.out" 2>&1 &
OTPD_PID=$!
url=""
for _ in $(seq 1 200); do
    url=$(sed -n 's/^otpd listening on \(http[^ ]*\).*/\1/p' "$WORK/otpd.out" 2>/dev/null | head -n 1 || true)
    [[ -n $url ]] && break
    sleep 0.1
done
[[ -n $url ]] || { cat "$WORK/otpd.out" >&2; exit 1; }

echo "== schemathesis over Twilio's Verify v2 spec (served operations) against $url, $MAX_EXAMPLES examples per operation"
status=0
(cd "$WORK" && "$ST" run "$SPEC" \
    --url "$url" \
    --auth "ACotpd:$master" \
    --include-operation-id-regex "$SERVED" \
    --checks ${ST_CHECKS:-not_a_server_error,response_schema_conformance,content_type_conformance} \
    --max-examples "$MAX_EXAMPLES" \
    --seed 42 \
    --request-timeout 10 \
    --no-color \
    --generation-database none) || status=$?
if grep -q "panicked" "$WORK/otpd.out"; then
    echo "otpd panicked during the run:" >&2
    grep -A5 "panicked" "$WORK/otpd.out" >&2
    status=1
fi
[[ $status == 0 ]] && echo "schemathesis (Twilio's spec): no 5xx and no response outside Twilio's schemas"
exit "$status"
