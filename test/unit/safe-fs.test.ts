/**
 * The no-follow primitives (src/engine/safe-fs.ts): every component below the root checked, a
 * symlink refused (DS0305) and nothing made through it; where a symlink chain ends up, the way the
 * container's kernel would follow it.
 */
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import { assertNoSymlinks, mkdirNoFollow, openFileNoFollow, resolveInside } from '../../src/engine/safe-fs.js';
import { withTimeout } from '../helpers/timeout.js';

const tmp = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'dstack-safefs-')));

async function refused(p: Promise<unknown>, code: string, message?: RegExp): Promise<DstackError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, code, (e as Error).message);
    if (message) assert.match((e as Error).message, message);
    return e as DstackError;
  }
  throw new Error(`expected ${code}, got success`);
}

/** A folder outside the root whose listing and mtime must not change. */
function canary(base: string): { dir: string; unchanged: () => void } {
  const dir = join(base, 'canary');
  mkdirSync(dir);
  writeFileSync(join(dir, 'keep'), 'keep');
  const before = { names: readdirSync(dir), mtime: statSync(dir).mtimeMs, keep: statSync(join(dir, 'keep')).mtimeMs };
  return {
    dir,
    unchanged: () => {
      assert.equal(readdirSync(dir), before.names, 'canary listing changed');
      assert.is(statSync(dir).mtimeMs, before.mtime, 'canary folder mtime changed');
      assert.is(statSync(join(dir, 'keep')).mtimeMs, before.keep, 'canary file mtime changed');
    },
  };
}

test(
  'mkdirNoFollow makes every component, and refuses a symlink at any of them without making anything through it',
  withTimeout(10_000, async () => {
    const base = tmp();
    try {
      const root = join(base, 'root');
      mkdirSync(root);
      const c = canary(base);
      assert.is(await mkdirNoFollow(root, 'a/b/c', { what: 'test' }), join(root, 'a/b/c'));
      assert.ok(statSync(join(root, 'a/b/c')).isDirectory());
      // Again: nothing to do.
      await mkdirNoFollow(root, 'a/b/c', { what: 'test' });

      // A link as the first, a middle and the last component.
      symlinkSync(c.dir, join(root, 'first'));
      await refused(mkdirNoFollow(root, 'first/x', { what: 'the cache folder' }), 'DS0305', /^the cache folder: '.*\/root\/first' is a symlink \(to '.*\/canary'\); dstack does not follow symlinks there$/);
      symlinkSync(c.dir, join(root, 'a/mid'));
      await refused(mkdirNoFollow(root, 'a/mid/x/y', { what: 'test' }), 'DS0305');
      symlinkSync(c.dir, join(root, 'a/b/last'));
      await refused(mkdirNoFollow(root, 'a/b/last', { what: 'test' }), 'DS0305');
      // A relative link, and a link to a file.
      symlinkSync('../../..', join(root, 'a/b/up'));
      await refused(mkdirNoFollow(root, 'a/b/up/canary/z', { what: 'test' }), 'DS0305');
      symlinkSync(join(c.dir, 'keep'), join(root, 'filelink'));
      await refused(mkdirNoFollow(root, 'filelink', { what: 'test' }), 'DS0305');
      c.unchanged();

      // A file where a folder is wanted: refused, unless entries may overwrite it.
      writeFileSync(join(root, 'plain'), 'x');
      await refused(mkdirNoFollow(root, 'plain/x', { what: 'test' }), 'DS0305', /is a file where a folder is wanted/);
      await mkdirNoFollow(root, 'plain/x', { what: 'test', replaceFiles: true });
      assert.ok(statSync(join(root, 'plain/x')).isDirectory());
      // `..` is never walked.
      await refused(mkdirNoFollow(root, 'a/../../escape', { what: 'test' }), 'DS0305', /not a plain relative path/);
      assert.not.ok(readdirSync(base).includes('escape'));
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }),
);

test(
  'assertNoSymlinks: a link anywhere on the way is DS0305; a path partly missing is fine',
  withTimeout(10_000, async () => {
    const base = tmp();
    try {
      const root = join(base, 'root');
      mkdirSync(join(root, 'a/b'), { recursive: true });
      const c = canary(base);
      assert.is(await assertNoSymlinks(root, 'a/b', 'x'), true);
      assert.is(await assertNoSymlinks(root, 'a/b/not/yet', 'x'), false);
      symlinkSync(c.dir, join(root, 'a/b/l'));
      await refused(assertNoSymlinks(root, 'a/b/l/z', 'x'), 'DS0305');
      await refused(assertNoSymlinks(root, 'a/b/l', 'x'), 'DS0305');
      c.unchanged();
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }),
);

test(
  'openFileNoFollow opens a file and refuses a symlink to one',
  withTimeout(10_000, async () => {
    const base = tmp();
    try {
      writeFileSync(join(base, 'f'), 'data');
      symlinkSync(join(base, 'f'), join(base, 'l'));
      const fh = await openFileNoFollow(join(base, 'f'), 'x');
      await fh.close();
      await refused(openFileNoFollow(join(base, 'l'), 'the object'), 'DS0305', /the object: '.*\/l' is a symlink/);
      assert.ok(lstatSync(join(base, 'l')).isSymbolicLink());
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }),
);

test(
  'resolveInside follows chains the way the kernel does: each link alone looking inside is not enough',
  withTimeout(10_000, async () => {
    const base = tmp();
    try {
      const root = join(base, 'root');
      mkdirSync(join(root, 'd/sub'), { recursive: true });
      writeFileSync(join(root, 'd/sub/f'), 'x');
      symlinkSync('d/sub/f', join(root, 'direct'));
      symlinkSync('direct', join(root, 'chain'));
      symlinkSync('/etc', join(root, 'abs'));
      symlinkSync('abs', join(root, 'to-abs'));
      symlinkSync('../../..', join(root, 'd/sub/up3'));
      symlinkSync('d/sub/up3', join(root, 'via-up'));
      symlinkSync('..', join(root, 'd/up'));
      // Lexically `d/up/..` is `d`, inside; the kernel goes d/up → root, then .. → out.
      symlinkSync('d/up/..', join(root, 'sneaky'));
      symlinkSync('nowhere/x', join(root, 'dangling'));
      symlinkSync('nowhere/../../x', join(root, 'dangling-out'));
      symlinkSync('loop-b', join(root, 'loop-a'));
      symlinkSync('loop-a', join(root, 'loop-b'));

      assert.equal(await resolveInside(root, 'direct'), { inside: true, path: 'd/sub/f' });
      assert.equal(await resolveInside(root, 'chain'), { inside: true, path: 'd/sub/f' });
      assert.equal(await resolveInside(root, 'abs'), { inside: false, via: 'abs' });
      assert.equal(await resolveInside(root, 'to-abs'), { inside: false, via: 'abs' });
      assert.is((await resolveInside(root, 'via-up')).inside, false);
      assert.is((await resolveInside(root, 'sneaky')).inside, false);
      assert.equal(await resolveInside(root, 'd/up'), { inside: true, path: '' });
      assert.equal(await resolveInside(root, 'dangling'), { inside: true, path: 'nowhere/x' });
      assert.is((await resolveInside(root, 'dangling-out')).inside, false);
      assert.is((await resolveInside(root, 'loop-a')).inside, true);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  }),
);

test.run();
