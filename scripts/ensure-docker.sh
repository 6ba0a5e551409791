#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine. Installs Debian's docker.io when there is no
# dockerd, starts it in the background when /var/run/docker.sock does not answer /_ping, and never
# stops or restarts a daemon it did not start. Used by scripts/setup.sh and by .ci/run.
#
# A daemon it starts itself gets `--registry-mirror http://127.0.0.1:5055` (DSTACK_REGISTRY_MIRROR;
# empty: none): the tests run a registry there, so Docker Hub names (python:3.11-slim) resolve
# from this machine and never from Docker Hub. When nothing listens there, the engine falls back
# to Docker Hub as it would without a mirror.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
STEP_PREFIX=ensure-docker
trap on_failure ERR

sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
sock=${sock#unix://}
mirror=${DSTACK_REGISTRY_MIRROR-http://127.0.0.1:5055}

# Node is always here; curl may not be.
ping() {
  node -e 'const r=require("http").get({socketPath:process.argv[1],path:"/_ping",timeout:2000},(res)=>process.exit(res.statusCode===200?0:1));r.on("error",()=>process.exit(1));r.on("timeout",()=>process.exit(1))' "$sock"
}

if ping; then exit 0; fi

if ! command -v dockerd >/dev/null 2>&1; then
  step "installing Debian's docker.io (no Docker engine is installed)" 'about a minute'
  apt_install docker.io
fi

flags=()
# A mirror set in daemon.json as well as on the command line stops dockerd from starting.
if [ -n "$mirror" ] && ! grep -qs '"registry-mirrors"' /etc/docker/daemon.json; then flags+=(--registry-mirror "$mirror"); fi
step "starting dockerd ${flags[*]} in the background (log: /tmp/dstack-dockerd.log)"
STEP_LOG=/tmp/dstack-dockerd.log
# shellcheck disable=SC2016
as_root sh -c 'nohup dockerd "$@" >/tmp/dstack-dockerd.log 2>&1 &' dockerd "${flags[@]}"
for _ in $(seq 1 100); do
  if ping; then exit 0; fi
  sleep 0.2
done
echo "ensure-docker: dockerd did not answer on $sock after 20 s; see /tmp/dstack-dockerd.log" >&2
tail -20 /tmp/dstack-dockerd.log >&2 || true
exit 1
