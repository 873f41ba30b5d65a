#!/usr/bin/env bash
# Removes from a proxy-wasm module the exports of the callbacks it does not implement.
#
#   filter/keep-exports.sh IN.wasm OUT.wasm
#
# The Rust SDK (proxy-wasm 0.2) exports every `proxy_on_*` callback, and Envoy calls each one a
# module exports: on a request through this filter that is also response headers, response
# body, log and done, each a call into the VM that does nothing. Envoy skips a callback the
# module does not export, so keeping only the ones the filter implements saves those calls
# (about 2-3 µs of Envoy's CPU per request, measured with bench/run.sh). Kept: what the filter
# uses (`filter/src/context.rs`: configure, tick, HTTP callout responses, request headers; new
# connection, downstream and upstream data for the network filter) and
# what the SDK and the VM need (memory, allocation, context creation and deletion, start).
# `proxy_on_done` goes too: neither context overrides `on_done`, and Envoy takes a missing one
# as "done". The bench's no-op filter is treated the same way, so it stays the floor.
#
# Uses binaryen's wasm-metadce (the package that has wasm-opt), which also drops the code only
# those exports reached. Without it the module is copied unchanged, with a note.
set -euo pipefail

[[ $# == 2 ]] || { echo "usage: $0 IN.wasm OUT.wasm" >&2; exit 2; }
IN=$1
OUT=$2
KEEP=(
    memory _initialize _start
    proxy_abi_version_0_2_0 proxy_abi_version_0_2_1
    proxy_on_memory_allocate proxy_on_context_create proxy_on_delete
    proxy_on_vm_start proxy_on_configure proxy_on_tick proxy_on_http_call_response
    proxy_on_request_headers
    proxy_on_new_connection proxy_on_downstream_data proxy_on_upstream_data
)

if ! command -v wasm-metadce >/dev/null; then
    echo "keep-exports: note: wasm-metadce not found (apt-get install -y binaryen); $IN copied with every export" >&2
    [[ "$IN" -ef "$OUT" ]] || cp "$IN" "$OUT"
    exit 0
fi

# Only the names the module exports: wasm-metadce refuses a graph naming a missing export.
EXPORTED=$(wasm-dis "$IN" | sed -n 's/^ (export "\([^"]*\)".*/\1/p')
GRAPH=$(mktemp)
trap 'rm -f "$GRAPH"' EXIT
{
    echo '[{"name": "outside", "root": true, "reaches": ['
    first=1
    for name in "${KEEP[@]}"; do
        grep -qx "$name" <<<"$EXPORTED" || continue
        ((first)) || echo ','
        first=0
        printf '"export:%s"' "$name"
    done
    echo ']}'
    for name in "${KEEP[@]}"; do
        grep -qx "$name" <<<"$EXPORTED" || continue
        printf ',{"name": "export:%s", "export": "%s"}\n' "$name" "$name"
    done
    echo ']'
} >"$GRAPH"
wasm-metadce "$IN" --graph-file "$GRAPH" -o "$OUT" >/dev/null
