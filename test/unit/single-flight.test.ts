/**
 * One producer per fingerprint (issue 8): the store's claims (taken, held, released, taken over
 * when stale) and the flight a job goes through with them — produce, wait then reuse, take over a
 * producer that failed or died, run alongside when it must run anyway, stop while waiting. A job's
 * published ports are kept too.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest } from '../../src/artifacts/types.js';
import { liveProducer, singleFlight, staleClaim } from '../../src/engine/single-flight.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { Claim, Store } from '../../src/engine/store/types.js';
import { asContentHash, type Fingerprint, type JobId } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';
import { withTimeout } from '../helpers/timeout.js';

const FP = 'a'.repeat(64) as Fingerprint;
const manifest: Manifest = { version: 1, size: 3, entries: [{ type: 'file', path: 'out/x', size: 3, mode: 0o644, hash: asContentHash('1'.repeat(64)) }] };

function withStore(fn: (store: Store) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dstack-flight-'));
    const store = openStore(join(dir, 'home'));
    try {
      await fn(store);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** A run of one job (`shared`), its job id. */
const newJob = (store: Store): { job: JobId; run: Claim['run'] } => {
  const { run, jobs } = store.runs.createRun({ workflow: 'shared', owner: 'o', backend: 'local', repo: { root: '/p', isGit: false }, args: [], jobs: [{ spec: jobSpec({ workflow: 'shared', image: 'img' }), deps: [] }] });
  return { job: jobs[0]!.id, run: run.name };
};

/** A pid no process has: one that just exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

const me = (j: { job: JobId; run: Claim['run'] }) => ({ ...j, pid: process.pid, hostname: hostname() });
const never = (): boolean => false;

test(
  'claims: the first takes it, another sees the holder, the holder may claim again; release only by the holder',
  withTimeout(10_000, withStore((store) => {
    const a = newJob(store);
    const b = newJob(store);
    const first = store.claims.claim(FP, me(a), never);
    assert.is(first.taken, true);
    assert.is(first.holder.job, a.job);
    const second = store.claims.claim(FP, me(b), never);
    assert.equal([second.taken, second.holder.job, second.holder.pid, second.holder.hostname], [false, a.job, process.pid, hostname()]);
    assert.is(store.claims.claim(FP, me(a), never).taken, true, 'its own claim again');
    store.claims.release(FP, b.job);
    assert.is(store.claims.holder(FP)?.job, a.job, 'released by someone else: still held');
    store.claims.release(FP, a.job);
    assert.is(store.claims.holder(FP), undefined);
    store.claims.release(FP, a.job);
    assert.is(store.claims.claim(FP, me(b), never).taken, true);
  })),
);

test(
  'a stale claim is taken over: its process is dead, or its job ended without releasing, or its run is gone',
  withTimeout(10_000, withStore((store) => {
    const stale = staleClaim(store.runs);
    const a = newJob(store);
    const b = newJob(store);
    store.claims.claim(FP, { ...a, pid: deadPid(), hostname: hostname() }, never);
    assert.is(liveProducer(store.claims, store.runs, FP), undefined);
    assert.is(store.claims.claim(FP, me(b), stale).taken, true, 'a dead producer');

    store.runs.setJobStatus(b.job, 'failed');
    const c = newJob(store);
    assert.is(store.claims.claim(FP, me(c), stale).taken, true, 'a producer whose job ended');

    store.runs.deleteRun(c.run);
    const d = newJob(store);
    assert.is(store.claims.claim(FP, me(d), stale).taken, true, 'a producer whose run is gone');
    assert.is(liveProducer(store.claims, store.runs, FP)?.job, d.job);
    // A live holder on another host counts as live while its job does.
    const e = newJob(store);
    store.claims.release(FP, d.job);
    store.claims.claim(FP, { ...e, pid: deadPid(), hostname: 'elsewhere' }, stale);
    assert.is(store.claims.claim(FP, me(d), stale).taken, false);
  })),
);

test(
  'a flight waits for a live producer and reuses its done job; the producer is announced once',
  withTimeout(10_000, async () => {
    await withStore(async (store) => {
      const producer = newJob(store);
      const waiter = newJob(store);
      const flight = await singleFlight({ claims: store.claims, cache: store.cache, runs: store.runs, fingerprint: FP, ...producer, wait: true, signal: new AbortController().signal, onWaiting: () => undefined });
      assert.is(flight.kind, 'produce');
      const waited: JobId[] = [];
      const waiting = singleFlight({ claims: store.claims, cache: store.cache, runs: store.runs, fingerprint: FP, ...waiter, wait: true, signal: new AbortController().signal, onWaiting: (c) => waited.push(c.job), pollMs: 20 });
      // The producer finishes: fingerprint, artifacts, done, then the claim goes.
      await new Promise((r) => setTimeout(r, 100));
      store.cache.setJobFingerprint(producer.job, FP, { version: 1, parts: {} });
      store.runs.setJobManifest(producer.job, manifest);
      store.runs.setJobStatus(producer.job, 'done');
      if (flight.kind === 'produce') flight.release();
      const got = await waiting;
      assert.is(got.kind, 'reuse');
      assert.is(got.kind === 'reuse' && got.hit.job, producer.job);
      assert.equal(waited, [producer.job]);
    })();
  }),
);

test(
  'a producer that fails releases its claim and the waiter takes over; a job that must run runs alongside; a stop ends the wait',
  withTimeout(10_000, async () => {
    await withStore(async (store) => {
      const base = { claims: store.claims, cache: store.cache, runs: store.runs, fingerprint: FP, onWaiting: () => undefined, pollMs: 20 };
      const producer = newJob(store);
      const first = await singleFlight({ ...base, ...producer, wait: true, signal: new AbortController().signal });
      const named = newJob(store);
      assert.is((await singleFlight({ ...base, ...named, wait: false, signal: new AbortController().signal })).kind, 'alongside');

      const waiter = newJob(store);
      const waiting = singleFlight({ ...base, ...waiter, wait: true, signal: new AbortController().signal });
      await new Promise((r) => setTimeout(r, 100));
      store.runs.setJobStatus(producer.job, 'failed');
      if (first.kind === 'produce') first.release();
      assert.is((await waiting).kind, 'produce', 'the waiter produces it now');
      assert.is(store.claims.holder(FP)?.job, waiter.job);

      const stopper = new AbortController();
      const late = newJob(store);
      const stopped = singleFlight({ ...base, ...late, wait: true, signal: stopper.signal });
      await new Promise((r) => setTimeout(r, 50));
      stopper.abort();
      assert.is((await stopped).kind, 'stopped');
    })();
  }),
);

test(
  "a job's published ports are kept in order, with the job",
  withTimeout(10_000, withStore((store) => {
    const a = newJob(store);
    assert.is(store.runs.getJob(a.job)?.ports, undefined);
    store.runs.addJobPort(a.job, { port: 8888, url: 'http://127.0.0.1:8888' });
    store.runs.addJobPort(a.job, { port: 6006, url: 'http://127.0.0.1:6006' });
    assert.equal(store.runs.getJob(a.job)?.ports, [
      { port: 8888, url: 'http://127.0.0.1:8888' },
      { port: 6006, url: 'http://127.0.0.1:6006' },
    ]);
    assert.equal(store.runs.jobs(a.run)[0]?.ports?.length, 2);
  })),
);


test(
  'a waiter that looks just before the producer finishes and claims just after it released reuses the artifacts, not makes them again',
  withTimeout(10_000, async () => {
    await withStore(async (store) => {
      const base = { claims: store.claims, runs: store.runs, fingerprint: FP, onWaiting: () => undefined, pollMs: 5 };
      const producer = newJob(store);
      const first = await singleFlight({ ...base, cache: store.cache, ...producer, wait: true, signal: new AbortController().signal });
      // The waiter's look misses; right after it, the producer records done and releases (the race of a loaded machine).
      let finished = false;
      const racing = {
        findCacheHit: (...args: Parameters<typeof store.cache.findCacheHit>) => {
          const hit = store.cache.findCacheHit(...args);
          if (!finished) {
            finished = true;
            store.cache.setJobFingerprint(producer.job, FP, { version: 1, parts: {} });
            store.runs.setJobManifest(producer.job, manifest);
            store.runs.setJobStatus(producer.job, 'done');
            if (first.kind === 'produce') first.release();
          }
          return hit;
        },
      };
      const got = await singleFlight({ ...base, cache: racing, ...newJob(store), wait: true, signal: new AbortController().signal });
      assert.is(got.kind, 'reuse');
      assert.is(got.kind === 'reuse' && got.hit.job, producer.job);
      assert.is(store.claims.holder(FP), undefined, 'the claim taken on the way is given back');
    })();
  }),
);

test.run();
