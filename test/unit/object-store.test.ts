/**
 * The local object store never serves wrong bytes (src/artifacts/local-objects.ts): a read of a
 * truncated, flipped, missing or replaced object errors with a code instead of ending, the object
 * is quarantined and reported; a put of content whose object is damaged replaces it; an object
 * proved sound is not hashed again while its inode is unchanged — and is, the moment it changes.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalObjectStore } from '../../src/artifacts/local-objects.js';
import type { ObjectStore } from '../../src/engine/objects.js';
import { DstackError } from '../../src/engine/errors.js';
import { asContentHash, type ContentHash } from '../../src/engine/types.js';
import { withTimeout } from '../helpers/timeout.js';

const tmp = (): string => realpathSync(mkdtempSync(join(tmpdir(), 'dstack-objects-')));
const sha = (b: Buffer | string): ContentHash => asContentHash(createHash('sha256').update(b).digest('hex'));

function setup(): { home: string; store: LocalObjectStore; faults: [string, string][]; put: (b: Buffer) => Promise<ContentHash> } {
  const home = tmp();
  const faults: [string, string][] = [];
  const store = new LocalObjectStore({ home, onFault: (h, f) => void faults.push([h, f]) });
  const put = async (b: Buffer): Promise<ContentHash> => {
    const h = sha(b);
    await store.put(h, b.length, () => Readable.from([b]));
    return h;
  };
  return { home, store, faults, put };
}

/** Reads a whole stream: the chunks, and how it ended. */
async function drain(r: Readable): Promise<{ bytes: Buffer; error?: DstackError; ended: boolean }> {
  const chunks: Buffer[] = [];
  let ended = false;
  r.on('end', () => (ended = true));
  try {
    for await (const c of r) chunks.push(c as Buffer);
    return { bytes: Buffer.concat(chunks), ended };
  } catch (e) {
    assert.instance(e, DstackError, String(e));
    return { bytes: Buffer.concat(chunks), error: e as DstackError, ended };
  }
}

/** Overwrites one byte in place, as damage on the disk would (the object is 0444: made writable first). */
function flipByte(path: string, at: number): void {
  chmodSync(path, 0o644);
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  b[0] = readFileSync(path)[at]! ^ 0xff;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
  chmodSync(path, 0o444);
}

/** Bytes this process has read through read(2) so far: page-cache hits count too. */
const rchar = (): number => Number(/rchar:\s*(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))![1]);

const MB = 1 << 20;
const payload = (n: number, seed = 7): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * seed + (i >> 8)) & 0xff));

test(
  'get streams sound bytes and ends; truncated, flipped, replaced by a symlink or missing: a coded error, never an end, quarantined and reported',
  withTimeout(20_000, async () => {
    const { home, store, faults, put } = setup();
    try {
      const big = payload(3 * MB + 17);
      const h = await put(big);
      const ok = await drain(store.get(h, { size: big.length }));
      assert.ok(ok.ended && !ok.error && ok.bytes.equals(big));

      // Truncated: refused before a byte is served (the size is known).
      truncateSync(store.path(h), 5000);
      const cut = await drain(store.get(h, { size: big.length }));
      assert.is(cut.error?.code, 'DS0304');
      assert.is(cut.ended, false);
      assert.not.ok(existsSync(store.path(h)));
      assert.is(readdirSync(store.quarantineDir).filter((n) => n.startsWith(h)).length, 1);
      assert.equal(faults, [[h, 'damaged']]);

      // A flipped byte near the end, same size, size not given: chunks flow, then the error instead of the end.
      const h2 = await put(big);
      flipByte(store.path(h2), big.length - 3);
      const flipped = await drain(store.get(h2));
      assert.is(flipped.error?.code, 'DS0304');
      assert.is(flipped.ended, false);
      assert.match(flipped.error!.message, /is damaged \(its bytes hash to [0-9a-f]{12}…\); it was moved to objects\/quarantine/);
      assert.not.ok(existsSync(store.path(h2)));

      // A symlink under the object's name is not followed.
      const h3 = await put(Buffer.from('three'));
      writeFileSync(join(home, 'elsewhere'), 'three');
      unlinkSync(store.path(h3));
      symlinkSync(join(home, 'elsewhere'), store.path(h3));
      assert.is((await drain(store.get(h3))).error?.code, 'DS0304');

      // Missing.
      const gone = sha('never stored');
      const missing = await drain(store.get(gone));
      assert.is(missing.error?.code, 'DS0303');
      assert.is(missing.bytes.length, 0);
      assert.equal(faults.slice(-1), [[gone, 'missing']]);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'put: wrong bytes for the name are refused and nothing is stored; a sound object is kept without opening the source; a damaged one is replaced',
  withTimeout(20_000, async () => {
    const { home, store } = setup();
    try {
      const good = payload(100_000);
      const h = sha(good);
      let e: unknown;
      try {
        await store.put(h, good.length, () => Readable.from([Buffer.from('not it')]));
      } catch (err) {
        e = err;
      }
      assert.is((e as DstackError).code, 'DS0304');
      assert.not.ok(existsSync(store.path(h)));
      assert.equal(readdirSync(store.tmpDir), []);

      assert.equal(await store.put(h, good.length, () => Readable.from([good])), { created: true });
      let opened = false;
      assert.equal(await store.put(h, good.length, () => ((opened = true), Readable.from([good]))), { created: false });
      assert.is(opened, false);

      // Damaged in place (same size, mtime put back): the record no longer holds (ctime moved), so it is hashed and replaced.
      const before = statSync(store.path(h));
      flipByte(store.path(h), 10);
      utimesSync(store.path(h), before.atime, before.mtime);
      assert.equal(await store.put(h, good.length, () => Readable.from([good])), { created: true });
      assert.ok(readFileSync(store.path(h)).equals(good));
      // Truncated: replaced through putFile too.
      truncateSync(store.path(h), 10);
      const src = join(home, 'src.bin');
      writeFileSync(src, good);
      assert.equal(await store.putFile(src), { hash: h, created: true, size: good.length });
      assert.ok(readFileSync(store.path(h)).equals(good));
      assert.is(readdirSync(store.quarantineDir).length, 2);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'link: a sound object is hashed once, not per link; links made and removed keep that; any write to it is caught, mtime put back or not',
  withTimeout(30_000, async () => {
    const { home, store, faults, put } = setup();
    try {
      const big = payload(8 * MB, 13);
      const h = await put(big);
      const jobs = join(home, 'jobs');
      mkdirSync(jobs);
      // Stored just now from bytes hashed on the way in: the first link reads nothing either.
      let r0 = rchar();
      await store.link(h, join(jobs, 'l1'));
      assert.ok(rchar() - r0 < MB, `first link read ${rchar() - r0} bytes`);
      r0 = rchar();
      await store.link(h, join(jobs, 'l2'));
      await store.unlinking([h], async () => {
        unlinkSync(join(jobs, 'l1'));
        unlinkSync(join(jobs, 'l2'));
      });
      await store.link(h, join(jobs, 'l3'));
      assert.ok(rchar() - r0 < MB, `links read ${rchar() - r0} bytes`);
      unlinkSync(join(jobs, 'l3'));

      // Someone else's hard link (not through the store) changes ctime: hashed again, still sound.
      linkSync(store.path(h), join(jobs, 'foreign'));
      r0 = rchar();
      await store.link(h, join(jobs, 'l4'));
      assert.ok(rchar() - r0 >= big.length, 'an object whose inode changed must be hashed again');

      // A write with the mtime put back: caught.
      const st = statSync(store.path(h));
      flipByte(store.path(h), MB);
      utimesSync(store.path(h), st.atime, st.mtime);
      let e: unknown;
      try {
        await store.link(h, join(jobs, 'l5'));
      } catch (err) {
        e = err;
      }
      assert.is((e as DstackError).code, 'DS0304');
      assert.not.ok(existsSync(join(jobs, 'l5')));
      assert.not.ok(existsSync(store.path(h)));
      assert.equal(faults, [[h, 'damaged']]);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'records survive the process: a new store on the same home trusts an unchanged object and re-hashes a changed one',
  withTimeout(20_000, async () => {
    const { home, put } = setup();
    try {
      const big = payload(4 * MB, 3);
      const h = await put(big);
      // Let the append land (it is batched).
      await new LocalObjectStore({ home }).verifiedPath(h);
      const fresh = new LocalObjectStore({ home });
      let r0 = rchar();
      await fresh.verifiedPath(h);
      assert.ok(rchar() - r0 < MB, `read ${rchar() - r0} bytes`);
      chmodSync(fresh.path(h), 0o444); // ctime moves, content does not
      const again = new LocalObjectStore({ home });
      r0 = rchar();
      await again.verifiedPath(h);
      assert.ok(rchar() - r0 >= big.length);
      // Two processes sharing a dep: one links and unlinks it (moving ctime, re-recording); the other,
      // which read the records before, learns that instead of hashing the object again.
      const one = new LocalObjectStore({ home });
      const two = new LocalObjectStore({ home });
      await two.verifiedPath(h);
      const link = join(home, 'l1');
      await one.link(h, link);
      await one.unlinking([h], async () => unlinkSync(link));
      r0 = rchar();
      await two.verifiedPath(h);
      assert.ok(rchar() - r0 < MB, `the other process hashed it again: read ${rchar() - r0} bytes`);
      // A torn record line is ignored, not trusted.
      writeFileSync(join(home, 'objects', 'verified'), `${h} 1:2:3\n${h.slice(0, 40)}`, { flag: 'a' });
      const torn = new LocalObjectStore({ home });
      assert.is(await torn.check(h), 'ok');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'readVerified hands out a sound object whole (by its record), and refuses one changed behind the store with its mtime put back',
  withTimeout(20_000, async () => {
    const { home, store, faults, put } = setup();
    try {
      const body = payload(300_000, 5);
      const h = await put(body);
      await store.verifiedPath(h); // the record is written
      assert.equal(await new LocalObjectStore({ home }).readVerified(h, body.length), body);
      // No record to vouch for it (a fresh home's view after a chmod): hashed as read, still the bytes.
      chmodSync(store.path(h), 0o444);
      assert.equal(await new LocalObjectStore({ home }).readVerified(h, body.length), body);
      const st = statSync(store.path(h));
      flipByte(store.path(h), 1000);
      utimesSync(store.path(h), st.atime, st.mtime);
      let e: unknown;
      try {
        await store.readVerified(h, body.length);
      } catch (err) {
        e = err;
      }
      assert.is((e as DstackError).code, 'DS0304');
      assert.not.ok(existsSync(store.path(h)), 'quarantined');
      assert.equal(faults, [[h, 'damaged']]);
      try {
        await store.readVerified(sha('never stored'), 3);
        assert.unreachable('a missing object was read');
      } catch (err) {
        assert.is((err as DstackError).code, 'DS0303');
      }
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test(
  'hasMany and list see objects under their own name only',
  withTimeout(10_000, async () => {
    const { home, store, put } = setup();
    try {
      const a = await put(Buffer.from('a'));
      const b = await put(Buffer.from('bb'));
      writeFileSync(join(store.dir, a.slice(0, 2), 'stray'), 'x');
      const gone = sha('gone');
      assert.equal(await store.hasMany([a, b, gone, a]), new Set([a, b]));
      const listed: { hash: string; size: number }[] = [];
      for await (const o of store.list()) listed.push(o);
      assert.equal(listed.sort((x, y) => (x.hash < y.hash ? -1 : 1)), [{ hash: a, size: 1 }, { hash: b, size: 2 }].sort((x, y) => (x.hash < y.hash ? -1 : 1)));
      assert.is((store as ObjectStore).presignGet, undefined, 'a local folder has no URLs');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  }),
);

test.run();
