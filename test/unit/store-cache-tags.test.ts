/** The store's caching, stat-cache, tag and prune records (issue 3). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Manifest } from '../../src/artifacts/types.js';
import { DstackError } from '../../src/engine/errors.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { RunStore } from '../../src/engine/store/types.js';
import { asContentHash, type Fingerprint, type FingerprintParts, type JobSpec } from '../../src/engine/types.js';
import { jobSpec } from '../helpers/spec.js';

const h = (c: string) => asContentHash(c.repeat(64));
const manifest = (hash: string): Manifest => ({ version: 1, size: 3, entries: [{ type: 'file', path: 'out/x', size: 3, mode: 0o644, hash: h(hash) }] });
const spec = (workflow: string): JobSpec => jobSpec({ workflow, image: 'img' });

function withStore(fn: (store: RunStore, clock: { t: number }) => void): () => void {
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

const makeRun = (store: RunStore, root = '/p') =>
  store.createRun({ workflow: 'b', owner: 'o', backend: 'local', repo: { root, isGit: false }, args: [], jobs: [{ spec: spec('a'), deps: [] }, { spec: spec('b'), deps: [0] }] });

const parts = (listing?: string): FingerprintParts => ({ version: 1, parts: { image: 'x' }, ...(listing ? { inputsListing: h(listing) } : {}) });

test(
  'findCachedJob returns the newest done job with a manifest for the fingerprint, never a failed one',
  withStore((store, clock) => {
    const fp = 'f'.repeat(64) as Fingerprint;
    const r1 = makeRun(store);
    const a1 = r1.jobs[0]!.id;
    store.setJobFingerprint(a1, fp, parts());
    assert.is(store.findCachedJob(fp), undefined, 'not done yet');
    store.setJobManifest(a1, manifest('1'));
    store.setJobStatus(a1, 'done');
    clock.t += 1000;
    const r2 = makeRun(store);
    const a2 = r2.jobs[0]!.id;
    store.setJobFingerprint(a2, fp, parts());
    store.setJobStatus(a2, 'failed');
    assert.is(store.findCachedJob(fp)?.id, a1);
    assert.equal(store.findCachedJob(fp)?.fingerprintParts, parts());
    assert.is(store.findCachedJob('0'.repeat(64) as Fingerprint), undefined);
  }),
);

test(
  'lastFingerprintedJob is the newest fingerprinted job of the workflow in that repo, whatever its status',
  withStore((store, clock) => {
    const r1 = makeRun(store, '/p');
    store.setJobFingerprint(r1.jobs[0]!.id, 'a'.repeat(64) as Fingerprint, parts());
    clock.t += 1000;
    const r2 = makeRun(store, '/p');
    store.setJobFingerprint(r2.jobs[0]!.id, 'b'.repeat(64) as Fingerprint, parts());
    store.setJobStatus(r2.jobs[0]!.id, 'failed');
    clock.t += 1000;
    makeRun(store, '/p'); // not fingerprinted: ignored
    makeRun(store, '/other');
    assert.is(store.lastFingerprintedJob('a', '/p')?.id, r2.jobs[0]!.id);
    assert.is(store.lastFingerprintedJob('a', '/nowhere'), undefined);
  }),
);

test(
  'the stat cache answers only when dev, inode, size and mtime all match',
  withStore((store) => {
    store.putFileHashes([{ dev: 1, ino: 2, size: 3, mtimeNs: 4, hash: h('a') }]);
    assert.is(store.getFileHashes([{ dev: 1, ino: 2, size: 3, mtimeNs: 4 }]).get('1:2'), h('a'));
    assert.is(store.getFileHashes([{ dev: 1, ino: 2, size: 3, mtimeNs: 5 }]).size, 0);
    assert.is(store.getFileHashes([{ dev: 1, ino: 2, size: 9, mtimeNs: 4 }]).size, 0);
    store.putFileHashes([{ dev: 1, ino: 2, size: 9, mtimeNs: 5, hash: h('b') }]);
    assert.is(store.getFileHashes([{ dev: 1, ino: 2, size: 9, mtimeNs: 5 }]).get('1:2'), h('b'));
  }),
);

test(
  'tags: add, refuse a duplicate with DS0106, replace, list, delete; the run shows its tag',
  withStore((store, clock) => {
    const r = makeRun(store);
    store.putTag({ name: 'best', run: r.run.name, manifest: manifest('1'), createdAt: clock.t });
    try {
      store.putTag({ name: 'best', manifest: manifest('2'), createdAt: clock.t });
      assert.unreachable();
    } catch (e) {
      assert.ok(e instanceof DstackError);
      assert.is((e as DstackError).code, 'DS0106');
    }
    store.putTag({ name: 'best', manifest: manifest('2'), createdAt: clock.t }, { replace: true });
    assert.equal(store.getTag('best'), { name: 'best', manifest: manifest('2'), createdAt: clock.t });
    store.putTag({ name: 'alpha', manifest: manifest('3'), createdAt: clock.t });
    assert.equal(store.listTags().map((t) => t.name), ['alpha', 'best']);
    store.setRunTag(r.run.name, 'best');
    assert.is(store.getRun(r.run.name)?.tag, 'best');
    assert.ok(store.deleteTag('alpha'));
    assert.not.ok(store.deleteTag('alpha'));
  }),
);

test(
  'prunable runs: finished, older than the cut, untagged and no tag taken from them',
  withStore((store, clock) => {
    const old = makeRun(store);
    const tagged = makeRun(store);
    const source = makeRun(store);
    const active = makeRun(store);
    for (const r of [old, tagged, source]) for (const j of r.jobs) store.setJobStatus(j.id, 'done');
    store.setRunTag(tagged.run.name, 't1');
    store.putTag({ name: 't2', run: source.run.name, manifest: manifest('1'), createdAt: clock.t });
    clock.t += 10_000;
    const fresh = makeRun(store);
    for (const j of fresh.jobs) store.setJobStatus(j.id, 'done');
    assert.equal(store.listPrunableRuns(clock.t - 1).map((r) => r.name), [old.run.name]);
    assert.ok(active.run.name);
  }),
);

test(
  'referencedObjects: manifests of jobs and tags, run snapshots and input listings',
  withStore((store, clock) => {
    const r = makeRun(store);
    store.setJobManifest(r.jobs[0]!.id, manifest('1'));
    store.setJobFingerprint(r.jobs[1]!.id, 'c'.repeat(64) as Fingerprint, parts('2'));
    store.setRunSnapshot(r.run.name, h('3'));
    store.putTag({ name: 't', manifest: manifest('4'), createdAt: clock.t });
    assert.equal([...store.referencedObjects()].sort(), [h('1'), h('2'), h('3'), h('4')]);
    assert.is(store.getRun(r.run.name)?.snapshot, h('3'));
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
    store.setJobFingerprint(a1, fpA, parts());
    store.setJobManifest(a1, both);
    store.setJobStatus(a1, 'done');
    store.setJobFingerprint(b1, fpB, parts());
    store.setJobManifest(b1, manifest('3'));
    store.setJobStatus(b1, 'done');
    clock.t += 1000;
    // A later run that reused a1: its record copies the manifest, so it goes too.
    const r2 = makeRun(store);
    const a2 = r2.jobs[0]!.id;
    store.setJobFingerprint(a2, fpA, parts());
    store.setJobManifest(a2, both);
    store.setJobStatus(a2, 'done', { reason: `cached: ${a1}` });
    assert.is(store.findCacheHit(fpA)?.id, a2);

    assert.is(store.forgetCacheHitsWith(h('2')), 2);
    assert.is(store.findCacheHit(fpA), undefined);
    assert.is(store.findCacheHit(fpB)?.id, b1);
    // The records themselves stay: ls and cp still list what the run made.
    assert.equal(store.getJob(a1)?.manifest, both);
    assert.is(store.getJob(a1)?.status, 'done');
    assert.is(store.forgetCacheHitsWith(h('2')), 0);
    assert.is(store.forgetCacheHitsWith('not a hash' as never), 0);
  }),
);

test.run();
