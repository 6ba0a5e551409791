/**
 * The team bucket's bad states, end to end, each a coded error with the next step and never a
 * stack trace: an S3 bucket that does not exist (and `config s3 --create` making it), a call the
 * policy refuses (fault proxy: S3's 403 AccessDenied, naming the call and the principal), an object
 * truncated in the bucket (detected on pull, quarantined, nothing kept; a push from its owner heals
 * it), and a shared folder that is gone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { assertNoContainersLeft, assertNoCrash, createProject, runNameOf, type Project, assertOk as ok } from '../helpers/cli.js';
import { motoEnv, startMoto, type Moto } from '../helpers/moto.js';
import { startS3FaultProxy, type S3FaultProxy } from '../helpers/s3-faults.js';
import { createBucket, testS3Client } from '../helpers/s3.js';
import { withTimeout } from '../helpers/timeout.js';

const IMAGE = 'dstack-test/busybox:latest';
const WORKFLOWS = `workflows:
  - name: make
    image: ${IMAGE}
    commands:
      - mkdir -p out && head -c 50000 /dev/urandom > out/blob.bin && echo small > out/small.txt
    artifacts: [out]
`;
const FILES = { '.dstack/repo-id': 'local-00112233445566778899aabbccddeeff\n' };

let moto: Moto;
let proxy: S3FaultProxy;
let client: ReturnType<typeof testS3Client>;
let alice: Project;
let bob: Project;
let run = '';

test.before(
  withTimeout(120_000, async () => {
    moto = await startMoto();
    proxy = await startS3FaultProxy(moto.endpoint);
    client = testS3Client(moto.endpoint);
    await createBucket(client, 'team-ok');
    alice = await createProject({ workflows: WORKFLOWS, files: FILES, env: { ...motoEnv(proxy.endpoint), DSTACK_OWNER: 'alice' } });
    bob = await createProject({ workflows: WORKFLOWS, files: FILES, env: { ...motoEnv(proxy.endpoint), DSTACK_OWNER: 'bob' } });
    run = runNameOf(ok(await alice.run(['run', 'make']), 'run').stderr);
  }),
);
test.after(
  withTimeout(60_000, async () => {
    await alice?.cleanup();
    await bob?.cleanup();
    client?.destroy();
    await proxy?.close();
    await moto?.stop();
  }),
);

test('a bucket that does not exist: DS0260 with the way to create it; config s3 --create makes it', withTimeout(120_000, async () => {
  ok(await alice.run(['config', 's3', '--name', 'team', '--bucket', 'no-such-bucket']), 'config');
  const r = await alice.run(['push', run]);
  assertNoCrash(r);
  assert.equal(
    [r.exitCode, r.stdout, r.stderr],
    [3, '', 'error DS0260: the bucket no-such-bucket does not exist (s3:ListBucket on s3://no-such-bucket)\n  = create it: dstack config s3 --name NAME --bucket no-such-bucket --create --force (or in the AWS console)\n'],
  );
  const made = ok(await alice.run(['config', 's3', '--name', 'team', '--bucket', 'no-such-bucket', '--create', '--force']), 'create');
  assert.is(made.stderr, "Created the bucket s3://no-such-bucket\nReplaced remote 'team': the team bucket s3://no-such-bucket; send a run there with `dstack push RUN`\n");
  ok(await alice.run(['push', run]), 'push into the new bucket');
  for (const p of [alice, bob]) ok(await p.run(['config', 's3', '--name', 'team', '--bucket', 'team-ok', '--force']), 'config team-ok');
}));

test('fault proxy: a call the policy refuses is DS0261 naming the call and the principal', withTimeout(120_000, async () => {
  proxy.add({ operation: 'PutObject', fault: 'AccessDenied' });
  try {
    const r = await alice.run(['push', run]);
    assertNoCrash(r);
    assert.is(r.exitCode, 3);
    assert.match(
      r.stderr,
      /^error DS0261: s3:PutObject on s3:\/\/team-ok\/(objects|manifests)\/sha256\/[0-9a-f]{2}\/[0-9a-f]{64} was refused for access key testing: AccessDenied\n  = the principal needs s3:PutObject on arn:aws:s3:::team-ok\/\*; check its policy, or `aws sts get-caller-identity`\n$/,
    );
  } finally {
    proxy.clear();
  }
}));

test('an object truncated in the bucket is detected on pull, quarantined, and nothing of the run is kept', withTimeout(180_000, async () => {
  ok(await alice.run(['push', run]), 'push');
  const listed = await client.send(new ListObjectsV2Command({ Bucket: 'team-ok', Prefix: 'objects/' }));
  const biggest = [...(listed.Contents ?? [])].sort((a, b) => (b.Size ?? 0) - (a.Size ?? 0))[0]!;
  const body = Buffer.from(await (await client.send(new GetObjectCommand({ Bucket: 'team-ok', Key: biggest.Key! }))).Body!.transformToByteArray());
  await client.send(new PutObjectCommand({ Bucket: 'team-ok', Key: biggest.Key!, Body: body.subarray(0, 1000) }));

  const r = await bob.run(['pull', run]);
  assertNoCrash(r);
  assert.is(r.exitCode, 3, r.stderr);
  const hash = biggest.Key!.slice(biggest.Key!.lastIndexOf('/') + 1);
  assert.match(r.stderr, new RegExp(`^error DS0265: object ${hash} in the bucket s3://team-ok is damaged \\(it holds 1000 bytes, not 50000\\); it was moved to quarantine/${hash}-\\d+-[0-9a-f]{6}\\n`));
  assert.equal(await bob.json(['ps', '-a', '--json']).then((x) => (x as { run: string; where: string }[]).filter((y) => y.where !== 'team')), [], 'nothing of it is kept here');
  const quarantined = await client.send(new ListObjectsV2Command({ Bucket: 'team-ok', Prefix: 'quarantine/' }));
  assert.is(quarantined.KeyCount, 1);

  const healed = JSON.parse(ok(await alice.run(['push', run, '--json']), 'push heals').stdout) as { objects: { sent: number } };
  assert.is(healed.objects.sent, 1, 'the owner pushing again sends the good copy');
  ok(await bob.run(['pull', run]), 'pull after the heal');
}));

test('a shared folder that is gone is DS0274', withTimeout(60_000, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'dstack-e2e-gone-'));
  ok(await alice.run(['config', 'folder', '--name', 'team', '--path', dir, '--force']), 'config folder');
  await rm(dir, { recursive: true, force: true });
  const r = await alice.run(['push', run]);
  assert.equal(
    [r.exitCode, r.stdout, r.stderr],
    [3, '', `error DS0274: the shared folder ${dir} does not exist\n  = create it (or mount the share there), or point the remote elsewhere: dstack config folder --name NAME --path DIR --force\n`],
  );
}));

test('nothing left behind', withTimeout(30_000, async () => assertNoContainersLeft()));

test.run();
