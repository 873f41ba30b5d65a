#!/usr/bin/env bash
# Builds `control` as a static (musl) executable for this machine's architecture and installs it
# at OUT. Used by images/control/Dockerfile (OUT=/out/control) and by CI (tests/manifests).
#
#   images/control/build-static.sh OUT
#
# Honors CARGO_TARGET_DIR. Needs rustup (adds the musl target if missing); no C toolchain.
set -euo pipefail
OUT=${1:?usage: build-static.sh OUT}
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TRIPLE="$(uname -m)-unknown-linux-musl"
if ! rustup target list --installed | grep -qx "$TRIPLE"; then
    rustup target add "$TRIPLE"
fi
cargo build --locked --release -p alp-control --target "$TRIPLE"
install -D -m 0755 "${CARGO_TARGET_DIR:-target}/$TRIPLE/release/control" "$OUT"
echo "build-static: $OUT ($TRIPLE)"
