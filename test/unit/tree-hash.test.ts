/**
 * Hashing a file set with the stat cache. Reads are counted through the `onRead` hook. The cache is
 * trusted the way git trusts its index: a file whose (device, inode, size, mtime) did not change is
 * not read again — proven below by changing a file's content while keeping its size and restoring
 * its mtime, which the second hash does not notice. Files modified within the racy window are never
 * cached, so a write right after a hash cannot be hidden that way.
 */
import { mkdtempSync, readlinkSync, readFileSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { hashFile } from '../../src/artifacts/hash.js';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { getJson, putJson } from '../../src/artifacts/objects.js';
import { hashTree, materializeSnapshot, type FileHashCache } from '../../src/artifacts/tree.js';
import { treeHashOf } from '../../src/engine/fingerprint.js';
import type { StatKey } from '../../src/engine/store/types.js';
import type { ContentHash } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';

/** The run store's contract, in memory: a hash holds while dev, ino, size and mtime all match. */
function memoryCache(): FileHashCache & { rows: Map<string, StatKey & { hash: ContentHash }> } {
  const rows = new Map<string, StatKey & { hash: ContentHash }>();
  return {
    rows,
    getFileHashes: (keys) => {
      const out = new Map<string, ContentHash>();
      for (const k of keys) {
        const r = rows.get(`${k.dev}:${k.ino}`);
        if (r && r.size === k.size && r.mtimeNs === k.mtimeNs) out.set(`${k.dev}:${k.ino}`, r.hash);
      }
      return out;
    },
    putFileHashes: (entries) => {
      for (const e of entries) rows.set(`${e.dev}:${e.ino}`, e);
    },
  };
}

const OLD = new Date('2020-01-01T00:00:00Z');

function tree(): { dir: string; files: { path: string }[] } {
  const dir = mkdtempSync(join(tmpdir(), 'dstack-tree-'));
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'a.txt'), 'alpha\n');
  writeFileSync(join(dir, 'sub/b.bin'), Buffer.alloc(3 << 20, 7)); // several chunks
  writeFileSync(join(dir, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  symlinkSync('a.txt', join(dir, 'link'));
  for (const f of ['a.txt', 'sub/b.bin', 'run.sh']) utimesSync(join(dir, f), OLD, OLD);
  return { dir, files: ['a.txt', 'link', 'run.sh', 'sub/b.bin', 'gone.txt'].map((path) => ({ path })) };
}

test(
  'lists files and links sorted, with modes and content hashes; a second pass reads nothing',
  withTimeout(10_000, async () => {
    const { dir, files } = tree();
    try {
      const cache = memoryCache();
      const reads: string[] = [];
      const first = await hashTree({ root: dir, files, cache, onRead: (p) => reads.push(p) });
      assert.equal(reads.sort(), ['a.txt', 'run.sh', 'sub/b.bin']);
      assert.is(first.read, 3);
      assert.equal(
        first.manifest.entries.map((e) => [e.path, e.type, e.type === 'file' ? e.mode : e.type === 'symlink' ? e.target : '']),
        [['a.txt', 'file', 0o644], ['link', 'symlink', 'a.txt'], ['run.sh', 'file', 0o755], ['sub/b.bin', 'file', 0o644]],
      );
      const b = first.manifest.entries.find((e) => e.path === 'sub/b.bin');
      assert.is(b?.type === 'file' && b.hash, (await hashFile(join(dir, 'sub/b.bin'))).hash);
      assert.is(first.hash, treeHashOf(first.manifest.entries));
      assert.is(cache.rows.size, 3);

      reads.length = 0;
      const second = await hashTree({ root: dir, files, cache, onRead: (p) => reads.push(p) });
      assert.equal(reads, []);
      assert.is(second.hash, first.hash);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'the cache is trusted on (dev, ino, size, mtime): same-size content with the mtime restored is not re-read; a new mtime is',
  withTimeout(10_000, async () => {
    const { dir, files } = tree();
    try {
      const cache = memoryCache();
      const first = await hashTree({ root: dir, files, cache });
      writeFileSync(join(dir, 'a.txt'), 'ALPHA\n'); // same size, same inode
      utimesSync(join(dir, 'a.txt'), OLD, OLD);
      const trusted = await hashTree({ root: dir, files, cache });
      assert.is(trusted.read, 0);
      assert.is(trusted.hash, first.hash, 'the cache vouches for the old content, as documented');

      utimesSync(join(dir, 'a.txt'), OLD, new Date('2021-01-01T00:00:00Z'));
      const noticed = await hashTree({ root: dir, files, cache });
      assert.is(noticed.read, 1);
      assert.is.not(noticed.hash, first.hash);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'a file modified within the racy window is hashed but not cached',
  withTimeout(10_000, async () => {
    const { dir, files } = tree();
    try {
      const cache = memoryCache();
      writeFileSync(join(dir, 'a.txt'), 'fresh\n'); // mtime: now
      await hashTree({ root: dir, files, cache });
      assert.is(cache.rows.size, 2, 'only the two old files are cached');
      const again = await hashTree({ root: dir, files, cache });
      assert.is(again.read, 1, 'the fresh file is read again');
      utimesSync(join(dir, 'a.txt'), OLD, OLD);
      await hashTree({ root: dir, files, cache });
      assert.is((await hashTree({ root: dir, files, cache })).read, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }),
);

test(
  'with a store: files are stored once by content; a cache hit whose object exists is not read, a missing object is',
  withTimeout(10_000, async () => {
    const { dir, files } = tree();
    const home = mkdtempSync(join(tmpdir(), 'dstack-tree-home-'));
    try {
      const store = new LocalArtifactStore({ home });
      const cache = memoryCache();
      const first = await hashTree({ root: dir, files, cache, store });
      for (const e of first.manifest.entries) if (e.type === 'file') assert.ok(await store.has(e.hash), e.path);
      assert.is((await hashTree({ root: dir, files, cache, store })).read, 0);

      const a = first.manifest.entries.find((e) => e.path === 'a.txt')!;
      if (a.type !== 'file') throw new Error('a.txt is a file');
      rmSync(store.objects.path(a.hash), { force: true });
      const reads: string[] = [];
      await hashTree({ root: dir, files, cache, store, onRead: (p) => reads.push(p) });
      assert.equal(reads, ['a.txt']);
      assert.ok(await store.has(a.hash));

      // The manifest goes into the store as JSON and comes back the same.
      const h = await putJson(store, first.manifest);
      assert.equal(await getJson(store, h), first.manifest);
      assert.is(await putJson(store, first.manifest), h);

      // And materializes the tree, links included, even one that points outside.
      unlinkSync(join(dir, 'link'));
      symlinkSync('/etc/hostname', join(dir, 'link'));
      const withOutward = await hashTree({ root: dir, files, cache, store });
      const out = join(home, 'out');
      await materializeSnapshot(store, withOutward.manifest, out);
      assert.is(readFileSync(join(out, 'a.txt'), 'utf8'), 'alpha\n');
      assert.is(readlinkSync(join(out, 'link')), '/etc/hostname');
      assert.is(readFileSync(join(out, 'sub/b.bin')).length, 3 << 20);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test.run();
