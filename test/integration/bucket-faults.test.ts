/**
 * Pushing through faults S3 has and moto does not: a fault proxy (test/helpers/s3-faults.ts) in
 * front of moto answers S3's real 500 and 503 SlowDown replies, resets connections mid-upload, and
 * fails a multipart upload's parts until the uploader gives up. The push is the library's (the
 * same code `dstack push` runs), from a real local store, through the real SDK.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { makeManifest } from '../../src/artifacts/manifest.js';
import { DstackError } from '../../src/engine/errors.js';
import type { ManifestEntry } from '../../src/engine/objects.js';
import type { JobRecord, RunRecord } from '../../src/engine/store/types.js';
import { asJobId, asRunName, type ContentHash } from '../../src/engine/types.js';
import { PART_SIZE } from '../../src/remote-store/bucket.js';
import { pushRun, type PushedRun } from '../../src/remote-store/push.js';
import { openS3Bucket } from '../../src/remote-store/s3-bucket.js';
import { TeamStore } from '../../src/remote-store/team-store.js';
import { startMoto, type Moto } from '../helpers/moto.js';
import { startS3FaultProxy, type S3FaultProxy } from '../helpers/s3-faults.js';
import { createBucket, emptyBucket, multipartUploads, testS3Client, useMotoS3 } from '../helpers/s3.js';
import { withTimeout } from '../helpers/timeout.js';

const test = suite('bucket faults');
const BUCKET = 'faults';
const BIG = 2 * PART_SIZE + 12_345;

let moto: Moto;
let proxy: S3FaultProxy;
let home: string;
let local: LocalArtifactStore;
let team: TeamStore;
let client: ReturnType<typeof testS3Client>;
let pushed: PushedRun;
let bigHash: ContentHash;

/** A run of two jobs: twenty small files, and one file large enough for a three-part upload. */
async function makeRun(): Promise<PushedRun> {
  const small: ManifestEntry[] = [];
  for (let i = 0; i < 20; i++) {
    const path = join(home, `f${i}`);
    await writeFile(path, randomBytes(2000 + i));
    const r = await local.putFile(path);
    small.push({ type: 'file', path: `out/f${i}`, size: r.size, mode: 0o644, hash: r.hash });
  }
  const bigPath = join(home, 'big');
  await writeFile(bigPath, randomBytes(BIG));
  const big = await local.putFile(bigPath);
  bigHash = big.hash;
  const name = asRunName('wet-lion-3');
  const run: RunRecord = { name, workflow: 'train', owner: 'alice', backend: 'local', repo: { root: home, isGit: false }, args: [], status: 'done', submittedAt: 1000, finishedAt: 2000 };
  const job = (index: number, workflow: string, entries: ManifestEntry[]): JobRecord => ({
    id: asJobId(`${name}/${workflow}`),
    run: name,
    workflow,
    index,
    spec: {} as JobRecord['spec'],
    deps: [],
    status: 'done',
    exitCode: 0,
    manifest: makeManifest(entries),
    submittedAt: 1000,
    finishedAt: 2000,
    history: [],
  });
  return {
    source: run,
    jobs: [job(0, 'prep', small), job(1, 'train', [{ type: 'file', path: 'model.bin', size: big.size, mode: 0o644, hash: big.hash }])],
    logs: () => [{ stream: 'stdout', at: 1500, data: Buffer.from('hello\n') }],
  };
}

const ctx = (signal?: AbortSignal) => ({ team, local: local.objects, home: 'a1b2c3d4e5f6a7b8', repo: 'github.com/acme/faults', ...(signal ? { signal } : {}) });

test.before(
  withTimeout(120_000, async () => {
    moto = await startMoto();
    proxy = await startS3FaultProxy(moto.endpoint);
    // dstack talks to the proxy; the test's own client to moto directly.
    useMotoS3(proxy.endpoint);
    client = testS3Client(moto.endpoint);
    await createBucket(client, BUCKET);
    home = await mkdtemp(join(tmpdir(), 'dstack-faults-'));
    local = new LocalArtifactStore({ home });
    team = new TeamStore(await openS3Bucket({ bucket: BUCKET }), 'team');
    pushed = await makeRun();
  }),
);
test.before.each(
  withTimeout(60_000, async () => {
    proxy.clear();
    await emptyBucket(client, BUCKET);
  }),
);
test.after.each(
  withTimeout(30_000, async () => {
    assert.equal(await multipartUploads(client, BUCKET), [], 'no multipart upload is left behind');
  }),
);
test.after(
  withTimeout(60_000, async () => {
    await team?.bucket.close();
    client?.destroy();
    await proxy?.close();
    await moto?.stop();
    await rm(home, { recursive: true, force: true });
  }),
);

async function bigIsWhole(): Promise<void> {
  const body = await team.bucket.read(team.objects.key(bigHash));
  assert.ok(body, 'the large object is there');
  assert.is(createHash('sha256').update(body!).digest('hex'), bigHash);
}

test('fault proxy: 500 InternalError and 503 SlowDown are retried with backoff, and the push completes', withTimeout(180_000, async () => {
  proxy.add({ operation: 'PutObject', fault: 'InternalError', key: /objects\//, times: 3 });
  proxy.add({ operation: 'PutObject', fault: 'SlowDown', key: /objects\//, times: 3 });
  proxy.add({ operation: 'UploadPart', fault: 'SlowDown', times: 2 });
  const r = await pushRun(ctx(), pushed);
  assert.equal([r.objects.sent.objects, r.objects.total.objects], [21, 21]);
  assert.is(proxy.calls.filter((c) => c.fault).length, 8, 'every fault was met');
  await bigIsWhole();
  const again = await pushRun(ctx(), pushed);
  assert.equal([again.objects.sent.objects, again.objects.sent.bytes], [0, 0]);
}));

test('fault proxy: a connection reset in the middle of an upload is retried, and the object arrives whole', withTimeout(180_000, async () => {
  proxy.add({ operation: 'UploadPart', fault: 'ResetMidBody', times: 1, afterBytes: PART_SIZE / 2 });
  proxy.add({ operation: 'PutObject', fault: 'ResetMidBody', key: /objects\//, times: 2, afterBytes: 1000 });
  const r = await pushRun(ctx(), pushed);
  assert.is(r.objects.sent.objects, 21);
  assert.is(proxy.calls.filter((c) => c.fault === 'ResetMidBody').length, 3);
  await bigIsWhole();
}));

test('fault proxy: a part that keeps failing aborts its multipart upload (no parts left), and the next push sends only the rest', withTimeout(240_000, async () => {
  proxy.add({ operation: 'UploadPart', fault: 'InternalError' });
  let error: unknown;
  try {
    await pushRun(ctx(), pushed);
  } catch (e) {
    error = e;
  }
  assert.instance(error, DstackError);
  assert.is((error as DstackError).code, 'DS0263');
  assert.match((error as DstackError).message, /^s3:UploadPart on s3:\/\/faults\/objects\/sha256\/.* failed: InternalError: .* \(after 6 attempts\)$/);
  assert.is(await team.bucket.head(team.objects.key(bigHash)), undefined, 'no large object');
  assert.ok(proxy.calls.some((c) => c.operation === 'AbortMultipartUpload'), 'the upload was aborted');
  proxy.clear();
  const r = await pushRun(ctx(), pushed);
  assert.equal([r.objects.sent.objects, r.objects.sent.bytes], [1, BIG], 'only the large object is sent again');
  await bigIsWhole();
}));

test('fault proxy: a push interrupted half-way is finished by the next, which sends only the rest', withTimeout(180_000, async () => {
  const abort = new AbortController();
  let sent = 0;
  let error: unknown;
  try {
    await pushRun({ ...ctx(abort.signal), concurrency: 2, onProgress: (p) => {
      sent = p.objectsDone;
      if (p.objectsDone >= 5) abort.abort();
    } }, pushed);
  } catch (e) {
    error = e;
  }
  assert.ok(error, 'the first push was interrupted');
  assert.ok(sent >= 5 && sent < 21, `interrupted after ${sent} objects`);
  const r = await pushRun(ctx(), pushed);
  assert.ok(r.objects.sent.objects < 21 && r.objects.sent.objects > 0, `sent ${r.objects.sent.objects} the second time`);
  assert.is(await team.getRun('github.com/acme/faults', 'wet-lion-3').then((x) => x?.status), 'done');
}));

test('two pushes of the same run at once both succeed, and each object is created once', withTimeout(180_000, async () => {
  const [a, b] = await Promise.all([pushRun(ctx(), pushed), pushRun(ctx(), pushed)]);
  assert.is(a.objects.sent.objects + b.objects.sent.objects, 21);
  assert.is(a.run, 'wet-lion-3');
  assert.is(b.run, 'wet-lion-3');
  const runs = await team.listRuns('github.com/acme/faults');
  assert.equal(runs.map((x) => x.name), ['wet-lion-3']);
}));

test.run();
