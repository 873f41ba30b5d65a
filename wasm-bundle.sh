#!/usr/bin/env bash
# Builds the Envoy filter module and writes dist/calico-alp.wasm and dist/calico-alp.wasm.sha256.
#
#   ./wasm-bundle.sh              release build (LTO, panic=abort: see [profile.release]),
#                                 then `wasm-opt -O3` when binaryen is installed
#   WASM_OPT_LEVEL=-Oz ./wasm-bundle.sh   optimise for size instead
#   WASM_OPT=0 ./wasm-bundle.sh           skip wasm-opt
#
# Either way the module then keeps only the exports of the proxy-wasm callbacks the filter
# implements (filter/keep-exports.sh: fewer calls into the VM per request).
#
# -O3 is the default: on this filter -Oz saves little (see the note printed below) while -O3
# keeps the hot path (per-request attribute reads and policy evaluation) fastest.
# Fails loudly: any failing step stops the script with a non-zero status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
NAME=calico-alp
TARGET=wasm32-wasip1
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BUILT="$TARGET_DIR/$TARGET/release/alp_filter.wasm"
OUT=dist/$NAME.wasm

die() { echo "wasm-bundle: error: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed"
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    echo "wasm-bundle: installing the Rust target $TARGET"
    rustup target add "$TARGET" || die "rustup target add $TARGET failed"
fi

echo "wasm-bundle: cargo build -p alp-filter --target $TARGET --release"
cargo build -p alp-filter --target "$TARGET" --release || die "cargo build failed"
[[ -s "$BUILT" ]] || die "cargo did not produce $BUILT"

mkdir -p dist
TMP=$(mktemp "dist/.$NAME.XXXXXX.wasm")
trap 'rm -f "$TMP"' EXIT
if [[ "${WASM_OPT:-1}" != 0 ]] && command -v wasm-opt >/dev/null; then
    LEVEL=${WASM_OPT_LEVEL:--O3}
    echo "wasm-bundle: wasm-opt $LEVEL ($(wasm-opt --version))"
    wasm-opt "$LEVEL" --strip-debug --strip-producers "$BUILT" -o "$TMP" || die "wasm-opt failed"
else
    [[ "${WASM_OPT:-1}" == 0 ]] || echo "wasm-bundle: note: wasm-opt not found (apt-get install -y binaryen); copying the cargo output unoptimised" >&2
    cp "$BUILT" "$TMP"
fi
# Only the callbacks the filter implements stay exported: Envoy skips the others (see the script).
filter/keep-exports.sh "$TMP" "$TMP.kept" && mv -f "$TMP.kept" "$TMP" || { rm -f "$TMP.kept"; die "keep-exports failed"; }
chmod 0644 "$TMP"
mv -f "$TMP" "$OUT"
trap - EXIT
(cd dist && sha256sum "$NAME.wasm" > "$NAME.wasm.sha256")
echo "wasm-bundle: $OUT $(stat -c %s "$OUT") bytes (cargo output $(stat -c %s "$BUILT") bytes)"
echo "wasm-bundle: $(cat "dist/$NAME.wasm.sha256")"
