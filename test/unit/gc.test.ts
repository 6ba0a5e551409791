/**
 * Garbage collection on a temporary store: what records refer to (directly, or through a snapshot
 * manifest or an inputs listing) stays; unreferenced objects go unless younger than the guard;
 * stale temp files go; nothing that is not an object is touched.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { collectGarbage, liveObjects, MIN_OBJECT_AGE_MS } from '../../src/artifacts/gc.js';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { makeManifest } from '../../src/artifacts/manifest.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { ContentHash, JobSpec } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';
import { jobSpec } from '../helpers/spec.js';

const spec = (workflow: string): JobSpec => jobSpec({ workflow, image: 'img' });
const HOUR = 3600 * 1000;

interface Fixture {
  readonly home: string;
  readonly work: string;
  readonly objects: LocalArtifactStore;
  /** Stores `text` as an object (through a file in `work`); returns its hash. */
  put(text: string): Promise<ContentHash>;
  /** Makes every object and temp file look `ms` old. */
  age(ms: number): void;
  exists(hash: ContentHash): boolean;
}

function withFixture(fn: (f: Fixture) => Promise<void>): () => Promise<void> {
  return withTimeout(20_000, async () => {
    const root = realpathSync(mkdtempSync(join(tmpdir(), 'dstack-gc-')));
    const home = join(root, 'home');
    const work = join(root, 'work');
    mkdirSync(work, { recursive: true });
    const objects = new LocalArtifactStore({ home });
    let n = 0;
    const walk = (dir: string, each: (p: string) => void): void => {
      if (!existsSync(dir)) return;
      for (const e of readdirSync(dir, { withFileTypes: true })) (e.isDirectory() ? walk : (p: string) => each(p))(join(dir, e.name), each);
    };
    try {
      await fn({
        home,
        work,
        objects,
        put: async (text) => {
          const p = join(work, `put-${n++}`);
          writeFileSync(p, text);
          return (await objects.putFile(p)).hash;
        },
        age: (ms) => {
          const t = (Date.now() - ms) / 1000;
          walk(join(home, 'objects'), (p) => utimesSync(p, t, t));
        },
        exists: (hash) => existsSync(objects.objects.path(hash)),
      });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
}

test(
  'keeps what records and listings refer to; removes the rest once older than the guard; dry run removes nothing',
  withFixture(async (f) => {
    const store = openStore(f.home);
    try {
      // A run with an artifact, a snapshot manifest (listing a code file) and an inputs listing (path → hash).
      const artifact = await f.put('artifact bytes');
      const code = await f.put('print("code")\n');
      const input = await f.put('an input file');
      const snapshotJson = JSON.stringify({ version: 1, entries: [{ type: 'file', path: 'train.py', size: 14, mode: 0o644, hash: code }], size: 14 });
      const listingJson = JSON.stringify({ 'data/in.txt': input });
      const snapshot = await f.put(snapshotJson);
      const listing = await f.put(listingJson);
      const { run, jobs } = store.runs.createRun({
        workflow: 'a', owner: 'o', backend: 'local', repo: { root: '/p', isGit: false }, args: [], jobs: [{ spec: spec('a'), deps: [] }],
      });
      const jobId = jobs[0]!.id;
      store.runs.setJobManifest(jobId, makeManifest([{ type: 'file', path: 'out/x', size: 14, mode: 0o644, hash: artifact }]));
      store.cache.setJobFingerprint(jobId, 'f'.repeat(64) as never, { version: 1, parts: {}, inputsListing: listing });
      store.runs.setRunSnapshot(run.name, snapshot);
      store.runs.setJobStatus(jobId, 'done');
      // A tag of its own files.
      const tagged = await f.put('tagged bytes');
      store.tags.putTag({ name: 't', manifest: makeManifest([{ type: 'file', path: 'd/t', size: 12, mode: 0o644, hash: tagged }]), createdAt: Date.now() });

      const garbage = await f.put('nobody refers to me');
      // Something in the objects folder that is not an object of ours: left alone.
      const stray = join(f.home, 'objects', 'sha256', 'zz', 'README');
      mkdirSync(join(f.home, 'objects', 'sha256', 'zz'), { recursive: true });
      writeFileSync(stray, 'not an object');
      const staleTmp = join(f.home, 'objects', 'tmp', 'crashed-writer');
      writeFileSync(staleTmp, 'half an object');
      f.age(2 * HOUR);
      utimesSync(staleTmp, (Date.now() - 2 * 24 * HOUR) / 1000, (Date.now() - 2 * 24 * HOUR) / 1000);
      const freshTmp = join(f.home, 'objects', 'tmp', 'live-writer');
      writeFileSync(freshTmp, 'being written');
      const young = await f.put('written a minute ago, not recorded yet');

      const live = await liveObjects(f.home, store.prune.referencedObjects());
      for (const h of [artifact, code, input, snapshot, listing, tagged]) assert.ok(live.has(h), `live: ${h}`);
      assert.not.ok(live.has(garbage));

      const dry = await collectGarbage({ home: f.home, roots: store.prune.referencedObjects(), dryRun: true });
      assert.equal(dry, { objects: 1, bytes: 19, live: 6, young: 1, tmpFiles: 1, tmpBytes: 14 });
      assert.ok(f.exists(garbage) && existsSync(staleTmp), 'a dry run deletes nothing');

      const real = await collectGarbage({ home: f.home, roots: store.prune.referencedObjects() });
      assert.equal(real, dry);
      assert.not.ok(f.exists(garbage));
      assert.not.ok(existsSync(staleTmp));
      for (const h of [artifact, code, input, snapshot, listing, tagged, young]) assert.ok(f.exists(h), `kept: ${h}`);
      assert.ok(existsSync(stray) && existsSync(freshTmp));

      // Once the run is gone, what only it referred to goes too; the tag's files stay.
      store.runs.deleteRun(run.name);
      const after = await collectGarbage({ home: f.home, roots: store.prune.referencedObjects() });
      const bytes = 14 + 14 + 13 + snapshotJson.length + listingJson.length;
      assert.equal(after, { objects: 5, bytes, live: 1, young: 1, tmpFiles: 0, tmpBytes: 0 });
      for (const h of [artifact, code, input, snapshot, listing]) assert.not.ok(f.exists(h), `removed: ${h}`);
      assert.ok(f.exists(tagged) && f.exists(young));
    } finally {
      store.close();
    }
  }),
);

test(
  'the guard: an unreferenced object just younger than the minimum age stays, one just older goes',
  withFixture(async (f) => {
    const a = await f.put('a');
    const b = await f.put('b');
    const now = Date.now();
    utimesSync(f.objects.objects.path(a), (now - MIN_OBJECT_AGE_MS + 60_000) / 1000, (now - MIN_OBJECT_AGE_MS + 60_000) / 1000);
    utimesSync(f.objects.objects.path(b), (now - MIN_OBJECT_AGE_MS - 60_000) / 1000, (now - MIN_OBJECT_AGE_MS - 60_000) / 1000);
    const r = await collectGarbage({ home: f.home, roots: new Set(), now });
    assert.equal([r.objects, r.young], [1, 1]);
    assert.ok(f.exists(a));
    assert.not.ok(f.exists(b));
  }),
);

test(
  'a root that is a large binary or not JSON is not read as a listing; a missing root is no error; an empty home is fine',
  withFixture(async (f) => {
    const other = await f.put('x');
    const binary = await f.put(`\u0000\u0001${other}`);
    const text = await f.put(`see ${other}`);
    const missing = 'e'.repeat(64) as ContentHash;
    const live = await liveObjects(f.home, new Set([binary, text, missing]));
    assert.equal([...live].sort(), [binary, missing, text].sort());
    assert.equal(await collectGarbage({ home: join(f.work, 'no-home'), roots: new Set() }), { objects: 0, bytes: 0, live: 0, young: 0, tmpFiles: 0, tmpBytes: 0 });
  }),
);

test.run();
