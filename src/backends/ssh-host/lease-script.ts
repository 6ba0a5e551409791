/**
 * The shell side of the SSH pool's leases (lease.ts): one POSIX sh script that surveys, claims and
 * takes over slots under `$HOME/.dstack/leases` on the host, using only the host's clock. Kept in a
 * file of its own so it can be read (and linted) as the shell program it is.
 */
import { shellJoin, shellQuote } from './shell.js';

/**
 * One script for every step, run as `sh -c SCRIPT dstack-lease MODE ARGS…` (sshd hands the line to
 * the login shell, which may not be sh). Modes:
 *   survey N TTL              one line per slot i < N: `slot i free|held|stale`; one per reap
 *                             folder: `reap i fresh|stale NAME`
 *   claim TTL TOKEN HOLDER DROP I…
 *                             removes the reap folder DROP (if not empty), then mkdirs the first
 *                             slot of I… that is free and not reserved by a fresh reap, and writes
 *                             its ttl and holder files: `acquired i` or `none`
 *   take slot I TTL TOKEN / take reap NAME TTL TOKEN
 *                             renames a stale slot (or stale reap folder) to reap-i-<now>-TOKEN:
 *                             `took NAME` then the old holder file, or `fresh`, `gone`, `lost`, `raced`
 */
export const LEASE_SCRIPT = String.raw`
set -u
d="$HOME/.dstack/leases"
mkdir -p "$d" || { echo "cannot create $d" >&2; exit 3; }
mode=$1; shift
m=$(stat -c %.3Y "$d" 2>/dev/null) || m=
fine=0
case "$m" in *.[0-9][0-9][0-9]) fine=1 ;; esac
if [ $fine = 1 ]; then
  now=$(date +%s%3N 2>/dev/null) || now=
  case "$now" in ''|*[!0-9]*) fine=0 ;; esac
fi
[ $fine = 1 ] || now=$(( $(date +%s) * 1000 ))
mt() {
  _m=$(stat -c %.3Y "$1" 2>/dev/null) || _m=$(stat -f %m "$1" 2>/dev/null) || { echo; return; }
  case "$_m" in
    *.*) if [ $fine = 1 ]; then echo "${"$"}{_m%.*}${"$"}{_m#*.}"; else echo $(( ${"$"}{_m%.*} * 1000 )); fi ;;
    *) echo $(( _m * 1000 )) ;;
  esac
}
num() { case "$1" in ''|*[!0-9]*) echo "$2" ;; *) echo "$1" ;; esac; }
slot_state() {
  _f="$1/holder"; [ -f "$_f" ] || _f="$1"
  _m=$(mt "$_f"); [ -n "$_m" ] || { echo gone; return; }
  _t=; [ -f "$1/ttl" ] && read -r _t < "$1/ttl"
  _t=$(num "$_t" "$def")
  if [ $(( now - _m )) -gt "$_t" ]; then echo stale; else echo held; fi
}
reap_state() {
  _n=${"$"}{1##*/}
  if [ -f "$1/reaper" ]; then
    _m=$(mt "$1/reaper"); _t=; read -r _t < "$1/reaper"; _t=$(num "$_t" "$def")
  else
    _x=${"$"}{_n#reap-*-}; _m=$(num "${"$"}{_x%%-*}" 0); _t=$def
  fi
  [ -n "$_m" ] || { echo gone; return; }
  if [ $(( now - _m )) -gt "$_t" ]; then echo stale; else echo fresh; fi
}
reap_slot() { _x=${"$"}{1##*/}; _x=${"$"}{_x#reap-}; echo "${"$"}{_x%%-*}"; }
reserved() {
  for _r in "$d"/reap-"$1"-*; do
    [ -d "$_r" ] || continue
    [ "$(reap_state "$_r")" = fresh ] && return 0
  done
  return 1
}
case "$mode" in
survey)
  n=$1; def=$2; i=0
  while [ $i -lt "$n" ]; do
    if [ -d "$d/slot-$i" ]; then echo "slot $i $(slot_state "$d/slot-$i")"; else echo "slot $i free"; fi
    i=$(( i + 1 ))
  done
  for r in "$d"/reap-*; do
    [ -d "$r" ] || continue
    echo "reap $(reap_slot "$r") $(reap_state "$r") ${"$"}{r##*/}"
  done
  ;;
claim)
  def=$1; tok=$2; holder=$3; drop=$4; shift 4
  [ -n "$drop" ] && rm -rf "$d/$drop"
  for i in "$@"; do
    reserved "$i" && continue
    if mkdir "$d/slot-$i" 2>/dev/null; then
      printf '%s\n' "$def" > "$d/slot-$i/ttl"
      printf '%s\n' "$holder" > "$d/slot-$i/holder"
      echo "acquired $i"
      exit 0
    fi
  done
  echo none
  ;;
take)
  kind=$1; what=$2; def=$3; tok=$4
  if [ "$kind" = slot ]; then
    src="$d/slot-$what"; i=$what
    [ -d "$src" ] || { echo gone; exit 0; }
    [ "$(slot_state "$src")" = stale ] || { echo fresh; exit 0; }
  else
    src="$d/$what"; i=$(reap_slot "$src")
    [ -d "$src" ] || { echo gone; exit 0; }
    [ "$(reap_state "$src")" = stale ] || { echo fresh; exit 0; }
  fi
  h=$(cat "$src/holder" 2>/dev/null) || h=
  new="reap-$i-$now-$tok"
  mv "$src" "$d/$new" 2>/dev/null || { echo lost; exit 0; }
  if [ "$kind" = slot ]; then
    h2=$(cat "$d/$new/holder" 2>/dev/null) || h2=
    if [ "$h2" != "$h" ] || [ "$(slot_state "$d/$new")" != stale ]; then
      # Another taker reaped this slot and a new holder made it afresh between our check and our
      # mv: give the fresh lease back.
      if mkdir "$src" 2>/dev/null; then
        for f in "$d/$new"/*; do [ -e "$f" ] && mv "$f" "$src/"; done
        rmdir "$d/$new" 2>/dev/null
      fi
      echo raced
      exit 0
    fi
  fi
  printf '%s\n' "$def" > "$d/$new/reaper"
  echo "took $new"
  printf '%s\n' "$h"
  ;;
*)
  echo "unknown mode $mode" >&2; exit 2 ;;
esac
`;

/** The command line that runs one mode of the script on a host. */
export const leaseCommand = (mode: string, args: readonly (string | number)[]): string =>
  `sh -c ${shellQuote(LEASE_SCRIPT)} dstack-lease ${shellJoin([mode, ...args.map(String)])}`;

/** Renewal: a touch, only while the slot still holds this lease's token. Exit 1: the lease is lost. */
export const renewCommand = (slot: number, token: string): string =>
  `f="$HOME/.dstack/leases/slot-${slot}/holder"; grep -qF ${shellQuote(token)} "$f" 2>/dev/null && touch "$f"`;
export const renewReapCommand = (name: string): string => `touch "$HOME/.dstack/leases/"${shellQuote(name)}/reaper`;
export const releaseCommand = (slot: number, token: string): string =>
  `s="$HOME/.dstack/leases/slot-${slot}"; if grep -qF ${shellQuote(token)} "$s/holder" 2>/dev/null; then rm -rf "$s"; fi`;
