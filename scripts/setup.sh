#!/usr/bin/env bash
# Sets up everything dstack and its tests need on a fresh Debian machine, idempotently:
# a running Docker engine, the npm dependencies (native modules built from source), the bundle in
# dist/, and the locally built images (no registry is needed). Safe to run again: each step is
# skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

scripts/ensure-docker.sh

# node-gyp builds better-sqlite3 and ssh2's addons against Node's own headers: no downloads.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies (builds native modules, about a minute)" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

npm run --silent build
scripts/build-images.sh
