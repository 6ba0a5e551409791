# Shared by scripts/setup.sh, ensure-docker.sh and build-images.sh (sourced, not run): root when
# needed, apt that waits for another apt instead of dying, named steps that say which one failed,
# and progress for the long ones.

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# How long to wait for another apt or dpkg (unattended-upgrades, a second terminal) to finish.
APT_WAIT_SECONDS=${DSTACK_APT_WAIT_SECONDS:-900}

# apt-get that waits for the dpkg lock (DPkg::Lock::Timeout) and, since `apt-get update` ignores
# that option for its lists lock, retries while another apt holds a lock; output only on failure.
apt_get() {
  local waited=0 out rc
  while :; do
    rc=0
    out=$(as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$APT_WAIT_SECONDS" -qq "$@" 2>&1) || rc=$?
    [ "$rc" = 0 ] && return 0
    if printf '%s' "$out" | grep -q 'Could not get lock' && [ "$waited" -lt "$APT_WAIT_SECONDS" ]; then
      if [ "$waited" = 0 ]; then
        echo "  waiting for another apt to finish ($(printf '%s' "$out" | grep -o 'held by process [0-9]* ([^)]*)' | head -1 || true); up to ${APT_WAIT_SECONDS}s)" >&2
      fi
      sleep 5
      waited=$((waited + 5))
      continue
    fi
    printf '%s\n' "$out" | tail -20 >&2
    return "$rc"
  done
}

# Installs the Debian packages given, with no service started by their post-install scripts (a
# package such as docker-registry would otherwise start a registry on :5000 for everyone).
APT_UPDATED=${APT_UPDATED:-}
apt_install() {
  [ -n "$APT_UPDATED" ] || { apt_get update; APT_UPDATED=1; }
  local policy=/usr/sbin/policy-rc.d made=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    made=1
  fi
  local rc=0
  apt_get install -y --no-install-recommends "$@" || rc=$?
  [ -z "$made" ] || as_root rm -f "$policy"
  return "$rc"
}

# step "what" ["how long"]: names the step a failure reports (see on_failure).
STEP='starting'
STEP_LOG=''
step() {
  STEP=$1
  STEP_LOG=''
  echo "${STEP_PREFIX:-setup}: $1${2:+ ($2)}" >&2
}

# trap on_failure ERR: the step that failed, its exit status, where its log is.
on_failure() {
  local rc=$?
  echo "${STEP_PREFIX:-setup}: FAILED while $STEP (exit $rc)${STEP_LOG:+; its log: $STEP_LOG}" >&2
  echo "${STEP_PREFIX:-setup}: fix that and run the script again: the steps already done are skipped" >&2
  exit "$rc"
}

# with_progress LOG CMD...: runs CMD with its output in LOG and, every 20 s, says how long it has
# been running and the last line it wrote, so a step of minutes never looks hung.
with_progress() {
  local log=$1
  shift
  STEP_LOG=$log
  local started=$SECONDS rc=0
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
      local last
      last=$(tail -c 2000 "$log" 2>/dev/null | tr '\r' '\n' | grep -v '^[[:space:]]*$' | tail -1 | cut -c1-100 || true)
      echo "  … $((SECONDS - started))s${last:+: $last}" >&2
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" != 0 ]; then tail -20 "$log" >&2; fi
  return "$rc"
}
