/**
 * The bucket contract suite: one set of tests every team bucket must pass — the raw bucket
 * (src/remote-store/bucket.ts), the objects over it, and the remote run store's records (runs, the
 * index, the cache index, tags, logs) — registered once per implementation:
 *
 *   // test/integration/bucket-contract-<name>.test.ts
 *   registerBucketContract('s3', async () => ({ bucket, reset, cleanup, leftovers }));
 *
 * `reset` empties the bucket between tests; `leftovers` lists what a failed or refused write left
 * behind (an S3 multipart upload's parts, a folder's temp files) and must be empty after each test.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { DstackError } from '../../src/engine/errors.js';
import type { ContentHash, Fingerprint, JobStatus } from '../../src/engine/types.js';
import { PART_SIZE, type Bucket } from '../../src/remote-store/bucket.js';
import { BucketObjectStore } from '../../src/remote-store/bucket-objects.js';
import { indexPrefix, type RunSummary } from '../../src/remote-store/layout.js';
import type { TeamRun } from '../../src/remote-store/records.js';
import { putJobLog, readRunLog } from '../../src/remote-store/team-logs.js';
import { TeamStore } from '../../src/remote-store/team-store.js';
import { putTeamTag, type TeamTag } from '../../src/remote-store/team-tags.js';
import { withTimeout } from '../helpers/timeout.js';

export interface BucketSubject {
  readonly bucket: Bucket;
  /** Empties the bucket. */
  readonly reset: () => Promise<void>;
  readonly cleanup: () => Promise<void>;
  /** What writes left behind that nobody can see (multipart uploads, temp files); [] when nothing. */
  readonly leftovers: () => Promise<readonly string[]>;
}

const hashOf = (b: Buffer): ContentHash => createHash('sha256').update(b).digest('hex') as ContentHash;
const source = (b: Buffer) => () => Readable.from([b]);
async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
async function rejects(p: Promise<unknown>, code: string): Promise<DstackError> {
  try {
    await p;
  } catch (e) {
    assert.instance(e, DstackError);
    assert.is((e as DstackError).code, code, (e as Error).message);
    return e as DstackError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

export function teamRun(over: Partial<TeamRun> & { readonly name: string }): TeamRun {
  const status: JobStatus = over.status ?? 'done';
  return {
    version: 1,
    home: 'home-a',
    workflow: 'train',
    owner: 'alice',
    backend: 'local',
    repo: { id: 'github.com/acme/data', isGit: true },
    args: [],
    status,
    submittedAt: 1_700_000_000_000,
    finishedAt: 1_700_000_060_000,
    updatedAt: 1_700_000_060_000,
    jobs: [],
    ...over,
  };
}

export function registerBucketContract(name: string, factory: () => Promise<BucketSubject>): void {
  const test = suite(`bucket contract: ${name}`);
  let s: BucketSubject;
  let team: TeamStore;
  test.before(
    withTimeout(60_000, async () => {
      s = await factory();
      team = new TeamStore(s.bucket, 'team');
    }),
  );
  test.after(withTimeout(60_000, async () => s?.cleanup()));
  test.before.each(withTimeout(60_000, async () => s.reset()));
  test.after.each(
    withTimeout(30_000, async () => {
      assert.equal(await s.leftovers(), [], 'nothing half-written is left behind');
    }),
  );
  const it = (title: string, fn: () => Promise<void>, ms = 60_000): void => test(title, withTimeout(ms, fn));

  it('writes, reads, heads and removes keys; absent keys are undefined', async () => {
    assert.ok(await s.bucket.write('a/b/c.json', Buffer.from('{"x":1}')));
    assert.equal((await s.bucket.read('a/b/c.json'))?.toString(), '{"x":1}');
    assert.is(await s.bucket.head('a/b/c.json'), 7);
    assert.equal(await readAll((await s.bucket.stream('a/b/c.json'))!), Buffer.from('{"x":1}'));
    assert.is(await s.bucket.read('a/b/none'), undefined);
    assert.is(await s.bucket.head('a/b/none'), undefined);
    assert.is(await s.bucket.stream('a/b/none'), undefined);
    await s.bucket.remove('a/b/c.json');
    await s.bucket.remove('a/b/c.json');
    assert.is(await s.bucket.read('a/b/c.json'), undefined);
  });

  it('a create-only write never replaces a key, and of ten racing writers exactly one wins', async () => {
    assert.ok(await s.bucket.write('t/once', Buffer.from('first'), { createOnly: true }));
    assert.not.ok(await s.bucket.write('t/once', Buffer.from('second'), { createOnly: true }));
    assert.is((await s.bucket.read('t/once'))?.toString(), 'first');
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => s.bucket.write('t/race', Buffer.from(`writer ${i}`), { createOnly: true })));
    assert.is(results.filter(Boolean).length, 1);
    const winner = results.indexOf(true);
    assert.is((await s.bucket.read('t/race'))?.toString(), `writer ${winner}`);
  });

  it('lists keys in lexicographic order under a prefix, after a key, and the folders of a prefix', async () => {
    const keys = ['l/a-c', 'l/a/b', 'l/a/c/d', 'l/b', 'l/ab', 'm/x'];
    for (const k of keys) await s.bucket.write(k, Buffer.from(k));
    const listed: string[] = [];
    for await (const e of s.bucket.list('l/')) listed.push(e.key);
    assert.equal(listed, ['l/a-c', 'l/a/b', 'l/a/c/d', 'l/ab', 'l/b']);
    const after: string[] = [];
    for await (const e of s.bucket.list('l/a', { startAfter: 'l/a/b' })) after.push(e.key);
    assert.equal(after, ['l/a/c/d', 'l/ab']);
    const between: string[] = [];
    for await (const e of s.bucket.list('l/', { startAfter: 'l/a-d' })) between.push(e.key);
    assert.equal(between, ['l/a/b', 'l/a/c/d', 'l/ab', 'l/b']);
    const two: string[] = [];
    for await (const e of s.bucket.list('l/', { startAfter: 'l/a/b', maxKeys: 2 })) two.push(e.key);
    assert.equal(two, ['l/a/c/d', 'l/ab']);
    assert.equal(await s.bucket.listFolders('l/'), ['l/a/']);
    assert.equal(await s.bucket.listFolders(''), ['l/', 'm/']);
  });

  it('lists past one page (S3 pages at 1,000 keys)', async () => {
    const keys = Array.from({ length: 1100 }, (_, i) => `p/${String(i).padStart(5, '0')}`);
    await Promise.all(keys.map((k) => s.bucket.write(k, Buffer.alloc(0))));
    let n = 0;
    let last = '';
    for await (const e of s.bucket.list('p/')) {
      assert.ok(e.key > last);
      last = e.key;
      n++;
    }
    assert.is(n, 1100);
    let capped = 0;
    for await (const e of s.bucket.list('p/', { startAfter: 'p/00050', maxKeys: 1000 })) capped += e.key > 'p/00050' ? 1 : 1000;
    assert.is(capped, 1000);
  }, 120_000);

  it('a large object goes up in parts and reads back whole', async () => {
    const body = randomBytes(PART_SIZE * 2 + 1234);
    const parts = async function* () {
      for (let i = 0; i < body.length; i += PART_SIZE) yield body.subarray(i, i + PART_SIZE);
    };
    const progress: number[] = [];
    assert.ok(await s.bucket.writeParts('big/one', parts(), { size: body.length, createOnly: true, beforeCommit: () => undefined, onProgress: (b) => progress.push(b) }));
    assert.is(progress[progress.length - 1], body.length);
    assert.equal(await s.bucket.read('big/one'), body);
    assert.not.ok(await s.bucket.writeParts('big/one', parts(), { size: body.length, createOnly: true, beforeCommit: () => undefined }));
  }, 120_000);

  it('a large object refused before commit never appears and leaves no parts behind', async () => {
    const parts = async function* () {
      yield randomBytes(PART_SIZE);
      yield randomBytes(100);
    };
    let error: unknown;
    try {
      await s.bucket.writeParts('big/refused', parts(), { size: PART_SIZE + 100, beforeCommit: () => { throw new Error('refused'); } });
    } catch (e) {
      error = e;
    }
    assert.is((error as Error | undefined)?.message, 'refused');
    assert.is(await s.bucket.head('big/refused'), undefined);
  }, 120_000);

  it('objects: a put is verified and create-only, a get verified, statMany batched across shards', async () => {
    const bodies = Array.from({ length: 300 }, (_, i) => Buffer.from(`object ${i}`));
    const hashes = bodies.map(hashOf);
    const created = await Promise.all(bodies.map((b, i) => team.objects.put(hashes[i]!, b.length, source(b))));
    assert.ok(created.every((c) => c.created));
    assert.not.ok((await team.objects.put(hashes[0]!, bodies[0]!.length, source(bodies[0]!))).created);
    const absent = hashOf(Buffer.from('never stored'));
    // S3's pages, and pages so small that every run of hashes walks through several (a big bucket's case).
    for (const objects of [team.objects, new BucketObjectStore(s.bucket, { pageKeys: 7 }), new BucketObjectStore(s.bucket, { pageKeys: 2, concurrency: 3 })]) {
      const stat = await objects.statMany([...hashes, absent]);
      assert.is(stat.size, 300);
      assert.is(stat.get(hashes[7]!), bodies[7]!.length);
      assert.not.ok(stat.has(absent));
      const few = await objects.statMany([hashes[3]!, absent]);
      assert.equal([...few.keys()], [hashes[3]]);
    }
    // Batched: a listing per run of neighbouring hashes (16 runs), not a request per object.
    let listings = 0;
    const counted: Bucket = Object.assign(Object.create(s.bucket) as Bucket, {
      list: (prefix: string, options?: Parameters<Bucket['list']>[1]) => {
        listings++;
        return s.bucket.list(prefix, options);
      },
    });
    assert.is((await new BucketObjectStore(counted).statMany([...hashes, absent])).size, 300);
    assert.is(listings, 16);
    assert.equal(await readAll(team.objects.get(hashes[5]!, { size: bodies[5]!.length })), bodies[5]);
    let listed = 0;
    for await (const _ of team.objects.list()) listed++;
    assert.is(listed, 300);
  });

  it('objects: statMany walks past keys that are not objects, however many sort just before one asked', async () => {
    const b = Buffer.from('the one asked');
    const h = hashOf(b);
    await team.objects.put(h, b.length, source(b));
    const key = team.objects.key(h);
    // `!` sorts before every hex digit: these land between the key without its last digit and the key.
    for (let i = 0; i < 12; i++) await s.bucket.write(`${key.slice(0, -1)}!${String(i).padStart(3, '0')}`, Buffer.from('stray'));
    for (const objects of [team.objects, new BucketObjectStore(s.bucket, { pageKeys: 2 })]) {
      assert.equal([...(await objects.statMany([h]))], [[h, b.length]]);
    }
  }, 30_000);

  it('objects: bytes that are not the hash are refused and nothing is stored', async () => {
    const good = Buffer.from('the real thing');
    const h = hashOf(good);
    await rejects(team.objects.put(h, good.length, source(Buffer.from('an impostor!!!'))), 'DS0304');
    assert.is(await s.bucket.head(team.objects.key(h)), undefined);
    const big = randomBytes(PART_SIZE + 10);
    const wrong = Buffer.from(big);
    wrong[5] = wrong[5]! ^ 1;
    await rejects(team.objects.put(hashOf(big), big.length, source(wrong)), 'DS0304');
    assert.is(await s.bucket.head(team.objects.key(hashOf(big))), undefined);
  }, 120_000);

  it('objects: two puts of the same object at once both succeed and one creates it', async () => {
    const b = randomBytes(4096);
    const r = await Promise.all([team.objects.put(hashOf(b), b.length, source(b)), team.objects.put(hashOf(b), b.length, source(b))]);
    assert.is(r.filter((x) => x.created).length, 1);
  });

  it('objects: a truncated object is detected on get, quarantined and never served again', async () => {
    const b = randomBytes(10_000);
    const h = hashOf(b);
    await s.bucket.write(team.objects.key(h), b.subarray(0, 6000));
    const e = await rejects(readAll(team.objects.get(h, { size: b.length })), 'DS0265');
    assert.match(e.message, /quarantine\//);
    assert.is(await s.bucket.head(team.objects.key(h)), undefined);
    let quarantined = 0;
    for await (const q of s.bucket.list('quarantine/')) if (q.key.includes(h)) quarantined++;
    assert.is(quarantined, 1);
    await rejects(readAll(team.objects.get(h, { size: b.length })), 'DS0264');
    assert.ok((await team.objects.put(h, b.length, source(b))).created, 'the good copy takes its place');
    assert.equal(await readAll(team.objects.get(h, { size: b.length })), b);
  });

  it('objects: same size, other bytes is detected too (no size given)', async () => {
    const b = Buffer.from('abcdefgh');
    const h = hashOf(b);
    await s.bucket.write(team.objects.key(h), Buffer.from('abcdefgX'));
    await rejects(readAll(team.objects.get(h)), 'DS0265');
  });

  it('runs: created once, unchanged when the same, updated by its home, refused to another home', async () => {
    const run = teamRun({ name: 'wet-lion-3' });
    assert.is((await team.putRun(run)).outcome, 'created');
    assert.is((await team.putRun({ ...run, updatedAt: run.updatedAt + 5 })).outcome, 'unchanged');
    assert.is((await team.putRun({ ...run, tag: 'v1', updatedAt: run.updatedAt + 9 })).outcome, 'updated');
    const other = await team.putRun({ ...run, home: 'home-b', owner: 'bob' });
    assert.is(other.outcome, 'taken');
    assert.is(other.outcome === 'taken' && other.by.owner, 'alice');
    assert.is((await team.getRun(run.repo.id, run.name))?.tag, 'v1');
    assert.is(await team.getRun(run.repo.id, 'dry-cat-1'), undefined);
    await s.bucket.write('repos/x/runs/bad.json', Buffer.from('{not json'));
    await rejects(team.getRun('x', 'bad'), 'DS0266');
  });

  it('runs: the index lists the newest entry per run, newest run first; long fields fall back to the record', async () => {
    const a = teamRun({ name: 'a-run-1', submittedAt: 1000, status: 'running', finishedAt: undefined, updatedAt: 1000 });
    await team.putRun(a);
    await team.indexRun(a);
    const a2 = { ...a, status: 'done' as JobStatus, finishedAt: 5000, updatedAt: 5000 };
    await team.putRun(a2);
    await team.indexRun(a2);
    const long = teamRun({ name: 'b-run-1', submittedAt: 2000, workflow: 'w'.repeat(150), tag: 't'.repeat(90) });
    await team.putRun(long);
    await team.indexRun(long);
    const runs = await team.listRuns('github.com/acme/data');
    assert.equal(runs.map((r: RunSummary) => [r.name, r.status]), [['b-run-1', 'done'], ['a-run-1', 'done']]);
    assert.is(runs[0]!.workflow, 'w'.repeat(150));
    let entries = 0;
    for await (const _ of s.bucket.list(indexPrefix('github.com/acme/data'))) entries++;
    assert.is(entries, 2, 'older index entries are removed');
  });

  it('cache: the newest successful job with the fingerprint is found by one listing', async () => {
    const fp = 'f'.repeat(64) as Fingerprint;
    const m1 = 'a'.repeat(64) as ContentHash;
    const m2 = 'b'.repeat(64) as ContentHash;
    const job = (manifest: ContentHash, finishedAt: number) => ({ workflow: 'prep', index: 0, spec: {} as never, deps: [], status: 'done' as JobStatus, manifest, fingerprint: fp, submittedAt: 1, finishedAt, history: [] });
    await team.indexCache(teamRun({ name: 'old-run-1', jobs: [job(m1, 1000)] }));
    await team.indexCache(teamRun({ name: 'new-run-1', owner: 'bob~the builder', jobs: [job(m2, 2000)] }));
    const hit = await team.findCacheHit('github.com/acme/data', fp);
    assert.equal(hit && [hit.run, hit.owner, hit.manifest, hit.job], ['new-run-1', 'bob~the builder', m2, 0]);
    assert.is(await team.findCacheHit('github.com/acme/data', 'e'.repeat(64) as Fingerprint), undefined);
    assert.is(await team.findCacheHit('github.com/acme/other', fp), undefined, 'scoped by repository');
  });

  it('tags: two creators of one name at once — one wins, the other is told who holds it', async () => {
    const tag = (owner: string, manifest: string): TeamTag => ({ version: 1, name: 'mnist-v1', home: owner, owner, manifest: manifest as ContentHash, files: 1, size: 1, createdAt: Date.now() });
    const results = await Promise.allSettled([putTeamTag(team, 'r', tag('alice', 'a'.repeat(64))), putTeamTag(team, 'r', tag('bob', 'b'.repeat(64)))]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.is(won.length, 1);
    assert.is(lost.length, 1);
    assert.is((lost[0]!.reason as DstackError).code, 'DS0270');
    assert.match((lost[0]!.reason as DstackError).message, /pushed by (alice|bob)/);
    const winner = (await team.bucket.read('repos/r/tags/mnist-v1.json'))!.toString();
    assert.not.ok((await putTeamTag(team, 'r', JSON.parse(winner) as TeamTag)).created, 'the same tag again is not an error');
  });

  it('logs: parts round-trip text and bytes that are not UTF-8, in order', async () => {
    const records = [
      { stream: 'stdout' as const, at: 1, data: Buffer.from('hello\n') },
      { stream: 'stdout' as const, at: 2, data: Buffer.from('x'.repeat(5 * 1024 * 1024)) },
      { stream: 'stderr' as const, at: 3, data: Buffer.from([0xff, 0xfe, 0x00, 0x41]) },
    ];
    const parts = await putJobLog(team, { repo: 'r', run: 'log-run-1', job: 0 }, records);
    assert.is(parts, 2);
    const run = teamRun({ name: 'log-run-1', repo: { id: 'r', isGit: false }, jobs: [{ workflow: 'w', index: 0, spec: {} as never, deps: [], status: 'done', submittedAt: 1, history: [], logParts: parts }] });
    const back = [];
    for await (const r of readRunLog(team, run)) back.push(r);
    assert.equal(back.map((r) => [r.stream, r.at, r.data]), records.map((r) => [r.stream, r.at, r.data]));
  }, 120_000);

  test.run();
}
