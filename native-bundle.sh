#!/usr/bin/env bash
# Builds the native Envoy dynamic module and writes dist/libcalico_alp.so and
# dist/libcalico_alp.so.sha256: the same engine and filter logic as dist/calico-alp.wasm, for an
# Envoy that loads dynamic modules (Envoy 1.40's ABI v0.2.0; README "The native module").
#
#   ./native-bundle.sh     release build (profile `native`: LTO, panics unwind so the module
#                          catches them at the ABI boundary instead of aborting Envoy)
# Fails loudly: any failing step stops the script with a non-zero status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
NAME=libcalico_alp.so
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BUILT="$TARGET_DIR/native/$NAME"
OUT=dist/$NAME

die() { echo "native-bundle: error: $*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is not installed"
echo "native-bundle: cargo build -p alp-native --profile native"
cargo build -p alp-native --profile native --locked || die "cargo build failed"
[[ -s "$BUILT" ]] || die "cargo did not produce $BUILT"

mkdir -p dist
TMP=$(mktemp "dist/.$NAME.XXXXXX")
trap 'rm -f "$TMP"' EXIT
cp "$BUILT" "$TMP"
# Every callback the module calls must be Envoy's: nothing else may be left undefined.
if command -v nm >/dev/null; then
    missing=$(nm -D --undefined-only "$TMP" | awk '{print $2}' | grep -v -E '^(envoy_dynamic_module_callback_|_ITM_|__gmon_start__|_Jv_RegisterClasses|__cxa_finalize|__tls_get_addr)' | grep -v '@' || true)
    [[ -z "$missing" ]] || die "unexpected undefined symbols: $missing"
fi
mv "$TMP" "$OUT"
trap - EXIT
(cd dist && sha256sum "$NAME" > "$NAME.sha256")
echo "native-bundle: $OUT ($(stat -c %s "$OUT") bytes), sha256 $(cut -d' ' -f1 "dist/$NAME.sha256")"
