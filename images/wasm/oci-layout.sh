#!/usr/bin/env bash
# Packs the filter module as an OCI image on disk (an OCI image layout), without Docker, in one of
# the two formats of the Wasm image specification that istio-agent's image fetcher reads:
#
# * compat (default): one layer, media type application/vnd.oci.image.layer.v1.tar+gzip, a tar
#   holding one file, plugin.wasm (the same image as images/wasm/Dockerfile builds), with the
#   manifest annotation module.wasm.image/variant=compat. Any registry and tool takes it.
# * oci: exactly two layers, the runtime config (application/vnd.module.wasm.config.v1+json)
#   and the module itself, uncompressed (application/vnd.module.wasm.content.layer.v1+wasm).
#   Needs a registry that accepts OCI artifacts with custom media types.
#
# Reproducible (fixed timestamps, owners and order): the same module gives the same manifest
# digest, which is what Istio checks for an oci:// URL (a WasmPlugin's `sha256`, or the URL's
# @sha256:), so it is known before the push.
#
#   images/wasm/oci-layout.sh [--variant compat|oci] [--wasm FILE] [TAG [DIR]]
#       TAG: the tag recorded in the layout (default latest); DIR: default dist/oci;
#       FILE: the module (default dist/calico-alp.wasm, from ./wasm-bundle.sh).
#   skopeo copy --preserve-digests oci:dist/oci/calico-alp:TAG docker://REGISTRY/calico-alp/filter:TAG
#   # or: oras cp --from-oci-layout dist/oci/calico-alp:TAG REGISTRY/calico-alp/filter:TAG
#   # or: crane push dist/oci/calico-alp REGISTRY/calico-alp/filter:TAG
#   crane digest --platform linux/amd64 REGISTRY/calico-alp/filter:TAG   # must print the same digest
#
# Writes DIR/calico-alp/ (oci-layout, index.json, blobs/sha256/*) and DIR/calico-alp.digest
# (sha256:<manifest digest>), and prints the digest on a line of its own: `digest: sha256:...`.
# Relative paths are the caller's. Needs bash, GNU tar, gzip, sha256sum, od. Exit 2: bad
# arguments; 1: the module is missing or not a wasm module.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NAME=calico-alp

die() { echo "oci-layout: $1" >&2; exit "${2:-1}"; }
usage() { die "usage: oci-layout.sh [--variant compat|oci] [--wasm FILE] [TAG [DIR]]" 2; }

VARIANT=compat
WASM=$ROOT/dist/$NAME.wasm
POSITIONAL=()
while (($#)); do
    case "$1" in
        --variant) (($# >= 2)) || usage; VARIANT=$2; shift 2 ;;
        --variant=*) VARIANT=${1#*=}; shift ;;
        --wasm) (($# >= 2)) || usage; WASM=$2; shift 2 ;;
        --wasm=*) WASM=${1#*=}; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1" 2 ;;
        *) POSITIONAL+=("$1"); shift ;;
    esac
done
((${#POSITIONAL[@]} <= 2)) || usage
TAG=${POSITIONAL[0]:-latest}
DIR=${POSITIONAL[1]:-$ROOT/dist/oci}
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || die "bad tag $TAG (letters, digits, _ . -; at most 128)" 2
[[ "$VARIANT" == compat || "$VARIANT" == oci ]] || die "--variant must be compat or oci, not $VARIANT" 2

[[ -e "$WASM" ]] || die "$WASM does not exist: run ./wasm-bundle.sh first (or give --wasm FILE)"
[[ -f "$WASM" && -r "$WASM" ]] || die "$WASM is not a readable file"
# What istio-agent accepts as a module: at least 8 bytes starting with "\0asm".
[[ $(stat -c %s "$WASM") -ge 8 && "$(head -c 4 "$WASM" | od -An -tx1 | tr -d ' \n')" == 0061736d ]] ||
    die "$WASM is not a wasm module (no \\0asm header)"

OUT=$DIR/$NAME
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT/blobs/sha256" "$WORK/root"

sha() { sha256sum "$1" | awk '{print $1}'; }
size() { stat -c %s "$1"; }
blob() { # file -> stores it under blobs/sha256, prints its digest
    local d
    d=$(sha "$1")
    cp "$1" "$OUT/blobs/sha256/$d"
    chmod 0644 "$OUT/blobs/sha256/$d"
    echo "$d"
}

case "$VARIANT" in
compat)
    # The layer: plugin.wasm at the root, reproducible.
    cp "$WASM" "$WORK/root/plugin.wasm"
    chmod 0644 "$WORK/root/plugin.wasm"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=ustar \
        -C "$WORK/root" -cf "$WORK/layer.tar" plugin.wasm
    gzip -n -9 -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"
    DIFF_ID=$(sha "$WORK/layer.tar")
    LAYER=$(blob "$WORK/layer.tar.gz")
    LAYER_SIZE=$(size "$WORK/layer.tar.gz")
    printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$DIFF_ID" > "$WORK/config.json"
    CONFIG_TYPE=application/vnd.oci.image.config.v1+json
    CONFIG=$(blob "$WORK/config.json")
    CONFIG_SIZE=$(size "$WORK/config.json")
    LAYERS=$(printf '{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}' \
        "$LAYER" "$LAYER_SIZE")
    MANIFEST_EXTRA=',"annotations":{"module.wasm.image/variant":"compat"}'
    WHAT="compat: one tar+gzip layer holding plugin.wasm"
    ;;
oci)
    # The runtime config (type, ABI), the manifest's config and its first layer, as the spec's
    # example has it; then the module as it is.
    printf '{"type":"envoy_proxy","abiVersions":["proxy_abi_version_0_2_1"],"config":{}}' \
        > "$WORK/runtime-config.json"
    CONFIG_TYPE=application/vnd.module.wasm.config.v1+json
    CONFIG=$(blob "$WORK/runtime-config.json")
    CONFIG_SIZE=$(size "$WORK/runtime-config.json")
    cp "$WASM" "$WORK/plugin.wasm"
    MODULE=$(blob "$WORK/plugin.wasm")
    MODULE_SIZE=$(size "$WORK/plugin.wasm")
    LAYERS=$(printf '{"mediaType":"%s","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"runtime-config.json"}},{"mediaType":"application/vnd.module.wasm.content.layer.v1+wasm","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"plugin.wasm"}}' \
        "$CONFIG_TYPE" "$CONFIG" "$CONFIG_SIZE" "$MODULE" "$MODULE_SIZE")
    MANIFEST_EXTRA=''
    WHAT="oci: two layers, runtime config and the module"
    ;;
esac

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"%s","digest":"sha256:%s","size":%s},"layers":[%s]%s}' \
    "$CONFIG_TYPE" "$CONFIG" "$CONFIG_SIZE" "$LAYERS" "$MANIFEST_EXTRA" > "$WORK/manifest.json"
MANIFEST=$(blob "$WORK/manifest.json")
MANIFEST_SIZE=$(size "$WORK/manifest.json")

printf '{"imageLayoutVersion":"1.0.0"}' > "$OUT/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$MANIFEST" "$MANIFEST_SIZE" "$TAG" > "$OUT/index.json"
echo "sha256:$MANIFEST" > "$DIR/$NAME.digest"

REPO='REGISTRY/calico-alp/filter'
cat <<EOF
oci-layout: $OUT:$TAG ($WHAT)
digest: sha256:$MANIFEST
  The image manifest digest, written to $DIR/$NAME.digest. Pin it in the WasmPlugin:
    url: oci://$REPO@sha256:$MANIFEST   (or url: oci://$REPO:$TAG with sha256: $MANIFEST)
  (The module's own sha256, $(sha "$WASM"), is for https:// URLs only.)
push it unchanged with one of:
  skopeo copy --preserve-digests oci:$OUT:$TAG docker://$REPO:$TAG
  oras cp --from-oci-layout $OUT:$TAG $REPO:$TAG
  crane push $OUT $REPO:$TAG
then check what the registry serves (must print sha256:$MANIFEST):
  crane digest --platform linux/amd64 $REPO:$TAG
EOF
