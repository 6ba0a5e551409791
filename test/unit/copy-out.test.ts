/**
 * `cp`'s writing half (src/artifacts/copy-out.ts): all or nothing. A damaged or missing object
 * leaves the destination exactly as it was, new or existing; a copy into an existing folder merges
 * entry by entry; nothing is written through a symlink in the destination, and a copied link that
 * leads out through one already there is removed.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { copyOut } from '../../src/artifacts/copy-out.js';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import type { Manifest } from '../../src/artifacts/types.js';
import { DstackError } from '../../src/engine/errors.js';
import { withTimeout } from '../helpers/timeout.js';

const tmp = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'dstack-cpout-')));

/** A tree as `path -> content | '<dir>' | '-> target'`, for before/after comparisons. */
function snapshot(root: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const abs = join(root, p);
    const st = statSync(abs, { throwIfNoEntry: false });
    let l: string | undefined;
    try {
      l = readlinkSync(abs);
    } catch {
      l = undefined;
    }
    if (l !== undefined) out[p] = `-> ${l}`;
    else if (st?.isDirectory()) Object.assign(out, { [p]: '<dir>' }, snapshot(root, p));
    else out[p] = `${readFileSync(abs, 'utf8')} @${st!.mtimeMs}`;
  }
  return out;
}

async function saved(home: string, files: Record<string, string>): Promise<{ store: LocalArtifactStore; manifest: Manifest }> {
  const store = new LocalArtifactStore({ home });
  const src = join(home, '..', `src-${Math.random().toString(36).slice(2)}`);
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(src, p, '..'), { recursive: true });
    writeFileSync(join(src, p), c);
  }
  const { manifest } = await store.save(src, [{ path: '', mount: false }]);
  rmSync(src, { recursive: true, force: true });
  return { store, manifest };
}

test(
  'a damaged object: a new destination is not created, an existing one keeps every file as it was',
  withTimeout(20_000, async () => {
    const base = tmp();
    try {
      const { store, manifest } = await saved(join(base, 'home'), { 'a.txt': 'aaaa', 'sub/b.txt': 'b'.repeat(5000), 'sub/c.txt': 'cc' });
      const b = manifest.entries.find((e) => e.path === 'sub/b.txt')!;
      if (b.type !== 'file') throw new Error('b is a file');
      chmodSync(store.objects.path(b.hash), 0o644);
      truncateSync(store.objects.path(b.hash), 100);

      const fresh = join(base, 'fresh');
      let e: unknown;
      try {
        await copyOut(store, manifest, fresh);
      } catch (err) {
        e = err;
      }
      assert.is((e as DstackError).code, 'DS0304');
      assert.not.ok(existsSync(fresh));
      assert.equal(readdirSync(base).sort(), ['home']);

      const existing = join(base, 'existing');
      mkdirSync(join(existing, 'sub'), { recursive: true });
      writeFileSync(join(existing, 'a.txt'), 'old a');
      writeFileSync(join(existing, 'sub/c.txt'), 'old c');
      writeFileSync(join(existing, 'keep.txt'), 'mine');
      const before = snapshot(existing);
      e = undefined;
      try {
        await copyOut(store, manifest, existing);
      } catch (err) {
        e = err;
      }
      assert.is((e as DstackError).code, 'DS0303', 'quarantined by the first copy: now missing');
      assert.equal(snapshot(existing), before);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }),
);

test(
  'into an existing folder: entries replace files and folders in one step each, other files stay; nothing through a symlink there',
  withTimeout(20_000, async () => {
    const base = tmp();
    try {
      const { store, manifest } = await saved(join(base, 'home'), { 'a.txt': 'new a', 'd/x.txt': 'x', 'f/y.txt': 'y' });
      const dst = join(base, 'dst');
      mkdirSync(join(dst, 'a.txt'), { recursive: true }); // a folder where a file goes
      writeFileSync(join(dst, 'd'), 'a file where a folder goes');
      writeFileSync(join(dst, 'keep.txt'), 'mine');
      await copyOut(store, manifest, dst);
      assert.is(readFileSync(join(dst, 'a.txt'), 'utf8'), 'new a');
      assert.is(readFileSync(join(dst, 'd/x.txt'), 'utf8'), 'x');
      assert.is(readFileSync(join(dst, 'keep.txt'), 'utf8'), 'mine');
      assert.equal(readdirSync(dst).sort(), ['a.txt', 'd', 'f', 'keep.txt'], 'no temporary folder left');

      // A link in the destination where a folder of the copy goes: refused before anything moves.
      const outside = join(base, 'outside');
      mkdirSync(outside);
      rmSync(join(dst, 'f'), { recursive: true });
      symlinkSync(outside, join(dst, 'f'));
      writeFileSync(join(dst, 'a.txt'), 'changed');
      let e: unknown;
      try {
        await copyOut(store, manifest, dst);
      } catch (err) {
        e = err;
      }
      assert.is((e as DstackError).code, 'DS0305');
      assert.equal(readdirSync(outside), []);
      assert.is(readFileSync(join(dst, 'a.txt'), 'utf8'), 'changed', 'nothing moved');
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }),
);

test(
  'a copied link that leads out through a link already in the destination is removed and reported',
  withTimeout(20_000, async () => {
    const base = tmp();
    try {
      const store = new LocalArtifactStore({ home: join(base, 'home') });
      const manifest: Manifest = { version: 1, size: 0, entries: [{ type: 'symlink', path: 'l', target: 'up/x' }, { type: 'symlink', path: 'fine', target: 'l2' }] };
      const dst = join(base, 'dst');
      mkdirSync(dst);
      symlinkSync('..', join(dst, 'up'));
      const r = await copyOut(store, manifest, dst);
      assert.equal(r.droppedLinks, [{ path: 'l', target: 'up/x' }]);
      assert.equal(readdirSync(dst).sort(), ['fine', 'up']);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }),
);

test.run();
