#!/usr/bin/env bash
# Throughput and latency, in one run, of one Envoy worker with no filter, a no-op proxy-wasm
# filter and the Calico ALP filter under the YAO bank policy (wrk; Envoy on CPU 0, wrk on CPU 1).
#   scripts/bench.sh [--duration 10] [--connections 16] [--no-pin]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

for tool in wrk wasm-as; do
    command -v "$tool" >/dev/null || { echo "bench.sh: error: $tool is required (apt-get install -y wrk binaryen)" >&2; exit 1; }
done
./wasm-bundle.sh
cargo build --quiet -p alp-control -p alp-e2e --release --bins
TARGET_DIR=${CARGO_TARGET_DIR:-target}
export ALP_WASM=${ALP_WASM:-$PWD/dist/calico-alp.wasm}
export ALP_CONTROL=${ALP_CONTROL:-$PWD/$TARGET_DIR/release/control}
exec "$TARGET_DIR/release/bench" "$@"
