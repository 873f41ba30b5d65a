# Sourced by scripts/soak.sh and scripts/chaos.sh: what both do around their ignored test.
#
#   reliability_prepare FILTER
#       sets $target (Cargo's target directory, absolute), exports ALP_WASM, ALP_NATIVE and
#       ALP_CONTROL, building the artefact FILTER needs and control when they are missing.
#   reliability_run NAME TEST LIMIT REPORT
#       runs `cargo test -p alp-e2e --test TEST -- --ignored` for at most LIMIT seconds, the log in
#       REPORT.log; prints the report REPORT the test wrote and exits with the test's status (1 if
#       it ran out of time or wrote no report). NAME prefixes the messages (soak.sh, chaos.sh).

reliability_prepare() {
  local filter=$1
  target=${CARGO_TARGET_DIR:-target}
  case "$target" in /*) ;; *) target=$PWD/$target ;; esac
  export ALP_WASM=${ALP_WASM:-$PWD/dist/calico-alp.wasm}
  export ALP_NATIVE=${ALP_NATIVE:-$PWD/dist/libcalico_alp.so}
  if [ "$filter" = wasm ] && [ ! -f "$ALP_WASM" ]; then ./wasm-bundle.sh; fi
  if [ "$filter" = native ] && [ ! -f "$ALP_NATIVE" ]; then ./native-bundle.sh; fi
  if [ -z "${ALP_CONTROL:-}" ]; then
    timeout 1200 cargo build -q -p alp-control
    export ALP_CONTROL="$target/debug/control"
  fi
}

reliability_run() {
  local name=$1 test=$2 limit=$3 report=$4 status=0
  timeout --kill-after=30 "$limit" \
    cargo test -q -p alp-e2e --test "$test" -- --ignored --nocapture --test-threads 1 > "$report.log" 2>&1 || status=$?
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    tail -40 "$report.log"
    echo "$name: the run did not finish within $limit s"
    exit 1
  fi
  if [ ! -s "$report" ]; then
    tail -60 "$report.log"
    echo "$name: $test failed before its report (exit $status; log $report.log)"
    exit 1
  fi
  grep -E "panicked|assertion" "$report.log" | head -5 || true
  cat "$report"
  exit "$status"
}
