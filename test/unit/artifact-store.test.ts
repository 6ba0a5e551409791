import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { hashFile } from '../../src/artifacts/hash.js';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import type { Manifest } from '../../src/artifacts/types.js';
import { DstackError } from '../../src/engine/errors.js';
import { asContentHash, type ArtifactSpec } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';

function tmp(): string {
  return realpathSync(mkdtempSync(join(tmpdir(), 'dstack-art-')));
}

function write(root: string, rel: string, content: string | Buffer, mode?: number): void {
  const p = join(root, rel);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, content);
  if (mode !== undefined) chmodSync(p, mode);
}

const spec = (path: string): ArtifactSpec => ({ path, mount: false });
const sha = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');

/** Every object under objects/sha256, as `hash` names. */
function objects(home: string): string[] {
  const base = join(home, 'objects', 'sha256');
  if (!existsSync(base)) return [];
  return readdirSync(base).flatMap((d) => readdirSync(join(base, d)));
}

/** A tree as `path -> description`, for comparing a save with its materialization. */
function describe(root: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const abs = join(root, p);
    const st = statSync(abs, { throwIfNoEntry: false });
    const l = (() => {
      try {
        return readlinkSync(abs);
      } catch {
        return undefined;
      }
    })();
    if (l !== undefined) out[p] = `link:${l}`;
    else if (st?.isDirectory()) {
      out[p] = `dir`;
      Object.assign(out, describe(root, p));
    } else if (st) out[p] = `file:${(st.mode & 0o777).toString(8)}:${readFileSync(abs, 'utf8')}`;
  }
  return out;
}

async function rejects(p: Promise<unknown>, code: string, re?: RegExp): Promise<DstackError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, DstackError);
    const de = e as DstackError;
    assert.is(de.code, code, de.message);
    if (re) assert.match(de.message, re);
    return de;
  }
  throw new assert.Assertion({ message: `expected ${code}`, operator: 'rejects', expects: code, actual: 'resolved' });
}

test(
  'save then materialize gives the same tree: content, exec bits, empty dirs, inside symlinks',
  withTimeout(20_000, async () => {
    const home = tmp();
    const work = tmp();
    const dest = tmp();
    try {
      write(work, 'out/model.bin', 'weights');
      write(work, 'out/run.sh', '#!/bin/sh\n', 0o755);
      write(work, 'out/deep/nested/x.txt', 'x');
      mkdirSync(join(work, 'out/empty'));
      symlinkSync('model.bin', join(work, 'out/latest'));
      symlinkSync('../top.txt', join(work, 'out/up'));
      write(work, 'top.txt', 'top');
      write(work, 'notsaved.txt', 'no');
      const store = new LocalArtifactStore({ home });
      const r = await store.save(work, [spec('out'), spec('top.txt'), spec('missing/dir')]);
      assert.equal(r.missing, ['missing/dir']);
      const paths = r.manifest.entries.map((e) => e.path);
      assert.equal(paths, [...paths].sort());
      assert.equal(paths, [
        'out',
        'out/deep',
        'out/deep/nested',
        'out/deep/nested/x.txt',
        'out/empty',
        'out/latest',
        'out/model.bin',
        'out/run.sh',
        'out/up',
        'top.txt',
      ]);
      assert.is(r.manifest.size, 'weights'.length + '#!/bin/sh\n'.length + 1 + 3);
      assert.is(r.newBytes, r.manifest.size);
      const model = r.manifest.entries.find((e) => e.path === 'out/model.bin');
      assert.equal(model, { type: 'file', path: 'out/model.bin', size: 7, mode: 0o644, hash: sha('weights') });
      assert.equal(
        r.manifest.entries.find((e) => e.path === 'out/run.sh'),
        { type: 'file', path: 'out/run.sh', size: 10, mode: 0o755, hash: sha('#!/bin/sh\n') },
      );

      await store.materialize(r.manifest, dest);
      const want = describe(work);
      delete want['notsaved.txt'];
      assert.equal(describe(dest), want);
      // Materialized files are copies: writing one leaves the store intact.
      writeFileSync(join(dest, 'out/model.bin'), 'overwritten by a job');
      assert.is(readFileSync(store.objects.path(asContentHash(sha('weights'))), 'utf8'), 'weights');
    } finally {
      for (const d of [home, work, dest]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'identical content is stored once; an unchanged second save writes 0 new bytes',
  withTimeout(20_000, async () => {
    const home = tmp();
    const work = tmp();
    try {
      write(work, 'a/1.txt', 'same');
      write(work, 'a/2.txt', 'same');
      write(work, 'a/3.txt', 'other');
      const store = new LocalArtifactStore({ home });
      const first = await store.save(work, [spec('a')]);
      assert.is(first.newBytes, 4 + 5);
      assert.is(first.manifest.size, 4 + 4 + 5);
      assert.equal(objects(home).sort(), [sha('same'), sha('other')].sort());
      const second = await store.save(work, [spec('a')]);
      assert.is(second.newBytes, 0);
      assert.equal(second.manifest, first.manifest);
      assert.equal(readdirSync(join(home, 'objects', 'tmp')), [], 'no temp files left behind');
      const put = await store.putFile(join(work, 'a/1.txt'));
      assert.equal(put, { hash: sha('same'), created: false, size: 4 });
      assert.ok(await store.has(asContentHash(sha('same'))));
      assert.not.ok(await store.has(asContentHash(sha('never stored'))));
      assert.not.ok(await store.has(asContentHash('../../etc/passwd')));
    } finally {
      for (const d of [home, work]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'objects are read-only (0444) and named by their sha256; hashFile agrees',
  withTimeout(20_000, async () => {
    const home = tmp();
    const work = tmp();
    try {
      const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
      write(work, 'big.bin', big, 0o755);
      write(work, 'empty.txt', '');
      const store = new LocalArtifactStore({ home });
      const r = await store.putFile(join(work, 'big.bin'));
      assert.equal(r, { hash: sha(big), created: true, size: big.length });
      assert.equal(await hashFile(join(work, 'big.bin')), { hash: sha(big), size: big.length });
      const p = store.objects.path(r.hash);
      assert.is(p, join(home, 'objects', 'sha256', r.hash.slice(0, 2), r.hash));
      assert.is(statSync(p).mode & 0o777, 0o444);
      const e = await store.putFile(join(work, 'empty.txt'));
      assert.equal(e, { hash: sha(''), created: true, size: 0 });
      assert.is(statSync(store.objects.path(e.hash)).mode & 0o777, 0o444);
    } finally {
      for (const d of [home, work]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'symlinks that escape the root are refused with DS0302, naming the link and its target',
  withTimeout(20_000, async () => {
    const home = tmp();
    const work = tmp();
    try {
      const store = new LocalArtifactStore({ home });
      mkdirSync(join(work, 'out/sub'), { recursive: true });
      symlinkSync('../../etc/passwd', join(work, 'out/evil'));
      await rejects(store.save(work, [spec('out')]), 'DS0302', /'out\/evil'.*'\.\.\/\.\.\/etc\/passwd'/);
      rmSync(join(work, 'out/evil'));

      symlinkSync('/etc/passwd', join(work, 'out/abs'));
      await rejects(store.save(work, [spec('out')]), 'DS0302', /out\/abs.*\/etc\/passwd/);
      rmSync(join(work, 'out/abs'));

      // One level up from out/sub stays inside; so does a link to a sibling.
      symlinkSync('../../top', join(work, 'out/sub/ok'));
      const r = await store.save(work, [spec('out')]);
      assert.equal(
        r.manifest.entries.find((e) => e.path === 'out/sub/ok'),
        { type: 'symlink', path: 'out/sub/ok', target: '../../top' },
      );

      // A folder on the way that is a symlink out of the tree.
      const outside = tmp();
      try {
        write(outside, 'secret.txt', 'no');
        symlinkSync(outside, join(work, 'via'));
        await rejects(store.save(work, [spec('via/secret.txt')]), 'DS0302');
      } finally {
        rmSync(outside, { recursive: true, force: true });
      }
    } finally {
      for (const d of [home, work]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'a spec path that leaves the root is refused with DS0009',
  withTimeout(20_000, async () => {
    const home = tmp();
    const work = tmp();
    try {
      const store = new LocalArtifactStore({ home });
      await rejects(store.save(work, [spec('../x')]), 'DS0009');
      await rejects(store.save(work, [spec('/etc')]), 'DS0009');
    } finally {
      for (const d of [home, work]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'a leftover temp file from a crash neither corrupts later saves nor becomes an object',
  withTimeout(20_000, async () => {
    const home = tmp();
    const work = tmp();
    const dest = tmp();
    try {
      // A writer died halfway through the content we are about to save.
      mkdirSync(join(home, 'objects', 'tmp'), { recursive: true });
      writeFileSync(join(home, 'objects', 'tmp', '12345-deadbeefdeadbeef'), 'half of the wei');
      write(work, 'out/w.bin', 'half of the weights');
      const store = new LocalArtifactStore({ home });
      const r = await store.save(work, [spec('out')]);
      assert.is(r.newBytes, 'half of the weights'.length);
      assert.equal(objects(home), [sha('half of the weights')]);
      for (const h of objects(home)) {
        assert.is(sha(readFileSync(store.objects.path(asContentHash(h)))), h, 'every object holds what its name says');
      }
      await store.materialize(r.manifest, dest);
      assert.is(readFileSync(join(dest, 'out/w.bin'), 'utf8'), 'half of the weights');
      assert.equal(readdirSync(join(home, 'objects', 'tmp')), ['12345-deadbeefdeadbeef']);
      assert.is(await store.objects.cleanTemp(0), 1);
      assert.equal(readdirSync(join(home, 'objects', 'tmp')), []);
    } finally {
      for (const d of [home, work, dest]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'several writers of the same content at once: one object, created exactly once',
  withTimeout(20_000, async () => {
    const home = tmp();
    const work = tmp();
    try {
      write(work, 'f', Buffer.alloc(2 * 1024 * 1024, 1));
      const stores = Array.from({ length: 6 }, () => new LocalArtifactStore({ home }));
      const rs = await Promise.all(stores.map((s) => s.putFile(join(work, 'f'))));
      assert.is(rs.filter((r) => r.created).length, 1);
      assert.is(objects(home).length, 1);
      assert.equal(readdirSync(join(home, 'objects', 'tmp')), []);
    } finally {
      for (const d of [home, work]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'materialize refuses a hostile manifest and writes nothing outside dest',
  withTimeout(20_000, async () => {
    const home = tmp();
    const work = tmp();
    const base = tmp();
    try {
      const store = new LocalArtifactStore({ home });
      write(work, 'x', 'payload');
      const { hash } = await store.putFile(join(work, 'x'));
      const dest = join(base, 'dest');
      const bad = (entries: Manifest['entries']): Manifest => ({ version: 1, entries, size: 0 });
      await rejects(store.materialize(bad([{ type: 'file', path: '../x', size: 7, mode: 0o644, hash }]), dest), 'DS0302');
      await rejects(store.materialize(bad([{ type: 'file', path: '/tmp/x', size: 7, mode: 0o644, hash }]), dest), 'DS0302');
      await rejects(store.materialize(bad([{ type: 'file', path: 'a/../../x', size: 7, mode: 0o644, hash }]), dest), 'DS0302');
      await rejects(store.materialize(bad([{ type: 'dir', path: '..', mode: 0o755 }]), dest), 'DS0302');
      await rejects(store.materialize(bad([{ type: 'symlink', path: 'l', target: '../outside' }]), dest), 'DS0302');
      await rejects(store.materialize(bad([{ type: 'symlink', path: 'l', target: '/etc' }]), dest), 'DS0302');
      await rejects(
        store.materialize(bad([{ type: 'file', path: 'y', size: 7, mode: 0o644, hash: asContentHash('../../../../etc/passwd') }]), dest),
        'DS0302',
      );
      assert.not.ok(existsSync(join(base, 'x')));
      assert.not.ok(existsSync(join(base, 'outside')));

      // A symlink already in dest (say, from the code) must not carry a write outside it.
      const outside = join(base, 'outside-dir');
      mkdirSync(outside);
      mkdirSync(dest, { recursive: true });
      symlinkSync(outside, join(dest, 'data'));
      await rejects(store.materialize(bad([{ type: 'file', path: 'data/x', size: 7, mode: 0o644, hash }]), dest), 'DS0305', /'.*\/dest\/data' is a symlink/);
      assert.equal(readdirSync(outside), []);
      // An existing file at an entry's path is overwritten, even a symlink pointing out.
      symlinkSync(join(outside, 'target'), join(dest, 'f'));
      await store.materialize(bad([{ type: 'file', path: 'f', size: 7, mode: 0o755, hash }]), dest);
      assert.is(readFileSync(join(dest, 'f'), 'utf8'), 'payload');
      assert.is(statSync(join(dest, 'f')).mode & 0o777, 0o755);
      assert.equal(readdirSync(outside), []);
    } finally {
      for (const d of [home, work, base]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test(
  'materialize of a manifest whose object is gone fails with DS0303 and leaves no file',
  withTimeout(20_000, async () => {
    const home = tmp();
    const dest = tmp();
    try {
      const store = new LocalArtifactStore({ home });
      const m: Manifest = { version: 1, entries: [{ type: 'file', path: 'a', size: 1, mode: 0o644, hash: asContentHash(sha('gone')) }], size: 1 };
      await rejects(store.materialize(m, dest), 'DS0303', /missing/);
      assert.equal(readdirSync(dest), []);
    } finally {
      for (const d of [home, dest]) rmSync(d, { recursive: true, force: true });
    }
  }),
);

test.run();
