/**
 * Artifacts and symlinks (issue 7 §1): a link whose target resolves outside the artifact root after
 * any chain of links is refused at save, and in any manifest written out; fifos, sockets and devices
 * are left out with their names reported.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { escapingLinks, validateManifest } from '../../src/artifacts/manifest.js';
import type { Manifest, ManifestEntry } from '../../src/artifacts/types.js';
import { DstackError } from '../../src/engine/errors.js';
import { withTimeout } from '../helpers/timeout.js';

const tmp = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'dstack-links-')));
const spec = (path: string) => ({ path, mount: false });

async function refused(p: Promise<unknown>, message: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, 'DS0302', (e as Error).message);
    assert.match((e as Error).message, message);
    return;
  }
  throw new Error('expected DS0302');
}

const link = (path: string, target: string): ManifestEntry => ({ type: 'symlink', path, target });
const m = (entries: ManifestEntry[]): Manifest => ({ version: 1, entries, size: 0 });

test(
  'save refuses a link that leaves through a chain, or a folder on the way that does; keeps chains that stay inside',
  withTimeout(20_000, async () => {
    const home = tmp();
    const base = tmp();
    try {
      const store = new LocalArtifactStore({ home });
      const root = join(base, 'workflow');
      mkdirSync(join(root, 'out/d'), { recursive: true });
      mkdirSync(join(base, 'secret'));
      writeFileSync(join(base, 'secret/key'), 'host secret');
      writeFileSync(join(root, 'out/d/f.txt'), 'f');
      // Inside: a chain of two links ending at a file of the tree.
      symlinkSync('d/f.txt', join(root, 'out/one'));
      symlinkSync('one', join(root, 'out/two'));
      const ok = await store.save(root, [spec('out')]);
      assert.equal(
        ok.manifest.entries.filter((e) => e.type === 'symlink'),
        [link('out/one', 'd/f.txt'), link('out/two', 'one')],
      );

      // `a -> b` looks inside; `b` (not an artifact) leads to the host.
      mkdirSync(join(root, 'chain'));
      symlinkSync('../b', join(root, 'chain/a'));
      symlinkSync(join(base, 'secret'), join(root, 'b'));
      await refused(store.save(root, [spec('chain')]), /^symlink 'chain\/a' points outside the working directory \(to '\.\.\/b', through the symlink 'b'\)$/);

      // Each link lexically inside, the kernel leaves: up -> .., sneaky -> up/../..
      mkdirSync(join(root, 'k'));
      symlinkSync('..', join(root, 'k/up'));
      symlinkSync('up/..', join(root, 'k/sneaky'));
      await refused(store.save(root, [spec('k')]), /symlink 'k\/sneaky' points outside/);

      // The artifact path's folder is a link out: refused before anything is read through it.
      symlinkSync(join(base, 'secret'), join(root, 'via'));
      await refused(store.save(root, [spec('via/key')]), /^artifact path 'via\/key' is reached through a symlink that leaves the working directory \('via' -> '.*\/secret'\)$/);
      // ...or a chain of them.
      symlinkSync('via', join(root, 'via2'));
      await refused(store.save(root, [spec('via2/key')]), /reached through a symlink that leaves/);
      assert.equal(readdirSync(join(home, 'objects', 'sha256')).length, 1, 'only f.txt was stored');
    } finally {
      for (const d of [home, base]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'save leaves out fifos, sockets and devices and names them; it does not hang on a fifo',
  withTimeout(20_000, async () => {
    const home = tmp();
    const base = tmp();
    const server = createServer();
    try {
      const store = new LocalArtifactStore({ home });
      const root = join(base, 'workflow');
      mkdirSync(join(root, 'out'), { recursive: true });
      writeFileSync(join(root, 'out/real.txt'), 'real');
      execFileSync('mkfifo', [join(root, 'out/pipe')]);
      execFileSync('mknod', [join(root, 'out/null'), 'c', '1', '3']);
      await new Promise<void>((resolve) => server.listen(join(root, 'out/sock'), resolve));
      execFileSync('mkfifo', [join(root, 'top-fifo')]);
      const r = await store.save(root, [spec('out'), spec('top-fifo')]);
      assert.equal(r.manifest.entries.map((e) => e.path), ['out', 'out/real.txt']);
      assert.equal(
        [...r.skipped].sort((a, b) => (a.path < b.path ? -1 : 1)),
        [
          { path: 'out/null', kind: 'device' },
          { path: 'out/pipe', kind: 'fifo' },
          { path: 'out/sock', kind: 'socket' },
          { path: 'top-fifo', kind: 'fifo' },
        ],
      );
    } finally {
      server.close();
      for (const d of [home, base]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test('escapingLinks and validateManifest: a manifest (from a bucket, say) whose links chain out is refused', () => {
  assert.equal(escapingLinks([link('a', 'b'), link('b', 'c/d')]), []);
  assert.equal(escapingLinks([link('a', 'b'), link('b', '../x')]).map((l) => [l.path, l.via]), [
    ['a', 'b'],
    ['b', 'b'],
  ]);
  // Each alone looks inside.
  const sneaky = [link('d/up', '..'), link('s', 'd/up/..')];
  assert.equal(escapingLinks(sneaky).map((l) => l.path), ['s']);
  assert.throws(() => validateManifest(m(sneaky)), /^symlink 's' points outside the working directory \(to 'd\/up\/\.\.', through the symlink 'd\/up'\)$/);
  // Through a link to a folder then out.
  assert.equal(escapingLinks([link('dir', 'deep/er'), link('x', 'dir/../../..')]).map((l) => l.path), ['x']);
  // A loop leads nowhere: not outside.
  assert.equal(escapingLinks([link('p', 'q'), link('q', 'p')]), []);
});

test.run();
