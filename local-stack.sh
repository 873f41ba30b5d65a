#!/usr/bin/env bash
# The README's first command: the YAO bank demonstration through real Envoy on 127.0.0.1.
# Options (--once, --updates FILE, --help) are those of scripts/local-stack.sh.
exec "$(dirname "$0")/scripts/local-stack.sh" "$@"
