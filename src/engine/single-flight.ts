/**
 * One producer per fingerprint across processes (issue 8: ten concurrent runs sharing an uncached
 * dep ran it ten times). A job about to run claims its fingerprint in the store; a job of another
 * run that needs the same fingerprint finds the claim, waits for the producer's `done` job and
 * reuses its artifacts. A producer that fails or stops releases its claim and a waiter takes over;
 * one whose process died (or whose job ended without releasing) holds a stale claim, which the
 * next claimant takes over at once.
 */
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { processAlive } from './reconcile.js';
import type { CacheHit, CacheIndex, Claim, FingerprintClaims, RunReader } from './store/types.js';
import { isFinal, type Fingerprint, type JobId, type RunName } from './types.js';

/** How often a waiting job looks for the producer's result. */
const POLL_MS = 250;

export interface FlightOptions {
  readonly claims: FingerprintClaims;
  readonly cache: Pick<CacheIndex, 'findCacheHit'>;
  readonly runs: Pick<RunReader, 'getJob'>;
  readonly fingerprint: Fingerprint;
  readonly job: JobId;
  readonly run: RunName;
  /**
   * Wait for another producer (a job that may be reused); false for a job that runs whatever is
   * cached (the named workflow, `--rerun`): it claims only a free fingerprint, so others can wait
   * for it, and otherwise runs alongside.
   */
  readonly wait: boolean;
  /** Ends a wait: the run is being stopped or aborted. */
  readonly signal: AbortSignal;
  /** Told once per producer waited for. */
  readonly onWaiting: (producer: Claim) => void;
  readonly pollMs?: number;
}

export type Flight =
  /** This job produces the fingerprint; `release` once its final status is recorded. */
  | { readonly kind: 'produce'; readonly release: () => void }
  /** Someone else produces it and this job does not wait: it runs without a claim. */
  | { readonly kind: 'alongside' }
  /** The producer finished: its artifacts are reused. */
  | { readonly kind: 'reuse'; readonly hit: CacheHit; readonly producer: Claim }
  /** The run was stopped while waiting. */
  | { readonly kind: 'stopped' };

export async function singleFlight(o: FlightOptions): Promise<Flight> {
  const me = { job: o.job, run: o.run, pid: process.pid, hostname: hostname() };
  const stale = staleClaim(o.runs);
  let waitedFor: Claim | undefined;
  for (;;) {
    const { taken, holder } = o.claims.claim(o.fingerprint, me, stale);
    if (taken) {
      // The producer records its done job before it releases: a claim free because the producer
      // just finished (between this job's last look and its claim) must reuse, not make it again.
      const producer = waitedFor;
      const hit = producer && o.cache.findCacheHit(o.fingerprint, { exclude: o.job });
      if (!producer || !hit) return { kind: 'produce', release: () => releaseQuietly(o) };
      releaseQuietly(o);
      return { kind: 'reuse', hit, producer };
    }
    if (!o.wait) return { kind: 'alongside' };
    if (waitedFor?.job !== holder.job) {
      waitedFor = holder;
      o.onWaiting(holder);
    }
    await sleep(o.pollMs ?? POLL_MS, undefined, { signal: o.signal }).catch(() => undefined);
    if (o.signal.aborted) return { kind: 'stopped' };
    const hit = o.cache.findCacheHit(o.fingerprint, { exclude: o.job });
    if (hit) return { kind: 'reuse', hit, producer: holder };
  }
}

function releaseQuietly(o: FlightOptions): void {
  try {
    o.claims.release(o.fingerprint, o.job);
  } catch {
    // A claim left behind is taken over by the next claimant: its job has ended.
  }
}

/**
 * A claim nobody will release: its job ended (or its run was removed) without releasing it, or its
 * process on this host is gone. A claim from another host counts as live while its job is.
 */
export function staleClaim(runs: Pick<RunReader, 'getJob'>): (holder: Claim) => boolean {
  const here = hostname();
  return (holder) => {
    const job = runs.getJob(holder.job);
    if (!job || isFinal(job.status)) return true;
    return holder.hostname === here && !processAlive(holder.pid);
  };
}

/** The live producer of `fingerprint`, if any: what `--explain` says a run would wait for. */
export function liveProducer(claims: Pick<FingerprintClaims, 'holder'>, runs: Pick<RunReader, 'getJob'>, fingerprint: Fingerprint): Claim | undefined {
  const holder = claims.holder(fingerprint);
  return holder && !staleClaim(runs)(holder) ? holder : undefined;
}
