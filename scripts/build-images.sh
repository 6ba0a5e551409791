#!/usr/bin/env bash
# Build the images that the tests and fixtures/mnist use, locally from Debian packages: no registry is
# reachable here. Each image is labelled with a hash of its recipe; an image whose label matches is
# reused, so a second call costs nothing.
#
#   scripts/build-images.sh [busybox] [python] [sshhost]    (default: all)
#
# Images:
#   dstack-test/busybox:latest   busybox-static, ~2 MB: the trivial-job image of tests and benchmarks
#   dstack/python:3.11-ml        Debian bookworm minbase + python3, numpy, scikit-learn (fixtures/mnist)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need_pkg() { # command package
  command -v "$1" >/dev/null 2>&1 || [ -e "$1" ] || {
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$2" >/dev/null
  }
}
mirror() { # the Debian mirror this machine already uses
  local m
  m=$(grep -hoE '^URIs: *\S+' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$m" ] || m=$(grep -hoE '^deb +\S+' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
  echo "${m:-http://deb.debian.org/debian}"
}
# An image's label is a hash of the function that builds it: editing one recipe rebuilds only that image.
recipe_hash() { declare -f "$1" mirror | sha256sum | cut -c1-16; }
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
  echo "building $name with debootstrap (about a minute)…"
  as_root debootstrap --variant=minbase --include=python3,python3-numpy,python3-sklearn,ca-certificates \
    bookworm "$root" "$(mirror)" >/tmp/dstack-debootstrap.log 2>&1 || {
      tail -20 /tmp/dstack-debootstrap.log >&2; exit 1; }
  as_root rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/*
  as_root tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change "LABEL dstack.recipe=$h" - "$name" >/dev/null
  as_root rm -rf "$root"
  echo "built $name"
}

targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(busybox python)
for t in "${targets[@]}"; do
  case "$t" in
    busybox) build_busybox ;;
    python) build_python ;;
    *) echo "build-images: unknown image '$t' (busybox, python)" >&2; exit 2 ;;
  esac
done
