#!/usr/bin/env bash
# The soak: Envoy (--concurrency 2) with the filter, the test Felix streaming policy and IP-set
# changes, HTTP keep-alive load and new TCP connections, every answer checked against the policy
# of the snapshot version that decided it; Envoy's and control's RSS sampled every second; VM
# restarts counted. Bounded: the run itself, plus at most 10 minutes of setup and checking.
#
#   scripts/soak.sh [--minutes N | --seconds N] [--filter wasm|native]
#
# Defaults: 10 minutes, wasm. The last line reads
#   soak: N requests checked, W wrong decisions, RSS growth X %
# and the exit status is non-zero if W > 0, growth > 5 %, any VM restart, or a step failed.
# Environment: ALP_WASM, ALP_NATIVE, ALP_CONTROL (else built here), CARGO_TARGET_DIR, and the
# tuning knobs of tests/tests/soak.rs (ALP_SOAK_CHANGES, ALP_SOAK_WINDOW_MS, ALP_SOAK_HTTP_RATE,
# ALP_SOAK_TCP_RATE).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=600
filter=wasm
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) seconds=$(awk -v m="$2" 'BEGIN { printf "%d", m * 60 }'); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (--minutes N, --seconds N, --filter wasm|native)" >&2; exit 2 ;;
  esac
done
case "$filter" in wasm|native) ;; *) echo "soak.sh: --filter wasm or native" >&2; exit 2 ;; esac
if [ "$seconds" -lt 30 ]; then echo "soak.sh: at least 30 seconds" >&2; exit 2; fi

source scripts/reliability.sh
reliability_prepare "$filter"
export ALP_ARTEFACT=$filter ALP_SOAK_SECONDS=$seconds
report=$(mktemp /tmp/alp-soak-report.XXXXXX)
export ALP_SOAK_REPORT=$report
echo "== soak: $seconds s, filter $filter (report also in $report)"
reliability_run soak.sh soak $((seconds + 900)) "$report"
