/** The team bucket's pure parts: repository identity, entry names, record checks, parts. */
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import type { Fingerprint, ContentHash } from '../../src/engine/types.js';
import { toParts } from '../../src/remote-store/bucket.js';
import { cacheKey, indexKey, parseCacheKey, parseIndexKey, repoOfPrefix, repoPrefix, type RunSummary } from '../../src/remote-store/layout.js';
import { localRunOf } from '../../src/remote-store/pull.js';
import { parseTeamRun, shareableSpec, teamRunOf } from '../../src/remote-store/records.js';
import type { JobRecord, RunRecord } from '../../src/engine/store/types.js';
import { parseListing, xmlText } from '../../src/remote-store/s3-listing.js';
import { identityMatches, normaliseRemoteUrl, repoIdentity } from '../../src/remote-store/repo-id.js';
import { withTimeout } from '../helpers/timeout.js';

test('remote URLs normalise to host/path, lower-cased, with no credentials, port, scheme or .git', () => {
  const cases: [string, string | undefined][] = [
    ['git@github.com:Acme/Data.git', 'github.com/acme/data'],
    ['https://bob:s3cret-token@github.com/Acme/Data', 'github.com/acme/data'],
    ['https://x-access-token:ghp_abc@github.com/acme/data.git/', 'github.com/acme/data'],
    ['ssh://git@github.com:22/acme/data.git', 'github.com/acme/data'],
    ['git://gitlab.example.com/group/sub/proj.git', 'gitlab.example.com/group/sub/proj'],
    ['https://dev.azure.com/org/proj/_git/repo?version=x#frag', 'dev.azure.com/org/proj/_git/repo'],
    ['/srv/git/repo.git', undefined],
    ['file:///srv/git/repo.git', undefined],
    ['C:/repos/x', undefined],
    ['https://github.com', undefined],
  ];
  for (const [url, want] of cases) assert.is(normaliseRemoteUrl(url), want, url);
  for (const [url] of cases) assert.not.match(normaliseRemoteUrl(url) ?? '', /s3cret|ghp_|bob|token/, 'no credentials survive');
});

test('a cross-repository name matches identities that end with it, or itself', () => {
  assert.ok(identityMatches('github.com/acme/data', 'acme/data'));
  assert.ok(identityMatches('github.com/acme/data', 'Acme/Data'));
  assert.ok(identityMatches('github.com/acme/data', 'github.com/acme/data'));
  assert.not.ok(identityMatches('github.com/acme/bigdata', 'acme/data'));
  assert.not.ok(identityMatches('github.com/acme/data', 'other/data'));
});

test('a project without a remote gets a stable id in .dstack/repo-id, written once', withTimeout(10_000, async () => {
  const root = await mkdtemp(join(tmpdir(), 'dstack-repo-id-'));
  try {
    await mkdir(join(root, '.dstack'));
    const a = await repoIdentity(root);
    assert.match(a, /^local-[0-9a-f]{32}$/);
    assert.is(await repoIdentity(root), a);
    assert.is((await readFile(join(root, '.dstack', 'repo-id'), 'utf8')).trim(), a);
    await writeFile(join(root, '.dstack', 'repo-id'), 'garbage\n');
    // A file someone broke is not silently replaced: runs pushed under it would be lost to this clone.
    let error: unknown;
    try {
      await repoIdentity(root);
    } catch (e) {
      error = e;
    }
    assert.is((error as DstackError).code, 'DS0275');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}));

const summary: RunSummary = {
  name: 'wet-lion-3',
  updatedAt: 1_764_000_000_123,
  workflow: 'train~v2 *weird*/name',
  owner: 'Zoë O’Brien',
  backend: 'ssh:gpu-pool',
  status: 'done',
  submittedAt: 1_764_000_000_000,
  finishedAt: 1_764_000_100_000,
  tag: 'mnist.v1',
};

test('index entries round-trip every field through their key, and sort by time', () => {
  const key = indexKey('github.com/acme/data', summary);
  assert.ok(key.startsWith('repos/github.com%2Facme%2Fdata/index/wet-lion-3~'));
  assert.ok(key.length - key.lastIndexOf('/') <= 201, 'short enough for a file name');
  assert.equal(parseIndexKey('github.com/acme/data', key)?.summary, summary);
  const running = { ...summary, status: 'running' as const, finishedAt: undefined, tag: undefined };
  const { finishedAt: _f, tag: _t, ...plain } = running;
  assert.equal(parseIndexKey('r', indexKey('r', running))?.summary, plain);
  assert.ok(indexKey('r', { ...summary, updatedAt: 5 }) < indexKey('r', { ...summary, updatedAt: 1_000_000 }));
  assert.is(repoOfPrefix(repoPrefix('github.com/acme/data')), 'github.com/acme/data');
});

test('an index entry too long for a file name says so, and is read from the record instead', () => {
  const long = indexKey('r', { ...summary, workflow: 'w'.repeat(300) });
  assert.match(long, /~\*$/);
  const e = parseIndexKey('r', long);
  assert.equal([e?.name, e?.updatedAt, e?.summary], ['wet-lion-3', summary.updatedAt, undefined]);
  assert.is(parseIndexKey('r', 'repos/r/index/not-an-entry'), undefined);
  assert.is(parseIndexKey('r', 'repos/r/index/x~0~nonsense~1~2~a~b~c~d'), undefined);
});

test('cache entries round-trip through their key; a foreign name is not an entry', () => {
  const fp = 'f'.repeat(64) as Fingerprint;
  const e = { fingerprint: fp, finishedAt: 1_764_000_000_000, run: 'wet-lion-3', job: 2, owner: 'a~b c', manifest: 'a'.repeat(64) as ContentHash };
  const key = cacheKey('r', e);
  assert.equal(parseCacheKey('r', fp, key), e);
  assert.is(parseCacheKey('r', fp, key.replace(/~[0-9a-f]{64}$/, '~nothex')), undefined);
  const longOwner = { ...e, owner: 'ü'.repeat(60) };
  const parsed = parseCacheKey('r', fp, cacheKey('r', longOwner));
  assert.ok(parsed && longOwner.owner.startsWith(parsed.owner) && parsed.owner.length > 0, 'a long owner is cut, never garbled');
});

test('run records from the bucket are checked: anything else is DS0266 naming the key', () => {
  const good = { version: 1, home: 'h', name: 'r-1', workflow: 'w', owner: 'o', backend: 'local', repo: { id: 'x', isGit: false }, args: [], status: 'done', submittedAt: 1, updatedAt: 2, jobs: [{ workflow: 'w', index: 0, spec: {}, status: 'done', deps: [], history: [], submittedAt: 1 }] };
  assert.is(parseTeamRun(Buffer.from(JSON.stringify(good)), 'k', 'w').name, 'r-1');
  const bad: [unknown, RegExp][] = [
    ['{nope', /not JSON/],
    [{ ...good, version: 2 }, /not a version 1/],
    [{ ...good, status: 'exploded' }, /no status/],
    [{ ...good, jobs: [{ ...good.jobs[0], deps: [0] }] }, /bad deps/],
    [{ ...good, jobs: [{ ...good.jobs[0], manifest: '../../etc/passwd' }] }, /bad manifest hash/],
  ];
  for (const [body, why] of bad) {
    try {
      parseTeamRun(Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), 'repos/x/runs/r-1.json', 's3://b');
      assert.unreachable('accepted');
    } catch (e) {
      assert.instance(e, DstackError);
      assert.is((e as DstackError).code, 'DS0266');
      assert.match((e as Error).message, /^the run record s3:\/\/b\/repos\/x\/runs\/r-1\.json is damaged/);
      assert.match((e as Error).message, why);
    }
  }
});

test("a failed job's error code goes to the bucket and comes back on pull; a code this dstack does not know is left out", () => {
  const run = { name: 'r-1', workflow: 'w', owner: 'o', backend: 'local', repo: { root: '/p', isGit: false }, args: [], status: 'failed', submittedAt: 1, finishedAt: 3 } as unknown as RunRecord;
  const job = { id: 'r-1/w', run: 'r-1', workflow: 'w', index: 0, spec: { workflow: 'w' }, deps: [], status: 'failed', exitCode: 1, reason: 'DS0320: the disk is full', errorCode: 'DS0320', submittedAt: 1, finishedAt: 3, history: [] } as unknown as JobRecord;
  const team = teamRunOf({ run, jobs: [job], name: 'r-1', home: 'h', repo: 'x', manifests: new Map(), logParts: new Map(), now: 4 });
  const back = (t: unknown) => localRunOf(parseTeamRun(Buffer.from(JSON.stringify(t)), 'k', 'w'), new Map(), '/q').jobs[0]!;
  assert.is(back(team).errorCode, 'DS0320');
  assert.is(back(team).exitCode, 1);
  for (const unknown of ['DS9999', 'constructor', '__proto__', 42]) {
    assert.not.ok('errorCode' in back({ ...team, jobs: [{ ...team.jobs[0], errorCode: unknown }] }), String(unknown));
  }
});

test('specs shared with the team carry no registry password', () => {
  const spec = { workflow: 'w', registryAuth: { username: 'u', password: 'hunter2' } } as never;
  assert.not.match(JSON.stringify(shareableSpec(spec)), /hunter2/);
});

test('toParts cuts a stream into parts of the size asked, the last one shorter', withTimeout(5000, async () => {
  async function* chunks() {
    yield Buffer.alloc(7, 1);
    yield Buffer.alloc(2, 2);
    yield Buffer.alloc(12, 3);
  }
  const parts: Buffer[] = [];
  for await (const p of toParts(chunks(), 5)) parts.push(p);
  assert.equal(parts.map((p) => p.length), [5, 5, 5, 5, 1]);
  assert.equal(Buffer.concat(parts), Buffer.concat([Buffer.alloc(7, 1), Buffer.alloc(2, 2), Buffer.alloc(12, 3)]));
}));

test.run();

test('S3 listings are read by their own parser: keys with entities, sizes, the next page; anything else goes to the SDK', () => {
  const contents = (key: string, size: number): string =>
    `<Contents><Key>${key}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;d41d8&quot;</ETag><Size>${size}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
  const page = (body: string, count: number, more = ''): string =>
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>${more}${body}<KeyCount>${count}</KeyCount></ListBucketResult>`;
  const two = page(`<IsTruncated>true</IsTruncated>${contents('p/a&amp;b&lt;c&gt;&quot;&apos;', 3)}\n  ${contents('p/&#233;t&#xE9;~%7E', 0)}`, 2, '<NextContinuationToken>1/&amp;x==</NextContinuationToken>');
  assert.equal(parseListing(two), {
    entries: [
      { key: `p/a&b<c>"'`, size: 3 },
      { key: 'p/étè~%7E', size: 0 },
    ],
    truncated: true,
    nextToken: '1/&x==',
  });
  assert.equal(parseListing(page('<IsTruncated>false</IsTruncated>', 0)), { entries: [], truncated: false });
  // Not what it reads: a count that disagrees, an unknown entity, a size that is not a number, no IsTruncated.
  assert.is(parseListing(page(`<IsTruncated>false</IsTruncated>${contents('p/a', 1)}`, 2)), undefined);
  assert.is(parseListing(page(`<IsTruncated>false</IsTruncated>${contents('p/&nbsp;', 1)}`, 1)), undefined);
  assert.is(parseListing(page(`<IsTruncated>false</IsTruncated>${contents('p/a', -1)}`, 1)), undefined);
  assert.is(parseListing(page(contents('p/a', 1), 1)), undefined);
  assert.is(parseListing(page(`<IsTruncated>true</IsTruncated>${contents('p/a', 1)}`, 1)), undefined, 'more pages, but no token');
  assert.is(xmlText('a & b'), undefined);
});
