#!/usr/bin/env bash
# Packs dist/calico-alp.wasm as an OCI image on disk (an OCI image layout), without Docker: the
# same "compat" image as images/wasm/Dockerfile (one tar+gzip layer holding plugin.wasm, OCI
# media types), built reproducibly (fixed timestamps, owners and order), so its manifest digest,
# which Istio checks for oci:// URLs, is known before it is pushed.
#
#   images/wasm/oci-layout.sh [TAG [DIR]]    # default TAG: latest, DIR: dist/oci
#   skopeo copy --preserve-digests oci:dist/oci/calico-alp:TAG docker://REGISTRY/calico-alp/filter:TAG
#   # or: oras cp --from-oci-layout dist/oci/calico-alp:TAG REGISTRY/calico-alp/filter:TAG
#   envoy/istio/render.sh --wasm-url oci://REGISTRY/calico-alp/filter:TAG \
#       --oci-digest "$(cat dist/oci/calico-alp.digest)" --control-image ...
#
# Writes DIR/calico-alp/ (oci-layout, index.json, blobs/sha256/*) and DIR/calico-alp.digest
# (sha256:<manifest digest>). Needs GNU tar, gzip and sha256sum.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
TAG=${1:-latest}
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || { echo "oci-layout: bad tag $TAG" >&2; exit 2; }
WASM=dist/calico-alp.wasm
[[ -s "$WASM" ]] || { echo "oci-layout: $WASM does not exist: run ./wasm-bundle.sh first" >&2; exit 1; }

DIR=${2:-dist/oci}
OUT=$DIR/calico-alp
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT/blobs/sha256" "$WORK/root"
cp "$WASM" "$WORK/root/plugin.wasm"
chmod 0644 "$WORK/root/plugin.wasm"

sha() { sha256sum "$1" | awk '{print $1}'; }
size() { stat -c %s "$1"; }
blob() { # file -> stores it under blobs/sha256, prints its digest
    local d
    d=$(sha "$1")
    cp "$1" "$OUT/blobs/sha256/$d"
    echo "$d"
}

# The layer: plugin.wasm at the root, reproducible.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=ustar \
    -C "$WORK/root" -cf "$WORK/layer.tar" plugin.wasm
gzip -n -9 -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"
DIFF_ID=$(sha "$WORK/layer.tar")
LAYER=$(blob "$WORK/layer.tar.gz")
LAYER_SIZE=$(size "$WORK/layer.tar.gz")

printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$DIFF_ID" > "$WORK/config.json"
CONFIG=$(blob "$WORK/config.json")
CONFIG_SIZE=$(size "$WORK/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$CONFIG" "$CONFIG_SIZE" "$LAYER" "$LAYER_SIZE" > "$WORK/manifest.json"
MANIFEST=$(blob "$WORK/manifest.json")
MANIFEST_SIZE=$(size "$WORK/manifest.json")

printf '{"imageLayoutVersion":"1.0.0"}' > "$OUT/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$MANIFEST" "$MANIFEST_SIZE" "$TAG" > "$OUT/index.json"
echo "sha256:$MANIFEST" > "$DIR/calico-alp.digest"
echo "oci-layout: $OUT:$TAG manifest sha256:$MANIFEST (module sha256 $(sha "$WASM"))"
