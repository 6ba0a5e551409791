/** Merging a run's job manifests for `ls`, `cp` and `tags add`: later jobs win, and the result is a tree. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeManifest, validateManifest } from '../../src/artifacts/manifest.js';
import type { ManifestEntry } from '../../src/artifacts/types.js';
import type { JobRecord } from '../../src/engine/store/types.js';
import { asContentHash, asJobId, asRunName } from '../../src/engine/types.js';
import { mergeJobManifests } from '../../src/cli/artifact-ref.js';

const h = (c: string) => asContentHash(c.repeat(64));
const file = (path: string, hash: string, size = 1): ManifestEntry => ({ type: 'file', path, size, mode: 0o644, hash: h(hash) });
const dir = (path: string): ManifestEntry => ({ type: 'dir', path, mode: 0o755 });
const job = (workflow: string, index: number, entries?: ManifestEntry[]): JobRecord =>
  ({
    id: asJobId(`r-1/${workflow}`),
    run: asRunName('r-1'),
    workflow,
    index,
    deps: [],
    status: 'done',
    submittedAt: 0,
    history: [],
    ...(entries ? { manifest: makeManifest(entries) } : {}),
  }) as unknown as JobRecord;

const summary = (entries: readonly ManifestEntry[]) => entries.map((e) => `${e.type}:${e.path}${e.type === 'file' ? `=${e.hash[0]}` : ''}`);

test('a later job wins on the same path, whatever order the jobs come in; jobs without a manifest count for nothing', () => {
  const jobs = [job('b', 1, [file('shared', '2', 5), file('b.txt', '3')]), job('a', 0, [file('shared', '1', 9), file('a.txt', '4')]), job('c', 2)];
  const { manifest, jobOf } = mergeJobManifests(jobs);
  assert.equal(summary(manifest.entries), ['file:a.txt=4', 'file:b.txt=3', 'file:shared=2']);
  assert.is(manifest.size, 7);
  assert.is(jobOf.get('shared')?.workflow, 'b');
  assert.is(jobOf.get('a.txt')?.workflow, 'a');
});

test('a later file hides what an earlier job had under that path, and a later folder replaces an earlier file', () => {
  const { manifest } = mergeJobManifests([
    job('a', 0, [dir('out'), file('out/x', '1'), dir('out/sub'), file('out/sub/y', '2'), file('model', '3')]),
    job('b', 1, [file('out', '4'), dir('model'), file('model/w', '5')]),
  ]);
  assert.equal(summary(manifest.entries), ['dir:model', 'file:model/w=5', 'file:out=4']);
  validateManifest(manifest);
});

test('a later job adding files to a folder keeps the earlier files in it', () => {
  const { manifest } = mergeJobManifests([job('a', 0, [dir('out'), file('out/x', '1')]), job('b', 1, [dir('out'), file('out/y', '2')])]);
  assert.equal(summary(manifest.entries), ['dir:out', 'file:out/x=1', 'file:out/y=2']);
});

test.run();
