/**
 * The archive reader (src/backends/docker/archive.ts) fed tar streams no engine writes but a job's
 * own archive could hold, crafted by hand (test/helpers/tar-craft.ts): each one ends in a DstackError
 * with its code (fifos and devices: a notice), never a write outside the store and the temp folder,
 * never a crash or a hang. What a real engine writes is test/e2e/envs.test.ts.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { readArchive, type TarTarget } from '../../src/backends/docker/archive.js';
import { artifactLimitFrom, DEFAULT_ARTIFACT_LIMIT } from '../../src/backends/docker/artifact-limit.js';
import { DstackError, type ErrorCode } from '../../src/engine/errors.js';
import { archive, END, entry, type Crafted } from '../helpers/tar-craft.js';
import { withTimeout } from '../helpers/timeout.js';

const sandbox = mkdtempSync(join(tmpdir(), 'dstack-hostile-'));
const store = new LocalArtifactStore({ home: join(sandbox, 'home') });
const target = (limit = DEFAULT_ARTIFACT_LIMIT): TarTarget => ({ store, path: '/opt/venv', base: 'venv', limit });
const TOP: Crafted = { path: 'venv/' };

const read = (bytes: Buffer | Readable, limit?: number) => readArchive(Buffer.isBuffer(bytes) ? Readable.from([bytes]) : bytes, target(limit));

async function refused(bytes: Buffer | Readable, code: ErrorCode, message: RegExp, limit?: number): Promise<void> {
  try {
    await read(bytes, limit);
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, code, (e as Error).message);
    assert.match((e as DstackError).message, message);
    return;
  }
  assert.unreachable(`not refused (${code})`);
}

/** Every file under the sandbox, relative: only objects of the store, never a name from an archive. */
function filesIn(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesIn(p));
    else out.push(relative(sandbox, p));
  }
  return out;
}

test('names that leave the path asked for: ../x, absolute, a/../../x, another top name, a PAX path climbing out', withTimeout(10_000, async () => {
  for (const path of ['../x', '/etc/passwd', 'venv/a/../../x', 'venv/./x', 'other/x', 'venv//x']) {
    await refused(archive(TOP, { path, body: 'owned' }), 'DS0041', /holds a name outside the path asked for/);
  }
  await refused(archive(TOP, { path: 'venv/ok', body: 'owned', pax: { path: 'venv/../../etc/passwd' } }), 'DS0041', /a name outside the path asked for: 'venv\/\.\.\/\.\.\/etc\/passwd'$/);
}));

test('a file written through a symlink of the same archive: link -> /etc then link/passwd, the top itself a link', withTimeout(10_000, async () => {
  await refused(archive(TOP, { path: 'venv/link', type: 'SymbolicLink', linkpath: '/etc' }, { path: 'venv/link/passwd', body: 'root::0:0::/:/bin/sh\n' }), 'DS0041', /holds an entry under its own symlink \/opt\/venv\/link: 'venv\/link\/passwd'$/);
  await refused(archive({ path: 'venv', type: 'SymbolicLink', linkpath: '/proc/1/root' }, { path: 'venv/etc/shadow', body: 'x' }), 'DS0041', /under its own symlink \/opt\/venv:/);
  // A hard link to a symlink is that symlink again, and nothing goes under it either.
  await refused(archive(TOP, { path: 'venv/l', type: 'SymbolicLink', linkpath: '/etc' }, { path: 'venv/h', type: 'Link', linkpath: 'venv/l' }, { path: 'venv/h/x', body: 'x' }), 'DS0041', /under its own symlink \/opt\/venv\/h/);
}));

test('hard links: to a later entry, to nothing, out of the path, to a folder are refused; to an earlier file kept as that file', withTimeout(10_000, async () => {
  await refused(archive(TOP, { path: 'venv/h', type: 'Link', linkpath: 'venv/b' }, { path: 'venv/b', body: 'x' }), 'DS0041', /a hard link to 'venv\/b', not to a file before it: 'venv\/h'$/);
  await refused(archive(TOP, { path: 'venv/h', type: 'Link', linkpath: 'venv/none' }), 'DS0041', /a hard link to 'venv\/none'/);
  await refused(archive(TOP, { path: 'venv/h', type: 'Link', linkpath: '/etc/shadow' }), 'DS0041', /a name outside the path asked for: '\/etc\/shadow'$/);
  await refused(archive(TOP, { path: 'venv/h', type: 'Link', linkpath: 'venv' }), 'DS0041', /a hard link to 'venv'/);
  const ok = await read(archive(TOP, { path: 'venv/a', body: 'same' }, { path: 'venv/b', type: 'Link', linkpath: 'venv/a' }));
  const [, a, b] = ok.entries;
  assert.equal(b, { ...a!, path: '/opt/venv/b' });
}));

test('a header claiming more bytes than follow: the truncated archive is refused, with or without its end blocks', withTimeout(10_000, async () => {
  const short = entry({ path: 'venv/a', body: 'x'.repeat(100), size: 5000 });
  await refused(Buffer.concat([entry(TOP), short, END]), 'DS0041', /is not a valid tar: .*Truncated input/);
  await refused(Buffer.concat([entry(TOP), short.subarray(0, 600)]), 'DS0041', /is not a valid tar: .*Truncated input/);
  await refused(Buffer.concat([entry(TOP), entry({ path: 'venv/a', body: 'x', size: 2 ** 40 })]), 'DS0041', /is not a valid tar/);
}));

test('a stream that fails in the middle of a file ends the read with an error, not a hang', withTimeout(10_000, async () => {
  const head = Buffer.concat([entry(TOP), entry({ path: 'venv/a', body: 'x'.repeat(5000) }).subarray(0, 2048)]);
  let reads = 0;
  // The second read is asked for by the parser inside venv/a's bytes: the engine's answer breaks there.
  const broken = new Readable({
    read() {
      if (reads++ === 0) this.push(head);
      else this.destroy(new Error('connection reset by the engine'));
    },
  });
  await refused(broken, 'DS0041', /not a valid tar: connection reset by the engine/);
  assert.is(reads, 2);
}));

test('a huge size header on an endless stream: refused by the limit on its header, after reading a few blocks of it', withTimeout(10_000, async () => {
  let sent = 0;
  const zeros = Buffer.alloc(64 * 1024);
  const endless = new Readable({
    read() {
      sent += zeros.length;
      this.push(sent === zeros.length ? Buffer.concat([entry(TOP), entry({ path: 'venv/zero', size: 2 ** 40 })]) : zeros);
    },
  });
  await refused(endless, 'DS0045', /^artifact \/opt\/venv holds more than 50 GiB \(DSTACK_ARTIFACT_LIMIT\): it was not saved$/);
  assert.ok(sent < 16 * 1024 * 1024, `${sent} bytes read`);
}));

test('the limit counts all of the artifact\'s files; the file that would pass it is never written, nor left in a temp file', withTimeout(10_000, async () => {
  const kib = (c: string): Crafted => ({ path: `venv/${c}`, body: c.repeat(1024) });
  await refused(archive(TOP, kib('a'), kib('b'), kib('c')), 'DS0045', /holds more than 2 KiB/, 2048);
  assert.equal(readdirSync(join(sandbox, 'home/objects/tmp')), []);
  const fits = await read(archive(TOP, kib('a'), kib('b')), 2048);
  assert.equal(fits.entries.map((e) => e.path), ['/opt/venv', '/opt/venv/a', '/opt/venv/b']);
}));

test('fifos and devices are skipped and named; the rest is kept', withTimeout(10_000, async () => {
  const r = await read(archive(TOP, { path: 'venv/f', type: 'FIFO' }, { path: 'venv/tty', type: 'CharacterDevice' }, { path: 'venv/sda', type: 'BlockDevice' }, { path: 'venv/a', body: 'x' }));
  assert.equal(r.skipped, ['/opt/venv/f (a fifo)', '/opt/venv/tty (a device)', '/opt/venv/sda (a device)']);
  assert.equal(r.entries.map((e) => e.path), ['/opt/venv', '/opt/venv/a']);
}));

test('PAX: long names kept whole, odd records ignored; a NUL cut by tar\'s parser and a newline kept, both under the path', withTimeout(10_000, async () => {
  const long = `venv/${'d'.repeat(120)}/${'f'.repeat(200)}`;
  const r = await read(archive(TOP, { path: long, body: 'x' }, { path: 'venv/ok', body: 'y', pax: { 'SCHILY.xattr.security.capability': '\x01\x02', weird: 'a=b=c', mtime: 'not a time' } }));
  assert.equal(r.entries.map((e) => e.path), ['/opt/venv', `/opt/venv/${'d'.repeat(120)}/${'f'.repeat(200)}`, '/opt/venv/ok']);
  // No file system has a NUL in a name: tar's parser ends the PAX value there (a name the tar
  // also has: refused as given twice); a newline is a legal name, kept as relative artifacts keep it.
  const nul = await read(archive(TOP, { path: 'venv/x', body: 'x', pax: { path: 'venv/a\0/../../etc' } }));
  assert.equal(nul.entries.map((e) => e.path), ['/opt/venv', '/opt/venv/a']);
  await refused(archive(TOP, { path: 'venv/a', body: 'x' }, { path: 'venv/x', body: 'x', pax: { path: 'venv/a\0b' } }), 'DS0041', /a name given twice: 'venv\/a'$/);
  const nl = await read(archive(TOP, { path: 'venv/a\nb', body: 'x' }));
  assert.equal(nl.entries.map((e) => e.path), ['/opt/venv', '/opt/venv/a\nb']);
}));

test('a name given twice is refused: a file twice, a folder then a symlink in its place', withTimeout(10_000, async () => {
  await refused(archive(TOP, { path: 'venv/a', body: 'x' }, { path: 'venv/a', body: 'y' }), 'DS0041', /a name given twice: 'venv\/a'$/);
  await refused(archive(TOP, { path: 'venv/d/' }, { path: 'venv/d/f', body: 'y' }, { path: 'venv/d', type: 'SymbolicLink', linkpath: '/etc' }), 'DS0041', /a name given twice: 'venv\/d'$/);
}));

test('not a tar at all: garbage, nothing', withTimeout(10_000, async () => {
  await refused(Buffer.alloc(2048, 7), 'DS0041', /is not a valid tar: .*checksum/);
  await refused(Buffer.alloc(0), 'DS0041', /is not a valid tar/);
}));

test('DSTACK_ARTIFACT_LIMIT: a size, unlimited, unset; anything else DS0046 naming the value', () => {
  assert.is(artifactLimitFrom({}), 50 * 1024 ** 3);
  assert.is(artifactLimitFrom({ DSTACK_ARTIFACT_LIMIT: '1MiB' }), 1024 * 1024);
  assert.is(artifactLimitFrom({ DSTACK_ARTIFACT_LIMIT: 'Unlimited' }), Infinity);
  assert.throws(() => artifactLimitFrom({ DSTACK_ARTIFACT_LIMIT: '10' }), (e: unknown) => e instanceof DstackError && e.code === 'DS0046' && e.message === "DSTACK_ARTIFACT_LIMIT must be a size or unlimited, got '10'");
});

test('nothing was written but objects of the store: no name from any archive, no temp file left', () => {
  const files = filesIn(sandbox);
  assert.ok(files.length > 0);
  for (const f of files) assert.match(f, /^home\/objects\/(sha256\/[0-9a-f]{2}\/[0-9a-f]{64}|verified(\/.*)?)$/, f);
  rmSync(sandbox, { recursive: true, force: true });
});

test.run();
