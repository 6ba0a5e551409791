#!/usr/bin/env bash
# Build the images that the tests and fixtures/mnist use, locally from Debian packages: no registry is
# reachable here. Each image is labelled with a hash of its recipe; an image whose label matches is
# reused, so a second call costs nothing.
#
#   scripts/build-images.sh [busybox] [python] [sshhost] [venv]    (default: all)
#
# Images:
#   dstack-test/busybox:latest   busybox-static, ~2 MB: the trivial-job image of tests and benchmarks
#   dstack/python:3.11-ml        Debian bookworm minbase + python3, numpy, scikit-learn (fixtures/mnist)
#   dstack-test/sshhost:latest   Debian bookworm minbase + openssh-server: a "machine of the pool" for the
#                                SSH tests (see build_sshhost and test/helpers/ssh-hosts.ts)
#   dstack-test/venv:latest      dstack/python:3.11-ml + Debian's python3-venv (a few .deb files, one
#                                layer): environments under /opt kept as artifacts (test/e2e/envs.test.ts)
set -Eeuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
STEP_PREFIX=build-images
trap on_failure ERR

need_pkg() { # command package
  command -v "$1" >/dev/null 2>&1 || [ -e "$1" ] || { step "installing $2 with apt"; apt_install "$2"; }
}
mirror() { # the Debian mirror this machine already uses
  local m
  m=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$m" ] || m=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  echo "${m:-http://deb.debian.org/debian}"
}
# An image's label is a hash of the function that builds it: editing one recipe rebuilds only that
# image. Its messages are not part of the recipe: rewording one rebuilds nothing.
recipe_hash() { declare -f "$1" mirror | grep -vE '^[[:space:]]*step ' | sha256sum | cut -c1-16; }
have_image() { # name hash
  [ "$(docker image inspect -f '{{ index .Config.Labels "dstack.recipe" }}' "$1" 2>/dev/null || true)" = "$2" ]
}

build_busybox() {
  local name=dstack-test/busybox:latest h; h=$(recipe_hash build_busybox)
  have_image "$name" "$h" && { echo "image $name is up to date"; return; }
  need_pkg /bin/busybox busybox-static
  local root; root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/workflow"
  cp /bin/busybox "$root/bin/busybox"
  # Relative links: `busybox --install -s` would point them at this temporary folder.
  (cd "$root/bin" && for a in $(./busybox --list); do [ -e "$a" ] || ln -s busybox "$a"; done)
  tar -C "$root" -c . | docker import --change 'ENV PATH=/bin' --change "LABEL dstack.recipe=$h" - "$name" >/dev/null
  rm -rf "$root"
  echo "built $name"
}

build_python() {
  local name=dstack/python:3.11-ml h; h=$(recipe_hash build_python)
  have_image "$name" "$h" && { echo "image $name is up to date"; return; }
  need_pkg debootstrap debootstrap
  local root; root=$(mktemp -d /var/tmp/dstack-rootfs.XXXXXX)
  step "building $name: a Debian root with debootstrap, then docker import" '3–5 minutes; progress every 20 s'
  with_progress /tmp/dstack-debootstrap.log as_root debootstrap --variant=minbase \
    --include=python3,python3-numpy,python3-sklearn,ca-certificates bookworm "$root" "$(mirror)"
  as_root rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/*
  as_root tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change "LABEL dstack.recipe=$h" - "$name" >/dev/null
  as_root rm -rf "$root"
  echo "built $name"
}

# A test host: its own sshd and host key, reached on a loopback port that the tests publish. It runs
# no Docker engine of its own. The job containers of a host run on THIS machine's engine: a host
# "with Docker" gets /var/run/docker.sock mounted (a host "without Docker" gets none), and root's home
# is a folder of this machine mounted at the SAME path inside the container (HOST_HOME, e.g.
# /tmp/dstack-hosts/<id>/root; the entrypoint points root's passwd entry at it). A job folder made
# over SSH under the home therefore has the same path for the engine, and its bind mounts resolve.
# Anything outside the home exists only inside the container.
#
# Run time environment:
#   AUTHORIZED_KEY   a public key line, installed for root (/etc/ssh/authorized_keys/root, outside the home)
#   HOST_KEY_FILE    a mounted ed25519 private key to use as the host key; absent: one is generated
#   HOST_HOME        root's home (created if missing)
build_sshhost() {
  local name=dstack-test/sshhost:latest h; h=$(recipe_hash build_sshhost)
  have_image "$name" "$h" && { echo "image $name is up to date"; return; }
  need_pkg debootstrap debootstrap
  local root; root=$(mktemp -d /var/tmp/dstack-rootfs.XXXXXX)
  step "building $name: a Debian root with debootstrap and openssh-server, then docker import" '3–5 minutes; progress every 20 s'
  with_progress /tmp/dstack-debootstrap.log as_root debootstrap --variant=minbase bookworm "$root" "$(mirror)"
  # Without this, openssh-server's post-install would start sshd on this machine's port 22.
  printf '#!/bin/sh\nexit 101\n' | as_root tee "$root/usr/sbin/policy-rc.d" >/dev/null
  as_root chmod 755 "$root/usr/sbin/policy-rc.d"
  as_root cp /etc/resolv.conf "$root/etc/resolv.conf"
  with_progress /tmp/dstack-sshhost-apt.log as_root chroot "$root" sh -c 'apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server coreutils'
  # Host keys made by the post-install would be shared by every container: each makes its own.
  as_root rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf" "$root"/etc/ssh/ssh_host_*
  as_root rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/*
  as_root tee "$root/etc/ssh/sshd_config" >/dev/null <<'EOF'
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
PrintMotd no
Subsystem sftp internal-sftp
EOF
  as_root tee "$root/usr/local/sbin/dstack-sshhost" >/dev/null <<'EOF'
#!/bin/sh
set -eu
key=/etc/ssh/ssh_host_ed25519_key
if [ -n "${HOST_KEY_FILE:-}" ] && [ -f "$HOST_KEY_FILE" ]; then
  install -m 600 "$HOST_KEY_FILE" "$key"
  ssh-keygen -y -f "$key" > "$key.pub"
elif [ ! -f "$key" ]; then
  ssh-keygen -q -t ed25519 -N '' -f "$key"
fi
if [ -n "${HOST_HOME:-}" ]; then
  mkdir -p "$HOST_HOME"
  sed -i "s#^\(root:[^:]*:0:0:[^:]*:\)[^:]*:#\1$HOST_HOME:#" /etc/passwd
fi
mkdir -p /etc/ssh/authorized_keys /run/sshd
printf '%s\n' "${AUTHORIZED_KEY:-}" > /etc/ssh/authorized_keys/root
chmod 644 /etc/ssh/authorized_keys/root
exec /usr/sbin/sshd -D -e
EOF
  as_root chmod 755 "$root/usr/local/sbin/dstack-sshhost"
  as_root tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'EXPOSE 22' \
    --change 'ENTRYPOINT ["/usr/local/sbin/dstack-sshhost"]' \
    --change "LABEL dstack.recipe=$h" - "$name" >/dev/null
  as_root rm -rf "$root"
  echo "built $name"
}

# python3-venv on top of the python image: the .deb files of its own Python's version, fetched from the
# mirror by this machine's apt (bookworm, as the image) and installed in one container, committed.
build_venv() {
  local name=dstack-test/venv:latest h; h=$(recipe_hash build_venv)
  build_python >/dev/null
  h="$h-$(docker image inspect -f '{{ .Id }}' dstack/python:3.11-ml | cut -c8-19)"
  have_image "$name" "$h" && { echo "image $name is up to date"; return; }
  local debs ver id; debs=$(mktemp -d)
  step "building $name: python3-venv's .deb files from the apt mirror, installed in one layer"
  ver=$(docker run --rm --pull=never dstack/python:3.11-ml dpkg-query -W -f '${Version}' python3.11)
  [ -n "$APT_UPDATED" ] || { apt_get update; APT_UPDATED=1; }
  (cd "$debs" && apt-get download -qq "python3.11-venv=$ver" python3-venv python3-lib2to3 \
    python3-distutils python3-pip-whl python3-setuptools-whl) >/tmp/dstack-venv-build.log 2>&1 || {
      tail -20 /tmp/dstack-venv-build.log >&2; rm -rf "$debs"; exit 1; }
  id=$(docker create --pull=never -v "$debs:/debs:ro" dstack/python:3.11-ml sh -c 'dpkg -i /debs/*.deb >/dev/null')
  docker start -a "$id" || { docker rm -f "$id" >/dev/null; rm -rf "$debs"; exit 1; }
  docker commit --change "LABEL dstack.recipe=$h" "$id" "$name" >/dev/null
  docker rm -f "$id" >/dev/null
  rm -rf "$debs"
  echo "built $name"
}

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(busybox python sshhost venv)
for t in "${targets[@]}"; do
  case "$t" in
    busybox) build_busybox ;;
    python) build_python ;;
    sshhost) build_sshhost ;;
    venv) build_venv ;;
    *) echo "build-images: unknown image '$t' (busybox, python, sshhost, venv)" >&2; exit 2 ;;
  esac
done
