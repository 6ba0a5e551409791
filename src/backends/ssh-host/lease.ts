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
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { DstackError } from '../../engine/errors.js';
import type { SshHostSpec } from './host-spec.js';
import { formatHostSpec } from './host-spec.js';
import { leaseCommand, releaseCommand, renewCommand, renewReapCommand } from './lease-script.js';
import { Renewer } from './renewer.js';
import type { SshConnection } from './session.js';

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
async function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw abortError(signal);
  const settled = new AbortController();
  try {
    return await Promise.race([p, once(signal, 'abort', { signal: settled.signal }).then(() => Promise.reject(abortError(signal)))]);
  } finally {
    settled.abort();
  }
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> => delay(ms, undefined, { signal }).catch(() => Promise.reject(abortError(signal)));

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
  const { hosts, jobsPerHost } = options;
  const ttlSeconds = options.ttlSeconds ?? 30;
  if (hosts.length === 0) throw new Error('acquireHost: the pool has no hosts');
  if (!Number.isInteger(jobsPerHost) || jobsPerHost < 1) throw new Error(`acquireHost: jobsPerHost must be a whole number ≥ 1, not ${jobsPerHost}`);
  if (!(ttlSeconds > 0)) throw new Error(`acquireHost: ttlSeconds must be positive, not ${ttlSeconds}`);
  if (options.signal.aborted) throw abortError(options.signal);
  const acquisition = new Acquisition(options, Math.round(ttlSeconds * 1000));
  try {
    return await acquisition.run();
  } catch (e) {
    await acquisition.closeAll();
    throw e;
  }
}

/** One call of `acquireHost`: the connections it made, and the steps of its loop. */
class Acquisition {
  readonly #o: AcquireOptions;
  readonly #ttlMs: number;
  readonly #token = randomBytes(8).toString('hex');
  readonly #holderJson: string;
  readonly #notify: (msg: string) => void;
  /** Connections still being made when an abort came: closed as they arrive. */
  readonly #pending: Promise<SshConnection | undefined>[] = [];
  readonly #live = new Map<number, HostState>();
  readonly #errors: unknown[] = [];

  constructor(options: AcquireOptions, ttlMs: number) {
    this.#o = options;
    this.#ttlMs = ttlMs;
    const { holder } = options;
    this.#holderJson = JSON.stringify({ run: holder.run, job: holder.job, pid: holder.pid, hostname: holder.hostname, token: this.#token });
    this.#notify = options.notify ?? ((): void => undefined);
  }

  async run(): Promise<Acquired> {
    const { signal, hosts } = this.#o;
    await this.#connectAll();
    let announced = false;
    let delay = FIRST_POLL_MS;
    for (;;) {
      if (signal.aborted) throw abortError(signal);
      const ok = await this.#survey();
      const { got, tried } = await this.#tryAll(ok);
      if (got) return got;
      if (tried) {
        // Lost races for what the survey showed: look again soon, without backing off.
        await sleep(20 + Math.floor(Math.random() * 30), signal);
        continue;
      }
      if (!announced) {
        announced = true;
        this.#notify(
          this.#live.size === 1 && hosts.length === 1
            ? `the pool's only host ${formatHostSpec(hosts[0]!)} is busy; waiting for a free slot`
            : `all ${this.#live.size} hosts of the pool are busy; waiting for a free slot`,
        );
      }
      await sleep(delay, signal);
      delay = Math.min(delay * 2, MAX_POLL_MS);
    }
  }

  async #connectAll(): Promise<void> {
    const { hosts } = this.#o;
    const connected = await abortable(
      Promise.allSettled(
        hosts.map((host) => {
          const p = this.#o.connect(host);
          this.#pending.push(p.catch(() => undefined));
          return p;
        }),
      ),
      this.#o.signal,
    );
    this.#pending.length = 0;
    connected.forEach((r, index) => {
      const host = hosts[index]!;
      if (r.status === 'fulfilled') this.#live.set(index, { index, host, connection: r.value });
      else {
        this.#errors.push(r.reason);
        if (hosts.length > 1) this.#notify(`skipping ${formatHostSpec(host)} of the pool: ${(r.reason as Error)?.message ?? String(r.reason)}`);
      }
    });
    if (this.#live.size === 0) throw this.#errors[0];
  }

  /** Every live host's slots, least loaded first (ties in pool order); hosts that fail are dropped. */
  async #survey(): Promise<{ readonly s: HostState; readonly survey: Survey }[]> {
    const { jobsPerHost } = this.#o;
    const surveys = await abortable(
      Promise.all(
        [...this.#live.values()].map((s) =>
          run(s.connection, 'survey', [jobsPerHost, this.#ttlMs]).then(
            (text) => ({ s, survey: parseSurvey(text, jobsPerHost) }),
            (e: unknown) => {
              this.#errors.push(e);
              this.#drop(s, e);
              return undefined;
            },
          ),
        ),
      ),
      this.#o.signal,
    );
    const ok = surveys.filter((x): x is NonNullable<typeof x> => x !== undefined);
    if (ok.length === 0) throw this.#errors.at(-1) ?? new Error('no host of the pool answered');
    return ok.sort((a, b) => a.survey.load - b.survey.load || a.s.index - b.s.index);
  }

  /**
   * A dead job's leftovers (its reaper's first, then its stale slot) come before a free slot: its
   * container may still be running, and on a host that is never full nothing else would reap it
   * (issue 4: the next dstack that touches the host reaps what a dead one left).
   */
  async #tryAll(ok: readonly { readonly s: HostState; readonly survey: Survey }[]): Promise<{ readonly got?: Acquired; readonly tried: boolean }> {
    let tried = false;
    for (const kind of ['reap', 'slot'] as const) {
      for (const { s, survey } of ok) {
        for (const stale of survey.stale) {
          if (stale.kind !== kind) continue;
          tried = true;
          const slot = await this.#takeOver(s, stale);
          if (slot !== undefined) return { got: await this.#finish(s, slot), tried };
        }
      }
    }
    for (const { s, survey } of ok) {
      if (survey.free.length === 0) continue;
      tried = true;
      const slot = await this.#claim(s, survey.free[0]!, undefined);
      if (slot !== undefined) return { got: await this.#finish(s, slot), tried };
    }
    return { tried };
  }

  #drop(s: HostState, e: unknown): void {
    this.#live.delete(s.index);
    void s.connection.close().catch(() => undefined);
    this.#notify(`skipping ${formatHostSpec(s.host)} of the pool: ${(e as Error).message}`);
  }

  /** Not raced with the signal: a slot made on the host must be learnt, to be released. */
  async #claim(s: HostState, prefer: number | undefined, dropReap: string | undefined): Promise<number | undefined> {
    const { jobsPerHost } = this.#o;
    let out: string;
    try {
      const order = [...new Set([...(prefer === undefined ? [] : [prefer]), ...Array.from({ length: jobsPerHost }, (_, i) => i)])];
      out = await run(s.connection, 'claim', [this.#ttlMs, this.#token, this.#holderJson, dropReap ?? '', ...order]);
    } catch (e) {
      this.#drop(s, e);
      return undefined;
    }
    const m = /^acquired (\d+)$/m.exec(out);
    return m ? Number(m[1]) : undefined;
  }

  async #takeOver(s: HostState, stale: Survey['stale'][number]): Promise<number | undefined> {
    let out: string;
    try {
      out = await run(s.connection, 'take', stale.kind === 'slot' ? ['slot', stale.slot, this.#ttlMs, this.#token] : ['reap', stale.name, this.#ttlMs, this.#token]);
    } catch (e) {
      this.#drop(s, e);
      return undefined;
    }
    const m = /^took (reap-(\d+)-\S+)\n([\s\S]*)$/.exec(out);
    if (!m) return undefined; // fresh, gone, lost or raced: someone else is on it
    const reapName = m[1]!;
    const slot = Number(m[2]);
    const dead = parseHolder(m[3]!.trim());
    const label = formatHostSpec(s.host);
    this.#notify(
      dead
        ? `took over a stale lease on ${label} (slot ${slot}, held by ${dead.job || 'a job'} of pid ${dead.pid} on ${dead.hostname || 'an unknown machine'})`
        : `took over a stale lease on ${label} (slot ${slot})`,
    );
    if (dead && this.#o.onStale && !(await this.#reap(s, dead, reapName, slot, label))) return undefined;
    // Slot i was reserved for us while we reaped: claim it first.
    return this.#claim(s, slot < this.#o.jobsPerHost ? slot : undefined, reapName);
  }

  /** Runs `onStale` while renewing the reap folder; false when it failed (the reap is left to expire, for a retry). */
  async #reap(s: HostState, dead: LeaseHolder, reapName: string, slot: number, label: string): Promise<boolean> {
    const renewer = new Renewer(s.connection, Math.max(100, Math.floor(this.#ttlMs / 3)), async () => (await s.connection.exec(renewReapCommand(reapName))).code === 0);
    try {
      await this.#o.onStale!(dead, s.connection);
      return true;
    } catch (e) {
      this.#notify(`could not clean up after the dead holder of slot ${slot} on ${label}: ${(e as Error)?.message ?? String(e)}`);
      return false;
    } finally {
      await renewer.stop();
    }
  }

  async #finish(s: HostState, slot: number): Promise<Acquired> {
    const lease = new HostLease(slot, s.connection, this.#token, this.#ttlMs, this.#notify);
    if (this.#o.signal.aborted) {
      await lease.release();
      throw abortError(this.#o.signal);
    }
    await this.closeAll(s.connection);
    this.#live.clear();
    return { lease, host: s.host, connection: s.connection };
  }

  /** Closes every connection made here but `keep`. */
  closeAll(keep?: SshConnection): Promise<void> {
    return Promise.all([
      ...[...this.#live.values()].filter((s) => s.connection !== keep).map((s) => s.connection.close().catch(() => undefined)),
      ...this.#pending.map((p) => p.then((c) => (c && c !== keep ? c.close() : undefined)).catch(() => undefined)),
    ]).then(() => undefined);
  }
}
