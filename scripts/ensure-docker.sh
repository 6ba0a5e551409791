#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine. Installs Debian's docker.io when there is no
# dockerd, starts it in the background when /var/run/docker.sock does not answer /_ping, and never
# stops a daemon it did not start. Used by the README's setup command and by .ci/run.
set -euo pipefail

sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
sock=${sock#unix://}

# Node is always here; curl may not be.
ping() {
  node -e 'const r=require("http").get({socketPath:process.argv[1],path:"/_ping",timeout:2000},(res)=>process.exit(res.statusCode===200?0:1));r.on("error",()=>process.exit(1));r.on("timeout",()=>process.exit(1))' "$sock"
}

if ping; then exit 0; fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-docker: no Docker engine installed; installing Debian's docker.io" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq docker.io >/dev/null
fi

echo "ensure-docker: starting dockerd in the background (log: /tmp/dstack-dockerd.log)" >&2
as_root sh -c 'nohup dockerd >/tmp/dstack-dockerd.log 2>&1 &'
for _ in $(seq 1 100); do
  if ping; then exit 0; fi
  sleep 0.2
done
echo "ensure-docker: dockerd did not answer on $sock after 20 s; see /tmp/dstack-dockerd.log" >&2
tail -20 /tmp/dstack-dockerd.log >&2 || true
exit 1
