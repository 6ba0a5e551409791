/** The store's caching, stat-cache, tag and prune records (issue 3). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest } from '../../src/artifacts/types.js';
import { DstackError } from '../../src/engine/errors.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { Store } from '../../src/engine/store/types.js';
import { asContentHash, type Fingerprint, type FingerprintParts, type JobSpec } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';

const h = (c: string) => asContentHash(c.repeat(64));
const manifest = (hash: string): Manifest => ({ version: 1, size: 3, entries: [{ type: 'file', path: 'out/x', size: 3, mode: 0o644, hash: h(hash) }] });
const spec = (workflow: string): JobSpec => jobSpec({ workflow, image: 'img' });

function withStore(fn: (store: Store, clock: { t: number }) => void): () => void {
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'dstack-store3-'));
    const clock = { t: 1_700_000_000_000 };
    const store = openStore(join(dir, 'home'), { now: () => clock.t });
    try {
      fn(store, clock);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const makeRun = (store: Store, root = '/p') =>
  store.runs.createRun({ workflow: 'b', owner: 'o', backend: 'local', repo: { root, isGit: false }, args: [], jobs: [{ spec: spec('a'), deps: [] }, { spec: spec('b'), deps: [0] }] });

const parts = (listing?: string): FingerprintParts => ({ version: 1, parts: { image: 'x' }, ...(listing ? { inputsListing: h(listing) } : {}) });

test(
  'findCacheHit returns the newest done job with a manifest for the fingerprint, never a failed one, never the excluded one',
  withStore((store, clock) => {
    const fp = 'f'.repeat(64) as Fingerprint;
    const r1 = makeRun(store);
    const a1 = r1.jobs[0]!.id;
    store.cache.setJobFingerprint(a1, fp, parts());
    assert.is(store.cache.findCacheHit(fp), undefined, 'not done yet');
    store.runs.setJobManifest(a1, manifest('1'));
    store.runs.setJobStatus(a1, 'done');
    clock.t += 1000;
    const r2 = makeRun(store);
    const a2 = r2.jobs[0]!.id;
    store.cache.setJobFingerprint(a2, fp, parts());
    store.runs.setJobStatus(a2, 'failed');
    assert.equal(store.cache.findCacheHit(fp), { job: a1, manifest: manifest('1'), origin: { job: a1, run: r1.run.name } });
    assert.is(store.cache.findCacheHit(fp, { exclude: a1 }), undefined);
    assert.is(store.cache.findCacheHit('0'.repeat(64) as Fingerprint), undefined);
  }),
);

test(
  "a reuse records its origin; a hit names the origin while its run exists, then the record holding the artifacts",
  withStore((store, clock) => {
    const fp = 'f'.repeat(64) as Fingerprint;
    const r1 = makeRun(store);
    const a1 = r1.jobs[0]!.id;
    store.cache.setJobFingerprint(a1, fp, parts());
    store.runs.setJobManifest(a1, manifest('1'));
    store.runs.setJobStatus(a1, 'done');
    clock.t += 1000;
    const r2 = makeRun(store);
    const a2 = r2.jobs[0]!.id;
    store.cache.setJobFingerprint(a2, fp, parts());
    assert.ok(store.runs.recordReuse(a2, store.cache.findCacheHit(fp, { exclude: a2 })!));
    const reused = store.runs.getJob(a2)!;
    assert.is(reused.status, 'done');
    assert.is(reused.exitCode, 0);
    assert.is(reused.cachedFrom, a1);
    assert.is(reused.reason, undefined);
    assert.equal(reused.manifest, manifest('1'));
    assert.not.ok(store.runs.recordReuse(a2, store.cache.findCacheHit(fp)!), 'a final job is not changed');
    // The newest hit is the reuse; it names the job that really ran.
    assert.equal(store.cache.findCacheHit(fp)?.origin, { job: a1, run: r1.run.name });
    assert.is(store.cache.findCacheHit(fp)?.job, a2);
    // Its run removed: the artifacts live on in r2's record, and that is the job a message can name.
    store.runs.deleteRun(r1.run.name);
    assert.equal(store.cache.findCacheHit(fp), { job: a2, manifest: manifest('1'), origin: { job: a2, run: r2.run.name } });
    store.runs.deleteRun(r2.run.name);
    assert.is(store.cache.findCacheHit(fp), undefined);
  }),
);

test(
  'lastFingerprintedJob is the newest fingerprinted job of the workflow in that repo, whatever its status',
  withStore((store, clock) => {
    const r1 = makeRun(store, '/p');
    store.cache.setJobFingerprint(r1.jobs[0]!.id, 'a'.repeat(64) as Fingerprint, parts());
    clock.t += 1000;
    const r2 = makeRun(store, '/p');
    store.cache.setJobFingerprint(r2.jobs[0]!.id, 'b'.repeat(64) as Fingerprint, parts());
    store.runs.setJobStatus(r2.jobs[0]!.id, 'failed');
    clock.t += 1000;
    makeRun(store, '/p'); // not fingerprinted: ignored
    makeRun(store, '/other');
    assert.is(store.cache.lastFingerprintedJob('a', '/p')?.id, r2.jobs[0]!.id);
    assert.is(store.cache.lastFingerprintedJob('a', '/nowhere'), undefined);
  }),
);

test(
  'the stat cache answers only when dev, inode, size and mtime all match',
  withStore((store) => {
    store.fileHashes.putFileHashes([{ dev: 1, ino: 2, size: 3, mtimeNs: 4, hash: h('a') }]);
    assert.is(store.fileHashes.getFileHashes([{ dev: 1, ino: 2, size: 3, mtimeNs: 4 }]).get('1:2'), h('a'));
    assert.is(store.fileHashes.getFileHashes([{ dev: 1, ino: 2, size: 3, mtimeNs: 5 }]).size, 0);
    assert.is(store.fileHashes.getFileHashes([{ dev: 1, ino: 2, size: 9, mtimeNs: 4 }]).size, 0);
    store.fileHashes.putFileHashes([{ dev: 1, ino: 2, size: 9, mtimeNs: 5, hash: h('b') }]);
    assert.is(store.fileHashes.getFileHashes([{ dev: 1, ino: 2, size: 9, mtimeNs: 5 }]).get('1:2'), h('b'));
  }),
);

test(
  'tags: add, refuse a duplicate with DS0106, replace, list, delete; the run shows its tag',
  withStore((store, clock) => {
    const r = makeRun(store);
    store.tags.putTag({ name: 'best', run: r.run.name, manifest: manifest('1'), createdAt: clock.t });
    try {
      store.tags.putTag({ name: 'best', manifest: manifest('2'), createdAt: clock.t });
      assert.unreachable();
    } catch (e) {
      assert.ok(e instanceof DstackError);
      assert.is((e as DstackError).code, 'DS0106');
    }
    store.tags.putTag({ name: 'best', manifest: manifest('2'), createdAt: clock.t }, { replace: true });
    assert.equal(store.tags.getTag('best'), { name: 'best', manifest: manifest('2'), createdAt: clock.t });
    store.tags.putTag({ name: 'alpha', manifest: manifest('3'), createdAt: clock.t });
    assert.equal(store.tags.listTags().map((t) => t.name), ['alpha', 'best']);
    store.tags.setRunTag(r.run.name, 'best');
    assert.is(store.runs.getRun(r.run.name)?.tag, 'best');
    assert.ok(store.tags.deleteTag('alpha'));
    assert.not.ok(store.tags.deleteTag('alpha'));
  }),
);

test(
  'prunable runs: finished, older than the cut, untagged and no tag taken from them',
  withStore((store, clock) => {
    const old = makeRun(store);
    const tagged = makeRun(store);
    const source = makeRun(store);
    const active = makeRun(store);
    for (const r of [old, tagged, source]) for (const j of r.jobs) store.runs.setJobStatus(j.id, 'done');
    store.tags.setRunTag(tagged.run.name, 't1');
    store.tags.putTag({ name: 't2', run: source.run.name, manifest: manifest('1'), createdAt: clock.t });
    clock.t += 10_000;
    const fresh = makeRun(store);
    for (const j of fresh.jobs) store.runs.setJobStatus(j.id, 'done');
    assert.equal(store.prune.listPrunableRuns(clock.t - 1).map((r) => r.name), [old.run.name]);
    assert.ok(active.run.name);
  }),
);

test(
  'referencedObjects: manifests of jobs and tags, run snapshots and input listings',
  withStore((store, clock) => {
    const r = makeRun(store);
    store.runs.setJobManifest(r.jobs[0]!.id, manifest('1'));
    store.cache.setJobFingerprint(r.jobs[1]!.id, 'c'.repeat(64) as Fingerprint, parts('2'));
    store.runs.setRunSnapshot(r.run.name, h('3'));
    store.tags.putTag({ name: 't', manifest: manifest('4'), createdAt: clock.t });
    assert.equal([...store.prune.referencedObjects()].sort(), [h('1'), h('2'), h('3'), h('4')]);
    assert.is(store.runs.getRun(r.run.name)?.snapshot, h('3'));
  }),
);

test(
  'forgetCacheHitsWith: every done job whose manifest holds the object stops being a hit (reuses of it too); others stay',
  withStore((store, clock) => {
    const fpA = 'a'.repeat(64) as Fingerprint;
    const fpB = 'b'.repeat(64) as Fingerprint;
    const both: Manifest = { version: 1, size: 6, entries: [...manifest('1').entries, { type: 'file', path: 'out/y', size: 3, mode: 0o644, hash: h('2') }] };
    const r1 = makeRun(store);
    const a1 = r1.jobs[0]!.id;
    const b1 = r1.jobs[1]!.id;
    store.cache.setJobFingerprint(a1, fpA, parts());
    store.runs.setJobManifest(a1, both);
    store.runs.setJobStatus(a1, 'done');
    store.cache.setJobFingerprint(b1, fpB, parts());
    store.runs.setJobManifest(b1, manifest('3'));
    store.runs.setJobStatus(b1, 'done');
    clock.t += 1000;
    // A later run that reused a1: its record copies the manifest, so it goes too.
    const r2 = makeRun(store);
    const a2 = r2.jobs[0]!.id;
    store.cache.setJobFingerprint(a2, fpA, parts());
    assert.ok(store.runs.recordReuse(a2, store.cache.findCacheHit(fpA)!));
    assert.is(store.cache.findCacheHit(fpA)?.job, a2);

    assert.is(store.cache.forgetCacheHitsWith(h('2')), 2);
    assert.is(store.cache.findCacheHit(fpA), undefined);
    assert.is(store.cache.findCacheHit(fpB)?.job, b1);
    // The records themselves stay: ls and cp still list what the run made.
    assert.equal(store.runs.getJob(a1)?.manifest, both);
    assert.is(store.runs.getJob(a1)?.status, 'done');
    assert.is(store.cache.forgetCacheHitsWith(h('2')), 0);
    assert.is(store.cache.forgetCacheHitsWith('not a hash' as never), 0);
  }),
);

test.run();
