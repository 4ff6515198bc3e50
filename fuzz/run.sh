#!/usr/bin/env bash
# Runs every fuzz target for a while (cargo-fuzz on the nightly toolchain).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     default: 20 seconds, every target
#
# Skips (exit 0, with a message) when no nightly toolchain is installed; installs
# cargo-fuzz when it is missing. Targets build without a sanitizer (`-s none`: otpd's
# code is safe Rust, and the build and the runs are several times faster) but with debug
# assertions and overflow checks. The corpus of each target is kept under
# ${OTPD_CI_CACHE:-/var/cache/otpd-ci}/fuzz-corpus/TARGET (grown from fuzz/seeds/TARGET),
# so later runs start where earlier ones stopped; crashes are written to
# fuzz/artifacts/TARGET and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-20}
shift || true
TARGETS=("$@")
if [[ ${#TARGETS[@]} -eq 0 ]]; then
    TARGETS=(phone_parse template_render json_start_body json_check_body form_decode smpp_pdu)
fi

if ! cargo +nightly --version > /dev/null 2>&1; then
    echo "fuzz: no nightly toolchain installed (rustup toolchain install nightly); skipping the fuzz targets"
    exit 0
fi
if ! cargo +nightly fuzz --version > /dev/null 2>&1; then
    echo "== fuzz: installing cargo-fuzz"
    cargo +nightly install cargo-fuzz --locked
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/otpd-target}"
FUZZ_TARGET_DIR=$CARGO_TARGET_DIR/fuzz
CORPUS_ROOT="${OTPD_CI_CACHE:-/var/cache/otpd-ci}/fuzz-corpus"
mkdir -p "$CORPUS_ROOT" 2>/dev/null || CORPUS_ROOT=$(mktemp -d /tmp/otpd-fuzz-corpus.XXXXXX)

echo "== fuzz: building the targets (nightly, no sanitizer, debug assertions)"
cargo +nightly fuzz build -s none --debug-assertions --target-dir "$FUZZ_TARGET_DIR"

failed=0
for t in "${TARGETS[@]}"; do
    mkdir -p "$CORPUS_ROOT/$t"
    log=$(mktemp)
    status=0
    cargo +nightly fuzz run -s none --debug-assertions --target-dir "$FUZZ_TARGET_DIR" "$t" \
        "$CORPUS_ROOT/$t" "fuzz/seeds/$t" -- -max_total_time="$SECONDS_PER_TARGET" \
        > "$log" 2>&1 || status=$?
    done_line=$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1 || true)
    corpus=$(find "$CORPUS_ROOT/$t" -type f | wc -l)
    if [[ $status -eq 0 ]]; then
        echo "fuzz $t: ${done_line:-no summary} (corpus $corpus inputs)"
    else
        failed=1
        echo "fuzz $t: FAILED (exit $status); the end of its log:"
        tail -n 40 "$log"
    fi
    rm -f "$log"
done
if [[ $failed -ne 0 ]]; then
    echo "fuzz: a target failed; reproduce with: cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/<file>" >&2
    exit 1
fi
