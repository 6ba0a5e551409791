/**
 * An instance's transfers through signed URLs (src/remote-store/presigned.ts), against moto's S3:
 * the scripts an instance would run, run here by `sh` with an environment that holds no AWS
 * credentials at all — upload, download, a damaged object refused on arrival, a file changed
 * after it was hashed refused before it is sent.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ContentHash } from '../../src/engine/types.js';
import { downloadScript, signTransfers, uploadScript } from '../../src/remote-store/presigned.js';
import { openS3Bucket } from '../../src/remote-store/s3-bucket.js';
import { TeamStore } from '../../src/remote-store/team-store.js';
import { startMoto, type Moto } from '../helpers/moto.js';
import { createBucket, testS3Client, useMotoS3 } from '../helpers/s3.js';
import { withTimeout } from '../helpers/timeout.js';

let moto: Moto;
let team: TeamStore;
let dir: string;
const hashOf = (b: Buffer): ContentHash => createHash('sha256').update(b).digest('hex') as ContentHash;

/** Runs a script as an instance would: no AWS variables, no ~/.aws. */
function onInstance(script: string): { status: number | null; stderr: string } {
  const r = spawnSync('sh', ['-c', script], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir }, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

test.before(
  withTimeout(60_000, async () => {
    moto = await startMoto();
    useMotoS3(moto.endpoint);
    const client = testS3Client(moto.endpoint);
    await createBucket(client, 'signed');
    client.destroy();
    team = new TeamStore(await openS3Bucket({ bucket: 'signed' }), 'team');
    dir = await mkdtemp(join(tmpdir(), 'dstack-signed-'));
  }),
);
test.after(
  withTimeout(30_000, async () => {
    await team?.bucket.close();
    await moto?.stop();
    await rm(dir, { recursive: true, force: true });
  }),
);

test('an instance uploads and downloads through signed URLs, with no credentials of its own', withTimeout(60_000, async () => {
  const files = [randomBytes(1000), randomBytes(300_000), Buffer.alloc(0)];
  const items = await Promise.all(
    files.map(async (b, i) => {
      const path = join(dir, `up-${i}`);
      await writeFile(path, b);
      return { hash: hashOf(b), size: b.length, path };
    }),
  );
  const puts = await signTransfers(team.objects, items, 'put');
  for (const p of puts) assert.not.match(p.url, /testing&|X-Amz-Security-Token/, 'no secret in a URL');
  const up = onInstance(uploadScript(puts));
  assert.is(up.status, 0, up.stderr);
  for (const [i, b] of files.entries()) {
    const chunks: Buffer[] = [];
    for await (const c of team.objects.get(items[i]!.hash, { size: b.length })) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks), b, 'the bucket holds the bytes, verified');
  }
  const gets = await signTransfers(team.objects, items.map((it, i) => ({ ...it, path: join(dir, `down-${i}`) })), 'get');
  const down = onInstance(downloadScript(gets));
  assert.is(down.status, 0, down.stderr);
  for (const [i, b] of files.entries()) assert.equal(await readFile(join(dir, `down-${i}`)), b);
}));

test('a damaged object is refused on arrival and leaves nothing at its path', withTimeout(60_000, async () => {
  const good = randomBytes(5000);
  const h = hashOf(good);
  await team.bucket.write(team.objects.key(h), Buffer.concat([good.subarray(0, 4999), Buffer.from('X')]));
  const gets = await signTransfers(team.objects, [{ hash: h, size: good.length, path: join(dir, 'damaged') }], 'get');
  const r = onInstance(downloadScript(gets));
  assert.is(r.status, 1);
  assert.is(r.stderr, `dstack: object ${h} arrived damaged\n`);
  assert.is(await stat(join(dir, 'damaged')).catch(() => undefined), undefined);
  assert.is(await stat(join(dir, 'damaged.dstack-part')).catch(() => undefined), undefined);
}));

test('a file changed after it was hashed is refused before it is sent', withTimeout(60_000, async () => {
  const b = randomBytes(100);
  const path = join(dir, 'changing');
  await writeFile(path, b);
  const puts = await signTransfers(team.objects, [{ hash: hashOf(b), size: b.length, path }], 'put');
  await writeFile(path, randomBytes(100));
  const r = onInstance(uploadScript(puts));
  assert.is(r.status, 1);
  assert.is(r.stderr, `dstack: ${path} changed since it was hashed\n`);
  assert.is(await team.bucket.head(team.objects.key(hashOf(b))), undefined);
}));

test.run();
