#!/usr/bin/env bash
# Renders the Istio manifests of this directory for your artefacts: fills in where the wasm
# module is published, its checksum, the control image, the trust domains and the TCP ports.
# Writes dist/istio/ (or --out DIR), one directory per use:
#
#   install/      install inputs, never `kubectl apply`-ed: istio-operator.yaml (istioctl
#                 install -f), istiod-values.yaml (helm install -f), felix-policy-sync.yaml
#                 (kubectl patch felixconfiguration default --type merge --patch-file)
#   wasmplugin/   the filter as WasmPlugins: kubectl apply -k DIR/wasmplugin (or -f DIR/wasmplugin/)
#   envoyfilter/  the filter as one EnvoyFilter, *instead of* wasmplugin/ (never both)
#   native/       only with --native-image: the OPTIONAL native module (libcalico_alp.so) as an
#                 EnvoyFilter, instead of both wasm sets; its install overlays go to install/
#   README.md     what is where, and the commands
#
# Each of wasmplugin/ and envoyfilter/ holds everything that variant needs (the control
# cluster and the strict mTLS PeerAuthentication are copied into both) and a `Kustomization`
# listing exactly its files; kubectl apply -f skips that file (no .yaml extension).
#
#   envoy/istio/render.sh --wasm-url https://example.com/calico-alp/v0.1.0/calico-alp.wasm \
#                         --control-image registry.example.com/calico-alp/control:v0.1.0
#   envoy/istio/render.sh --wasm-url oci://registry.example.com/calico-alp/filter:v0.1.0 \
#                         --oci-digest sha256:<manifest digest> --control-image ...
#   ... --trust-domain example.org [--trust-domain old.example]   (default: cluster.local)
#   ... --tcp-port 5432 [--tcp-port 3306]   (default: 5432, the committed example)
#   ... --no-tcp        (wasmplugin/ without the network WasmPlugin: no TCP port is decided)
#   ... --wasm FILE     (default dist/calico-alp.wasm: whose .sha256 an https:// URL is pinned to)
#   ... --native-image REF  (also write native/ and install/native-*.yaml, for the optional
#                        native module: REF is the proxy image built from images/native/Dockerfile)
#   ... --out DIR       (default dist/istio; replaced as a whole, so it must be new, empty, or
#                        an earlier output of this script)
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
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WASM="$ROOT/dist/calico-alp.wasm"
OUT="$ROOT/dist/istio"
URL="" IMAGE="" DIGEST="" NO_TCP="" NATIVE_IMAGE=""
TRUST_DOMAINS=()
TCP_PORTS=()
SEEN=" "

# The value of option $1, given as $2: present, not another option, and given once (for the
# options that take one value).
value() {
    [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "$1 needs a value"
    case "$1" in --trust-domain|--tcp-port) ;; *)
        [[ "$SEEN" != *" $1 "* ]] || die "$1 given twice"
        SEEN+="$1 " ;;
    esac
}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --wasm-url) value "$@"; URL=$2; shift 2 ;;
        --control-image) value "$@"; IMAGE=$2; shift 2 ;;
        --oci-digest) value "$@"; DIGEST=$2; shift 2 ;;
        --trust-domain) value "$@"; TRUST_DOMAINS+=("$2"); shift 2 ;;
        --tcp-port) value "$@"; TCP_PORTS+=("$2"); shift 2 ;;
        --no-tcp) NO_TCP=1; shift ;;
        --wasm) value "$@"; WASM=$2; shift 2 ;;
        --native-image) value "$@"; NATIVE_IMAGE=$2; shift 2 ;;
        --out) value "$@"; OUT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "render: error: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done
[[ -n "$URL" ]] || die "--wasm-url is required (https://... or oci://...)"
[[ -n "$IMAGE" ]] || die "--control-image is required (the image built from images/control/Dockerfile)"
[[ "$IMAGE" =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "--control-image $IMAGE is not an image reference"
[[ -z "$NATIVE_IMAGE" || "$NATIVE_IMAGE" =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]*$ ]] || die "--native-image $NATIVE_IMAGE is not an image reference"
[[ "$URL" =~ ^[A-Za-z0-9+.-]+://[^[:space:]\'\"]+$ ]] || die "--wasm-url $URL is not a URL"
[[ -z "$NO_TCP" || ${#TCP_PORTS[@]} -eq 0 ]] || die "--no-tcp and --tcp-port exclude each other"

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
PLACEHOLDER_NATIVE_IMAGE='registry.invalid/calico-alp/proxyv2-native:dev'
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
# (With --no-tcp wasmplugin-tcp.yaml is rendered with the example port, and left out.)
[[ ${#TCP_PORTS[@]} -gt 0 ]] || TCP_PORTS=(5432)
port_list=""
for p in "${TCP_PORTS[@]}"; do
    [[ "$p" =~ ^[1-9][0-9]{0,4}$ && "$p" -le 65535 ]] || die "--tcp-port $p is not a port number (1-65535)"
    [[ "$port_list" != *"{number: $p}"* ]] || die "--tcp-port $p given twice"
    port_list+="${port_list:+, }{number: $p}"
done
PORTS_TO="ports: [$port_list]"

# Where each committed manifest goes. Every file of this directory is in exactly one list.
INSTALL_FILES=(istio-operator.yaml istiod-values.yaml felix-policy-sync.yaml)
SHARED_FILES=(control-cluster.yaml peer-authentication.yaml)
WASMPLUGIN_FILES=(wasmplugin.yaml wasmplugin-tcp.yaml)
ENVOYFILTER_FILES=(envoyfilter-wasm.yaml)
# The optional native module (only with --native-image): its install overlays, its set.
NATIVE_INSTALL_FILES=(native-operator.yaml native-values.yaml)
NATIVE_FILES=(envoyfilter-native.yaml)
listed=" ${INSTALL_FILES[*]} ${SHARED_FILES[*]} ${WASMPLUGIN_FILES[*]} ${ENVOYFILTER_FILES[*]} ${NATIVE_INSTALL_FILES[*]} ${NATIVE_FILES[*]} "
for f in "$HERE"/*.yaml; do
    b=$(basename "$f")
    [[ "$listed" == *" $b "* ]] || die "envoy/istio/$b is in no list of render.sh: say where it goes"
done
for b in $listed; do
    [[ -f "$HERE/$b" ]] || die "render.sh lists $b, which envoy/istio/ does not have"
done
[[ -z "$NO_TCP" ]] || WASMPLUGIN_FILES=(wasmplugin.yaml)

# The output directory is replaced as a whole (a file left from an earlier render would be
# applied with the rest), so it must be new, empty, or what this script writes (or wrote
# before it wrote directories: the committed file names).
[[ "$(basename "$OUT")" != "." && "$(basename "$OUT")" != ".." && "$OUT" != "/" ]] ||
    die "--out $OUT: name the directory to write (not . or .. or /)"
mkdir -p "$(dirname "$OUT")"
OUT="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
[[ ! -e "$OUT" || -d "$OUT" ]] || die "--out $OUT exists and is not a directory"
if [[ -d "$OUT" ]]; then
    for e in "$OUT"/* "$OUT"/.[!.]*; do
        [[ -e "$e" || -L "$e" ]] || continue
        b=$(basename "$e")
        [[ " README.md install wasmplugin envoyfilter native $listed" == *" $b "* ]] ||
            die "--out $OUT holds $b, which render.sh did not write: give a new or empty directory"
    done
fi

STAGE=$(mktemp -d "$(dirname "$OUT")/.$(basename "$OUT").render.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir "$STAGE/all"
for f in "$HERE"/*.yaml; do
    out="$STAGE/all/$(basename "$f")"
    # Literal replacements (no regular expressions: URLs and image names contain their syntax).
    URL="$URL" SHA="$SHA" IMAGE="$IMAGE" NIMAGE="$NATIVE_IMAGE" TDYF="$TD_YAML_FROM" TDYT="$TD_YAML_TO" \
        TDJF="$TD_JSON_FROM" TDJT="$TD_JSON_TO" PF="$PORTS_FROM" PT="$PORTS_TO" awk \
        -v pu="$PLACEHOLDER_URL" -v ps="$PLACEHOLDER_SHA" -v pi="$PLACEHOLDER_IMAGE" -v pn="$PLACEHOLDER_NATIVE_IMAGE" '
        function repl(s, from, to,    i, r) {
            r = ""
            while ((i = index(s, from)) > 0) { r = r substr(s, 1, i - 1) to; s = substr(s, i + length(from)) }
            return r s
        }
        {
            line = repl($0, pu, ENVIRON["URL"]); line = repl(line, ps, ENVIRON["SHA"]); line = repl(line, pi, ENVIRON["IMAGE"])
            if (ENVIRON["NIMAGE"] != "") line = repl(line, pn, ENVIRON["NIMAGE"])
            line = repl(line, ENVIRON["TDYF"], ENVIRON["TDYT"]); line = repl(line, ENVIRON["TDJF"], ENVIRON["TDJT"])
            print repl(line, ENVIRON["PF"], ENVIRON["PT"])
        }
    ' "$f" > "$out"
    if grep -qF -e "$PLACEHOLDER_URL" -e "$PLACEHOLDER_SHA" -e "$PLACEHOLDER_IMAGE" -e "$PLACEHOLDER_NATIVE_IMAGE" "$out"; then
        # Without --native-image the native files are not written at all.
        [[ -z "$NATIVE_IMAGE" && " ${NATIVE_INSTALL_FILES[*]} ${NATIVE_FILES[*]} " == *" $(basename "$f") "* ]] && continue
        die "a placeholder is left in $(basename "$f")"
    fi
done
# Every configuration of the filter names the trust domains asked for, and the network
# WasmPlugin the ports (the committed text drifted if not).
for f in wasmplugin.yaml wasmplugin-tcp.yaml; do
    grep -qF -- "$TD_YAML_TO" "$STAGE/all/$f" || die "no '$TD_YAML_FROM' in $f to render"
done
[[ $(grep -cF -- "$TD_JSON_TO" "$STAGE/all/envoyfilter-wasm.yaml") -eq 2 ]] ||
    die "not two '$TD_JSON_FROM' (HTTP and network filter) in envoyfilter-wasm.yaml to render"
grep -qF -- "$PORTS_TO" "$STAGE/all/wasmplugin-tcp.yaml" || die "no '$PORTS_FROM' in wasmplugin-tcp.yaml to render"
[[ $(grep -cF -- "$TD_JSON_TO" "$STAGE/all/envoyfilter-native.yaml") -eq 2 ]] ||
    die "not two '$TD_JSON_FROM' (HTTP and network filter) in envoyfilter-native.yaml to render"
for f in "${NATIVE_INSTALL_FILES[@]}"; do
    grep -qF -- "$PLACEHOLDER_NATIVE_IMAGE" "$HERE/$f" || die "no '$PLACEHOLDER_NATIVE_IMAGE' in $f to render"
done

# One directory per use. `Kustomization` is one of the names kustomize (kubectl apply -k)
# reads; unlike kustomization.yaml, kubectl apply -f DIR/ does not take it for a manifest.
set_dir() { # name, comment line, files...
    local name=$1 what=$2 f
    shift 2
    mkdir "$STAGE/$name"
    for f in "$@"; do cp "$STAGE/all/$f" "$STAGE/$name/$f"; done
    {
        echo "# $what"
        echo "# Rendered by envoy/istio/render.sh. Apply with kubectl apply -k <this directory>, or"
        echo "# kubectl apply -f <this directory>/ (which skips this file: no .yaml extension)."
        echo "apiVersion: kustomize.config.k8s.io/v1beta1"
        echo "kind: Kustomization"
        echo "resources:"
        for f in "$@"; do echo "- $f"; done
    } > "$STAGE/$name/Kustomization"
}
mkdir "$STAGE/install"
for f in "${INSTALL_FILES[@]}"; do cp "$STAGE/all/$f" "$STAGE/install/$f"; done
if [[ -n "$NATIVE_IMAGE" ]]; then
    for f in "${NATIVE_INSTALL_FILES[@]}"; do cp "$STAGE/all/$f" "$STAGE/install/$f"; done
fi
set_dir wasmplugin "The calico-alp filter as WasmPlugins. Never together with ../envoyfilter." \
    "${SHARED_FILES[@]}" "${WASMPLUGIN_FILES[@]}"
set_dir envoyfilter "The calico-alp filter as one EnvoyFilter, instead of ../wasmplugin (never both)." \
    "${SHARED_FILES[@]}" "${ENVOYFILTER_FILES[@]}"
if [[ -n "$NATIVE_IMAGE" ]]; then
    set_dir native "OPTIONAL: the calico-alp filter as the native module (EnvoyFilter), instead of ../wasmplugin and ../envoyfilter." \
        "${SHARED_FILES[@]}" "${NATIVE_FILES[@]}"
fi
rm -rf "$STAGE/all"

NATIVE_README=""
if [[ -n "$NATIVE_IMAGE" ]]; then
    NATIVE_README="
Optional, the native module (docs/istio.md \"Native module (optional)\"; proxy image \`$NATIVE_IMAGE\`):
install with \`istioctl install -y -f install/istio-operator.yaml -f install/native-operator.yaml\`
(or \`helm install istiod istio/istiod -n istio-system --wait -f install/istiod-values.yaml -f install/native-values.yaml\`),
then \`kubectl apply -k native\` *instead of* \`wasmplugin/\` and \`envoyfilter/\` (never together).
"
fi
if [[ -n "$NO_TCP" ]]; then TCP_NOTE="none (--no-tcp)"; else TCP_NOTE="${TCP_PORTS[*]}"; fi
cat > "$STAGE/README.md" <<EOF
# calico-alp for Istio, rendered by envoy/istio/render.sh

* module: \`$URL\`, sha256 \`$SHA\`
* control image: \`$IMAGE\`
* trust domains: ${TRUST_DOMAINS[*]}
* TCP ports of the network WasmPlugin: $TCP_NOTE

The procedure is docs/istio.md of the calico-alp repository. The commands below run from this
directory.

| directory | what | how |
|---|---|---|
| \`install/\` | install inputs, not resources: never \`kubectl apply\` them | \`kubectl patch felixconfiguration default --type merge --patch-file install/felix-policy-sync.yaml\`; \`istioctl install -y -f install/istio-operator.yaml\`, or \`helm install istiod istio/istiod -n istio-system --wait -f install/istiod-values.yaml\` |
| \`wasmplugin/\` | the filter as WasmPlugins (${WASMPLUGIN_FILES[*]}), with ${SHARED_FILES[*]} | \`kubectl apply -k wasmplugin\` (or \`kubectl apply -f wasmplugin/\`) |
| \`envoyfilter/\` | the filter as one EnvoyFilter (${ENVOYFILTER_FILES[*]}), with ${SHARED_FILES[*]} | instead of \`wasmplugin/\`, never both: \`kubectl apply -k envoyfilter\` |

$NATIVE_README
Each of \`wasmplugin/\` and \`envoyfilter/\` is complete by itself (the shared files are copied
into both) and lists its files in \`Kustomization\`. To switch from one to the other, delete the
filter files of the first (not its shared files), then apply the second.
EOF

rm -rf "$OUT"
mv "$STAGE" "$OUT"
trap - EXIT

shown=$OUT
[[ "$OUT" != "$PWD"/* ]] || shown=${OUT#"$PWD"/}
q() { printf '%q' "$1"; }
listing() { (cd "$OUT/$1" && LC_ALL=C ls -A | paste -sd ' ' -); }
echo "render: wrote $shown (module $URL, sha256 $SHA, control image $IMAGE, trust domains ${TRUST_DOMAINS[*]}, TCP ports $TCP_NOTE)"
echo "  $(q "$shown/install")/: $(listing install) (install inputs: never kubectl apply)"
echo "  $(q "$shown/wasmplugin")/: $(listing wasmplugin)"
echo "  $(q "$shown/envoyfilter")/: $(listing envoyfilter) (instead of wasmplugin/, never both)"
[[ -z "$NATIVE_IMAGE" ]] || echo "  $(q "$shown/native")/: $(listing native) (optional native module, instead of wasmplugin/ and envoyfilter/)"
echo "  $(q "$shown/README.md")"
echo "then (docs/istio.md steps 1, 3 and 4):"
echo "  kubectl patch felixconfiguration default --type merge --patch-file $(q "$shown/install/felix-policy-sync.yaml")"
echo "  istioctl install -y -f $(q "$shown/install/istio-operator.yaml")"
echo "    or: helm install istiod istio/istiod -n istio-system --wait -f $(q "$shown/install/istiod-values.yaml")"
echo "  kubectl apply -k $(q "$shown/wasmplugin")"
echo "    or, instead: kubectl apply -k $(q "$shown/envoyfilter")"
if [[ -n "$NATIVE_IMAGE" ]]; then
    echo "optional, the native module instead (docs/istio.md \"Native module (optional)\"):"
    echo "  istioctl install -y -f $(q "$shown/install/istio-operator.yaml") -f $(q "$shown/install/native-operator.yaml")"
    echo "    or: helm install istiod istio/istiod -n istio-system --wait -f $(q "$shown/install/istiod-values.yaml") -f $(q "$shown/install/native-values.yaml")"
    echo "  kubectl apply -k $(q "$shown/native")   (instead of wasmplugin/ and envoyfilter/)"
fi
