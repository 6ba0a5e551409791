/**
 * Leases on the hosts of an SSH pool: how many jobs a host runs at once is decided ON THE HOST, so
 * two dstack processes — or two users — never put more than `jobsPerHost` jobs on one host.
 *
 * On the host, under the login user's `$HOME/.dstack/leases/`:
 *
 *   slot-<i>/                 held by whoever made it (`mkdir` is atomic: one maker wins)
 *   slot-<i>/ttl              the holder's ttl in ms (staleness is judged by the holder's own ttl)
 *   slot-<i>/holder           JSON: {run, job, pid, hostname, token}; its mtime is the renewal
 *   reap-<i>-<ms>-<token>/    a stale slot being reaped by the process whose token it names; slot i
 *                             stays reserved for that reaper while the reap is fresh
 *   reap-…/reaper             the reaper's ttl in ms; its mtime is the reaper's renewal
 *
 * Time is only ever the HOST's: a lease is stale when its holder file (or the folder, before the
 * file exists) was last modified more than the holder's ttl ago by the host's clock, in ms where
 * `stat`/`date` give ms (GNU), else in whole seconds on both sides (busybox, BSD). The CLI's clock
 * is never compared with the host's.
 *
 * Taking a stale slot over is race-free without a lock: the taker renames `slot-i` to a name of its
 * own (`reap-i-…`); only one `mv` of the same folder succeeds. The rename is checked afterwards
 * (same holder, still stale): a taker that lost an A-B-A race (the slot was reaped and taken afresh
 * between its check and its `mv`) puts the fresh lease back. The winner reads the dead holder, calls
 * `onStale` (the pool reaps the dead job's container and folder) while renewing the reap folder, then
 * removes it and claims slot i first. A reaper that dies mid-reap leaves a reap folder that goes stale
 * in turn and is taken over the same way, so a dead job's leftovers are reaped eventually.
 */
import { randomBytes } from 'node:crypto';
import { DstackError } from '../../engine/errors.js';
import type { SshHostSpec } from './host-spec.js';
import { formatHostSpec } from './host-spec.js';
import type { SshConnection } from './connect.js';
import { shellJoin, shellQuote } from './shell.js';

export interface LeaseHolder {
  readonly run: string;
  readonly job: string;
  readonly pid: number;
  readonly hostname: string;
}

export interface Lease {
  readonly slot: number;
  /**
   * Stops renewing and frees the slot on the host (only if it is still this lease's). Idempotent;
   * never throws: on a dead connection the lease simply expires after its ttl.
   */
  release(): Promise<void>;
}

export interface AcquireOptions {
  readonly hosts: readonly SshHostSpec[];
  readonly connect: (host: SshHostSpec) => Promise<SshConnection>;
  readonly jobsPerHost: number;
  readonly holder: LeaseHolder;
  /** How long a lease outlives its holder's last renewal; renewed every ttl/3. Default 30. */
  readonly ttlSeconds?: number;
  /** Aborting rejects with DS0400 (or the signal's reason when it is not a plain abort). */
  readonly signal: AbortSignal;
  readonly notify?: (msg: string) => void;
  /**
   * Called with the holder of a stale lease that this process took over, and the connection to
   * its host, to reap what the dead job left. The slot stays reserved while it runs. A rejection is
   * announced and the reap is left to expire, for another taker to retry.
   */
  readonly onStale?: (stale: LeaseHolder, connection: SshConnection) => Promise<void>;
}

export interface Acquired {
  readonly lease: Lease;
  readonly host: SshHostSpec;
  readonly connection: SshConnection;
}

/** The most time between two polls while every slot is held. */
const MAX_POLL_MS = 1000;
const FIRST_POLL_MS = 100;

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

const leaseCommand = (mode: string, args: readonly (string | number)[]): string =>
  `sh -c ${shellQuote(LEASE_SCRIPT)} dstack-lease ${shellJoin([mode, ...args.map(String)])}`;

/** Renewal: a touch, only while the slot still holds this lease's token. Exit 1: the lease is lost. */
const renewCommand = (slot: number, token: string): string =>
  `f="$HOME/.dstack/leases/slot-${slot}/holder"; grep -qF ${shellQuote(token)} "$f" 2>/dev/null && touch "$f"`;
const renewReapCommand = (name: string): string => `touch "$HOME/.dstack/leases/"${shellQuote(name)}/reaper`;
const releaseCommand = (slot: number, token: string): string =>
  `s="$HOME/.dstack/leases/slot-${slot}"; if grep -qF ${shellQuote(token)} "$s/holder" 2>/dev/null; then rm -rf "$s"; fi`;

/** Runs `step` every ttl/3 until stopped; one exec at a time; a failure stops it for good. */
class Renewer {
  #timer: NodeJS.Timeout | undefined;
  #inflight: Promise<void> | undefined;
  #stopped = false;
  readonly #unsubscribe: () => void;

  constructor(
    connection: SshConnection,
    private readonly everyMs: number,
    private readonly step: () => Promise<boolean>,
    private readonly onLost?: () => void,
  ) {
    this.#unsubscribe = connection.onClose(() => this.#halt());
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#inflight = this.step().then(
        (kept) => {
          if (kept) return this.#schedule();
          this.#halt();
          this.onLost?.();
        },
        // The connection died: the lease expires on its own.
        () => this.#halt(),
      );
    }, this.everyMs);
    // A lease must not keep the process alive by itself.
    this.#timer.unref();
  }

  #halt(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#unsubscribe();
  }

  /** Stops, and waits for a renewal under way (so nothing touches the slot after a release). */
  async stop(): Promise<void> {
    this.#halt();
    await this.#inflight?.catch(() => undefined);
  }
}

class HostLease implements Lease {
  readonly #renewer: Renewer;
  #released: Promise<void> | undefined;

  constructor(
    readonly slot: number,
    private readonly connection: SshConnection,
    private readonly token: string,
    ttlMs: number,
    notify: (msg: string) => void,
  ) {
    const renew = async (): Promise<boolean> => (await connection.exec(renewCommand(slot, token))).code === 0;
    this.#renewer = new Renewer(connection, Math.max(100, Math.floor(ttlMs / 3)), renew, () =>
      notify(`the lease on slot ${slot} of ${connection.label} was taken over by another dstack (it had not been renewed for longer than its ttl)`),
    );
  }

  release(): Promise<void> {
    this.#released ??= (async () => {
      await this.#renewer.stop();
      if (this.connection.closed) return;
      try {
        await this.connection.exec(releaseCommand(this.slot, this.token));
      } catch {
        // A dead connection: the lease expires after its ttl.
      }
    })();
    return this.#released;
  }
}

interface HostState {
  readonly index: number;
  readonly host: SshHostSpec;
  readonly connection: SshConnection;
}

interface Survey {
  /** Slots nobody holds and no fresh reap reserves, in slot order. */
  readonly free: number[];
  /** Held (fresh) plus reserved by a reap under way: the host's load. */
  readonly load: number;
  readonly stale: readonly ({ readonly kind: 'slot'; readonly slot: number } | { readonly kind: 'reap'; readonly name: string })[];
}

function parseSurvey(text: string, jobsPerHost: number): Survey {
  const slots = new Map<number, string>();
  // Slots with a reap under way, or with a dead job's leftovers not reaped yet (a stale reap).
  const reserved = new Set<number>();
  const stale: Survey['stale'][number][] = [];
  for (const line of text.split('\n')) {
    const [kind, index, state, name] = line.trim().split(' ');
    const i = Number(index);
    if (kind === 'slot' && state) slots.set(i, state);
    else if (kind === 'reap' && state === 'fresh') reserved.add(i);
    else if (kind === 'reap' && state === 'stale' && name) {
      reserved.add(i);
      stale.push({ kind: 'reap', name });
    }
  }
  const free: number[] = [];
  let load = 0;
  for (let i = 0; i < jobsPerHost; i++) {
    const s = slots.get(i);
    if (s === 'stale') stale.unshift({ kind: 'slot', slot: i });
    if (s === 'held' || (s !== 'stale' && reserved.has(i))) load++;
    else if (s === 'free') free.push(i);
  }
  return { free, load, stale };
}

function parseHolder(text: string): LeaseHolder | undefined {
  try {
    const o = JSON.parse(text) as Record<string, unknown>;
    if (typeof o !== 'object' || o === null) return undefined;
    return {
      run: typeof o.run === 'string' ? o.run : '',
      job: typeof o.job === 'string' ? o.job : '',
      pid: typeof o.pid === 'number' ? o.pid : 0,
      hostname: typeof o.hostname === 'string' ? o.hostname : '',
    };
  } catch {
    return undefined;
  }
}

/** What an abort rejects with: the signal's own reason, unless that is a plain DOMException. */
function abortError(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  if (reason === undefined || (typeof DOMException !== 'undefined' && reason instanceof DOMException)) {
    return new DstackError('DS0400', 'interrupted while waiting for a free host of the pool');
  }
  return reason;
}

/** Rejects as soon as `signal` aborts; `p` keeps running (its result, if any, is the caller's to clean). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function run(connection: SshConnection, mode: string, args: readonly (string | number)[]): Promise<string> {
  const r = await connection.exec(leaseCommand(mode, args));
  if (r.code !== 0) {
    throw new DstackError('DS0209', `${connection.label} could not manage the leases in ~/.dstack/leases (${mode}, exit ${r.code}): ${r.stderr.toString('utf8').trim() || 'no message'}`, {
      hint: 'check that the login user can write to its home folder on that host',
    });
  }
  return r.stdout.toString('utf8');
}

/**
 * Chooses a host of the pool with a free slot and takes a lease on it, held on the host and renewed
 * in the background until `release()`. Hosts are tried least loaded first (ties in pool order); a
 * stale lease is taken over before any free slot is claimed (see the top of this file); when every
 * slot is held and fresh it waits, polling at most a second apart, and says so once through
 * `notify`. A host that cannot be connected is skipped with a notice; none at all is the (first)
 * connection error.
 *
 * The returned connection is the chosen host's (the caller owns it and closes it after `release`);
 * every other connection made here is closed before this returns or rejects.
 */
export async function acquireHost(options: AcquireOptions): Promise<Acquired> {
  const { hosts, jobsPerHost, holder, signal } = options;
  const notify = options.notify ?? ((): void => undefined);
  const ttlSeconds = options.ttlSeconds ?? 30;
  if (hosts.length === 0) throw new Error('acquireHost: the pool has no hosts');
  if (!Number.isInteger(jobsPerHost) || jobsPerHost < 1) throw new Error(`acquireHost: jobsPerHost must be a whole number ≥ 1, not ${jobsPerHost}`);
  if (!(ttlSeconds > 0)) throw new Error(`acquireHost: ttlSeconds must be positive, not ${ttlSeconds}`);
  const ttlMs = Math.round(ttlSeconds * 1000);
  const token = randomBytes(8).toString('hex');
  const holderJson = JSON.stringify({ run: holder.run, job: holder.job, pid: holder.pid, hostname: holder.hostname, token });
  if (signal.aborted) throw abortError(signal);

  const pending: Promise<SshConnection | undefined>[] = [];
  const live = new Map<number, HostState>();
  const closeAll = (keep?: SshConnection): Promise<void> =>
    Promise.all([
      ...[...live.values()].filter((s) => s.connection !== keep).map((s) => s.connection.close().catch(() => undefined)),
      // Connections still being made when an abort came: closed as they arrive.
      ...pending.map((p) => p.then((c) => (c && c !== keep ? c.close() : undefined)).catch(() => undefined)),
    ]).then(() => undefined);

  const drop = (s: HostState, e: unknown): void => {
    live.delete(s.index);
    void s.connection.close().catch(() => undefined);
    notify(`skipping ${formatHostSpec(s.host)} of the pool: ${(e as Error).message}`);
  };

  try {
    const errors: unknown[] = [];
    const connected = await abortable(
      Promise.allSettled(
        hosts.map((host) => {
          const p = options.connect(host);
          pending.push(p.catch(() => undefined));
          return p;
        }),
      ),
      signal,
    );
    pending.length = 0;
    connected.forEach((r, index) => {
      const host = hosts[index]!;
      if (r.status === 'fulfilled') live.set(index, { index, host, connection: r.value });
      else {
        errors.push(r.reason);
        if (hosts.length > 1) notify(`skipping ${formatHostSpec(host)} of the pool: ${(r.reason as Error)?.message ?? String(r.reason)}`);
      }
    });
    if (live.size === 0) throw errors[0];

    let announced = false;
    let delay = FIRST_POLL_MS;
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      const states = [...live.values()];
      const surveys = await abortable(
        Promise.all(
          states.map((s) =>
            run(s.connection, 'survey', [jobsPerHost, ttlMs]).then(
              (text) => ({ s, survey: parseSurvey(text, jobsPerHost) }),
              (e: unknown) => {
                errors.push(e);
                drop(s, e);
                return undefined;
              },
            ),
          ),
        ),
        signal,
      );
      const ok = surveys.filter((x): x is NonNullable<typeof x> => x !== undefined);
      if (ok.length === 0) throw errors.at(-1) ?? new Error('no host of the pool answered');
      // Least loaded first, ties in pool order.
      ok.sort((a, b) => a.survey.load - b.survey.load || a.s.index - b.s.index);

      let tried = false;
      // A dead job's leftovers (its reaper's first, then its stale slot) come before a free slot:
      // its container may still be running, and on a host that is never full nothing else would
      // reap it (issue 4: the next dstack that touches the host reaps what a dead one left).
      for (const kind of ['reap', 'slot'] as const) {
        for (const { s, survey } of ok) {
          for (const stale of survey.stale) {
            if (stale.kind !== kind) continue;
            tried = true;
            const slot = await takeOver(s, stale);
            if (slot !== undefined) return await finish(s, slot);
          }
        }
      }
      for (const { s, survey } of ok) {
        if (survey.free.length === 0) continue;
        tried = true;
        const slot = await claim(s, survey.free[0]!, undefined);
        if (slot !== undefined) return await finish(s, slot);
      }
      if (tried) {
        // Lost races for what the survey showed: look again soon, without backing off.
        await sleep(20 + Math.floor(Math.random() * 30), signal);
        continue;
      }
      if (!announced) {
        announced = true;
        notify(
          live.size === 1 && hosts.length === 1
            ? `the pool's only host ${formatHostSpec(hosts[0]!)} is busy; waiting for a free slot`
            : `all ${live.size} hosts of the pool are busy; waiting for a free slot`,
        );
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, MAX_POLL_MS);
    }
  } catch (e) {
    await closeAll();
    throw e;
  }

  /** Not raced with the signal: a slot made on the host must be learnt, to be released. */
  async function claim(s: HostState, prefer: number | undefined, dropReap: string | undefined): Promise<number | undefined> {
    let out: string;
    try {
      const order = [...new Set([...(prefer === undefined ? [] : [prefer]), ...Array.from({ length: jobsPerHost }, (_, i) => i)])];
      out = await run(s.connection, 'claim', [ttlMs, token, holderJson, dropReap ?? '', ...order]);
    } catch (e) {
      drop(s, e);
      return undefined;
    }
    const m = /^acquired (\d+)$/m.exec(out);
    return m ? Number(m[1]) : undefined;
  }

  async function takeOver(s: HostState, stale: Survey['stale'][number]): Promise<number | undefined> {
    let out: string;
    try {
      out = await run(s.connection, 'take', stale.kind === 'slot' ? ['slot', stale.slot, ttlMs, token] : ['reap', stale.name, ttlMs, token]);
    } catch (e) {
      drop(s, e);
      return undefined;
    }
    const m = /^took (reap-(\d+)-\S+)\n([\s\S]*)$/.exec(out);
    if (!m) return undefined; // fresh, gone, lost or raced: someone else is on it
    const reapName = m[1]!;
    const slot = Number(m[2]);
    const dead = parseHolder(m[3]!.trim());
    const label = formatHostSpec(s.host);
    notify(
      dead
        ? `took over a stale lease on ${label} (slot ${slot}, held by ${dead.job || 'a job'} of pid ${dead.pid} on ${dead.hostname || 'an unknown machine'})`
        : `took over a stale lease on ${label} (slot ${slot})`,
    );
    if (dead && options.onStale) {
      const renewer = new Renewer(s.connection, Math.max(100, Math.floor(ttlMs / 3)), async () => (await s.connection.exec(renewReapCommand(reapName))).code === 0);
      try {
        await options.onStale(dead, s.connection);
      } catch (e) {
        await renewer.stop();
        // Left to expire: another taker (or this one) retries the reap after the ttl.
        notify(`could not clean up after the dead holder of slot ${slot} on ${label}: ${(e as Error)?.message ?? String(e)}`);
        return undefined;
      }
      await renewer.stop();
    }
    // Slot i was reserved for us while we reaped: claim it first.
    return claim(s, slot < jobsPerHost ? slot : undefined, reapName);
  }

  async function finish(s: HostState, slot: number): Promise<Acquired> {
    const lease = new HostLease(slot, s.connection, token, ttlMs, notify);
    if (signal.aborted) {
      await lease.release();
      throw abortError(signal);
    }
    await closeAll(s.connection);
    live.clear();
    return { lease, host: s.host, connection: s.connection };
  }
}
