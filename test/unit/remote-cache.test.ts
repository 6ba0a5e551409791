/**
 * The team's records as the cache decision's second index (cache-decision.ts, remote-cache.ts):
 * asked only when the local index misses and the policy allows a reuse, and applied by the executor
 * only once the hit's artifacts are fetched. The bucket itself is exercised by the integration and
 * e2e suites (moto, a shared folder); here the remote index is a stub that records its questions.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { makeManifest } from '../../src/artifacts/manifest.js';
import { emptyManifest } from '../../src/artifacts/types.js';
import type { Backend, Machine } from '../../src/engine/backend.js';
import { decideCache, type DecisionInput } from '../../src/engine/cache-decision.js';
import { RunControl } from '../../src/engine/control.js';
import { DstackError } from '../../src/engine/errors.js';
import type { RunEvent } from '../../src/engine/events.js';
import { executeRun } from '../../src/engine/executor.js';
import type { RemoteCache, RemoteHit } from '../../src/engine/remote-cache.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { CacheHit } from '../../src/engine/store/types.js';
import { asContentHash, asJobId, asRunName, type Fingerprint } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';
import { withTimeout } from '../helpers/timeout.js';

const manifest = makeManifest([{ type: 'file', path: 'out/model.bin', size: 3, mode: 0o644, hash: asContentHash('a'.repeat(64)) }]);
const teamHit: RemoteHit = { manifest, origin: { run: 'wet-lion-3', job: asJobId('wet-lion-3/prep'), owner: 'alice', source: 'bucket' } };

/** A remote index answering `hit`, recording the fingerprints asked and the hits fetched. */
function stubRemote(hit: RemoteHit | undefined, fetchError?: DstackError): RemoteCache & { asked: string[]; fetched: string[] } {
  const asked: string[] = [];
  const fetched: string[] = [];
  return {
    asked,
    fetched,
    find: async (fp, workflow) => (asked.push(`${workflow}:${fp.slice(0, 8)}`), hit),
    fetch: async (h) => {
      if (fetchError) throw fetchError;
      fetched.push(h.origin.job);
    },
  };
}

const input = (over: Partial<DecisionInput> = {}): DecisionInput => ({
  spec: jobSpec({ workflow: 'prep' }),
  imageDigest: async () => 'sha256:img',
  inputs: { hash: asContentHash('0'.repeat(64)) },
  deps: [],
  tags: [],
  named: false,
  ...over,
});

const localHit: CacheHit = { job: asJobId('old-run-1/prep'), manifest: emptyManifest, origin: { job: asJobId('old-run-1/prep'), run: asRunName('old-run-1') } };
const index = (hit: CacheHit | undefined) => ({ findCacheHit: (_fp: Fingerprint) => hit });

test('a local hit wins: the team is not asked', withTimeout(2000, async () => {
  const remote = stubRemote(teamHit);
  const d = await decideCache(index(localHit), input(), remote);
  assert.is(d.action, 'reuse');
  assert.is(d.action === 'reuse' && d.hit.origin.run, 'old-run-1');
  assert.is(d.action === 'reuse' && d.remote, undefined);
  assert.equal(remote.asked, []);
}));

test('a local miss asks the team: its hit is a reuse naming the bucket run, with the remote hit to fetch', withTimeout(2000, async () => {
  const remote = stubRemote(teamHit);
  const d = await decideCache(index(undefined), input(), remote);
  if (d.action !== 'reuse') return assert.unreachable(`decided ${d.action}`);
  assert.equal([d.hit.origin.job, d.hit.origin.run, d.hit.manifest], ['wet-lion-3/prep', 'wet-lion-3', manifest]);
  assert.is(d.remote, teamHit);
  assert.equal(remote.asked, [`prep:${d.fingerprint.slice(0, 8)}`]);
}));

test('the policy comes first: --rerun and the named workflow never ask the team; a team miss runs', withTimeout(2000, async () => {
  const remote = stubRemote(teamHit);
  assert.is((await decideCache(index(undefined), input({ rerun: true }), remote)).action, 'run');
  assert.is((await decideCache(index(undefined), input({ named: true }), remote)).action, 'run');
  assert.equal(remote.asked, []);
  const d = await decideCache(index(undefined), input(), stubRemote(undefined));
  assert.equal([d.action, d.action === 'run' && d.why], ['run', 'no-hit']);
}));

/** A backend whose one job exits 0 and saves nothing; `steps` says whether a machine was used. */
function oneShotBackend(steps: string[]): Backend {
  const machine: Machine = {
    bootstrap: async () => void steps.push('bootstrap'),
    stage: async () => undefined,
    start: async () => ({ wait: async () => ({ exitCode: 0 }), stop: async () => undefined, kill: async () => undefined }),
    collect: async () => emptyManifest,
    teardown: async () => undefined,
  };
  return {
    id: 'test',
    supports: () => ({ ok: true }),
    check: async () => undefined,
    observe: async () => ({ state: 'gone' }),
    reap: async () => undefined,
    close: async () => undefined,
    imageDigest: async () => 'sha256:img',
    provision: async () => (steps.push('provision'), machine),
  };
}

async function runWithTeam(remote: RemoteCache) {
  const home = mkdtempSync(join(tmpdir(), 'dstack-remote-cache-'));
  const store = openStore(home);
  const steps: string[] = [];
  const events: RunEvent[] = [];
  try {
    const jobs = [{ spec: jobSpec({ workflow: 'prep' }), deps: [] }, { spec: jobSpec({ workflow: 'train' }), deps: [0] }];
    const { run } = store.runs.createRun({ workflow: 'train', owner: 'bob', backend: 'test', repo: { root: home, isGit: false }, args: [], jobs });
    const outcome = await executeRun({
      store,
      artifacts: new LocalArtifactStore({ home }),
      backend: oneShotBackend(steps),
      run,
      jobs: store.runs.jobs(run.name),
      snapshot: { manifest: emptyManifest, hash: asContentHash('0'.repeat(64)) },
      secrets: () => undefined,
      control: new RunControl(),
      onEvent: (e) => events.push(e),
      remoteCache: remote,
    });
    return { outcome, steps, events, prep: store.runs.jobs(run.name)[0]! };
  } finally {
    store.close();
    rmSync(home, { recursive: true, force: true });
  }
}

test('executor: a team hit is fetched, then recorded as a reuse of the bucket job; no machine for it', withTimeout(5000, async () => {
  const remote = stubRemote(teamHit);
  const { outcome, steps, events, prep } = await runWithTeam(remote);
  assert.is(outcome.status, 'done');
  assert.equal(remote.fetched, ['wet-lion-3/prep']);
  assert.equal([prep.status, prep.cachedFrom, prep.manifest], ['done', 'wet-lion-3/prep', manifest]);
  const reused = events.find((e) => e.type === 'job-reused');
  assert.equal(reused && reused.type === 'job-reused' && [reused.from, reused.origin?.owner], ['wet-lion-3/prep', 'alice']);
  assert.equal(steps, ['provision', 'bootstrap'], 'only train (named) ran');
}));

test('executor: a team hit whose artifacts cannot be fetched is no hit: the job runs, and says why', withTimeout(5000, async () => {
  const damaged = new DstackError('DS0265', 'object aaaa… is damaged in the bucket');
  const { outcome, steps, events, prep } = await runWithTeam(stubRemote(teamHit, damaged));
  assert.is(outcome.status, 'done');
  assert.equal([prep.status, prep.cachedFrom], ['done', undefined]);
  const notice = events.find((e) => e.type === 'job-notice');
  const said = notice?.type === 'job-notice' && 'message' in notice.notice ? notice.notice.message : '';
  assert.match(said, /^not reusing wet-lion-3\/prep \(bucket\): DS0265: object/);
  assert.not.ok(events.some((e) => e.type === 'job-reused'));
  assert.equal(steps, ['provision', 'bootstrap', 'provision', 'bootstrap']);
}));

test.run();
