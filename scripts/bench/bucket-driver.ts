/**
 * Setup and the baseline for the bucket benchmark (scripts/bench/bucket.mjs); only `baseline` is
 * timed, by the caller. Usage: node --import tsx scripts/bench/bucket-driver.ts COMMAND ARGS…
 *   prepare HOME DATA        a finished run in HOME whose artifacts are the files under DATA; prints its name
 *   buckets NAME…            creates the buckets (AWS_ENDPOINT_URL from the environment)
 *   baseline BUCKET DATA     a plain parallel upload of DATA's files with the same SDK, 16 at a time
 *   fill-team BUCKET N REPO  N finished runs of REPO in the bucket, with their index entries
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { LocalArtifactStore } from '../../src/artifacts/local-store.js';
import { openStore } from '../../src/engine/store/sqlite.js';
import type { JobSpec } from '../../src/engine/types.js';
import { openS3Bucket } from '../../src/remote-store/s3-bucket.js';
import { TeamStore } from '../../src/remote-store/team-store.js';
import type { TeamRun } from '../../src/remote-store/records.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const [command, ...args] = process.argv.slice(2);
const client = (): S3Client => new S3Client({ forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' });

const spec = (workflow: string): JobSpec => ({
  workflow,
  provider: 'bash',
  image: 'dstack-test/busybox:latest',
  command: ['/bin/sh', '-c', 'true'],
  env: {},
  workingDir: '',
  ports: 0,
  artifacts: [{ path: 'files-1g', mount: false }],
  cache: [],
  resources: {},
  variables: {},
  args: [],
  deps: [],
});

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(p)));
    else out.push(p);
  }
  return out.sort();
}

if (command === 'prepare') {
  const [home, data] = args as [string, string];
  const saved = await new LocalArtifactStore({ home }).save(join(data, '..'), [{ path: relative(join(data, '..'), data), mount: false }]);
  const store = openStore(home);
  const { run, jobs } = store.runs.createRun({ workflow: 'make', owner: 'bench', backend: 'local', repo: { root: data, isGit: false }, args: [], jobs: [{ spec: spec('make'), deps: [] }] });
  store.runs.setJobStatus(jobs[0]!.id, 'running');
  store.runs.setJobManifest(jobs[0]!.id, saved.manifest);
  store.runs.setJobStatus(jobs[0]!.id, 'done', { exitCode: 0 });
  store.close();
  process.stdout.write(`${run.name}\n`);
} else if (command === 'buckets') {
  const c = client();
  for (const b of args) await c.send(new CreateBucketCommand({ Bucket: b }));
  c.destroy();
} else if (command === 'baseline') {
  const [bucket, data] = args as [string, string];
  const c = client();
  const limit = pLimit(16);
  let bytes = 0;
  const all = await files(data);
  await Promise.all(
    all.map((f) =>
      limit(async () => {
        const body = await readFile(f);
        bytes += body.length;
        await c.send(new PutObjectCommand({ Bucket: bucket, Key: relative(data, f), Body: body }));
      }),
    ),
  );
  c.destroy();
  process.stdout.write(`${JSON.stringify({ objects: all.length, bytes })}\n`);
} else if (command === 'fill-team') {
  const [bucket, n, repo] = args as [string, string, string];
  const team = new TeamStore(await openS3Bucket({ bucket }), 'bench');
  const limit = pLimit(16);
  const base = Date.now() - Number(n) * 60_000;
  await Promise.all(
    Array.from({ length: Number(n) }, (_, i) =>
      limit(async () => {
        const at = base + i * 60_000;
        const run: TeamRun = {
          version: 1,
          home: 'bench',
          name: `bench-run-${i + 1}`,
          workflow: 'train',
          owner: i % 3 === 0 ? 'alice' : 'bob',
          backend: i % 2 ? 'local' : 'ssh:gpu-pool',
          repo: { id: repo, isGit: true },
          args: [],
          status: 'done',
          submittedAt: at,
          finishedAt: at + 30_000,
          updatedAt: at + 30_000,
          jobs: [],
        };
        await team.putRun(run);
        await team.indexRun(run);
      }),
    ),
  );
  await team.bucket.close();
} else {
  throw new Error(`unknown command ${command}`);
}
