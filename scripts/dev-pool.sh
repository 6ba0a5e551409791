#!/usr/bin/env bash
# A local pool of SSH machines for trying `dstack run --remote` (README), idempotently:
#
#   scripts/dev-pool.sh [up] [N]        start N hosts (default 2) and save them as the remote `local-pool`
#   scripts/dev-pool.sh down [--purge]  remove the host containers (--purge: their keys, ports and homes too)
#
# Each host is a container of dstack-test/sshhost:latest (built by scripts/setup.sh, or
# `scripts/build-images.sh sshhost`), made the way the tests make theirs (test/helpers/ssh-hosts.ts):
# in this machine's network namespace (--network host) with its own sshd on its own free port of
# 127.0.0.1, root's home a folder of this machine mounted at the SAME path inside (the engine
# resolves the job containers' bind mounts on this machine), and this machine's Docker socket
# mounted, so the jobs it runs are sibling containers on this engine. Linux only (host networking).
#
# State lives in ${DSTACK_HOME:-~/.dstack}/dev-pool/: the client key id_ed25519 (0600) and, per host,
# its host key, its port and its home. A second `up` reuses them, so ~/.ssh/known_hosts stays valid;
# stopped hosts are started again, missing ones created.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=dstack-test/sshhost:latest
REMOTE=local-pool
LABEL=dstack.dev-pool=1
home=${DSTACK_HOME:-$HOME/.dstack}
state=$home/dev-pool
key=$state/id_ed25519

say() { printf 'dev-pool: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

sock=${DOCKER_HOST:-unix:///var/run/docker.sock}
case "$sock" in
  unix://*) sock=${sock#unix://} ;;
  *) die "needs a Docker engine on a Unix socket, not DOCKER_HOST=$sock" ;;
esac

host_name() { echo "dstack-dev-pool-$1"; }

# Removes a folder, even when the jobs' containers (root) wrote files into it.
remove_dir() {
  rm -rf -- "$1" 2>/dev/null && return
  docker run --rm -v "$1:$1" --entrypoint rm "$IMAGE" -rf -- "$1/." >/dev/null 2>&1 || true
  rm -rf -- "$1"
}

# The job containers a host started (label dstack.host=root@127.0.0.1:PORT): they would outlive it.
remove_jobs_of() {
  local ids
  ids=$(docker ps -aq --filter "label=dstack.host=root@127.0.0.1:$1") || true
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
}

down() {
  local purge=${1:-} names n port
  names=$(docker ps -a --filter "label=$LABEL" --format '{{.Names}}')
  for n in $names; do
    port=$(cat "$state/hosts/$n/port" 2>/dev/null || true)
    docker rm -f "$n" >/dev/null
    [ -z "$port" ] || remove_jobs_of "$port"
    say "removed $n${port:+ (127.0.0.1:$port)}"
  done
  [ -n "$names" ] || say "no host containers to remove"
  if [ "$purge" = --purge ]; then
    local kh
    for port in $(cat "$state"/hosts/*/port 2>/dev/null); do
      for kh in "$HOME/.ssh/known_hosts" ${DSTACK_KNOWN_HOSTS:+"$DSTACK_KNOWN_HOSTS"}; do
        [ -f "$kh" ] && ssh-keygen -F "[127.0.0.1]:$port" -f "$kh" >/dev/null 2>&1 &&
          ssh-keygen -R "[127.0.0.1]:$port" -f "$kh" >/dev/null 2>&1 && say "forgot the host key of [127.0.0.1]:$port in $kh"
      done
    done
    [ -d "$state" ] && remove_dir "$state" && say "removed $state"
    say "the remote '$REMOTE' is still configured; remove it with: bin/dstack config delete $REMOTE -y"
  elif [ -n "$names" ]; then
    say "kept the host keys, ports and homes in $state/hosts (\`$0 down --purge\` removes them)"
  fi
}

# A port of 127.0.0.1 nobody listens on now (the kernel's pick).
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Until sshd itself answers with its banner.
wait_ssh() {
  local port=$1 name=$2 banner
  for _ in $(seq 1 150); do
    banner=$(timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 4 <&3" 2>/dev/null || true)
    [ "$banner" = SSH- ] && return 0
    sleep 0.1
  done
  docker logs --tail 20 "$name" >&2 || true
  die "$name did not answer SSH on 127.0.0.1:$port within 15 s"
}

# ssh-keygen here, or the one in the host image when this machine has no OpenSSH client.
keygen() { # file comment
  if command -v ssh-keygen >/dev/null 2>&1; then
    ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$1"
  else
    local dir; dir=$(dirname "$1")
    docker run --rm -v "$dir:$dir" --entrypoint sh "$IMAGE" -c \
      'ssh-keygen -q -t ed25519 -N "" -C "$2" -f "$1" && chown "$3" "$1" "$1.pub"' sh "$1" "$2" "$(id -u):$(id -g)" >/dev/null
  fi
  chmod 600 "$1"
}

# sshd on its own port of 127.0.0.1, then the image's entrypoint (as test/helpers/ssh-hosts.ts).
ENTRY='sed -i "s/^Port 22$/Port $SSH_PORT\nListenAddress 127.0.0.1/" /etc/ssh/sshd_config && exec /usr/local/sbin/dstack-sshhost'

up_host() { # index pubkey keytag → prints the port
  local name dir hhome port status tag
  name=$(host_name "$1")
  dir=$state/hosts/$name
  hhome=$dir/root
  mkdir -p "$hhome" "$dir/hostkey"
  chmod 700 "$dir/hostkey"
  [ -f "$dir/hostkey/ssh_host_ed25519_key" ] || keygen "$dir/hostkey/ssh_host_ed25519_key" "$name" >&2
  port=$(cat "$dir/port" 2>/dev/null || true)
  status=$(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null || true)
  tag=$(docker inspect -f '{{index .Config.Labels "dstack.dev-pool.key"}}' "$name" 2>/dev/null || true)
  if [ -n "$status" ] && { [ "$tag" != "$3" ] || [ -z "$port" ]; }; then
    # Made for another client key (or its port was forgotten): made again, same host key and home.
    docker rm -f "$name" >/dev/null
    status=
  fi
  if [ "$status" = running ]; then
    say "$name is already running on 127.0.0.1:$port"
  elif [ -n "$status" ]; then
    docker start "$name" >/dev/null
    say "started $name again on 127.0.0.1:$port"
  else
    if [ -z "$port" ] || port_busy "$port"; then
      port=$(free_port)
      echo "$port" > "$dir/port"
    fi
    docker run -d --name "$name" \
      --label "$LABEL" --label "dstack.dev-pool.key=$3" \
      --network host \
      -e "SSH_PORT=$port" -e "AUTHORIZED_KEY=$2" -e "HOST_HOME=$hhome" \
      -e HOST_KEY_FILE=/run/dstack-hostkey/ssh_host_ed25519_key \
      -v "$dir/hostkey:/run/dstack-hostkey:ro" \
      -v "$hhome:$hhome" \
      -v "$sock:/var/run/docker.sock" \
      --entrypoint /bin/sh "$IMAGE" -c "$ENTRY" >/dev/null
    say "created $name: sshd on 127.0.0.1:$port, root's home $hhome"
  fi
  wait_ssh "$port" "$name"
  echo "$port"
}

up() {
  local n=$1 pub tag i p extra
  [[ "$n" =~ ^[1-9][0-9]?$ ]] || die "N must be a number of hosts from 1 to 99, not '$n'"
  docker image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE is missing: run scripts/setup.sh (or scripts/build-images.sh sshhost)"
  [ -f dist/dstack.mjs ] || npm run --silent build
  mkdir -p "$state"
  chmod 700 "$state"
  if [ ! -f "$key" ]; then
    keygen "$key" dstack-dev-pool
    say "made the client key $key"
  fi
  chmod 600 "$key"
  [ -f "$key.pub" ] || ssh-keygen -y -f "$key" > "$key.pub"
  pub=$(cat "$key.pub")
  tag=$(printf '%s' "$pub" | sha256sum | cut -c1-16)
  local hosts=()
  for i in $(seq 1 "$n"); do
    p=$(up_host "$i" "$pub" "$tag")
    hosts+=(--host "root@127.0.0.1:$p")
  done
  # Hosts beyond N from an earlier, larger pool.
  for extra in $(docker ps -a --filter "label=$LABEL" --format '{{.Names}}'); do
    i=${extra##*-}
    if [ "$i" -gt "$n" ]; then
      docker rm -f "$extra" >/dev/null
      p=$(cat "$state/hosts/$extra/port" 2>/dev/null || true)
      [ -z "$p" ] || remove_jobs_of "$p"
      say "removed $extra (beyond $n hosts)"
    fi
  done
  say "bin/dstack config ssh --name $REMOTE ${hosts[*]} --identity $key --force"
  node bin/dstack config ssh --name "$REMOTE" "${hosts[@]}" --identity "$key" --force
  say "ready: dstack run WORKFLOW --remote $REMOTE (a first run trusts each host's key and says so); \`$0 down\` removes the hosts"
}

case "${1:-up}" in
  up) up "${2:-2}" ;;
  down) down "${2:-}" ;;
  [0-9]*) up "$1" ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$1' (up [N], down [--purge])" ;;
esac
