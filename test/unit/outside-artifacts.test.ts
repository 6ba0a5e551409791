/**
 * Artifacts outside /workflow in manifests (src/artifacts/outside.ts): how an entry says it is outside,
 * what a manifest may hold there, and how deps' trees merge. The bytes' way through the engine's
 * archive API is test/e2e/envs.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { makeManifest, validateManifest } from '../../src/artifacts/manifest.js';
import { isValidOutsidePath, mergeOutside, roots, splitOutside } from '../../src/artifacts/outside.js';
import type { ManifestEntry } from '../../src/artifacts/types.js';
import { DstackError } from '../../src/engine/errors.js';
import { treeHashOf } from '../../src/engine/fingerprint.js';
import { asContentHash } from '../../src/engine/types.js';

const H = asContentHash('a'.repeat(64));
const file = (path: string): ManifestEntry => ({ type: 'file', path, size: 1, mode: 0o644, hash: H });
const dir = (path: string): ManifestEntry => ({ type: 'dir', path, mode: 0o755 });

test('outside paths: absolute or under ~, normalised, never the root, /workflow or a kernel file system', () => {
  for (const p of ['/opt/venv', '/opt/venv/bin/python', '~', '~/.cache/x', '/root/.cache']) assert.ok(isValidOutsidePath(p), p);
  for (const p of ['/', '/opt/../etc', '/opt/./x', '/opt/venv/', '/opt//venv', '/proc/1', '/sys', '/dev/null', '/workflow', '/workflow/x', '~/../x', '/a\0b']) {
    assert.not.ok(isValidOutsidePath(p), p);
  }
});

test('a manifest with outside entries is refused where it would be written under a folder, kept for containers', () => {
  const m = makeManifest([dir('/opt/venv'), { type: 'symlink', path: '/opt/venv/bin/python3', target: '/usr/bin/python3' }, file('/opt/venv/x.py'), file('out/a')]);
  assert.throws(() => validateManifest(m), (e: unknown) => e instanceof DstackError && e.code === 'DS0302' && /'\/opt\/venv' is outside \/workflow/.test(e.message));
  validateManifest(m, { outside: true });
  assert.throws(() => validateManifest(makeManifest([file('/proc/self/mem')]), { outside: true }), (e: unknown) => (e as DstackError).code === 'DS0302');
  // A relative entry keeps the rules it had: its link may not lead out.
  assert.throws(() => validateManifest(makeManifest([{ type: 'symlink', path: 'l', target: '/usr/bin' }]), { outside: true }), (e: unknown) => (e as DstackError).code === 'DS0302');
});

test('a manifest without outside entries is split into itself: its tree hash, and every fingerprint over it, unchanged', () => {
  const m = makeManifest([file('a'), file('b/c')]);
  const { inside, outside } = splitOutside(m);
  assert.is(inside, m);
  assert.equal(outside, []);
  const mixed = makeManifest([file('a'), file('b/c'), file('/opt/venv/x'), file('~/.cache/y')]);
  const split = splitOutside(mixed);
  assert.is(treeHashOf(split.inside.entries), treeHashOf(m.entries));
  assert.equal(split.outside.map((e) => e.path), ['/opt/venv/x', '~/.cache/y']);
});

test('deps\' outside trees merge in order, a later dep replacing an earlier one\'s whole path', () => {
  const first = makeManifest([dir('/opt/venv'), file('/opt/venv/old.py'), file('/opt/venv/keep.py'), file('/data/a')]);
  const second = makeManifest([dir('/opt/venv'), file('/opt/venv/keep.py'), file('/opt/venv/new.py')]);
  assert.equal(mergeOutside([first, second]).map((e) => e.path), ['/data/a', '/opt/venv', '/opt/venv/keep.py', '/opt/venv/new.py']);
  assert.equal(roots(mergeOutside([first, second])), ['/data/a', '/opt/venv']);
});

test.run();
