/**
 * scripts/image-digests.mjs for real, against a registry on loopback (test/helpers/registry.ts) that
 * holds the default image table's own names: the digests it writes are those `docker push` reported,
 * `--check` names a tag that moved, a missing tag or an unreachable registry is one line and exit 3,
 * and a Bearer challenge is answered through a fake token server in front of the real registry
 * (Docker Hub's flow, which no loopback registry plays without a signing certificate). Then the
 * pinned reference the table yields goes through the local backend: the engine pulls by digest,
 * gets the pinned image although the tag has moved since, and finds it again without a pull.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { localPlugin } from '../../src/backends/local/index.js';
import type { BackendNotice } from '../../src/engine/backend.js';
import { defaultImageFor, type ImageDigests } from '../../src/engine/default-image.js';
import { BUSYBOX, closeTestDocker, ensureBusybox, testDocker } from '../helpers/docker.js';
import { busyboxSpec } from '../helpers/job-harness.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { withTimeout } from '../helpers/timeout.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/image-digests.mjs', import.meta.url));
const SHIPPED = fileURLToPath(new URL('../../src/engine/default-image-digests.json', import.meta.url));
const MOVED = 'dstackai/miniforge:py3.11-0.2';
const OWN = 'dstackai/miniforge:py3.9-0.2-cuda-11.1';

let dir = '';
let registry: Registry;
/** The table's references (the shipped file's keys). */
let refs: string[] = [];
/** ref → what `docker push` reported for it in `registry`. */
const pushedDigest = new Map<string, string>();
/** Busybox's manifest digest in `registry`. */
let busyboxDigest = '';
let writtenBeforeMove: ImageDigests | undefined;

interface Table {
  readonly registry: string | null;
  readonly read: string | null;
  readonly digests: Record<string, string | null>;
}
/** A loopback port nothing listens on (one the system just handed out and took back). */
async function closedPort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return typeof a === 'object' && a ? a.port : 0;
}

const readTable = (file: string): Table => JSON.parse(readFileSync(file, 'utf8')) as Table;

/** A copy of the shipped file to run the script on: the shipped one is never written by a test. */
function tableCopy(name: string): string {
  const file = join(dir, name);
  copyFileSync(SHIPPED, file);
  return file;
}

const script = (...args: string[]) => execa(process.execPath, [SCRIPT, ...args], { reject: false, timeout: 60_000, stripFinalNewline: false });

test.before(async () => {
  await ensureBusybox();
  dir = mkdtempSync(join(tmpdir(), 'dstack-digests-'));
  registry = await startRegistry();
  refs = Object.keys(readTable(SHIPPED).digests);
  // Every name of the table, busybox under all but one, which gets an image of its own so a
  // digest written under the wrong name shows.
  for (const ref of refs) {
    const full = ref === OWN ? await registry.pushFresh(ref, { sizeBytes: 1000 }) : await registry.pushTagOf(BUSYBOX, ref);
    pushedDigest.set(ref, registry.digests.get(full)!);
  }
  busyboxDigest = pushedDigest.get(MOVED)!;
});

test.after(async () => {
  await registry?.stop();
  closeTestDocker();
  rmSync(dir, { recursive: true, force: true });
});

test(
  'every image of the table: the digest written is the one docker push reported; --check then passes, and names a tag that moved',
  withTimeout(120_000, async () => {
    const file = tableCopy('table.json');
    const url = `http://${registry.host}`;
    const r = await script('--registry', url, '--file', file);
    assert.is(r.exitCode, 0, r.stderr);
    const written = readTable(file);
    assert.equal(Object.keys(written.digests), refs, 'the same images, in the same order');
    for (const ref of refs) assert.is(written.digests[ref], pushedDigest.get(ref), ref);
    assert.is.not(written.digests[OWN], written.digests[MOVED]);
    assert.is(written.registry, url);
    assert.match(written.read ?? '', /^\d{4}-\d{2}-\d{2}$/);
    assert.is(r.stdout, refs.map((ref) => `${ref} ${pushedDigest.get(ref)}\n`).join(''));
    assert.is(r.stderr, `wrote ${refs.length} digests to ${file}\n`);

    const same = await script('--registry', url, '--file', file, '--check');
    assert.is(same.exitCode, 0, same.stderr);
    assert.is(same.stderr, `all ${refs.length} match ${url}\n`);

    const moved = registry.digests.get(await registry.pushFresh(MOVED, { sizeBytes: 1000 }))!;
    const before = readFileSync(file, 'utf8');
    const check = await script('--registry', url, '--file', file, '--check');
    assert.is(check.exitCode, 1, check.stderr);
    assert.is(check.stderr, `${MOVED}: the file has ${pushedDigest.get(MOVED)}, ${url} has ${moved}\n1 of ${refs.length} differ from ${url}: run without --check to write them\n`);
    assert.is(readFileSync(file, 'utf8'), before, '--check writes nothing');

    const unpinned = await script('--registry', url, '--file', tableCopy('unpinned.json'), '--check');
    assert.is(unpinned.exitCode, 1);
    assert.ok(unpinned.stderr.includes(`${OWN}: not pinned in the file; ${url} has ${pushedDigest.get(OWN)}\n`), unpinned.stderr);
    assert.ok(unpinned.stderr.endsWith(`${refs.length} of ${refs.length} differ from ${url}: run without --check to write them\n`), unpinned.stderr);
    writtenBeforeMove = written.digests;
    pushedDigest.set(MOVED, moved);
  }),
);

test(
  'a tag the registry lacks, a registry that is not there, bad usage: one line, exit 3 or 2, the file untouched',
  withTimeout(60_000, async () => {
    const empty = await startRegistry();
    try {
      const file = tableCopy('missing.json');
      const r = await script('--registry', `http://${empty.host}`, '--file', file);
      assert.is(r.exitCode, 3);
      assert.is(r.stderr, `image-digests: ${refs[0]}: http://${empty.host} has no such tag (404 MANIFEST_UNKNOWN: manifest unknown)\n`);
      assert.is(readFileSync(file, 'utf8'), readFileSync(SHIPPED, 'utf8'));

      // Not NOWHERE: fetch refuses port 1 itself ("bad port") before trying to connect.
      const nowhere = `127.0.0.1:${await closedPort()}`;
      const unreachable = await script('--registry', `http://${nowhere}`, '--file', file);
      assert.is(unreachable.exitCode, 3);
      assert.is(unreachable.stderr, `image-digests: cannot reach the registry (http://${nowhere}): ECONNREFUSED\n`);

      const bad = await script('--registry', 'registry.example', '--file', file);
      assert.is(bad.exitCode, 2);
      assert.match(bad.stderr, /^image-digests: --registry wants the registry's address, e.g\. https:\/\/registry-1\.docker\.io or http:\/\/127\.0\.0\.1:5000 \(got 'registry\.example'\)\nusage: /);
    } finally {
      await empty.stop();
    }
  }),
);

test(
  'a registry asking for Basic credentials (htpasswd): one line saying it reads public images only, exit 3',
  withTimeout(60_000, async () => {
    const locked = await startRegistry({ auth: { username: 'u', password: `p-${process.pid}` } });
    try {
      const r = await script('--registry', `http://${locked.host}`, '--file', tableCopy('locked.json'));
      assert.is(r.exitCode, 3);
      assert.match(r.stderr, /^image-digests: the registry wants credentials for dstackai\/miniforge \(Basic realm="dstack-test"\); this script reads public images only\n$/);
    } finally {
      await locked.stop();
    }
  }),
);

/**
 * A fake of Docker Hub's token flow (the faults and the flow come from this fake, not from a real
 * token server): in front of the real loopback registry, every request without the token it handed
 * out is answered 401 with a Bearer challenge naming `/token` here; `/token` hands out a token for
 * the challenge's service and scope, or refuses when `refuse` is set.
 */
async function fakeTokenFront(upstream: string): Promise<{ url: string; tokenQueries: URLSearchParams[]; refuse: boolean; close(): Promise<void> }> {
  const token = `tok-${process.pid}-${Date.now()}`;
  const state = { url: '', tokenQueries: [] as URLSearchParams[], refuse: false, close: async () => undefined as void };
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.pathname === '/token') {
      state.tokenQueries.push(u.searchParams);
      if (state.refuse) return void res.writeHead(403, { 'Content-Type': 'application/json' }).end('{"details":"no"}');
      return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
    }
    if (req.headers.authorization !== `Bearer ${token}`) {
      const repo = /^\/v2\/(.+)\/manifests\//.exec(u.pathname)?.[1] ?? '';
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${state.url}/token",service="fake.registry",scope="repository:${repo}:pull"`, 'Content-Type': 'application/json' });
      return void res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
    }
    const up = await fetch(`${upstream}${u.pathname}`, { method: req.method, headers: { Accept: req.headers.accept ?? '' } });
    const headers: Record<string, string> = {};
    for (const h of ['content-type', 'docker-content-digest']) if (up.headers.get(h)) headers[h] = up.headers.get(h)!;
    res.writeHead(up.status, headers).end(Buffer.from(await up.arrayBuffer()));
  };
  const server: Server = createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  state.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  state.close = () => new Promise<void>((r) => server.close(() => r()));
  return state;
}

test(
  'a Bearer challenge (fake token server in front of the loopback registry): one token fetched with its service and scope, every digest read; a refused token is one line, exit 3',
  withTimeout(60_000, async () => {
    const front = await fakeTokenFront(`http://${registry.host}`);
    try {
      const file = tableCopy('bearer.json');
      const r = await script('--registry', front.url, '--file', file);
      assert.is(r.exitCode, 0, r.stderr);
      for (const ref of refs) assert.is(readTable(file).digests[ref], pushedDigest.get(ref), ref);
      assert.equal(front.tokenQueries.map((q) => [q.get('service'), q.get('scope')]), [['fake.registry', 'repository:dstackai/miniforge:pull']], 'one token for the one repository');

      front.refuse = true;
      const refused = await script('--registry', front.url, '--file', tableCopy('refused.json'));
      assert.is(refused.exitCode, 3);
      assert.is(refused.stderr, `image-digests: the token server ${front.url} refused an anonymous pull token for dstackai/miniforge: 403 Forbidden\n`);
    } finally {
      await front.close();
    }
  }),
);

test(
  'the pinned default reference through the local backend: pulled by digest, the pinned image although the tag has moved, found again without a pull',
  withTimeout(90_000, async () => {
    // The digests the first test wrote, read before it moved MOVED's tag to another image.
    assert.ok(writtenBeforeMove, 'the first test wrote the table');
    const pinned = defaultImageFor('3.11', false, writtenBeforeMove);
    assert.is(pinned, `${MOVED}@${busyboxDigest}`);
    assert.is.not(pushedDigest.get(MOVED), busyboxDigest, 'the tag points elsewhere now');

    const image = `${registry.host}/${pinned}`;
    const home = mkdtempSync(join(dir, 'home-'));
    const notices: BackendNotice[] = [];
    let backend = localPlugin.open({ home });
    try {
      const id = await backend.imageDigest(busyboxSpec({ image }), { notify: (n) => notices.push(n), signal: AbortSignal.timeout(60_000) });
      assert.equal(notices.at(-1), { kind: 'pull-done', image });
      assert.is(id, ((await testDocker().imageInspect(BUSYBOX)) as { Id: string }).Id, 'busybox, the pinned image, not what the tag points at now');
      await backend.close();
      // A new backend (no cache of its own): the engine finds `name:tag@digest` by its digest.
      backend = localPlugin.open({ home });
      notices.length = 0;
      assert.is(await backend.imageDigest(busyboxSpec({ image }), { notify: (n) => notices.push(n), signal: AbortSignal.timeout(60_000) }), id);
      assert.equal(notices, [], 'no pull the second time');
    } finally {
      await backend.close();
      await execa('docker', ['rmi', `${registry.host}/dstackai/miniforge@${busyboxDigest}`], { reject: false });
    }
  }),
);

test(
  'nothing is left: no container made to build an image',
  withTimeout(20_000, async () => {
    const left = await testDocker().call<{ Id: string }[]>('GET', '/containers/json', { query: { all: true, filters: JSON.stringify({ name: ['dstack-registry-'] }) } });
    assert.equal(left.map((c) => c.Id), []);
  }),
);

test.run();
