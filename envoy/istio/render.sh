#!/usr/bin/env bash
# Renders the Istio manifests of this directory for your artefacts: fills in where the wasm
# module is published, its checksum, and the control image. Writes dist/istio/ (or --out DIR).
#
#   envoy/istio/render.sh --wasm-url https://example.com/calico-alp/v0.1.0/calico-alp.wasm \
#                         --control-image registry.example.com/calico-alp/control:v0.1.0
#   envoy/istio/render.sh --wasm-url oci://registry.example.com/calico-alp/filter:v0.1.0 \
#                         --oci-digest sha256:<manifest digest> --control-image ...
#   ... --trust-domain example.org [--trust-domain old.example]   (default: cluster.local)
#   ... --tcp-port 5432 [--tcp-port 3306]   (default: 5432, the committed example)
#
# * https:// (or http://): the checksum is the module's, from dist/calico-alp.wasm.sha256
#   (./wasm-bundle.sh writes it), checked against the module itself. Publish exactly that file.
# * oci://: Istio checks the image *manifest* digest, not the module's (for an image index:
#   the digest of its linux/amd64 image's manifest). Give it with --oci-digest
#   (images/wasm/oci-layout.sh prints it; `crane digest --platform linux/amd64 IMAGE` reads it
#   from the registry), or pin the URL by digest (oci://...@sha256:<hex>), which is then used.
# * --trust-domain: the mesh's trust domain (meshConfig.trustDomain; repeat it for each of
#   meshConfig.trustDomainAliases). The filter refuses peers of any other trust domain
#   (trust_domains in the filter's configuration); without the option it is cluster.local.
# * --tcp-port: a port the network filter of wasmplugin-tcp.yaml decides (the WasmPlugin's
#   match ports), once per port. Only ports whose Service declares a TCP protocol (tcp, tls,
#   mysql, mongo, redis...), never an HTTP or undeclared one: istiod would put the network
#   filter in front of that port's HTTP chains too. envoyfilter-wasm.yaml needs no list.
# The placeholders in the committed files are deliberately unusable: an unrendered WasmPlugin
# names an unresolvable host and an all-zero checksum, so the selected pods fail closed.
set -euo pipefail

die() { echo "render: error: $*" >&2; exit 1; }
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WASM="$ROOT/dist/calico-alp.wasm"
OUT="$ROOT/dist/istio"
URL="" IMAGE="" DIGEST=""
TRUST_DOMAINS=()
TCP_PORTS=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --wasm-url) URL=${2:?}; shift 2 ;;
        --control-image) IMAGE=${2:?}; shift 2 ;;
        --oci-digest) DIGEST=${2:?}; shift 2 ;;
        --trust-domain) TRUST_DOMAINS+=("${2:?}"); shift 2 ;;
        --tcp-port) TCP_PORTS+=("${2:?}"); shift 2 ;;
        --wasm) WASM=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "render: unknown argument $1" >&2; usage 2 ;;
    esac
done
[[ -n "$URL" ]] || die "--wasm-url is required (https://... or oci://...)"
[[ -n "$IMAGE" ]] || die "--control-image is required (the image built from images/control/Dockerfile)"
[[ "$IMAGE" =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "--control-image $IMAGE is not an image reference"
[[ "$URL" =~ ^[A-Za-z0-9+.-]+://[^[:space:]\'\"]+$ ]] || die "--wasm-url $URL is not a URL"

case "$URL" in
    https://*|http://*)
        [[ -z "$DIGEST" ]] || die "--oci-digest is only for oci:// URLs"
        [[ "$URL" == http://* ]] && echo "render: warning: http:// is not authenticated; the checksum still protects the module" >&2
        [[ -s "$WASM" ]] || die "$WASM does not exist: run ./wasm-bundle.sh first"
        [[ -s "$WASM.sha256" ]] || die "$WASM.sha256 does not exist: run ./wasm-bundle.sh first"
        SHA=$(awk '{print $1; exit}' "$WASM.sha256")
        ACTUAL=$(sha256sum "$WASM" | awk '{print $1}')
        [[ "$SHA" == "$ACTUAL" ]] || die "$WASM.sha256 ($SHA) does not match $WASM ($ACTUAL): run ./wasm-bundle.sh again"
        ;;
    oci://*)
        if [[ "$URL" =~ @sha256:([0-9a-f]{64})$ ]]; then
            PINNED=${BASH_REMATCH[1]}
            [[ -z "$DIGEST" || "${DIGEST#sha256:}" == "$PINNED" ]] || die "--oci-digest differs from the digest in the URL"
            DIGEST=$PINNED
        fi
        [[ -n "$DIGEST" ]] || die "an oci:// URL needs --oci-digest sha256:<manifest digest> (or a URL pinned by digest)"
        SHA=${DIGEST#sha256:}
        ;;
    *) die "--wasm-url must be https://, http:// or oci:// (got $URL)" ;;
esac
[[ "$SHA" =~ ^[0-9a-f]{64}$ ]] || die "checksum $SHA is not 64 lowercase hex digits"

PLACEHOLDER_URL='https://calico-alp.invalid/calico-alp.wasm'
PLACEHOLDER_SHA='0000000000000000000000000000000000000000000000000000000000000000'
PLACEHOLDER_IMAGE='registry.invalid/calico-alp/control:dev'
# The filter's trust_domains as committed: YAML in wasmplugin.yaml, JSON in envoyfilter-wasm.yaml.
TD_YAML_FROM='trust_domains: ["cluster.local"]'
TD_JSON_FROM='"trust_domains":["cluster.local"]'
[[ ${#TRUST_DOMAINS[@]} -gt 0 ]] || TRUST_DOMAINS=(cluster.local)
td_list=""
for td in "${TRUST_DOMAINS[@]}"; do
    # SPIFFE trust domain names: lower-case letters, digits, '.', '-', '_'.
    [[ "$td" =~ ^[a-z0-9._-]+$ ]] || die "--trust-domain $td is not a trust domain name (lower-case letters, digits, . - _)"
    td_list+="${td_list:+,}\"$td\""
done
TD_YAML_TO="trust_domains: [${td_list//,/, }]"
TD_JSON_TO="\"trust_domains\":[$td_list]"
# The network WasmPlugin's match ports, as committed in wasmplugin-tcp.yaml.
PORTS_FROM='ports: [{number: 5432}]'
[[ ${#TCP_PORTS[@]} -gt 0 ]] || TCP_PORTS=(5432)
port_list=""
for p in "${TCP_PORTS[@]}"; do
    [[ "$p" =~ ^[1-9][0-9]{0,4}$ && "$p" -le 65535 ]] || die "--tcp-port $p is not a port number (1-65535)"
    port_list+="${port_list:+, }{number: $p}"
done
PORTS_TO="ports: [$port_list]"

mkdir -p "$OUT"
n=0
for f in "$HERE"/*.yaml; do
    out="$OUT/$(basename "$f")"
    # Literal replacements (no regular expressions: URLs and image names contain their syntax).
    URL="$URL" SHA="$SHA" IMAGE="$IMAGE" TDYF="$TD_YAML_FROM" TDYT="$TD_YAML_TO" \
        TDJF="$TD_JSON_FROM" TDJT="$TD_JSON_TO" PF="$PORTS_FROM" PT="$PORTS_TO" awk \
        -v pu="$PLACEHOLDER_URL" -v ps="$PLACEHOLDER_SHA" -v pi="$PLACEHOLDER_IMAGE" '
        function repl(s, from, to,    i, r) {
            r = ""
            while ((i = index(s, from)) > 0) { r = r substr(s, 1, i - 1) to; s = substr(s, i + length(from)) }
            return r s
        }
        {
            line = repl($0, pu, ENVIRON["URL"]); line = repl(line, ps, ENVIRON["SHA"]); line = repl(line, pi, ENVIRON["IMAGE"])
            line = repl(line, ENVIRON["TDYF"], ENVIRON["TDYT"]); line = repl(line, ENVIRON["TDJF"], ENVIRON["TDJT"])
            print repl(line, ENVIRON["PF"], ENVIRON["PT"])
        }
    ' "$f" > "$out.tmp"
    if grep -qF -e "$PLACEHOLDER_URL" -e "$PLACEHOLDER_SHA" -e "$PLACEHOLDER_IMAGE" "$out.tmp"; then
        rm -f "$out.tmp"
        die "a placeholder is left in $out"
    fi
    mv -f "$out.tmp" "$out"
    n=$((n + 1))
done
# Every configuration of the filter names the trust domains asked for, and the network
# WasmPlugin the ports (the committed text drifted if not).
for f in wasmplugin.yaml wasmplugin-tcp.yaml; do
    grep -qF -- "$TD_YAML_TO" "$OUT/$f" || die "no '$TD_YAML_FROM' in $f to render"
done
[[ $(grep -cF -- "$TD_JSON_TO" "$OUT/envoyfilter-wasm.yaml") -eq 2 ]] ||
    die "not two '$TD_JSON_FROM' (HTTP and network filter) in envoyfilter-wasm.yaml to render"
grep -qF -- "$PORTS_TO" "$OUT/wasmplugin-tcp.yaml" || die "no '$PORTS_FROM' in wasmplugin-tcp.yaml to render"
echo "render: wrote $n files to $OUT (module $URL, sha256 $SHA, control image $IMAGE, trust domains ${TRUST_DOMAINS[*]}, TCP ports ${TCP_PORTS[*]})"
