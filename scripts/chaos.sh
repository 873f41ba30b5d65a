#!/usr/bin/env bash
# Chaos: faults injected while checked load flows (tests/tests/chaos.rs): control SIGKILLed and
# restarted, control SIGSTOPped past the filter's poll timeout, the test Felix stalling,
# resetting mid-message and sending an undecodable message, Envoy drained and restarted, a
# snapshot corrupted on the wire, the policy file made invalid, truncated, deleted and
# unreadable, and (wasm) a crashing VM under failure_policy FAIL_CLOSED and FAIL_RELOAD. Every
# answer is checked against the policy; per case: requests checked, wrong decisions of both
# kinds, time to recover.
#
#   scripts/chaos.sh [--quick] [--filter wasm|native]
#
# --quick: shorter faults and fewer repetitions (about a minute of faults, for CI). The last line
# reads `chaos: C cases, N requests checked, W wrong decisions (S allowed-but-denied), all passed`
# (or FAILED); the exit status is non-zero if any case failed or a step did not finish in time.
# Builds the crash-switch module (--features chaos) into $CARGO_TARGET_DIR/chaos unless
# ALP_CHAOS_WASM names one; ALP_WASM, ALP_NATIVE, ALP_CONTROL as for the end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
filter=wasm
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --filter) filter=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "chaos.sh: unknown argument $1 (--quick, --filter wasm|native)" >&2; exit 2 ;;
  esac
done
case "$filter" in wasm|native) ;; *) echo "chaos.sh: --filter wasm or native" >&2; exit 2 ;; esac

source scripts/reliability.sh
reliability_prepare "$filter"
if [ "$filter" = wasm ] && [ -z "${ALP_CHAOS_WASM:-}" ]; then
  # Its own target directory: the module with the crash switch never lands where a released
  # module is looked for (target/wasm32-wasip1/release/alp_filter.wasm).
  CARGO_TARGET_DIR="$target/chaos" timeout 1200 \
    cargo build -q -p alp-filter --target wasm32-wasip1 --release --features chaos
  export ALP_CHAOS_WASM="$target/chaos/wasm32-wasip1/release/alp_filter.wasm"
fi
export ALP_ARTEFACT=$filter ALP_CHAOS_QUICK=$quick
report=$(mktemp /tmp/alp-chaos-report.XXXXXX)
export ALP_CHAOS_REPORT=$report
limit=$([ "$quick" = 1 ] && echo 600 || echo 1500)
echo "== chaos: $([ "$quick" = 1 ] && echo quick || echo full), filter $filter (report also in $report)"
reliability_run chaos.sh chaos "$limit" "$report"
