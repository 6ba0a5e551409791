#!/usr/bin/env bash
# Sets up everything dstack and its tests need on a fresh Debian machine, idempotently: Debian
# packages (build tools; docker-registry and apache2-utils for the tests' registry on loopback), a
# running Docker engine, the npm dependencies (native modules built from source), the bundle in
# dist/, and the locally built images (no registry outside is needed). Safe to run again: each step
# is skipped when already done. Each step says what it does and about how long it takes; a failure
# names the step and its log. apt waits for another apt (unattended upgrades) instead of failing.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
trap on_failure ERR

step 'checking the Debian packages it needs'
missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} with apt" 'about a minute'
  apt_install "${missing[@]}"
fi

step 'making sure a Docker engine answers' 'seconds; a few minutes when it must be installed'
scripts/ensure-docker.sh

# node-gyp builds better-sqlite3 and ssh2's addons against Node's own headers: no downloads.
if [ -d /usr/include/node ]; then export npm_config_nodedir=/usr; fi
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step 'installing npm dependencies, native modules built from source' '1–3 minutes; progress every 20 s'
  with_progress /tmp/dstack-setup-npm.log npm ci --no-audit --no-fund --loglevel=error --foreground-scripts
fi

step 'building the bundle in dist/' 'seconds'
npm run --silent build

step 'building the images the tests and examples run' 'seconds when up to date; 3–5 minutes for each one to build'
scripts/build-images.sh
step 'done'
