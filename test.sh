#!/usr/bin/env bash
# Runs every test of the project: lints, native unit and integration tests, the engine's and the
# Felix model's tests compiled to wasm32-wasip1 under wasmtime, and the end-to-end tests against
# a real Envoy, once with the wasm module and once with the native module. Installs what it needs
# first (scripts/setup.sh). `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")"

source scripts/setup.sh

# One clean build, nothing rebuilt incrementally: incremental caches would add ~2 GB to target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== build (once: release wasm module, release native module, native workspace)"
# The module first: control's build records its checksum (`control version`).
./wasm-bundle.sh
./native-bundle.sh
cargo build --workspace --all-targets --locked

echo "== format and clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The proxy-wasm glue exists only in the wasm build.
cargo clippy -p alp-filter --target wasm32-wasip1 --locked -- -D warnings

echo "== wasm32-wasip1 tests (wasmtime)"
cargo test --locked --target wasm32-wasip1 -p alp-engine -p alp-felix

echo "== unit, integration and end-to-end tests (the wasm module in Envoy)"
# End-to-end tests load the module as shipped (trimmed exports, wasm-opt), not cargo's output.
export ALP_WASM="$PWD/dist/calico-alp.wasm"
export ALP_NATIVE="$PWD/dist/libcalico_alp.so"
cargo test --workspace --locked

echo "== end-to-end tests again, with the native module (ALP_ARTEFACT=native)"
ALP_ARTEFACT=native cargo test -p alp-e2e --locked

echo "== reliability: 60-second soaks (wasm, native) and the chaos cases that fit in a minute"
scripts/soak.sh --minutes 1 --filter wasm
scripts/soak.sh --minutes 1 --filter native
scripts/chaos.sh --quick

echo "== fuzz: a bounded libFuzzer run of every target (cargo test replayed the corpus)"
FUZZ_JOBS=2 fuzz/run.sh --seconds 4

# What a clean run leaves on disk (CI runners have little to spare).
echo "== done: target/ holds $(du -sh "${CARGO_TARGET_DIR:-target}" | cut -f1)"
