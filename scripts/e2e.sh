#!/usr/bin/env bash
# End-to-end tests with real Envoy: installs Envoy and the wasm target when missing, builds the
# artefacts the tests use (target/wasm32-wasip1/release/alp_filter.wasm, target/debug/control)
# once, then runs `cargo test -p alp-e2e` (extra arguments go to cargo test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
cargo build -p alp-filter --target wasm32-wasip1 --release
cargo build -p alp-control
cargo test -p alp-e2e "$@"
